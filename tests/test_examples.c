/* Integration: a minimal engine (tests/support/testkit) drives each example
 * simulator in clients/examples/ over ipc (and tcp) and checks the message
 * sequence, the distributions' parameters and the values returned. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ppx_sim.h"
#include "testkit.h"

typedef struct sim_proc {
    pid_t pid;
    tk_engine eng;
    char endpoint[128];
} sim_proc;

static void sim_start_opt(sim_proc *p, const char *example, const char *option)
{
    char rel[128];
    snprintf(rel, sizeof rel, "examples/%s", example);
    char *path = tk_build_path(rel);
    cr_assert(path && access(path, X_OK) == 0, "example %s not built", rel);
    tk_endpoint(p->endpoint, sizeof p->endpoint, example);
    char *argv[] = {path, option ? (char *)option : p->endpoint, option ? p->endpoint : NULL, NULL};
    p->pid = tk_spawn(argv);
    cr_assert(p->pid > 0);
    free(path);
    cr_assert_eq(tk_engine_open(&p->eng, p->endpoint, 5000), 0);
}

static void sim_start(sim_proc *p, const char *example) { sim_start_opt(p, example, NULL); }

static void sim_end(sim_proc *p)
{
    tk_engine_close(&p->eng);
    tk_stop(p->pid, 1000);
}

static double scalar(const ppx_tensor *t)
{
    cr_assert_eq(t->len, 1, "expected a scalar tensor, got %zu values", t->len);
    return t->data[0];
}

static void expect(tk_engine *e, ppx_msg_type t)
{
    cr_assert_eq(e->msg.type, t, "expected %s, got %s", ppx_msg_type_name(t), ppx_msg_type_name(e->msg.type));
}

static void expect_sample(tk_engine *e, const char *name, ppx_dist_type dt)
{
    expect(e, PPX_MSG_SAMPLE);
    cr_assert_str_eq(e->msg.name, name);
    cr_assert_eq(e->msg.dist.type, dt, "%s: distribution %s", name, ppx_dist_type_name(e->msg.dist.type));
    cr_assert_eq(e->msg.control, 1);
}

static void handshake(tk_engine *e, const char *model)
{
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = PPX_MSG_HANDSHAKE;
    m.system_name = "ppxd-test";
    cr_assert_eq(tk_engine_call(e, &m), 0, "no HandshakeResult");
    expect(e, PPX_MSG_HANDSHAKE_RESULT);
    cr_assert_str_eq(e->msg.model_name, model);
    cr_assert_str_eq(e->msg.system_name, "libppx");
}

static void answer(tk_engine *e, double x) { cr_assert_eq(tk_engine_reply_values(e, &x, 1), 0, "no reply"); }

/* Drives one trace of the Gaussian example answering mu. */
static void gaussian_trace(tk_engine *e, double mu)
{
    cr_assert_eq(tk_engine_call_type(e, PPX_MSG_RUN), 0);
    expect_sample(e, "mu", PPX_DIST_NORMAL);
    cr_assert_str_eq(e->msg.address, "mu");
    cr_assert_float_eq(scalar(&e->msg.dist.param[0]), 1.0, 1e-15);
    cr_assert_float_eq(scalar(&e->msg.dist.param[1]), sqrt(5.0), 1e-15);
    cr_assert_eq(e->msg.dist.param[0].ndim, 0, "scalar parameters travel 0-d");
    answer(e, mu);
    const char *obs[2] = {"obs0", "obs1"};
    for (int i = 0; i < 2; i++) {
        expect(e, PPX_MSG_OBSERVE);
        cr_assert_str_eq(e->msg.name, obs[i]);
        cr_assert_eq(e->msg.dist.type, PPX_DIST_NORMAL);
        cr_assert_float_eq(scalar(&e->msg.dist.param[0]), mu, 1e-15);
        cr_assert_float_eq(scalar(&e->msg.dist.param[1]), sqrt(2.0), 1e-15);
        cr_assert_eq(e->msg.value.len, 0, "observe value should be left to the engine");
        cr_assert_eq(tk_engine_call_type(e, PPX_MSG_OBSERVE_RESULT), 0);
    }
    expect(e, PPX_MSG_RUN_RESULT);
    cr_assert_float_eq(scalar(&e->msg.value), mu, 1e-15);
}

Test(examples, gaussian_ipc)
{
    sim_proc p;
    sim_start(&p, "gaussian");
    handshake(&p.eng, "Gaussian with unknown mean");
    for (int i = 0; i < 3; i++) gaussian_trace(&p.eng, 2.5 + i);
    sim_end(&p);
}

/* libppx from other languages: same messages as the C example. */
Test(examples, gaussian_from_cpp)
{
    sim_proc p;
    sim_start(&p, "gaussian_cpp");
    handshake(&p.eng, "Gaussian with unknown mean (C++)");
    for (int i = 0; i < 2; i++) gaussian_trace(&p.eng, 0.5 + i);
    sim_end(&p);
}

Test(examples, gaussian_from_fortran)
{
    sim_proc p;
    sim_start(&p, "gaussian_fortran");
    handshake(&p.eng, "Gaussian with unknown mean (Fortran)");
    for (int i = 0; i < 2; i++) gaussian_trace(&p.eng, -1.5 + i);
    sim_end(&p);
}

Test(examples, gaussian_tcp_without_handshake)
{
    int port = tk_free_tcp_port();
    cr_assert(port > 0);
    char bind_ep[64], conn_ep[64];
    snprintf(bind_ep, sizeof bind_ep, "tcp://127.0.0.1:%d", port);
    snprintf(conn_ep, sizeof conn_ep, "tcp://127.0.0.1:%d", port);
    char *path = tk_build_path("examples/gaussian");
    char *argv[] = {path, bind_ep, NULL};
    pid_t pid = tk_spawn(argv);
    free(path);
    tk_engine e;
    cr_assert_eq(tk_engine_open(&e, conn_ep, 5000), 0);
    gaussian_trace(&e, -3.0); /* the spec: no Handshake is required before Run */
    tk_engine_close(&e);
    tk_stop(pid, 1000);
}

Test(examples, max_runs_then_exit)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "maxruns");
    char *path = tk_build_path("examples/gaussian");
    char *argv[] = {path, ep, "2", NULL};
    pid_t pid = tk_spawn(argv);
    free(path);
    tk_engine e;
    cr_assert_eq(tk_engine_open(&e, ep, 5000), 0);
    gaussian_trace(&e, 1.0);
    gaussian_trace(&e, 2.0);
    int st = tk_wait(pid, 3000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "simulator should exit 0 after MAX_RUNS");
    tk_engine_close(&e);
}

Test(examples, gaussian_rejection_loop)
{
    sim_proc p;
    sim_start(&p, "gaussian_rejection");
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    /* First pair outside the unit disc (rejected), second inside. */
    const double u[4] = {0.9, 0.9, 0.3, 0.4};
    char first_addr[256] = "";
    for (int i = 0; i < 4; i++) {
        expect_sample(&p.eng, "", PPX_DIST_UNIFORM);
        cr_assert_float_eq(scalar(&p.eng.msg.dist.param[0]), -1.0, 0);
        cr_assert_float_eq(scalar(&p.eng.msg.dist.param[1]), 1.0, 0);
        cr_assert(strstr(p.eng.msg.address, "gaussian_rejection.c:") == p.eng.msg.address,
                  "PPX_HERE address should start with the file's basename: %s", p.eng.msg.address);
        cr_assert(strstr(p.eng.msg.address, ":forward") != NULL);
        if (i == 0) snprintf(first_addr, sizeof first_addr, "%s", p.eng.msg.address);
        if (i == 2) cr_assert_str_eq(p.eng.msg.address, first_addr, "the loop reuses its call sites");
        answer(&p.eng, u[i]);
    }
    double s = 0.3 * 0.3 + 0.4 * 0.4;
    double mu = 1.0 + sqrt(5.0) * 0.3 * sqrt(-2.0 * log(s) / s);
    expect(&p.eng, PPX_MSG_TAG);
    cr_assert_str_eq(p.eng.msg.name, "mu");
    cr_assert_float_eq(scalar(&p.eng.msg.value), mu, 1e-12);
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_TAG_RESULT), 0);
    for (int i = 0; i < 2; i++) {
        expect(&p.eng, PPX_MSG_OBSERVE);
        cr_assert_float_eq(scalar(&p.eng.msg.dist.param[0]), mu, 1e-12);
        cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_OBSERVE_RESULT), 0);
    }
    expect(&p.eng, PPX_MSG_RUN_RESULT);
    cr_assert_float_eq(scalar(&p.eng.msg.value), mu, 1e-12);
    sim_end(&p);
}

Test(examples, hmm_sequence)
{
    static const double trans[3][3] = {{0.1, 0.5, 0.4}, {0.2, 0.2, 0.6}, {0.15, 0.15, 0.7}};
    static const double means[3] = {-1.0, 1.0, 0.0};
    sim_proc p;
    sim_start(&p, "hmm");
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    int statements = 0, prev = -1;
    double states[17];
    for (int t = 0; t <= 16; t++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", t);
        expect_sample(&p.eng, name, PPX_DIST_CATEGORICAL);
        const ppx_tensor *probs = &p.eng.msg.dist.param[0];
        cr_assert_eq(probs->len, 3);
        cr_assert_eq(probs->ndim, 1);
        cr_assert_eq(probs->shape[0], 3);
        if (prev >= 0)
            for (int j = 0; j < 3; j++) cr_assert_float_eq(probs->data[j], trans[prev][j], 0);
        int st = (t * 7 + 1) % 3;
        states[t] = st;
        answer(&p.eng, st);
        statements++;
        prev = st;
        if (t > 0) {
            expect(&p.eng, PPX_MSG_OBSERVE);
            snprintf(name, sizeof name, "y%d", t);
            cr_assert_str_eq(p.eng.msg.name, name);
            cr_assert_float_eq(scalar(&p.eng.msg.dist.param[0]), means[st], 0);
            cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_OBSERVE_RESULT), 0);
            statements++;
        }
    }
    cr_assert_eq(statements, 33);
    expect(&p.eng, PPX_MSG_RUN_RESULT);
    cr_assert_eq(p.eng.msg.value.len, 17);
    for (int t = 0; t <= 16; t++) cr_assert_float_eq(p.eng.msg.value.data[t], states[t], 0);
    sim_end(&p);
}

Test(examples, branching_both_branches)
{
    sim_proc p;
    sim_start(&p, "branching");
    /* r = 2 <= 4: a second Poisson draw s, then obs ~ Poisson(1 + fib(6) + s). */
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    expect_sample(&p.eng, "r", PPX_DIST_POISSON);
    cr_assert_float_eq(scalar(&p.eng.msg.dist.param[0]), 4.0, 0);
    answer(&p.eng, 2);
    expect_sample(&p.eng, "s", PPX_DIST_POISSON);
    answer(&p.eng, 3);
    expect(&p.eng, PPX_MSG_OBSERVE);
    cr_assert_str_eq(p.eng.msg.name, "obs");
    cr_assert_eq(p.eng.msg.dist.type, PPX_DIST_POISSON);
    cr_assert_float_eq(scalar(&p.eng.msg.dist.param[0]), 1 + 8 + 3, 0);
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_OBSERVE_RESULT), 0);
    expect(&p.eng, PPX_MSG_RUN_RESULT);
    /* r = 7 > 4: straight to obs ~ Poisson(6). */
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    expect_sample(&p.eng, "r", PPX_DIST_POISSON);
    answer(&p.eng, 7);
    expect(&p.eng, PPX_MSG_OBSERVE);
    cr_assert_float_eq(scalar(&p.eng.msg.dist.param[0]), 6, 0);
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_OBSERVE_RESULT), 0);
    expect(&p.eng, PPX_MSG_RUN_RESULT);
    cr_assert_float_eq(scalar(&p.eng.msg.value), 7, 0);
    sim_end(&p);
}

Test(examples, all_distributions)
{
    static const struct {
        const char *name;
        ppx_dist_type type;
        double p0, p1, answer;
    } want[11] = {
        {"normal", PPX_DIST_NORMAL, 1.0, 2.0, 0.25},     {"uniform", PPX_DIST_UNIFORM, -1.0, 3.0, 2.0},
        {"categorical", PPX_DIST_CATEGORICAL, 1, 0, 3},  {"poisson", PPX_DIST_POISSON, 3.5, 0, 5},
        {"bernoulli", PPX_DIST_BERNOULLI, 0.3, 0, 1},    {"beta", PPX_DIST_BETA, 2.0, 5.0, 0.125},
        {"exponential", PPX_DIST_EXPONENTIAL, 1.5, 0, 0.7}, {"gamma", PPX_DIST_GAMMA, 2.0, 3.0, 1.25},
        {"lognormal", PPX_DIST_LOGNORMAL, 0.5, 0.25, 1.6}, {"binomial", PPX_DIST_BINOMIAL, 10, 0.4, 4},
        {"weibull", PPX_DIST_WEIBULL, 2.0, 1.5, 2.2},
    };
    sim_proc p;
    sim_start(&p, "all_dists");
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    for (int i = 0; i < 11; i++) {
        expect_sample(&p.eng, want[i].name, want[i].type);
        cr_assert_eq((int)want[i].type, i + 1, "the example draws in wire-tag order");
        const ppx_dist *d = &p.eng.msg.dist;
        if (d->type == PPX_DIST_CATEGORICAL) {
            cr_assert_eq(d->param[0].len, 4);
            for (int j = 0; j < 4; j++) cr_assert_float_eq(d->param[0].data[j], j + 1.0, 0, "unnormalised probs pass through");
        } else {
            cr_assert_float_eq(scalar(&d->param[0]), want[i].p0, 0);
            if (want[i].p1 != 0) cr_assert_float_eq(scalar(&d->param[1]), want[i].p1, 0);
        }
        answer(&p.eng, want[i].answer);
    }
    expect(&p.eng, PPX_MSG_RUN_RESULT);
    cr_assert_eq(p.eng.msg.value.len, 11);
    for (int i = 0; i < 11; i++) cr_assert_float_eq(p.eng.msg.value.data[i], want[i].answer, 0);
    sim_end(&p);
}

Test(examples, galton_board)
{
    const double pi = 3.14159265358979323846, theta = 0.5;
    sim_proc p;
    sim_start(&p, "galton");
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    expect_sample(&p.eng, "theta", PPX_DIST_UNIFORM);
    answer(&p.eng, theta);
    int pos = 15;
    for (int level = 0; level < 20; level++) {
        expect_sample(&p.eng, "", PPX_DIST_BERNOULLI);
        double l = level / 19.0, n = 2.0 * pos / 30.0 - 1.0;
        double pl = (1 - sin(pi * l)) / 2 + sin(pi * l) / (1 + exp(-10 * theta * n));
        cr_assert_float_eq(scalar(&p.eng.msg.dist.param[0]), pl, 1e-12, "row %d", level);
        int left = (level % 3) == 0;
        answer(&p.eng, left);
        if (level % 2 == 0)
            pos = left ? pos : pos + 1;
        else
            pos = left ? pos - 1 : pos;
    }
    expect(&p.eng, PPX_MSG_TAG);
    cr_assert_str_eq(p.eng.msg.name, "x");
    cr_assert_float_eq(scalar(&p.eng.msg.value), pos, 0);
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_TAG_RESULT), 0);
    expect(&p.eng, PPX_MSG_RUN_RESULT);
    cr_assert_float_eq(scalar(&p.eng.msg.value), pos, 0);
    sim_end(&p);
}

Test(examples, reset_when_idle_and_recovery_mid_trace)
{
    sim_proc p;
    sim_start(&p, "gaussian");
    /* Idle + unexpected message: Reset (the spec's meaning of a Reset reply). */
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_SAMPLE_RESULT), 0);
    expect(&p.eng, PPX_MSG_RESET);
    /* Idle + garbage bytes: Reset too. */
    const char junk[] = "this is not a flatbuffer";
    cr_assert_eq(tk_engine_call_raw(&p.eng, junk, sizeof junk), 0);
    expect(&p.eng, PPX_MSG_RESET);
    /* Mid-trace unexpected message: Reset, the run finishes locally, and the
     * simulator serves the next Run normally. */
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    expect_sample(&p.eng, "mu", PPX_DIST_NORMAL);
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_HANDSHAKE), 0);
    expect(&p.eng, PPX_MSG_RESET);
    gaussian_trace(&p.eng, 4.0);
    /* A SampleResult with the wrong number of values also aborts the run. */
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    double two[2] = {1, 2};
    cr_assert_eq(tk_engine_reply_values(&p.eng, two, 2), 0);
    expect(&p.eng, PPX_MSG_RESET);
    gaussian_trace(&p.eng, 5.0);
    sim_end(&p);
}

/* --- local fallback, in-process ------------------------------------------ */

typedef struct local_vals {
    double v[11];
    int rc;
} local_vals;

static void local_forward(ppx_sim *s, void *user)
{
    local_vals *lv = user;
    static const double probs[3] = {0.2, 0.0, 5.0};
    lv->v[0] = ppx_sample_normal(s, 1.0, 2.0, "a", "");
    lv->v[1] = ppx_sample_uniform(s, -1.0, 3.0, "b", "");
    lv->v[2] = ppx_sample_categorical(s, probs, 3, "c", "");
    lv->v[3] = ppx_sample_poisson(s, 3.5, "d", "");
    lv->v[4] = ppx_sample_bernoulli(s, 0.3, "e", "");
    lv->v[5] = ppx_sample_beta(s, 2.0, 5.0, "f", "");
    lv->v[6] = ppx_sample_exponential(s, 1.5, "g", "");
    lv->v[7] = ppx_sample_gamma(s, 2.0, 3.0, "h", "");
    lv->v[8] = ppx_sample_lognormal(s, 0.5, 0.25, "i", "");
    lv->v[9] = ppx_sample_binomial(s, 10.0, 0.4, "j", "");
    lv->v[10] = ppx_sample_weibull(s, 2.0, 1.5, "k", "");
    double x = 0.5;
    lv->rc = ppx_observe_scalar(s, DIST_NORMAL, 0.0, 1.0, &x, "o", "o") + ppx_tag_scalar(s, 1.0, "t", "t");
}

Test(libppx, local_fallback_all_distributions)
{
    local_vals lv, lv2;
    ppx_sim *s = ppx_sim_new("local", local_forward, &lv);
    cr_assert(s);
    ppx_sim_run_local(s, 42);
    cr_assert_eq(lv.rc, 2, "observe and tag report local mode");
    cr_assert(isfinite(lv.v[0]));
    cr_assert(lv.v[1] >= -1 && lv.v[1] < 3);
    cr_assert(lv.v[2] == 0 || lv.v[2] == 2, "category 1 has zero weight");
    cr_assert(lv.v[3] >= 0 && lv.v[3] == floor(lv.v[3]));
    cr_assert(lv.v[4] == 0 || lv.v[4] == 1);
    cr_assert(lv.v[5] > 0 && lv.v[5] < 1);
    cr_assert(lv.v[6] > 0);
    cr_assert(lv.v[7] > 0);
    cr_assert(lv.v[8] > 0);
    cr_assert(lv.v[9] >= 0 && lv.v[9] <= 10 && lv.v[9] == floor(lv.v[9]));
    cr_assert(lv.v[10] > 0);
    /* Same seed, same draws; another seed, other draws. */
    memcpy(&lv2, &lv, sizeof lv);
    ppx_sim_run_local(s, 42);
    for (int i = 0; i < 11; i++) cr_assert_eq(lv.v[i], lv2.v[i]);
    ppx_sim_run_local(s, 43);
    cr_assert_neq(lv.v[0], lv2.v[0]);
    cr_assert_eq(ppx_sim_runs(s), 3);
    ppx_sim_destroy(&s);
    cr_assert_null(s);
}

static void bad_forward(ppx_sim *s, void *user)
{
    double *out = user;
    out[0] = ppx_sample_normal(s, 0.0, -1.0, "bad", "");
    out[1] = ppx_sample_normal(s, NAN, 1.0, "bad", "");
    out[2] = ppx_sample_bernoulli(s, 1.5, "bad", "");
}

Test(libppx, invalid_parameters_give_nan)
{
    double out[3];
    ppx_sim *s = ppx_sim_new("bad", bad_forward, out);
    ppx_sim_run_local(s, 1);
    for (int i = 0; i < 3; i++) cr_assert(isnan(out[i]), "value %d", i);
    ppx_sim_destroy(&s);
}

Test(libppx, here_is_basename_line_function)
{
    ppx_sim *s = ppx_sim_new("x", bad_forward, NULL);
    const char *a = ppx_here(s, "/some/dir/model.c", 42, "step");
    cr_assert_str_eq(a, "model.c:42:step");
    ppx_sim_destroy(&s);
}

/* ---- parameter tangents (ppx_declare_theta / ppx_set_tangent) ---------------- */

Test(examples, galton_board_sends_tangents)
{
    const double pi = 3.14159265358979323846, theta = -0.8, h = 1e-6;
    sim_proc p;
    sim_start_opt(&p, "galton", "--tangents");
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_RUN), 0);
    expect_sample(&p.eng, "theta", PPX_DIST_UNIFORM);
    cr_assert_eq(p.eng.msg.tangent.present, 0, "theta's own draw carries no tangent");
    answer(&p.eng, theta);
    int pos = 15;
    for (int level = 0; level < 20; level++) {
        expect_sample(&p.eng, "", PPX_DIST_BERNOULLI);
        const double l = level / 19.0, n = 2.0 * pos / 30.0 - 1.0;
#define PL(t) ((1 - sin(pi * l)) / 2 + sin(pi * l) / (1 + exp(-10 * (t) * n)))
        const double want = (PL(theta + h) - PL(theta - h)) / (2 * h); /* by differences, not the example's formula */
#undef PL
        const ppx_tangent *tg = &p.eng.msg.tangent;
        cr_assert(tg->present && tg->n_theta == 1, "row %d: no tangent", level);
        cr_assert_str_eq(tg->theta[0], "theta");
        cr_assert(tg->len[0] == 1 && tg->len[1] == 0, "row %d: lengths %zu %zu", level, tg->len[0], tg->len[1]);
        cr_assert(fabs(tg->d[0][0] - want) < 1e-7 * (1 + fabs(want)), "row %d: %.10g, differences %.10g", level,
                  tg->d[0][0], want);
        int left = (level % 3) == 0;
        answer(&p.eng, left);
        pos = level % 2 == 0 ? (left ? pos : pos + 1) : (left ? pos - 1 : pos);
    }
    expect(&p.eng, PPX_MSG_TAG);
    cr_assert_eq(tk_engine_call_type(&p.eng, PPX_MSG_TAG_RESULT), 0);
    expect(&p.eng, PPX_MSG_RUN_RESULT);
    sim_end(&p);
}

typedef struct tan_run {
    double v[8];
    int rc[8];
} tan_run;

static void tangent_forward(ppx_sim *s, void *user)
{
    tan_run *r = user;
    static const double mean[3] = {0, 1, 2}, sd = 1.0;
    static const double dmean[6] = {1, 0, 0, 1, 0.5, 0.5}; /* [3 elements, 2 theta] */
    const double zero = 0;
    dist d;
    char why[100];
    dist_init(&d, DIST_NORMAL, mean, 3, &sd, 1, 0, why, sizeof why);
    double out[3];
    r->v[0] = ppx_sample_normal(s, 0.0, 1.0, "a", "theta_a");              /* a theta: none */
    r->rc[0] = ppx_set_tangent(s, dmean, 6, NULL, 0);
    r->rc[1] = ppx_sample(s, &d, "vec", "vec", 1, out);                    /* [3 x 2] tangent */
    r->v[1] = ppx_sample_normal(s, 0.0, 1.0, "after", "");                 /* consumed: empty (others independent) */
    ppx_set_tangent(s, dmean, 5, NULL, 0);                                 /* 5 values for 3 x 2 */
    r->rc[2] = ppx_sample(s, &d, "bad", "", 1, out);
    r->rc[3] = ppx_set_tangent(s, NULL, 0, dmean, 2);                      /* a param1 derivative for a one-parameter kind */
    r->v[2] = ppx_sample_exponential(s, 1.0, "bad2", "");
    r->v[3] = ppx_sample_exponential(s, 1.0, "good", "");                  /* not inherited from the bad call */
    ppx_set_tangent(s, dmean, 2, NULL, 0);
    r->rc[4] = ppx_observe_scalar(s, DIST_POISSON, 2.0, 0, &zero, "o", "o");
}

typedef struct serve_arg {
    ppx_sim *sim;
    const char *ep;
    int rc;
} serve_arg;

static void *serve_thread(void *p)
{
    serve_arg *a = p;
    a->rc = ppx_sim_serve(a->sim, a->ep, 1);
    return NULL;
}

Test(libppx, tangents_on_the_wire)
{
    tan_run r;
    memset(&r, 0, sizeof r);
    ppx_sim *s = ppx_sim_new("tangents", tangent_forward, &r);
    const char *theta[2] = {"theta_a", "theta_b"};
    cr_assert_eq(ppx_declare_theta(s, theta, 2, 1), 0);
    char ep[128];
    tk_endpoint(ep, sizeof ep, "tangents");
    serve_arg a = {s, ep, -1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, serve_thread, &a), 0);
    tk_engine e;
    cr_assert_eq(tk_engine_open(&e, ep, 5000), 0);
    cr_assert_eq(tk_engine_call_type(&e, PPX_MSG_RUN), 0);
    expect_sample(&e, "theta_a", PPX_DIST_NORMAL);
    cr_assert_eq(e.msg.tangent.present, 0, "a theta Sample carries none");
    answer(&e, 0.25);
    expect_sample(&e, "vec", PPX_DIST_NORMAL);
    const ppx_tangent *tg = &e.msg.tangent;
    cr_assert(tg->present && tg->n_theta == 2 && tg->len[0] == 6 && tg->len[1] == 0);
    cr_assert(strcmp(tg->theta[0], "theta_a") == 0 && strcmp(tg->theta[1], "theta_b") == 0);
    cr_assert(tg->d[0][3] == 1 && tg->d[0][4] == 0.5);
    const double three[3] = {1, 2, 3};
    cr_assert_eq(tk_engine_reply_values(&e, three, 3), 0);
    expect_sample(&e, "", PPX_DIST_NORMAL);
    cr_assert(e.msg.tangent.present && e.msg.tangent.n_theta == 0, "declared independent: an empty tangent");
    answer(&e, 0.5);
    /* the two bad calls sent nothing; the next draw has the empty tangent again */
    expect_sample(&e, "", PPX_DIST_EXPONENTIAL);
    cr_assert_str_eq(e.msg.address, "good");
    cr_assert(e.msg.tangent.present && e.msg.tangent.n_theta == 0);
    answer(&e, 0.75);
    expect(&e, PPX_MSG_OBSERVE);
    cr_assert(e.msg.tangent.present && e.msg.tangent.len[0] == 2);
    cr_assert_eq(tk_engine_call_type(&e, PPX_MSG_OBSERVE_RESULT), 0);
    expect(&e, PPX_MSG_RUN_RESULT);
    tk_engine_close(&e);
    pthread_join(th, NULL);
    cr_assert_eq(a.rc, 0);
    cr_assert(r.rc[0] == 0 && r.rc[1] == 0, "set %d, sample %d", r.rc[0], r.rc[1]);
    cr_assert_eq(r.rc[2], -1, "a tangent of the wrong length is a bad argument");
    cr_assert(r.rc[3] == 0 && isnan(r.v[2]), "d stddev for Exponential: NaN");
    cr_assert_eq(r.v[3], 0.75);
    cr_assert_eq(r.rc[4], 0);
    ppx_sim_destroy(&s);
}

Test(libppx, tangent_misuse)
{
    ppx_sim *s = ppx_sim_new("x", bad_forward, NULL);
    const double d = 1;
    cr_assert_eq(ppx_set_tangent(s, &d, 1, NULL, 0), -1, "no theta declared");
    cr_assert_eq(ppx_set_tangent_scalar(s, 1, 0), -1);
    const char *dup[2] = {"a", "a"}, *empty[1] = {""}, *two[2] = {"a", "b"};
    cr_assert_eq(ppx_declare_theta(s, dup, 2, 0), -1);
    cr_assert_eq(ppx_declare_theta(s, empty, 1, 0), -1);
    cr_assert_eq(ppx_declare_theta(s, two, 2, 0), 0);
    cr_assert_eq(ppx_set_tangent_scalar(s, 1, 0), -1, "scalar form needs D = 1");
    cr_assert_eq(ppx_set_tangent(s, NULL, 2, NULL, 0), -1);
    cr_assert_eq(ppx_set_tangent(s, (const double[2]){1, 2}, 2, NULL, 0), 0);
    ppx_sim_destroy(&s);
}
