/* ppxq.h — C API of ppxd's posterior query codec (protocol/serve.fbs,
 * FlatBuffers namespace ppxq): Envelope{version, request_id, body} messages
 * between query clients (ppxctl, clients/c/ppx_query.h, Python) and the
 * serving daemon (server/serve.h).
 *
 * The codec is C++ (flatc-generated code plus protocol/serve_codec.cc)
 * behind this plain C interface, like protocol/ppx.h.
 *
 * Decoding: ppxq_decode() refuses a buffer over lim->max_bytes, then runs the
 * FlatBuffers Verifier before reading a byte of it, rejects unknown body
 * tags and fills a ppxq_msg of plain C views.  Doubles point into the input
 * buffer when it is 8-byte aligned (zero-copy) or into a private aligned copy
 * otherwise; strings are NUL-terminated (absent strings decode as ""); arrays
 * of strings, matrices and model infos live in storage owned by the message.
 * Every view stays valid until ppxq_msg_clear() or the next ppxq_decode()
 * into the same message, and — in the zero-copy case — only while the caller
 * keeps the input buffer alive.  The version and request_id are filled as
 * soon as the buffer verifies, also when the body is then refused, so a
 * server can answer the right request with its Error.
 *
 * Encoding: a ppxq_encoder owns a reusable FlatBufferBuilder; ppxq_encode()
 * returns the finished bytes (with file identifier "PPXQ"), valid until the
 * next call on the same encoder.  Decoding accepts buffers with or without
 * the identifier.
 *
 * Shapes: a ppxq_matrix is rows x cols row-major doubles (data has rows*cols
 * elements; the decoder checks that).  Units are the model's.
 */
#ifndef PPX_SERVE_PROTOCOL_H
#define PPX_SERVE_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version this codec speaks (Envelope.version). */
#define PPXQ_PROTOCOL_VERSION 1u

/* Body union tags, as on the wire. */
typedef enum ppxq_type {
    PPXQ_NONE = 0,
    PPXQ_LIST_MODELS = 1,
    PPXQ_LIST_MODELS_REPLY = 2,
    PPXQ_SAMPLE = 3,
    PPXQ_SAMPLE_REPLY = 4,
    PPXQ_LOG_PROB = 5,
    PPXQ_LOG_PROB_REPLY = 6,
    PPXQ_LOAD = 7,
    PPXQ_UNLOAD = 8,
    PPXQ_RELOAD = 9,
    PPXQ_ADMIN_REPLY = 10,
    PPXQ_STATUS = 11,
    PPXQ_STATUS_REPLY = 12,
    PPXQ_ERROR = 13,
    PPXQ_JOB_SUBMIT = 14,
    PPXQ_JOB_LIST = 15,
    PPXQ_JOB_STATUS = 16,
    PPXQ_JOB_CANCEL = 17,
    PPXQ_JOB_WAIT = 18,
    PPXQ_JOB_REPLY = 19,
    PPXQ_JOB_FETCH = 20,
    PPXQ_JOB_FETCH_REPLY = 21,
    PPXQ_SIM_LIST = 22,
    PPXQ_SIM_LIST_REPLY = 23,
    PPXQ_LOG_RATIO = 24,
    PPXQ_LOG_RATIO_REPLY = 25,
    PPXQ_SCORE = 26,
    PPXQ_SCORE_REPLY = 27,
    PPXQ_TYPE_COUNT = 28
} ppxq_type;

/* Error.code, as on the wire (see serve.fbs for their meaning). */
typedef enum ppxq_code {
    PPXQ_OK = 0,
    PPXQ_MALFORMED = 1,
    PPXQ_VERSION_MISMATCH = 2,
    PPXQ_UNKNOWN_MODEL = 3,
    PPXQ_BAD_SHAPE = 4,
    PPXQ_N_TOO_LARGE = 5,
    PPXQ_NAN_INPUT = 6,
    PPXQ_BUSY = 7,
    PPXQ_DEADLINE = 8,
    PPXQ_SAMPLING_FAILED = 9,
    PPXQ_NOT_ALLOWED = 10,
    PPXQ_LOAD_FAILED = 11,
    PPXQ_INTERNAL = 12,
    PPXQ_UNKNOWN_JOB = 13,
    PPXQ_BAD_REQUEST = 14,
    PPXQ_CODE_COUNT = 15
} ppxq_code;

/* JobInfo.state, as on the wire. */
typedef enum ppxq_job_state {
    PPXQ_JOB_QUEUED = 0,
    PPXQ_JOB_RUNNING = 1,
    PPXQ_JOB_DONE = 2,
    PPXQ_JOB_FAILED = 3,
    PPXQ_JOB_CANCELLED = 4,
    PPXQ_JOB_STATE_COUNT = 5
} ppxq_job_state;

typedef struct ppxq_matrix {
    uint32_t rows, cols;
    const double *data;       /* [rows * cols]; NULL when empty */
} ppxq_matrix;

typedef struct ppxq_model_info {
    const char *name;
    const char *kind;         /* "NPE-MAF", "NPE-NSF", "NRE" */
    const char *const *theta_names; /* [n_theta_names] */
    uint32_t n_theta_names;
    uint32_t theta_dim;
    const char *const *x_names;     /* [n_x_names] */
    uint32_t n_x_names;
    uint32_t x_dim;
    int64_t created;          /* unix seconds */
    uint64_t n_simulations;
    double best_val_loss;
    uint32_t checksum;        /* CRC-32C of the model file */
    const char *path;
    uint32_t generation;
    const char *prior;
} ppxq_model_info;

typedef struct ppxq_job_info {
    const char *id;
    const char *name;
    const char *const *command;     /* [n_command] words after "ppxd" */
    uint32_t n_command;
    const char *sim_model;
    ppxq_job_state state;           /* an unknown state from a newer peer decodes as FAILED */
    const char *message;
    double submitted, started, finished;   /* unix seconds; 0: not yet */
    uint64_t done, total;           /* progress in unit (total 0: unknown) */
    const char *unit;
    double loss;                    /* NaN: none */
    double eta_seconds;             /* < 0: unknown */
    const char *const *outputs;     /* [n_outputs] */
    uint32_t n_outputs;
} ppxq_job_info;

typedef struct ppxq_sim_pool {
    const char *model;
    uint32_t connected, busy;
    uint64_t joined, left;
} ppxq_sim_pool;

typedef struct ppxq_status_info {
    const char *version;
    double uptime_seconds;
    const char *const *models; /* [n_models] */
    uint32_t n_models;
    uint32_t workers;
    uint32_t queue_depth;
    uint64_t requests, errors, busy;
} ppxq_status_info;

/* A decoded or to-be-encoded Envelope.  Which fields matter depends on type:
 *   LIST_MODELS, STATUS        none
 *   LIST_MODELS_REPLY          models[n_models]
 *   SAMPLE                     model, observations (k x x_dim), n, seed, max_seconds
 *   SAMPLE_REPLY               samples[n_samples] (one n x theta_dim matrix per
 *                              observation), acceptance[n_acceptance]
 *   LOG_PROB                   model, observation (1 x x_dim), thetas (m x theta_dim),
 *                              normalise, seed, n_draws
 *   LOG_PROB_REPLY             log_prob[n_log_prob]
 *   LOAD                       path, name;  UNLOAD, RELOAD: name
 *   ADMIN_REPLY                message, models[0] when n_models == 1
 *   STATUS_REPLY               status
 *   ERROR                      code, message
 *   JOB_SUBMIT                 name, command[n_command], sim_model
 *   JOB_LIST, SIM_LIST         none
 *   JOB_STATUS, JOB_CANCEL     job_id;  JOB_WAIT: job_id, max_seconds
 *   JOB_REPLY                  jobs[n_jobs]
 *   JOB_FETCH                  job_id, output, offset, max_bytes
 *   JOB_FETCH_REPLY            output, size, offset, data[n_data]
 *   SIM_LIST_REPLY             pools[n_pools]
 *   LOG_RATIO                  model, observations (x: m x x_dim), thetas (theta0), thetas1 (theta1)
 *   LOG_RATIO_REPLY            log_prob[n_log_prob] (the m values of log r^)
 *   SCORE                      model, observations (x: m x x_dim), thetas (theta)
 *   SCORE_REPLY                score (m x theta_dim)
 * For encoding, NULL strings are written as "". */
typedef struct ppxq_msg {
    ppxq_type type;
    uint32_t version;         /* PPXQ_PROTOCOL_VERSION when sent by this codec's users */
    uint64_t request_id;
    const char *model;
    ppxq_matrix observations; /* Sample.observations / LogProb.observation */
    ppxq_matrix thetas;       /* LogProb.thetas */
    uint32_t n;
    uint64_t seed;
    double max_seconds;       /* Sample: 0 = the server's default deadline */
    int normalise;            /* LogProb: decodes as 1 when absent */
    uint32_t n_draws;         /* LogProb: draws for the normalising mass (0: server default) */
    const char *path;
    const char *name;
    const ppxq_model_info *models;
    uint32_t n_models;
    const ppxq_matrix *samples;
    uint32_t n_samples;
    const double *acceptance;
    uint32_t n_acceptance;
    const double *log_prob;
    uint32_t n_log_prob;
    const char *message;
    ppxq_code code;
    ppxq_status_info status;
    /* jobs (appended) */
    const char *job_id;
    const char *const *command;      /* JobSubmit.command */
    uint32_t n_command;
    const char *sim_model;
    const ppxq_job_info *jobs;
    uint32_t n_jobs;
    const char *output;              /* JobFetch / JobFetchReply */
    uint64_t offset;
    uint32_t max_bytes;
    uint64_t size;                   /* JobFetchReply: the whole output's size */
    const uint8_t *data;             /* JobFetchReply: [n_data] bytes */
    size_t n_data;
    const ppxq_sim_pool *pools;
    uint32_t n_pools;
    /* gold models (appended) */
    ppxq_matrix thetas1;             /* LogRatio.theta1 */
    ppxq_matrix score;               /* ScoreReply.score */
    /* decoder-private storage */
    void *owned_;             /* aligned copy of the input, or NULL */
    void *arena_;             /* arrays built while decoding */
} ppxq_msg;

typedef enum ppxq_result {
    PPXQ_R_OK = 0,
    PPXQ_R_ARG = 1,           /* bad argument (a bug in the caller) */
    PPXQ_R_TOO_LARGE = 2,     /* over max_bytes */
    PPXQ_R_VERIFY = 3,        /* FlatBuffers verification failed */
    PPXQ_R_UNKNOWN_TYPE = 4,  /* unknown body tag (version/request_id are filled) */
    PPXQ_R_MISSING = 5,       /* no body, or an inconsistent matrix (version/request_id filled) */
    PPXQ_R_NOMEM = 6
} ppxq_result;

typedef struct ppxq_error {
    ppxq_result code;
    char message[200];
} ppxq_error;

/* Default size limit of a decoded buffer: 256 MiB (replies can be big; the
 * server passes its own --max-request-bytes). */
#define PPXQ_DEFAULT_MAX_BYTES ((size_t)256 << 20)

const char *ppxq_type_name(ppxq_type t);   /* "Sample", ...; "Unknown" out of range */
const char *ppxq_code_name(ppxq_code c);   /* "MALFORMED", ...; "UNKNOWN" out of range */

void ppxq_msg_init(ppxq_msg *m);           /* zero, strings "", normalise 1, version PPXQ_PROTOCOL_VERSION */
void ppxq_msg_clear(ppxq_msg *m);          /* free decoder storage and re-initialise */

/* Decode buf[len] into out (set up with ppxq_msg_init, or holding an earlier
 * decode, which is freed first).  max_bytes 0 means PPXQ_DEFAULT_MAX_BYTES.
 * err may be NULL.  On failure, out holds no storage; its version and
 * request_id are set when the buffer verified (else 0, with
 * *verified = 0 when verified != NULL). */
ppxq_result ppxq_decode(const void *buf, size_t len, size_t max_bytes, ppxq_msg *out, int *verified,
                        ppxq_error *err);

typedef struct ppxq_encoder ppxq_encoder;
ppxq_encoder *ppxq_encoder_new(void);
void ppxq_encoder_destroy(ppxq_encoder **e);
/* Encode m; returns the bytes (owned by e, valid until its next use) and
 * sets *len, or NULL with err set (PPXQ_R_ARG: unknown type, matrix whose
 * data is NULL while rows*cols > 0, arrays NULL with a count; PPXQ_R_TOO_LARGE
 * over 1 GiB; PPXQ_R_NOMEM). */
const uint8_t *ppxq_encode(ppxq_encoder *e, const ppxq_msg *m, size_t *len, ppxq_error *err);

/* Convenience: an Error reply for request_id. */
const uint8_t *ppxq_encode_error(ppxq_encoder *e, uint64_t request_id, ppxq_code code, const char *message,
                                 size_t *len);

#ifdef __cplusplus
}
#endif
#endif
