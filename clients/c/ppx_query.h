/* ppx_query.h — C client of ppxd's posterior query service (`ppxd serve`,
 * protocol/serve.fbs): list models, draw posterior samples, evaluate log
 * densities, read the status, and administer models.
 *
 * One ppx_query handle is one DEALER socket (plain or CURVE) with its own
 * ZeroMQ context and a socket monitor (so that a refused handshake is
 * reported as PPX_QUERY_E_REFUSED instead of a timeout); it is not
 * thread-safe (one handle per thread).  Each call
 * sends one request and waits up to the handle's timeout for the reply with
 * the same request id (late replies to earlier, timed-out requests are
 * skipped).
 *
 * Results: every call returns PPXQ_OK (0), the server's error code (> 0, a
 * ppxq_code of protocol/ppxq.h: UNKNOWN_MODEL, BAD_SHAPE, ...), or a client
 * code (< 0, PPX_QUERY_E_*).  ppx_query_error() has the message of the last
 * failure (the server's message for server errors).
 * Views returned through out-parameters (matrices, model infos, strings)
 * point into the last reply, owned by the handle: valid until the next call
 * on it or ppx_query_close().
 *
 * Key files (CURVE, Z85 text): a key pair file has "public-key = ..." and
 * "secret-key = ..." lines (as written by ppx_query_write_key_pair /
 * `ppxctl keygen`; czmq certificates parse too); a public key file or allow
 * list has one key per line, bare or as "public-key = ...", '#' comments.
 */
#ifndef PPX_QUERY_H
#define PPX_QUERY_H

#include <stddef.h>
#include <stdint.h>
#include "ppxq.h" /* protocol/ppxq.h: ppxq_code, ppxq_matrix, ppxq_model_info, ... */

#ifdef __cplusplus
extern "C" {
#endif

#define PPX_QUERY_E_TIMEOUT (-1)  /* no reply within the timeout (server down, key refused, overloaded) */
#define PPX_QUERY_E_IO (-2)       /* socket error */
#define PPX_QUERY_E_PROTOCOL (-3) /* undecodable or unexpected reply */
#define PPX_QUERY_E_ARG (-4)      /* bad argument, or the request could not be encoded */
#define PPX_QUERY_E_REFUSED (-5)  /* the server refused the connection: CURVE key not allowed, or a
                                     security mismatch (plain client, CURVE server or vice versa) */

typedef struct ppx_query_options {
    int timeout_ms;            /* per call; default 10000 */
    const char *server_key;    /* Z85 public key of the server (40 chars): CURVE; NULL: plain */
    const char *client_public; /* Z85 client key pair for CURVE; both NULL: an ephemeral pair */
    const char *client_secret;
} ppx_query_options;

ppx_query_options ppx_query_options_default(void);

typedef struct ppx_query ppx_query;

/* Connect (ZeroMQ connects lazily: an unreachable server shows as a timeout
 * on the first call).  NULL with a reason (bad endpoint or key). */
ppx_query *ppx_query_connect(const char *endpoint, const ppx_query_options *opt, char *err, size_t err_len);
void ppx_query_close(ppx_query **q);
void ppx_query_set_timeout(ppx_query *q, int timeout_ms);

const char *ppx_query_error(const ppx_query *q);
/* "OK", a ppxq_code name, or "TIMEOUT", "IO", "PROTOCOL", "ARG", "REFUSED". */
const char *ppx_query_code_name(int code);

int ppx_query_list_models(ppx_query *q, const ppxq_model_info **models, uint32_t *n_models);
/* n samples for each of the k observation rows obs [k, x_dim]: samples[i] is
 * n x theta_dim for row i, acceptance[i] its rejection-to-support
 * acceptance rate (either out-parameter may be NULL).  max_seconds 0: the
 * server's deadline.  Row i is drawn with rng_seed(&r, seed, i). */
int ppx_query_sample(ppx_query *q, const char *model, const double *obs, uint32_t k, uint32_t x_dim, uint32_t n,
                     uint64_t seed, double max_seconds, const ppxq_matrix **samples, const double **acceptance);
/* log q(theta_i | x) for thetas [m, theta_dim] at one observation x [x_dim]
 * into *log_prob [m].  normalise: renormalise for leakage outside the
 * prior's support with n_draws draws (0: server default) seeded by seed. */
int ppx_query_log_prob(ppx_query *q, const char *model, const double *x, uint32_t x_dim, const double *thetas,
                       uint32_t m, uint32_t theta_dim, int normalise, uint64_t seed, uint32_t n_draws,
                       const double **log_prob);
int ppx_query_status(ppx_query *q, const ppxq_status_info **status);
/* Gold models (ppxd train carl ... scandal): log r^(x_i | theta0, theta1)
 * for x [m, x_dim] into *log_r [m]; theta0 [rows0, theta_dim] and theta1
 * [rows1, theta_dim] have 1 row (for every x) or m; rows1 = 0: the model's
 * reference theta1. */
int ppx_query_log_ratio(ppx_query *q, const char *model, const double *x, uint32_t m, uint32_t x_dim,
                        const double *theta0, uint32_t rows0, const double *theta1, uint32_t rows1, uint32_t theta_dim,
                        const double **log_r);
/* The estimated score t^(x_i | theta) = grad_theta log p^ [m, theta_dim]
 * (rows: 1 or m; SALLY models take rows = 0, their reference point). */
int ppx_query_score(ppx_query *q, const char *model, const double *x, uint32_t m, uint32_t x_dim,
                    const double *theta, uint32_t rows, uint32_t theta_dim, const ppxq_matrix **score);
/* Admin.  *message and *info (may be NULL) describe the outcome. */
int ppx_query_load(ppx_query *q, const char *path, const char *name, const char **message,
                   const ppxq_model_info **info);
int ppx_query_unload(ppx_query *q, const char *name, const char **message);
int ppx_query_reload(ppx_query *q, const char *name, const char **message, const ppxq_model_info **info);

/* Send raw bytes as a request and wait for a reply whose request_id is
 * expect_id (for tests: malformed buffers, other versions).  *reply is the
 * decoded reply (an Error for failures); returns its code as the calls
 * above. */
int ppx_query_raw(ppx_query *q, const void *bytes, size_t len, uint64_t expect_id, const ppxq_msg **reply);
/* Send an arbitrary message m (its request_id is replaced by the handle's
 * next id; its version is kept, so tests can send other versions). */
int ppx_query_send_msg(ppx_query *q, const ppxq_msg *m, const ppxq_msg **reply);

/* Key files (see the top).  read_key_pair: pub (and sec, "" when the file
 * has none) as 40-char Z85 + NUL.  read_key_list: *keys malloc'd array of
 * *n keys (free it).  write_key_pair: a new pair into PREFIX.key (mode
 * 0600, both keys) and PREFIX.pub.  0, or -1 with a reason. */
int ppx_query_read_key_pair(const char *path, char pub[41], char sec[41], char *err, size_t err_len);
int ppx_query_read_key_list(const char *path, char (**keys)[41], size_t *n, char *err, size_t err_len);
int ppx_query_write_key_pair(const char *prefix, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
