/* ppx_sim.c — simulator side of PPX (see ppx_sim.h). */
#include "ppx_sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ppx.h"
#include "rng.h"

_Static_assert((int)DIST_WEIBULL == (int)PPX_DIST_WEIBULL && (int)DIST_NORMAL == (int)PPX_DIST_NORMAL &&
                   (int)DIST_CATEGORICAL == (int)PPX_DIST_CATEGORICAL,
               "dist_kind values must equal the PPX wire tags");

struct ppx_sim {
    char *model_name;
    ppx_forward_fn forward;
    void *user;
    void *ctx;            /* ZeroMQ context, created on first serve */
    void *sock;           /* REP socket while serving, else NULL */
    ppx_encoder *enc;
    ppx_msg in;           /* last decoded request */
    zmq_msg_t in_frame;   /* its bytes (kept alive while `in` points into them) */
    int in_frame_live;
    rng local;            /* local draws */
    int aborted;          /* current run lost its engine */
    uint64_t runs;
    double *result;       /* RunResult data */
    size_t result_len, result_cap;
    int has_result;
    char here[256];
    /* parameter tangents (ppxd extension) */
    char **theta;         /* ppx_declare_theta names */
    size_t n_theta;
    int others_independent;
    int tangent_set;      /* ppx_set_tangent* since the last statement */
    double *tan_d[2];     /* [len, n_theta] each */
    size_t tan_len[2], tan_cap[2];
};

static void sim_log(const char *what, const char *detail)
{
    fprintf(stderr, "libppx: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

ppx_sim *ppx_sim_new(const char *model_name, ppx_forward_fn forward, void *user)
{
    if (!forward) return NULL;
    ppx_sim *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->model_name = strdup(model_name ? model_name : "");
    s->enc = ppx_encoder_new();
    if (!s->model_name || !s->enc) {
        ppx_sim_destroy(&s);
        return NULL;
    }
    s->forward = forward;
    s->user = user;
    ppx_msg_init(&s->in);
    rng_seed(&s->local, 0, 0);
    return s;
}

static void release_request(ppx_sim *s)
{
    ppx_msg_clear(&s->in);
    if (s->in_frame_live) {
        zmq_msg_close(&s->in_frame);
        s->in_frame_live = 0;
    }
}

void ppx_sim_destroy(ppx_sim **sp)
{
    if (!sp || !*sp) return;
    ppx_sim *s = *sp;
    release_request(s);
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    ppx_encoder_destroy(&s->enc);
    free(s->model_name);
    free(s->result);
    for (size_t i = 0; i < s->n_theta; i++) free(s->theta[i]);
    free(s->theta);
    free(s->tan_d[0]);
    free(s->tan_d[1]);
    free(s);
    *sp = NULL;
}

uint64_t ppx_sim_runs(const ppx_sim *s) { return s->runs; }
int ppx_sim_aborted(const ppx_sim *s) { return s->aborted; }

const char *ppx_here(ppx_sim *s, const char *file, int line, const char *func)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    snprintf(s->here, sizeof s->here, "%s:%d:%s", base, line, func);
    return s->here;
}

/* --- wire helpers --------------------------------------------------------- */

/* Send m as the REP reply.  0 or -1. */
static int send_msg(ppx_sim *s, const ppx_msg *m)
{
    ppx_error err;
    size_t len;
    const uint8_t *bytes = ppx_encode(s->enc, m, &len, &err);
    if (!bytes) {
        sim_log("encode failed", err.message);
        return -1;
    }
    while (zmq_send(s->sock, bytes, len, 0) < 0) {
        if (errno == EINTR) continue;
        sim_log("send failed", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

/* Receive and decode the next request into s->in.  Returns 0 on a decoded
 * message, 1 when the bytes did not decode (s->in.type is NONE; the reason is
 * logged), -1 on a socket error. */
static int recv_msg(ppx_sim *s)
{
    release_request(s);
    zmq_msg_init(&s->in_frame);
    s->in_frame_live = 1;
    while (zmq_msg_recv(&s->in_frame, s->sock, 0) < 0) {
        if (errno == EINTR) continue;
        sim_log("receive failed", zmq_strerror(errno));
        return -1;
    }
    ppx_error err;
    if (ppx_decode(zmq_msg_data(&s->in_frame), zmq_msg_size(&s->in_frame), NULL, &s->in, &err) != PPX_OK) {
        sim_log("undecodable message from engine", err.message);
        return 1;
    }
    return 0;
}

static int send_simple(ppx_sim *s, ppx_msg_type type)
{
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = type;
    return send_msg(s, &m);
}

/* A tensor view of n values: 0-d when n == 1, else [n]. */
static ppx_tensor tensor_of(const double *x, size_t n, int32_t *shape_store)
{
    ppx_tensor t = {x, n, shape_store, 1};
    if (n == 1) {
        t.shape = NULL;
        t.ndim = 0;
    } else {
        shape_store[0] = (int32_t)n;
    }
    return t;
}

/* Fill the wire distribution of d; shapes go in shapes[0..4). */
static void wire_dist(const dist *d, ppx_dist *w, int32_t shapes[4])
{
    w->type = (ppx_dist_type)d->kind;
    if (d->kind == DIST_CATEGORICAL) {
        ppx_tensor t = {d->p0, d->n0, shapes, 1};
        shapes[0] = (int32_t)d->k;
        if (d->n > 1) {
            shapes[0] = (int32_t)d->n;
            shapes[1] = (int32_t)d->k;
            t.ndim = 2;
        }
        w->param[0] = t;
        w->param[1] = ppx_tensor_empty();
        return;
    }
    w->param[0] = tensor_of(d->p0, d->n0, &shapes[0]);
    w->param[1] = dist_nparams(d->kind) == 2 ? tensor_of(d->p1, d->n1, &shapes[2]) : ppx_tensor_empty();
}

/* The run lost its engine: reply Reset to the request in hand (REP must
 * answer it) and finish the run locally. */
static void abort_run(ppx_sim *s, const char *why)
{
    sim_log("aborting run, finishing it with local draws", why);
    s->aborted = 1;
    if (s->sock) send_simple(s, PPX_MSG_RESET);
}

/* Send a statement and wait for the reply of type `want`.  Returns 0 with the
 * reply in s->in, or 1 after aborting the run. */
static int exchange(ppx_sim *s, const ppx_msg *m, ppx_msg_type want)
{
    if (send_msg(s, m) < 0) {
        /* The REP socket still owes nothing (send failed), so no Reset. */
        sim_log("aborting run", "could not send");
        s->aborted = 1;
        return 1;
    }
    int rc = recv_msg(s);
    if (rc < 0) {
        s->aborted = 1;
        return 1;
    }
    if (rc > 0 || s->in.type != want) {
        char why[96];
        snprintf(why, sizeof why, "expected %s, got %s", ppx_msg_type_name(want),
                 rc > 0 ? "garbage" : ppx_msg_type_name(s->in.type));
        abort_run(s, why);
        return 1;
    }
    return 0;
}

static int engine_live(const ppx_sim *s) { return s->sock && !s->aborted; }

static int check_dist(const dist *d, const char *what)
{
    char why[200];
    if (!d || d->n == 0 || dist_validate(d, why, sizeof why) < 0) {
        sim_log(what, d ? why : "no distribution");
        return -1;
    }
    return 0;
}

/* --- parameter tangents ---------------------------------------------------- */

int ppx_declare_theta(ppx_sim *s, const char *const *names, size_t n, int others_independent)
{
    if (!s || (n && !names)) return -1;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !names[i][0]) {
            sim_log("ppx_declare_theta", "a theta name is NULL or empty");
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(names[i], names[k]) == 0) {
                sim_log("ppx_declare_theta: theta name given twice", names[i]);
                return -1;
            }
    }
    char **v = n ? calloc(n, sizeof *v) : NULL;
    if (n && !v) return -1;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = strdup(names[i]))) {
            for (size_t k = 0; k < i; k++) free(v[k]);
            free(v);
            return -1;
        }
    for (size_t i = 0; i < s->n_theta; i++) free(s->theta[i]);
    free(s->theta);
    s->theta = v;
    s->n_theta = n;
    s->others_independent = others_independent != 0;
    s->tangent_set = 0;
    return 0;
}

int ppx_set_tangent(ppx_sim *s, const double *d0, size_t len0, const double *d1, size_t len1)
{
    if (!s) return -1;
    if (!s->n_theta) {
        sim_log("ppx_set_tangent", "declare the theta names with ppx_declare_theta first");
        return -1;
    }
    const double *d[2] = {d0, d1};
    const size_t len[2] = {len0, len1};
    for (int j = 0; j < 2; j++) {
        if (len[j] && !d[j]) return -1;
        if (len[j] > s->tan_cap[j]) {
            double *p = realloc(s->tan_d[j], len[j] * sizeof *p);
            if (!p) {
                sim_log("ppx_set_tangent", "out of memory");
                return -1;
            }
            s->tan_d[j] = p;
            s->tan_cap[j] = len[j];
        }
        if (len[j]) memcpy(s->tan_d[j], d[j], len[j] * sizeof *d[j]);
        s->tan_len[j] = len[j];
    }
    s->tangent_set = 1;
    return 0;
}

int ppx_set_tangent_scalar(ppx_sim *s, double d0, double d1)
{
    if (s && s->n_theta != 1) {
        sim_log("ppx_set_tangent_scalar", "needs exactly one declared theta name (use ppx_set_tangent)");
        return -1;
    }
    /* d1 is kept only when non-zero, so that one-parameter kinds take it too. */
    return ppx_set_tangent(s, &d0, 1, &d1, d1 != 0.0 ? 1 : 0);
}

/* The tangent to send with the statement in hand into *t (present = 0: none)
 * and consume the one set.  Returns 0, or -1 when it does not fit d (the
 * reason on stderr): a bad argument of the statement. */
static int take_tangent(ppx_sim *s, const dist *d, const ppx_dist *w, const char *name, ppx_tangent *t, const char *what)
{
    memset(t, 0, sizeof *t);
    int set = s->tangent_set;
    s->tangent_set = 0;
    int is_theta = 0;
    for (size_t i = 0; name && i < s->n_theta; i++) is_theta |= strcmp(s->theta[i], name) == 0;
    if (!set) {
        /* Declared independent: an empty tangent; theta's own draws carry none. */
        t->present = s->n_theta && s->others_independent && !is_theta;
        return 0;
    }
    t->present = 1;
    t->n_theta = s->n_theta;
    t->theta = (const char *const *)s->theta;
    for (int j = 0; j < 2; j++) {
        t->d[j] = s->tan_d[j];
        t->len[j] = s->tan_len[j];
    }
    /* Check against the distribution as the codec will (its message is clearer here). */
    for (int j = 0; j < 2; j++) {
        size_t plen = j < dist_nparams(d->kind) ? w->param[j].len : 0;
        if (t->len[j] && t->len[j] != plen * t->n_theta) {
            char why[200];
            snprintf(why, sizeof why, "d param%d / d theta has %zu values; %s param%d has %zu elements x %zu theta",
                     j, t->len[j], dist_kind_name(d->kind), j, plen, t->n_theta);
            sim_log(what, why);
            return -1;
        }
        for (size_t i = 0; i < t->len[j]; i++)
            if (!isfinite(t->d[j][i])) {
                sim_log(what, "a tangent value is not finite");
                return -1;
            }
    }
    return 0;
}

/* --- statements ---------------------------------------------------------- */

int ppx_sample(ppx_sim *s, const dist *d, const char *address, const char *name, int control, double *out)
{
    if (!out || check_dist(d, "ppx_sample: invalid distribution") < 0) {
        s->tangent_set = 0;
        return -1;
    }
    ppx_msg m;
    int32_t shapes[4];
    ppx_msg_init(&m);
    wire_dist(d, &m.dist, shapes);
    if (take_tangent(s, d, &m.dist, name, &m.tangent, "ppx_sample: tangent") < 0) return -1;
    if (!engine_live(s)) {
        dist_sample(d, &s->local, out);
        return 1;
    }
    m.type = PPX_MSG_SAMPLE;
    m.address = address;
    m.name = name;
    m.control = control != 0;
    if (exchange(s, &m, PPX_MSG_SAMPLE_RESULT)) {
        dist_sample(d, &s->local, out);
        return 1;
    }
    if (s->in.value.len != d->n) {
        char why[96];
        snprintf(why, sizeof why, "SampleResult has %zu values, expected %zu", s->in.value.len, d->n);
        /* The SampleResult was a well-formed request: answer it with Reset. */
        abort_run(s, why);
        dist_sample(d, &s->local, out);
        return 1;
    }
    memcpy(out, s->in.value.data, d->n * sizeof *out);
    return 0;
}

int ppx_observe(ppx_sim *s, const dist *d, const double *value, const char *address, const char *name)
{
    if (check_dist(d, "ppx_observe: invalid distribution") < 0) {
        s->tangent_set = 0;
        return -1;
    }
    ppx_msg m;
    int32_t shapes[4], vshape[1];
    ppx_msg_init(&m);
    wire_dist(d, &m.dist, shapes);
    if (take_tangent(s, d, &m.dist, name, &m.tangent, "ppx_observe: tangent") < 0) return -1;
    if (!engine_live(s)) return 1;
    m.type = PPX_MSG_OBSERVE;
    m.address = address;
    m.name = name;
    m.value = value ? tensor_of(value, d->n, vshape) : ppx_tensor_empty();
    return exchange(s, &m, PPX_MSG_OBSERVE_RESULT) ? 1 : 0;
}

int ppx_tag(ppx_sim *s, const double *value, size_t len, const char *address, const char *name)
{
    if (!value && len) return -1;
    if (!engine_live(s)) return 1;
    ppx_msg m;
    int32_t vshape[1];
    ppx_msg_init(&m);
    m.type = PPX_MSG_TAG;
    m.address = address;
    m.name = name;
    m.value = len ? tensor_of(value, len, vshape) : ppx_tensor_empty();
    return exchange(s, &m, PPX_MSG_TAG_RESULT) ? 1 : 0;
}

void ppx_set_result(ppx_sim *s, const double *value, size_t len)
{
    if (len > s->result_cap) {
        double *p = realloc(s->result, len * sizeof *p);
        if (!p) {
            sim_log("ppx_set_result", "out of memory; result dropped");
            s->has_result = 0;
            return;
        }
        s->result = p;
        s->result_cap = len;
    }
    if (len) memcpy(s->result, value, len * sizeof *value);
    s->result_len = len;
    s->has_result = 1;
}

double ppx_sample_scalar(ppx_sim *s, dist_kind kind, double p0, double p1, const char *address, const char *name)
{
    dist d;
    char why[200];
    if (dist_init(&d, kind, &p0, 1, &p1, dist_nparams(kind) == 2 ? 1 : 0, 0, why, sizeof why) < 0) {
        sim_log("ppx_sample_scalar", why);
        s->tangent_set = 0; /* the statement failed: its tangent goes with it */
        return NAN;
    }
    double x;
    return ppx_sample(s, &d, address, name, 1, &x) < 0 ? NAN : x;
}

double ppx_sample_normal(ppx_sim *s, double mean, double stddev, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_NORMAL, mean, stddev, a, n); }
double ppx_sample_uniform(ppx_sim *s, double low, double high, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_UNIFORM, low, high, a, n); }
double ppx_sample_poisson(ppx_sim *s, double rate, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_POISSON, rate, 0, a, n); }
double ppx_sample_bernoulli(ppx_sim *s, double probs, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_BERNOULLI, probs, 0, a, n); }
double ppx_sample_beta(ppx_sim *s, double alpha, double beta, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_BETA, alpha, beta, a, n); }
double ppx_sample_exponential(ppx_sim *s, double rate, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_EXPONENTIAL, rate, 0, a, n); }
double ppx_sample_gamma(ppx_sim *s, double concentration, double rate, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_GAMMA, concentration, rate, a, n); }
double ppx_sample_lognormal(ppx_sim *s, double loc, double scale, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_LOGNORMAL, loc, scale, a, n); }
double ppx_sample_binomial(ppx_sim *s, double total_count, double probs, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_BINOMIAL, total_count, probs, a, n); }
double ppx_sample_weibull(ppx_sim *s, double scale, double concentration, const char *a, const char *n)
{ return ppx_sample_scalar(s, DIST_WEIBULL, scale, concentration, a, n); }

double ppx_sample_categorical(ppx_sim *s, const double *probs, size_t k, const char *address, const char *name)
{
    dist d;
    char why[200];
    if (dist_init(&d, DIST_CATEGORICAL, probs, k, NULL, 0, k, why, sizeof why) < 0) {
        sim_log("ppx_sample_categorical", why);
        s->tangent_set = 0;
        return NAN;
    }
    double x;
    return ppx_sample(s, &d, address, name, 1, &x) < 0 ? NAN : x;
}

int ppx_observe_scalar(ppx_sim *s, dist_kind kind, double p0, double p1, const double *value,
                       const char *address, const char *name)
{
    dist d;
    char why[200];
    if (dist_init(&d, kind, &p0, 1, &p1, dist_nparams(kind) == 2 ? 1 : 0, 0, why, sizeof why) < 0) {
        sim_log("ppx_observe_scalar", why);
        s->tangent_set = 0;
        return -1;
    }
    return ppx_observe(s, &d, value, address, name);
}

int ppx_tag_scalar(ppx_sim *s, double value, const char *address, const char *name)
{
    return ppx_tag(s, &value, 1, address, name);
}

/* --- running ------------------------------------------------------------- */

static void begin_run(ppx_sim *s)
{
    s->tangent_set = 0;
    s->aborted = 0;
    s->has_result = 0;
    s->result_len = 0;
}

void ppx_sim_run_local(ppx_sim *s, uint64_t seed)
{
    void *sock = s->sock;
    s->sock = NULL; /* no engine for this run */
    rng_seed(&s->local, seed, 0);
    begin_run(s);
    s->forward(s, s->user);
    s->runs++;
    s->sock = sock;
}

/* One Run request: execute forward() against the engine and send RunResult. */
static int serve_run(ppx_sim *s)
{
    begin_run(s);
    /* Local fallback draws of an aborted run are reproducible per run. */
    rng_seed(&s->local, 0x5eed, s->runs);
    s->forward(s, s->user);
    if (s->aborted) return 0; /* Reset already answered the request in hand */
    ppx_msg m;
    int32_t shape[1];
    ppx_msg_init(&m);
    m.type = PPX_MSG_RUN_RESULT;
    m.value = s->has_result ? tensor_of(s->result, s->result_len, shape) : ppx_tensor_empty();
    if (send_msg(s, &m) < 0) return -1;
    s->runs++;
    return 0;
}

int ppx_sim_main(ppx_sim *s, int argc, char **argv)
{
    const char *prog = argc > 0 ? argv[0] : "simulator";
    if (argc >= 2 && strcmp(argv[1], "--local") == 0) {
        uint64_t n = argc >= 3 ? strtoull(argv[2], NULL, 10) : 1;
        uint64_t seed = argc >= 4 ? strtoull(argv[3], NULL, 10) : 1;
        for (uint64_t i = 0; i < n; i++) {
            ppx_sim_run_local(s, seed + i);
            for (size_t j = 0; j < s->result_len && s->has_result; j++)
                printf("%s%.17g", j ? " " : "", s->result[j]);
            printf("\n");
        }
        return 0;
    }
    if (argc >= 3 && argc <= 4 && strcmp(argv[1], "--connect-to") == 0) {
        uint64_t max_runs = argc == 4 ? strtoull(argv[3], NULL, 10) : 0;
        return ppx_sim_connect(s, argv[2], max_runs) < 0 ? 1 : 0;
    }
    if (argc < 2 || argc > 3 || argv[1][0] == '-') {
        fprintf(stderr,
                "usage: %s ENDPOINT [MAX_RUNS]   serve a PPX engine (e.g. tcp://*:5555, ipc://@name)\n"
                "       %s --connect-to ENDPOINT [MAX_RUNS]\n"
                "                                 connect to an engine's --sim-listen endpoint instead\n"
                "       %s --local [N [SEED]]     run N times with local draws, print the results\n",
                prog, prog, prog);
        return 2;
    }
    uint64_t max_runs = argc == 3 ? strtoull(argv[2], NULL, 10) : 0;
    return ppx_sim_serve(s, argv[1], max_runs) < 0 ? 1 : 0;
}

static int serve_socket(ppx_sim *s, const char *endpoint, uint64_t max_runs, int do_connect);

int ppx_sim_serve(ppx_sim *s, const char *endpoint, uint64_t max_runs)
{
    return serve_socket(s, endpoint, max_runs, 0);
}

int ppx_sim_connect(ppx_sim *s, const char *endpoint, uint64_t max_runs)
{
    return serve_socket(s, endpoint, max_runs, 1);
}

static int serve_socket(ppx_sim *s, const char *endpoint, uint64_t max_runs, int do_connect)
{
    if (!endpoint) return -1;
    if (!s->ctx && !(s->ctx = zmq_ctx_new())) {
        sim_log("zmq_ctx_new failed", zmq_strerror(errno));
        return -1;
    }
    s->sock = zmq_socket(s->ctx, ZMQ_REP);
    if (!s->sock) {
        sim_log("zmq_socket failed", zmq_strerror(errno));
        return -1;
    }
    int linger = 0;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    if ((do_connect ? zmq_connect(s->sock, endpoint) : zmq_bind(s->sock, endpoint)) < 0) {
        char why[300];
        snprintf(why, sizeof why, "%s: %s", endpoint, zmq_strerror(errno));
        sim_log(do_connect ? "cannot connect" : "cannot bind", why);
        zmq_close(s->sock);
        s->sock = NULL;
        return -1;
    }
    uint64_t start = s->runs;
    int rc = 0;
    while (max_runs == 0 || s->runs - start < max_runs) {
        int r = recv_msg(s);
        if (r < 0) {
            rc = -1;
            break;
        }
        if (r > 0) {
            rc = send_simple(s, PPX_MSG_RESET);
        } else if (s->in.type == PPX_MSG_HANDSHAKE) {
            ppx_msg m;
            ppx_msg_init(&m);
            m.type = PPX_MSG_HANDSHAKE_RESULT;
            m.system_name = "libppx";
            m.model_name = s->model_name;
            rc = send_msg(s, &m);
        } else if (s->in.type == PPX_MSG_RUN) {
            rc = serve_run(s);
        } else {
            rc = send_simple(s, PPX_MSG_RESET);
        }
        if (rc < 0) break;
    }
    release_request(s);
    zmq_close(s->sock);
    s->sock = NULL;
    return rc;
}
