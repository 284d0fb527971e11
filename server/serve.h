/* serve.h — `ppxd serve`: trained posteriors (model files, src/model_file.h)
 * served over ZeroMQ with the query protocol of protocol/serve.fbs.
 *
 * Threads and queue:
 *   - the frontend thread owns the ROUTER socket(s) (one per security class,
 *     see below) and an inproc PULL socket for replies.  It receives each
 *     request as [identity][optional empty delimiter][one payload frame],
 *     stamps it with its arrival time and whether the peer may administer,
 *     and appends it to a bounded FIFO (mutex + condition variable) of
 *     --queue entries.  When the FIFO is full it answers Error{BUSY} itself
 *     (so memory stays bounded: at most --queue requests of at most
 *     --max-request-bytes each, plus ZeroMQ's own pipes);
 *   - --serve-threads worker threads take requests from the FIFO in order
 *     (work-conserving: a long request never holds up requests another
 *     worker could take), decode, answer, and push the reply through their
 *     own inproc PUSH socket to the frontend, which routes it back;
 *   - a worker sampling an NPE publishes the flow's blocks of each chunk
 *     (npe_sample_team, src/npe.h) and workers with an empty queue run some
 *     of them on their own posterior of the same model, so one big Sample
 *     uses every idle core; queued requests always come first, so under
 *     load each worker just serves its own request.  The samples do not
 *     depend on who ran which block (see Determinism);
 *   - with CURVE, a ZAP handler thread (inproc://zeromq.zap.01) accepts only
 *     allow-listed client keys.
 * Every request gets exactly one reply; every failure is an Error reply
 * (code + message), never an exit.
 *
 * Models: a registry of reference-counted entries (name -> immutable
 * model_file + path, CRC-32C, generation).  A request takes a reference for
 * its whole duration; Load/Reload build the new entry off-line and swap it in
 * under the registry lock (generation + 1), Unload removes it; in-flight
 * requests finish on the version they started with, which is freed with its
 * last reference.  Each worker keeps its own posterior objects (flows hold
 * per-instance activation buffers), built from an entry's model_file on first
 * use and keyed by the entry's serial number, so a swapped model is rebuilt.
 *
 * Determinism (the contract clients rely on):
 *   Sample: observation row i of a request with seed S is sampled with an rng
 *     seeded rng_seed(&r, S, i) (src/rng.h), i.e. exactly
 *       rng_seed(&r, S, i); npe_sample(p, x_i, n, &r, ...)
 *     in-process (nre_sample with nre_sample_defaults() for NRE models).
 *   LogProb: with normalise, the in-support mass (NPE) or log Z (NRE) is
 *     estimated from n_draws (default SERVE_DEFAULT_N_DRAWS) draws of an rng
 *     seeded rng_seed(&r, S, 0), i.e. npe_log_prob_normalised(p, theta, m,
 *     x, n_draws, &r, ...); without, npe_log_prob / nre_log_prob.
 *
 * Limits: --max-request-bytes (bigger requests get MALFORMED, much bigger
 * ones — over 2x the limit + 1 MiB — are cut off by ZeroMQ's
 * ZMQ_MAXMSGSIZE, which drops the connection); --max-n bounds n x
 * observations of a Sample and the theta rows and n_draws of a LogProb
 * (N_TOO_LARGE); --max-reply-bytes bounds the reply's bytes (n x k x theta
 * dimension doubles; N_TOO_LARGE); --deadline-ms bounds each request from its arrival
 * (DEADLINE when it waited too long in the queue; the sampling time bound is
 * what remains of it, or the request's own max_seconds when smaller).
 *
 * Security: with --curve-secret FILE, every endpoint is CURVE (libzmq's
 * ZMQ_CURVE_SERVER); clients must hold a key listed in --curve-allow FILE or
 * --curve-admin FILE, and only --curve-admin keys may Load/Unload/Reload.
 * Without it, endpoints are plain: ipc://, inproc:// and tcp on loopback
 * (127.0.0.0/8, localhost, ::1) are accepted; any other endpoint is refused
 * at start-up unless --insecure-plain.  Of plain clients only those on ipc
 * (and inproc) may administer: the socket file's permissions then decide
 * who may connect (an abstract "ipc://@name" socket has none: any local
 * user can reach it); every local user can reach a loopback port, so tcp
 * admin needs CURVE.
 * Load: the path must resolve (realpath, symlinks followed) inside one of
 * the model directories (--model-dir, default: the directories of the
 * --model files, or of the model serve_run publishes); a relative path is
 * taken from the first.  The file must be a regular file (opened
 * non-blocking, then fstat: FIFOs and devices are refused, never waited on)
 * of at most --max-model-bytes, and exactly its size is read, within the
 * request's deadline.  Every Load/Reload failure answers one generic
 * "cannot load" LOAD_FAILED; the reason goes to the server log only, so a
 * client cannot probe which files exist.
 * Shutdown: SIGINT/SIGTERM stop the frontend at once; workers get
 * SERVE_STOP_GRACE_MS to finish what they are doing, then the process
 * exits without them.
 * Key files: a key pair file has lines "public-key = Z85" and
 * "secret-key = Z85" (czmq certificates parse too; quotes are stripped);
 * allow lists have one Z85 public key per line (bare, or as
 * "public-key = ..."; '#' starts a comment).
 */
#ifndef PPX_SERVE_H
#define PPX_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include "model_file.h"
#include "ppxq.h"

#define SERVE_VERSION "ppxd 0.2 (query protocol 1)"
#define SERVE_DEFAULT_N_DRAWS 10000u
/* How long serve_run waits for busy workers after SIGINT/SIGTERM. */
#define SERVE_STOP_GRACE_MS 3000

typedef struct serve_server serve_server;

/* Requests serve.c does not answer itself — the job and simulator-pool
 * requests (JobSubmit ... SimList) of `ppxd daemon` (server/daemon.c) — go
 * to a handler, called in a worker thread with the decoded request.  It
 * returns the encoded reply (bytes owned by enc, *len set), or NULL with
 * *code and msg set for an Error reply, or NULL with *code PPXQ_OK after
 * serve_call_defer (the reply is sent later, from any thread, with
 * serve_pending_reply: so a long wait never holds a worker).  Without a
 * handler these requests get BAD_REQUEST. */
typedef struct serve_call serve_call;
typedef struct serve_pending serve_pending;
typedef const uint8_t *(*serve_request_fn)(void *ctx, serve_call *call, const ppxq_msg *rq, ppxq_encoder *enc,
                                           size_t *len, ppxq_code *code, char *msg, size_t msg_len);
/* 1 when the caller may administer (CURVE admin key, or plain ipc). */
int serve_call_admin(const serve_call *c);
/* Take the reply to this request for later; NULL when out of memory. */
serve_pending *serve_call_defer(serve_call *c);
uint64_t serve_pending_request_id(const serve_pending *p);
/* Send the reply owed (thread-safe; frees *p).  0, or -1 when the server has
 * stopped or the send failed (the client then times out). */
int serve_pending_reply(serve_server *s, serve_pending **p, const void *bytes, size_t len);
void serve_pending_free(serve_pending **p);

typedef struct serve_config {
    const char *const *endpoints; /* --serve (at least one) */
    size_t n_endpoints;
    const char *const *models;    /* --model NAME=PATH or PATH, loaded before binding */
    size_t n_models;
    int threads;                  /* workers; default: online CPUs, at least 1 */
    uint64_t max_n;               /* default 1,000,000 */
    size_t max_request_bytes;     /* default 64 MiB */
    size_t max_model_bytes;       /* largest model file read (--model, Load, Reload); default 1 GiB */
    size_t max_reply_bytes;       /* largest Sample/LogProb reply (values x 8 bytes); default 256 MiB */
    const char *const *model_dirs;/* --model-dir: where Load may read; default: the --model files' directories */
    size_t n_model_dirs;
    int deadline_ms;              /* default 30,000 */
    int queue;                    /* default 1024 */
    const char *curve_secret;     /* key pair file, or NULL: plain */
    const char *curve_allow;      /* allowed client keys */
    const char *curve_admin;      /* admin client keys (also allowed) */
    int insecure_plain;           /* allow plain on non-loopback endpoints */
    int quiet;                    /* no log lines on stderr */
    serve_request_fn on_request;  /* see serve_call above; NULL: none */
    void *on_request_ctx;
} serve_config;

serve_config serve_config_defaults(void);


/* Check the configuration, read the keys, bind every endpoint and start the
 * threads.  NULL with a reason in err (bad option, refused plain endpoint,
 * bind failure, unreadable key file).  Strings in cfg are copied. */
serve_server *serve_new(const serve_config *cfg, char *err, size_t err_len);

/* Publish a model under name (replacing one of that name: generation + 1).
 * serve_publish copies m (path "" or the file it came from, for Reload);
 * serve_load reads a file (name NULL or "": the file's base name without
 * extension).  0, or -1 with a reason.  Thread-safe: a training thread may
 * publish into a running server. */
int serve_publish(serve_server *s, const char *name, const model_file *m, const char *path, char *err,
                  size_t err_len);
int serve_load(serve_server *s, const char *name, const char *path, char *err, size_t err_len);

/* Ask the server to stop (async-signal-safe); serve_destroy waits for the
 * threads, answers nothing more, and frees everything. */
void serve_request_stop(serve_server *s);
/* Stop taking requests and wait up to grace_ms for the workers to finish
 * theirs.  0 when every worker has ended (serve_destroy then returns at
 * once); -1 when some are still busy (serve_destroy would wait for them). */
int serve_shutdown(serve_server *s, int grace_ms);
/* Workers that have not ended yet. */
int serve_busy_workers(serve_server *s);
/* 1 once the frontend has stopped (requested or fatal socket error). */
int serve_stopped(serve_server *s);
void serve_destroy(serve_server **s);

/* Run a server until SIGINT or SIGTERM: cfg as for serve_new, plus, when m
 * != NULL, m published as name (path: the file it was saved to, so that
 * Reload works; NULL or "" for none).  Sets one OpenBLAS thread; blocks
 * SIGINT/SIGTERM in the calling thread (and so in the server's threads) and
 * takes them with sigtimedwait, restoring the signal mask on return.
 * Returns 0 after a signal, 1 on a start-up failure (reason on stderr).
 * Shutdown is bounded: when a worker is still inside a request
 * SERVE_STOP_GRACE_MS after the signal, the process _exits (status 0)
 * rather than wait for it.
 * For `ppxd train ... --serve ENDPOINT`: after training, call
 *   serve_run(&cfg, name, model, out_path)
 * with cfg.endpoints = the --serve arguments. */
int serve_run(const serve_config *cfg, const char *name, const model_file *m, const char *path);

/* `ppxd serve ...`: argv[0] is "serve".  Exit code: 0 after SIGINT/SIGTERM,
 * 1 on a start-up failure, 2 on a usage error. */
int serve_main(int argc, char **argv);

#endif
