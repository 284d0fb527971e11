/* ppx_query.c — the posterior query client (see ppx_query.h). */
#include "ppx_query.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

struct ppx_query {
    void *ctx, *sock;
    void *mon;                /* PAIR receiving the socket's handshake-failure events */
    int timeout_ms;
    uint64_t next_id;
    ppxq_encoder *enc;
    zmq_msg_t frame;          /* the last reply's bytes (views point into it) */
    int has_frame;
    ppxq_msg reply;
    char err[512];
};

ppx_query_options ppx_query_options_default(void)
{
    ppx_query_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 10000;
    return o;
}

__attribute__((format(printf, 3, 4)))
static int qfail(ppx_query *q, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof q->err, fmt, ap);
    va_end(ap);
    return code;
}

static int valid_z85_key(const char *k)
{
    uint8_t bin[32];
    return k && strlen(k) == 40 && zmq_z85_decode(bin, k) != NULL;
}

ppx_query *ppx_query_connect(const char *endpoint, const ppx_query_options *opt, char *err, size_t err_len)
{
    ppx_query_options o = opt ? *opt : ppx_query_options_default();
    if (!endpoint || !*endpoint) {
        snprintf(err, err_len, "no endpoint");
        return NULL;
    }
    if (o.server_key && !valid_z85_key(o.server_key)) {
        snprintf(err, err_len, "the server key is not a 40-character Z85 CURVE public key");
        return NULL;
    }
    if ((o.client_public || o.client_secret) &&
        (!valid_z85_key(o.client_public) || !valid_z85_key(o.client_secret))) {
        snprintf(err, err_len, "the client key pair is not two 40-character Z85 CURVE keys");
        return NULL;
    }
    ppx_query *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    q->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : 10000;
    /* Request ids start at a time-derived value so that replies meant for an
     * earlier process on the same socket identity are never mistaken. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    q->next_id = ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)ts.tv_nsec;
    ppxq_msg_init(&q->reply);
    q->enc = ppxq_encoder_new();
    q->ctx = zmq_ctx_new();
    if (!q->enc || !q->ctx || !(q->sock = zmq_socket(q->ctx, ZMQ_DEALER))) {
        snprintf(err, err_len, "cannot create a ZeroMQ socket");
        goto fail;
    }
    int linger = 0;
    zmq_setsockopt(q->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (o.server_key) {
        char pub[41], sec[41];
        if (o.client_public) {
            memcpy(pub, o.client_public, 41);
            memcpy(sec, o.client_secret, 41);
        } else if (zmq_curve_keypair(pub, sec) < 0) {
            snprintf(err, err_len, "cannot make a CURVE key pair: %s", zmq_strerror(errno));
            goto fail;
        }
        if (zmq_setsockopt(q->sock, ZMQ_CURVE_SERVERKEY, o.server_key, 41) < 0 ||
            zmq_setsockopt(q->sock, ZMQ_CURVE_PUBLICKEY, pub, 41) < 0 ||
            zmq_setsockopt(q->sock, ZMQ_CURVE_SECRETKEY, sec, 41) < 0) {
            snprintf(err, err_len, "cannot enable CURVE: %s", zmq_strerror(errno));
            goto fail;
        }
        memset(sec, 0, sizeof sec);
    }
    /* Handshake failures never reach the socket's user: watch them through
     * a monitor, so that a refused key fails fast instead of timing out. */
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://ppx-query-monitor-%p", (void *)q);
    if (zmq_socket_monitor(q->sock, mon_ep, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) < 0 ||
        !(q->mon = zmq_socket(q->ctx, ZMQ_PAIR)) || zmq_setsockopt(q->mon, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_connect(q->mon, mon_ep) < 0) {
        snprintf(err, err_len, "cannot monitor the socket: %s", zmq_strerror(errno));
        goto fail;
    }
    if (zmq_connect(q->sock, endpoint) < 0) {
        snprintf(err, err_len, "cannot connect to %s: %s", endpoint, zmq_strerror(errno));
        goto fail;
    }
    return q;
fail:
    ppx_query_close(&q);
    return NULL;
}

void ppx_query_close(ppx_query **pq)
{
    if (!pq || !*pq) return;
    ppx_query *q = *pq;
    ppxq_msg_clear(&q->reply);
    if (q->has_frame) zmq_msg_close(&q->frame);
    if (q->sock) {
        zmq_socket_monitor(q->sock, NULL, 0);
        zmq_close(q->sock);
    }
    if (q->mon) zmq_close(q->mon);
    if (q->ctx) zmq_ctx_term(q->ctx);
    ppxq_encoder_destroy(&q->enc);
    free(q);
    *pq = NULL;
}

void ppx_query_set_timeout(ppx_query *q, int timeout_ms)
{
    if (q && timeout_ms > 0) q->timeout_ms = timeout_ms;
}

const char *ppx_query_error(const ppx_query *q)
{
    return q ? q->err : "no handle";
}

const char *ppx_query_code_name(int code)
{
    switch (code) {
    case PPX_QUERY_E_TIMEOUT: return "TIMEOUT";
    case PPX_QUERY_E_IO: return "IO";
    case PPX_QUERY_E_PROTOCOL: return "PROTOCOL";
    case PPX_QUERY_E_ARG: return "ARG";
    case PPX_QUERY_E_REFUSED: return "REFUSED";
    default: return ppxq_code_name((ppxq_code)code);
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Read one monitor event (two frames: 6 bytes event id + value, address);
 * returns the event id, or 0. */
static int monitor_event(void *mon)
{
    uint8_t head[6];
    int ev = 0;
    int n = zmq_recv(mon, head, sizeof head, ZMQ_DONTWAIT);
    if (n >= 2) ev = head[0] | head[1] << 8;
    int more = 0;
    size_t sz = sizeof more;
    while (n >= 0 && zmq_getsockopt(mon, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        char addr[256];
        n = zmq_recv(mon, addr, sizeof addr, 0);
        sz = sizeof more;
    }
    return ev;
}

/* Send bytes, wait for the reply to id, decode it into q->reply. */
static int roundtrip(ppx_query *q, const void *bytes, size_t len, uint64_t id)
{
    ppxq_msg_clear(&q->reply);
    if (q->has_frame) {
        zmq_msg_close(&q->frame);
        q->has_frame = 0;
    }
    /* An empty delimiter first, as a REQ socket would send it. */
    if (zmq_send(q->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 || zmq_send(q->sock, bytes, len, ZMQ_DONTWAIT) < 0) {
        if (errno == EAGAIN) return qfail(q, PPX_QUERY_E_TIMEOUT, "cannot send: the server is not reachable "
                                          "(send queue full)");
        return qfail(q, PPX_QUERY_E_IO, "send: %s", zmq_strerror(errno));
    }
    double deadline = now_ms() + q->timeout_ms;
    for (;;) {
        double left = deadline - now_ms();
        if (left <= 0) return qfail(q, PPX_QUERY_E_TIMEOUT, "no reply within %d ms", q->timeout_ms);
        zmq_pollitem_t it[2] = {{q->sock, 0, ZMQ_POLLIN, 0}, {q->mon, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(it, 2, (long)left + 1);
        if (rc < 0) {
            if (errno == EINTR) continue;
            return qfail(q, PPX_QUERY_E_IO, "poll: %s", zmq_strerror(errno));
        }
        if (it[1].revents & ZMQ_POLLIN) {
            int ev = monitor_event(q->mon);
            if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                return qfail(q, PPX_QUERY_E_REFUSED, "the server refused this client: its CURVE key is not allowed");
            if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
                return qfail(q, PPX_QUERY_E_REFUSED, "handshake with the server failed: security mismatch (a plain "
                             "client and a CURVE server, a wrong server key, or the reverse)");
            continue;
        }
        if (!(it[0].revents & ZMQ_POLLIN)) continue;
        /* [empty][payload] (extra frames are skipped) */
        zmq_msg_t m;
        zmq_msg_init(&m);
        int got = 0, more = 1;
        while (more) {
            zmq_msg_t f;
            zmq_msg_init(&f);
            if (zmq_msg_recv(&f, q->sock, 0) < 0) {
                zmq_msg_close(&f);
                zmq_msg_close(&m);
                return qfail(q, PPX_QUERY_E_IO, "receive: %s", zmq_strerror(errno));
            }
            more = zmq_msg_more(&f);
            if (zmq_msg_size(&f) > 0 && !got) {
                zmq_msg_close(&m);
                m = f;
                got = 1;
            } else {
                zmq_msg_close(&f);
            }
        }
        if (!got) {
            zmq_msg_close(&m);
            continue;
        }
        ppxq_error perr;
        ppxq_result r = ppxq_decode(zmq_msg_data(&m), zmq_msg_size(&m), 0, &q->reply, NULL, &perr);
        if (r != PPXQ_R_OK) {
            zmq_msg_close(&m);
            return qfail(q, PPX_QUERY_E_PROTOCOL, "undecodable reply: %s", perr.message);
        }
        if (q->reply.request_id != id) { /* a late reply to an earlier request */
            ppxq_msg_clear(&q->reply);
            zmq_msg_close(&m);
            continue;
        }
        q->frame = m;
        q->has_frame = 1;
        if (q->reply.type == PPXQ_ERROR) {
            int code = q->reply.code == PPXQ_OK ? PPXQ_INTERNAL : (int)q->reply.code;
            return qfail(q, code, "%s: %s", ppxq_code_name((ppxq_code)code), q->reply.message);
        }
        q->err[0] = 0;
        return PPXQ_OK;
    }
}

int ppx_query_send_msg(ppx_query *q, const ppxq_msg *m, const ppxq_msg **reply)
{
    if (reply) *reply = NULL;
    if (!q || !m) return PPX_QUERY_E_ARG;
    ppxq_msg c = *m;
    c.request_id = ++q->next_id;
    size_t len = 0;
    ppxq_error perr;
    const uint8_t *bytes = ppxq_encode(q->enc, &c, &len, &perr);
    if (!bytes) return qfail(q, PPX_QUERY_E_ARG, "cannot encode the request: %s", perr.message);
    int rc = roundtrip(q, bytes, len, c.request_id);
    if (reply && q->has_frame) *reply = &q->reply;
    return rc;
}

int ppx_query_raw(ppx_query *q, const void *bytes, size_t len, uint64_t expect_id, const ppxq_msg **reply)
{
    if (reply) *reply = NULL;
    if (!q) return PPX_QUERY_E_ARG;
    int rc = roundtrip(q, bytes, len, expect_id);
    if (reply && q->has_frame) *reply = &q->reply;
    return rc;
}

/* Send m, expect a reply of type want. */
static int call(ppx_query *q, const ppxq_msg *m, ppxq_type want)
{
    int rc = ppx_query_send_msg(q, m, NULL);
    if (rc != PPXQ_OK) return rc;
    if (q->reply.type != want)
        return qfail(q, PPX_QUERY_E_PROTOCOL, "expected a %s reply, got %s", ppxq_type_name(want),
                     ppxq_type_name(q->reply.type));
    return PPXQ_OK;
}

int ppx_query_list_models(ppx_query *q, const ppxq_model_info **models, uint32_t *n_models)
{
    if (!q) return PPX_QUERY_E_ARG;
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_LIST_MODELS;
    int rc = call(q, &m, PPXQ_LIST_MODELS_REPLY);
    if (models) *models = rc == PPXQ_OK ? q->reply.models : NULL;
    if (n_models) *n_models = rc == PPXQ_OK ? q->reply.n_models : 0;
    return rc;
}

int ppx_query_sample(ppx_query *q, const char *model, const double *obs, uint32_t k, uint32_t x_dim, uint32_t n,
                     uint64_t seed, double max_seconds, const ppxq_matrix **samples, const double **acceptance)
{
    if (!q) return PPX_QUERY_E_ARG;
    if ((uint64_t)k * x_dim > 0 && !obs) return qfail(q, PPX_QUERY_E_ARG, "observations are NULL");
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_SAMPLE;
    m.model = model;
    m.observations.rows = k;
    m.observations.cols = x_dim;
    m.observations.data = obs;
    m.n = n;
    m.seed = seed;
    m.max_seconds = max_seconds;
    int rc = call(q, &m, PPXQ_SAMPLE_REPLY);
    if (rc == PPXQ_OK && q->reply.n_samples != k)
        rc = qfail(q, PPX_QUERY_E_PROTOCOL, "asked for samples at %u observations, got %u", k, q->reply.n_samples);
    if (samples) *samples = rc == PPXQ_OK ? q->reply.samples : NULL;
    if (acceptance) *acceptance = rc == PPXQ_OK ? q->reply.acceptance : NULL;
    return rc;
}

int ppx_query_log_prob(ppx_query *q, const char *model, const double *x, uint32_t x_dim, const double *thetas,
                       uint32_t m_rows, uint32_t theta_dim, int normalise, uint64_t seed, uint32_t n_draws,
                       const double **log_prob)
{
    if (!q) return PPX_QUERY_E_ARG;
    if ((x_dim && !x) || ((uint64_t)m_rows * theta_dim > 0 && !thetas)) return qfail(q, PPX_QUERY_E_ARG, "NULL data");
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_LOG_PROB;
    m.model = model;
    m.observations.rows = 1;
    m.observations.cols = x_dim;
    m.observations.data = x;
    m.thetas.rows = m_rows;
    m.thetas.cols = theta_dim;
    m.thetas.data = thetas;
    m.normalise = normalise;
    m.seed = seed;
    m.n_draws = n_draws;
    int rc = call(q, &m, PPXQ_LOG_PROB_REPLY);
    if (rc == PPXQ_OK && q->reply.n_log_prob != m_rows)
        rc = qfail(q, PPX_QUERY_E_PROTOCOL, "sent %u thetas, got %u log densities", m_rows, q->reply.n_log_prob);
    if (log_prob) *log_prob = rc == PPXQ_OK ? q->reply.log_prob : NULL;
    return rc;
}

int ppx_query_log_ratio(ppx_query *q, const char *model, const double *x, uint32_t m_rows, uint32_t x_dim,
                        const double *theta0, uint32_t rows0, const double *theta1, uint32_t rows1, uint32_t theta_dim,
                        const double **log_r)
{
    if (!q) return PPX_QUERY_E_ARG;
    if ((m_rows && x_dim && !x) || (rows0 && theta_dim && !theta0) || (rows1 && theta_dim && !theta1))
        return qfail(q, PPX_QUERY_E_ARG, "NULL data");
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_LOG_RATIO;
    m.model = model;
    m.observations = (ppxq_matrix){m_rows, x_dim, x};
    m.thetas = (ppxq_matrix){rows0, theta_dim, theta0};
    m.thetas1 = (ppxq_matrix){rows1, rows1 ? theta_dim : 0, theta1};
    int rc = call(q, &m, PPXQ_LOG_RATIO_REPLY);
    if (rc == PPXQ_OK && q->reply.n_log_prob != m_rows)
        rc = qfail(q, PPX_QUERY_E_PROTOCOL, "sent %u x rows, got %u log ratios", m_rows, q->reply.n_log_prob);
    if (log_r) *log_r = rc == PPXQ_OK ? q->reply.log_prob : NULL;
    return rc;
}

int ppx_query_score(ppx_query *q, const char *model, const double *x, uint32_t m_rows, uint32_t x_dim,
                    const double *theta, uint32_t rows, uint32_t theta_dim, const ppxq_matrix **score)
{
    if (!q) return PPX_QUERY_E_ARG;
    if ((m_rows && x_dim && !x) || (rows && theta_dim && !theta)) return qfail(q, PPX_QUERY_E_ARG, "NULL data");
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_SCORE;
    m.model = model;
    m.observations = (ppxq_matrix){m_rows, x_dim, x};
    m.thetas = (ppxq_matrix){rows, rows ? theta_dim : 0, theta};
    int rc = call(q, &m, PPXQ_SCORE_REPLY);
    if (rc == PPXQ_OK && q->reply.score.rows != m_rows)
        rc = qfail(q, PPX_QUERY_E_PROTOCOL, "sent %u x rows, got %u score rows", m_rows, q->reply.score.rows);
    if (score) *score = rc == PPXQ_OK ? &q->reply.score : NULL;
    return rc;
}

int ppx_query_status(ppx_query *q, const ppxq_status_info **status)
{
    if (!q) return PPX_QUERY_E_ARG;
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_STATUS;
    int rc = call(q, &m, PPXQ_STATUS_REPLY);
    if (status) *status = rc == PPXQ_OK ? &q->reply.status : NULL;
    return rc;
}

static int admin(ppx_query *q, ppxq_type t, const char *path, const char *name, const char **message,
                 const ppxq_model_info **info)
{
    if (!q) return PPX_QUERY_E_ARG;
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = t;
    m.path = path;
    m.name = name;
    int rc = call(q, &m, PPXQ_ADMIN_REPLY);
    if (message) *message = rc == PPXQ_OK ? q->reply.message : q->err;
    if (info) *info = rc == PPXQ_OK && q->reply.n_models == 1 ? &q->reply.models[0] : NULL;
    return rc;
}

int ppx_query_load(ppx_query *q, const char *path, const char *name, const char **message,
                   const ppxq_model_info **info)
{
    return admin(q, PPXQ_LOAD, path, name, message, info);
}

int ppx_query_unload(ppx_query *q, const char *name, const char **message)
{
    return admin(q, PPXQ_UNLOAD, NULL, name, message, NULL);
}

int ppx_query_reload(ppx_query *q, const char *name, const char **message, const ppxq_model_info **info)
{
    return admin(q, PPXQ_RELOAD, NULL, name, message, info);
}

/* ---- key files ------------------------------------------------------------ */

/* The Z85 key of a line ("KEY", "public-key = KEY", 'key = "KEY"'), and
 * which key it is: 'p' public / bare, 's' secret, 0 none (blank, comment or
 * other certificate metadata), -1 a malformed key.  Z85 keys may contain
 * '#' and '=', so comments start a line and only the first '=' after a key
 * name separates. */
static int parse_key_line(char *line, char key[41])
{
    char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    if (!n || s[0] == '#') return 0;
    int kind = 'p';
    if (strncmp(s, "public-key", 10) == 0 || strncmp(s, "secret-key", 10) == 0) {
        kind = s[0] == 's' ? 's' : 'p';
        s += 10;
        while (*s == ' ' || *s == '\t') s++;
        if (*s != '=') return -1;
        s++;
        while (*s == ' ' || *s == '\t') s++;
        n = strlen(s);
        if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
            s[n - 1] = 0;
            s++;
        }
    } else if (n != 40) {
        return 0; /* metadata, section names */
    }
    if (strlen(s) != 40) return -1;
    memcpy(key, s, 41);
    return valid_z85_key(key) ? kind : -1;
}

int ppx_query_read_key_pair(const char *path, char pub[41], char sec[41], char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    pub[0] = sec[0] = 0;
    char line[512], key[41];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        int k = parse_key_line(line, key);
        if (k < 0) {
            snprintf(err, err_len, "%s:%d: not a 40-character Z85 CURVE key", path, lineno);
            rc = -1;
            break;
        }
        if (k == 'p' && !pub[0]) memcpy(pub, key, 41);
        else if (k == 's' && !sec[0]) memcpy(sec, key, 41);
    }
    fclose(f);
    if (rc == 0 && !pub[0]) {
        snprintf(err, err_len, "%s: no public key", path);
        rc = -1;
    }
    return rc;
}

int ppx_query_read_key_list(const char *path, char (**keys)[41], size_t *n, char *err, size_t err_len)
{
    *keys = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[512], key[41];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        int k = parse_key_line(line, key);
        if (k == 0 || k == 's') continue; /* a secret key never belongs in a list: skip it */
        if (k < 0) {
            snprintf(err, err_len, "%s:%d: not a 40-character Z85 CURVE public key", path, lineno);
            goto fail;
        }
        char(*v)[41] = realloc(*keys, (*n + 1) * sizeof *v);
        if (!v) {
            snprintf(err, err_len, "out of memory");
            goto fail;
        }
        *keys = v;
        memcpy(v[(*n)++], key, 41);
    }
    fclose(f);
    return 0;
fail:
    fclose(f);
    free(*keys);
    *keys = NULL;
    *n = 0;
    return -1;
}

static int write_text(const char *path, const char *text, int mode, char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int rc = (w == (ssize_t)len && close(fd) == 0) ? 0 : -1;
    if (w != (ssize_t)len) close(fd);
    if (rc < 0) snprintf(err, err_len, "%s: write failed", path);
    return rc;
}

int ppx_query_write_key_pair(const char *prefix, char *err, size_t err_len)
{
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) < 0) {
        snprintf(err, err_len, "cannot make a CURVE key pair: %s", zmq_strerror(errno));
        return -1;
    }
    char path[4096], text[512];
    snprintf(path, sizeof path, "%s.key", prefix);
    snprintf(text, sizeof text,
             "# ppxd CURVE key pair (Z85).  Keep this file secret.\npublic-key = %s\nsecret-key = %s\n", pub, sec);
    int rc = write_text(path, text, 0600, err, err_len);
    memset(text, 0, sizeof text);
    memset(sec, 0, sizeof sec);
    if (rc < 0) return -1;
    chmod(path, 0600); /* also when the file existed with a looser mode */
    snprintf(path, sizeof path, "%s.pub", prefix);
    snprintf(text, sizeof text, "# ppxd CURVE public key (Z85)\npublic-key = %s\n", pub);
    return write_text(path, text, 0644, err, err_len);
}
