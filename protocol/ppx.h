/* ppx.h — C API of the PPX wire codec (FlatBuffers messages, see
 * protocol/ppx.fbs and ../shared/spec/ppx-wire.md).
 *
 * The codec is C++ (flatc-generated code plus protocol/ppx_codec.cc) behind
 * this plain C interface; it is the only C++ in ppxd.
 *
 * Decoding: ppx_decode() verifies the buffer with the FlatBuffers Verifier
 * before reading a byte of it, enforces size limits, rejects unknown union
 * tags, applies schema defaults (Sample.control = true when absent) and fills
 * a ppx_msg of plain C views.  Strings and tensor data point into the input
 * buffer when it is 8-byte aligned (zero-copy), or into a private aligned copy
 * otherwise; either way the views stay valid until ppx_msg_clear() or the next
 * ppx_decode() into the same ppx_msg, and — in the zero-copy case — only while
 * the caller keeps the input buffer alive.  Strings are NUL-terminated; absent
 * strings decode as "".
 *
 * Encoding: a ppx_encoder owns a reusable FlatBufferBuilder; ppx_encode()
 * returns a pointer to the finished bytes, valid until the next call on the
 * same encoder.  No file identifier is written; every string and both vectors
 * of every tensor are always written (upstream peers dereference them
 * unchecked).
 */
#ifndef PPX_PROTOCOL_H
#define PPX_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Message body union tags, as on the wire. */
typedef enum ppx_msg_type {
    PPX_MSG_NONE = 0,
    PPX_MSG_HANDSHAKE = 1,
    PPX_MSG_HANDSHAKE_RESULT = 2,
    PPX_MSG_RUN = 3,
    PPX_MSG_RUN_RESULT = 4,
    PPX_MSG_SAMPLE = 5,
    PPX_MSG_SAMPLE_RESULT = 6,
    PPX_MSG_OBSERVE = 7,
    PPX_MSG_OBSERVE_RESULT = 8,
    PPX_MSG_TAG = 9,
    PPX_MSG_TAG_RESULT = 10,
    PPX_MSG_RESET = 11,
    PPX_MSG_TYPE_COUNT = 12
} ppx_msg_type;

/* Distribution union tags, as on the wire (equal to dist_kind in src/dist.h). */
typedef enum ppx_dist_type {
    PPX_DIST_NONE = 0,
    PPX_DIST_NORMAL = 1,
    PPX_DIST_UNIFORM = 2,
    PPX_DIST_CATEGORICAL = 3,
    PPX_DIST_POISSON = 4,
    PPX_DIST_BERNOULLI = 5,
    PPX_DIST_BETA = 6,
    PPX_DIST_EXPONENTIAL = 7,
    PPX_DIST_GAMMA = 8,
    PPX_DIST_LOGNORMAL = 9,
    PPX_DIST_BINOMIAL = 10,
    PPX_DIST_WEIBULL = 11,
    PPX_DIST_TYPE_COUNT = 12
} ppx_dist_type;

/* A tensor view: row-major float64 data, int32 shape.
 * Scalar: len 1, ndim 0.  Absent value ("none"): len 0, shape [0].
 * When decoding a tensor whose shape vector is absent, the shape is taken as
 * [len] (ndim 1, shape points at the decoder's own storage). */
typedef struct ppx_tensor {
    const double *data;
    size_t len;
    const int32_t *shape;
    size_t ndim;
} ppx_tensor;

/* Distribution: its tag and its parameters in slot order (slot 0, slot 1);
 * one-parameter distributions leave param[1] empty. */
typedef struct ppx_dist {
    ppx_dist_type type;
    ppx_tensor param[2];
} ppx_dist;

/* The parameter tangent of a Sample or Observe (ppxd extension, see the
 * Tangent table of protocol/ppx.fbs): d param_j / d theta with every earlier
 * draw held fixed.  present = 0: no tangent (what upstream peers send).
 * theta: n_theta names; d[j]: len[j] = 0 (param j does not depend on theta)
 * or len(param j) * n_theta values, row-major [len(param j), n_theta]
 * (element i, theta k at i * n_theta + k).  present with n_theta = 0
 * declares the draw independent of theta.  The decoder rejects (PPX_E_TANGENT)
 * other lengths, non-finite values, empty or repeated theta names (at most
 * 4096), and a non-empty tangent on an Observe without distribution; the
 * encoder refuses the same.
 * Decoded names and arrays are views like the message's strings and tensors. */
typedef struct ppx_tangent {
    int present;
    size_t n_theta;
    const char *const *theta;
    const double *d[2];
    size_t len[2];
} ppx_tangent;

/* A decoded or to-be-encoded message.  Which fields are meaningful depends on
 * `type`:
 *   HANDSHAKE         system_name
 *   HANDSHAKE_RESULT  system_name, model_name
 *   RUN_RESULT        value (the result)
 *   SAMPLE            address, name, dist, control, tangent
 *   SAMPLE_RESULT     value (the result)
 *   OBSERVE           address, name, dist, value (len 0: absent), tangent
 *   TAG               address, name, value
 *   RUN, OBSERVE_RESULT, TAG_RESULT, RESET: no fields.
 * For encoding, NULL strings are written as "". */
typedef struct ppx_msg {
    ppx_msg_type type;
    const char *system_name;
    const char *model_name;
    const char *address;
    const char *name;
    ppx_dist dist;
    int control;      /* Sample.control; decodes as 1 when absent */
    ppx_tensor value;
    ppx_tangent tangent; /* Sample/Observe extension; present = 0 when absent */
    /* decoder-private storage */
    void *owned_;     /* aligned copy of an unaligned input buffer, or NULL */
    const char **tangent_names_; /* the decoded tangent's name pointers, or NULL */
    int32_t shape_scratch_[3]; /* shapes [len] for tensors that had none (value, param0, param1) */
} ppx_msg;

typedef enum ppx_status {
    PPX_OK = 0,
    PPX_E_ARG = 1,          /* bad argument to the API (a bug in the caller) */
    PPX_E_TOO_LARGE = 2,    /* buffer over max_message_bytes */
    PPX_E_VERIFY = 3,       /* FlatBuffers verification failed: truncated or corrupt */
    PPX_E_UNKNOWN_TYPE = 4, /* union tag of body or distribution unknown */
    PPX_E_TENSOR = 5,       /* tensor over max_tensor_len, or shape inconsistent with data */
    PPX_E_MISSING = 6,      /* a required part absent (empty body, Sample without distribution) */
    PPX_E_NOMEM = 7,
    PPX_E_TANGENT = 8       /* a malformed parameter tangent (ppxd extension) */
} ppx_status;

typedef struct ppx_error {
    ppx_status code;
    char message[200];
} ppx_error;

typedef struct ppx_limits {
    size_t max_message_bytes; /* whole buffer */
    size_t max_tensor_len;    /* elements in any data or shape vector */
} ppx_limits;

/* Defaults: 64 MiB messages, 2^24 tensor elements. */
#define PPX_DEFAULT_MAX_MESSAGE_BYTES ((size_t)64 << 20)
#define PPX_DEFAULT_MAX_TENSOR_LEN ((size_t)1 << 24)
ppx_limits ppx_limits_default(void);

/* Name of a message type ("Sample", ...) or distribution type ("Normal", ...);
 * "None" for tag 0, "Unknown" out of range. */
const char *ppx_msg_type_name(ppx_msg_type t);
const char *ppx_dist_type_name(ppx_dist_type t);
const char *ppx_status_name(ppx_status s);

/* Zero a message (type NONE, control 1, empty strings/tensors). */
void ppx_msg_init(ppx_msg *m);
/* Free decoder-private storage and re-initialise. */
void ppx_msg_clear(ppx_msg *m);

/* Decode `buf` (len bytes) into `out`, which must have been set up with
 * ppx_msg_init() (or hold an earlier decode: its storage is freed first).
 * `lim` may be NULL for defaults; `err` may be NULL.  Returns PPX_OK, or an
 * error code with err->message saying what was wrong (len 0 is
 * PPX_E_VERIFY); on error *out is left initialised and empty.  Decoded empty
 * tensors have data == NULL.  Strings end at their first NUL byte. */
ppx_status ppx_decode(const void *buf, size_t len, const ppx_limits *lim,
                      ppx_msg *out, ppx_error *err);

typedef struct ppx_encoder ppx_encoder;
ppx_encoder *ppx_encoder_new(void);
void ppx_encoder_destroy(ppx_encoder **e);
/* Encode `m` (start it from ppx_msg_init(): a zeroed message has
 * control = 0, i.e. "do not learn this draw"); on success sets *len and
 * returns the bytes (owned by the encoder, valid until its next use); on
 * failure returns NULL with `err` set (PPX_E_ARG for an unknown type, a
 * Sample without distribution or a tensor whose shape does not match its
 * data; PPX_E_TANGENT for a malformed tangent; PPX_E_TOO_LARGE above 1 GiB;
 * PPX_E_NOMEM).  A tangent is written only when tangent.present. */
const uint8_t *ppx_encode(ppx_encoder *e, const ppx_msg *m, size_t *len, ppx_error *err);

/* Tensor helpers (no allocation). */
static inline ppx_tensor ppx_tensor_empty(void) {
    static const int32_t zero_shape[1] = {0};
    ppx_tensor t = {NULL, 0, zero_shape, 1};
    return t;
}
static inline ppx_tensor ppx_tensor_scalar(const double *x) {
    ppx_tensor t = {x, 1, NULL, 0};
    return t;
}

#ifdef __cplusplus
}
#endif
#endif
