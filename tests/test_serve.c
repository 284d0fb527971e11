/* Integration tests of `ppxd serve` (server/serve.h), its codec
 * (protocol/ppxq.h), the C query client (clients/c/ppx_query.h) and ppxctl.
 *
 * Models: written here with model_file_* around a MAF flow with random
 * weights (flow_init from a fixed seed) — the posterior is meaningless but
 * deterministic, which is all these tests need.  Served results are compared
 * bit for bit with the same computation in-process, following the contract
 * of server/serve.h: Sample row i uses rng_seed(&r, seed, i); LogProb's
 * normalising mass uses rng_seed(&r, seed, 0) and n_draws draws.
 *
 * ppxd runs as a subprocess (PPXD_BUILD/ppxd) on an abstract ipc endpoint or
 * a free 127.0.0.1 port.  Waits are bounded by the client's timeouts; no
 * Criterion .timeout (see test_engine.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "export.h"
#include "flow/flow.h"
#include "model_file.h"
#include "nn/nn.h"
#include "npe.h"
#include "nre.h"
#include "ppx_query.h"
#include "prior.h"
#include "rng.h"
#include "testkit.h"

#define D 2
#define C 3
/* SERVE_DEFAULT_N_DRAWS of server/serve.h (not included: its name clashes with protocol/ppxq.h) */
#define SERVE_N_DRAWS_FOR_TEST 10000u

/* ---- helpers ------------------------------------------------------------------ */

/* A random-weight MAF model file (theta D, x C) at path; prior spec e.g.
 * "uniform:-3:3x2".  weight_seed varies the weights. */
static void write_model(const char *path, const char *prior_spec, uint64_t weight_seed)
{
    model_file *m = model_file_new(MODEL_NPE_MAF, D, C);
    cr_assert_not_null(m);
    m->flow = flow_config_default(FLOW_MAF, D, C);
    m->flow.n_transforms = 2;
    m->flow.hidden = 16;
    flow *f = flow_new(&m->flow, 8);
    cr_assert_not_null(f);
    rng r;
    rng_seed(&r, weight_seed, 0);
    flow_init(f, &r);
    size_t np = flow_n_params(f);
    float *params = malloc(np * sizeof *params);
    flow_get_params(f, params);
    /* flow_init leaves a near-identity flow; perturb so that x matters. */
    for (size_t i = 0; i < np; i++) params[i] += 0.2f * (float)rng_normal(&r);
    cr_assert_eq(model_file_set_params(m, params, np), 0);
    free(params);
    flow_destroy(&f);
    char err[256];
    const char *specs[1] = {prior_spec};
    prior *p = prior_parse(specs, 1, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(model_file_set_prior(m, p), 0);
    prior_destroy(&p);
    m->theta_mean[0] = 0.5;
    m->theta_std[1] = 2.0;
    m->x_mean[1] = 1.0;
    m->x_std[2] = 0.5;
    cr_assert_eq(model_file_set_theta_name(m, 0, "mu"), 0);
    cr_assert_eq(model_file_set_theta_name(m, 1, "sigma"), 0);
    m->prov.n_simulations = 1234;
    cr_assert_eq(model_file_save(m, path, err, sizeof err), 0, "%s", err);
    model_file_destroy(&m);
}

static npe_posterior *load_posterior(const char *path)
{
    char err[256];
    model_file *m = model_file_load(path, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    npe_posterior *p = npe_posterior_from_model(m, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    model_file_destroy(&m);
    return p;
}

typedef struct server {
    pid_t pid;
    char endpoint[160];
    char dir[64];
    char model[128];
} server;

/* Servers still running when a test ends (an assertion failed before
 * stop_server): killed by the suite's fini, so that no ppxd is left behind. */
static pid_t g_running[4];

static void track(pid_t pid, int on)
{
    for (int i = 0; i < 4; i++)
        if (on ? g_running[i] == 0 : g_running[i] == pid) {
            g_running[i] = on ? pid : 0;
            return;
        }
}

static void kill_leftovers(void)
{
    for (int i = 0; i < 4; i++)
        if (g_running[i] > 0) {
            tk_stop(g_running[i], 1000);
            g_running[i] = 0;
        }
}

TestSuite(serve, .fini = kill_leftovers);

static void tmpdir(server *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/ppxd-serve-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
    snprintf(s->model, sizeof s->model, "%s/gauss.ppxm", s->dir);
}

/* Wait until the server answers Status (or fail). */
static void wait_ready(server *s, const ppx_query_options *o)
{
    char err[256];
    ppx_query_options opt = o ? *o : ppx_query_options_default();
    opt.timeout_ms = 200;
    for (int i = 0; i < 100; i++) {
        ppx_query *q = ppx_query_connect(s->endpoint, &opt, err, sizeof err);
        cr_assert_not_null(q, "%s", err);
        int rc = ppx_query_status(q, NULL);
        ppx_query_close(&q);
        if (rc == PPXQ_OK) return;
        int st;
        cr_assert_eq(waitpid(s->pid, &st, WNOHANG), 0, "ppxd serve exited at start-up");
    }
    cr_assert_fail("ppxd serve did not answer within 20 s");
}

/* Start ppxd serve with the model at s->model as "gauss" plus extra args
 * (NULL-terminated). */
static void start_server(server *s, int tcp, const char *const *extra)
{
    if (tcp) snprintf(s->endpoint, sizeof s->endpoint, "tcp://127.0.0.1:%d", tk_free_tcp_port());
    else tk_endpoint(s->endpoint, sizeof s->endpoint, "serve");
    char *ppxd = tk_build_path("ppxd");
    cr_assert(access(ppxd, X_OK) == 0, "%s not built", ppxd);
    char modelarg[200];
    snprintf(modelarg, sizeof modelarg, "gauss=%s", s->model);
    const char *argv[64] = {ppxd, "serve", "--serve", s->endpoint, "--model", modelarg, "--serve-threads", "2", "--quiet"};
    int n = 9;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    s->pid = tk_spawn((char *const *)argv);
    cr_assert(s->pid > 0);
    track(s->pid, 1);
    free(ppxd);
}

static void stop_server(server *s)
{
    int st = tk_stop(s->pid, 5000);
    track(s->pid, 0);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ppxd serve did not stop cleanly (status %d)", st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    cr_expect_eq(system(cmd), 0);
}

static ppx_query *client(const server *s, int timeout_ms)
{
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = timeout_ms;
    ppx_query *q = ppx_query_connect(s->endpoint, &o, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    return q;
}

static void setup(server *s, const char *prior_spec, int tcp, const char *const *extra)
{
    nn_set_threads(1);
    tmpdir(s);
    write_model(s->model, prior_spec, 7);
    start_server(s, tcp, extra);
    wait_ready(s, NULL);
}

static const double g_obs[2][C] = {{0.1, 0.2, -0.3}, {1.0, -0.5, 0.25}};

/* ---- codec ---------------------------------------------------------------------- */

Test(serve_codec, roundtrip_every_request_and_reply)
{
    ppxq_encoder *e = ppxq_encoder_new();
    cr_assert_not_null(e);
    double obs[6] = {1, 2, 3, 4, 5, 6}, acc[2] = {0.5, 1};
    ppxq_matrix mats[2] = {{3, 2, obs}, {1, 2, obs + 4}};
    const char *names[2] = {"a", "b"};
    ppxq_model_info info;
    memset(&info, 0, sizeof info);
    info.name = "m";
    info.kind = "NPE-MAF";
    info.theta_names = names;
    info.n_theta_names = 2;
    info.theta_dim = 2;
    info.generation = 3;
    info.checksum = 0xdeadbeef;
    for (int t = 1; t < PPXQ_TYPE_COUNT; t++) {
        ppxq_msg m;
        ppxq_msg_init(&m);
        m.type = (ppxq_type)t;
        m.request_id = 1000 + (uint64_t)t;
        m.model = "gauss";
        m.observations = (ppxq_matrix){2, 3, obs};
        m.thetas = (ppxq_matrix){3, 2, obs};
        m.n = 77;
        m.seed = 99;
        m.normalise = 0;
        m.n_draws = 5;
        m.samples = mats;
        m.n_samples = 2;
        m.acceptance = acc;
        m.n_acceptance = 2;
        m.log_prob = obs;
        m.n_log_prob = 6;
        m.models = &info;
        m.n_models = 1;
        m.message = "hello";
        m.code = PPXQ_BAD_SHAPE;
        m.path = "/p";
        m.name = "nm";
        m.status.version = "v";
        m.status.models = names;
        m.status.n_models = 2;
        m.status.busy = 5;
        const char *words[3] = {"train", "npe", "-n"};
        ppxq_job_info job;
        memset(&job, 0, sizeof job);
        job.id = "j7";
        job.name = "gauss";
        job.command = words;
        job.n_command = 3;
        job.state = PPXQ_JOB_CANCELLED;
        job.done = 12;
        job.total = 40;
        job.loss = NAN;
        job.eta_seconds = -1;
        job.outputs = names;
        job.n_outputs = 2;
        ppxq_sim_pool pool = {"gaussian", 3, 2, 10, 7};
        uint8_t bytes[5] = {0, 1, 2, 254, 255};
        m.job_id = "j7";
        m.command = words;
        m.n_command = 3;
        m.sim_model = "gaussian";
        m.jobs = &job;
        m.n_jobs = 1;
        m.output = "samples.npy";
        m.offset = 1u << 20;
        m.max_bytes = 4096;
        m.size = 5u << 20;
        m.data = bytes;
        m.n_data = sizeof bytes;
        m.pools = &pool;
        m.n_pools = 1;
        m.thetas1 = (ppxq_matrix){1, 2, obs + 2};
        m.score = (ppxq_matrix){3, 2, obs};
        size_t len;
        ppxq_error err;
        const uint8_t *b = ppxq_encode(e, &m, &len, &err);
        cr_assert_not_null(b, "%s: %s", ppxq_type_name(m.type), err.message);
        /* Unaligned copy: the decoder must copy, not read misaligned doubles. */
        uint8_t *buf = malloc(len + 1);
        memcpy(buf + 1, b, len);
        ppxq_msg d;
        ppxq_msg_init(&d);
        cr_assert_eq(ppxq_decode(buf + 1, len, 0, &d, NULL, &err), PPXQ_R_OK, "%s", err.message);
        cr_assert_eq(d.type, m.type);
        cr_assert_eq(d.request_id, m.request_id);
        cr_assert_eq(d.version, PPXQ_PROTOCOL_VERSION);
        switch (m.type) {
        case PPXQ_SAMPLE:
            cr_assert_str_eq(d.model, "gauss");
            cr_assert_eq(d.observations.rows, 2);
            cr_assert_eq(d.observations.data[5], 6.0);
            cr_assert_eq(d.n, 77);
            cr_assert_eq(d.seed, 99);
            break;
        case PPXQ_LOG_PROB:
            cr_assert_eq(d.normalise, 0);
            cr_assert_eq(d.n_draws, 5);
            cr_assert_eq(d.thetas.rows, 3);
            break;
        case PPXQ_SAMPLE_REPLY:
            cr_assert_eq(d.n_samples, 2);
            cr_assert_eq(d.samples[1].rows, 1);
            cr_assert_eq(d.samples[1].data[1], 6.0);
            cr_assert_eq(d.acceptance[0], 0.5);
            break;
        case PPXQ_LIST_MODELS_REPLY:
        case PPXQ_ADMIN_REPLY:
            cr_assert_eq(d.n_models, 1);
            cr_assert_str_eq(d.models[0].theta_names[1], "b");
            cr_assert_eq(d.models[0].checksum, 0xdeadbeef);
            break;
        case PPXQ_STATUS_REPLY:
            cr_assert_str_eq(d.status.models[1], "b");
            cr_assert_eq(d.status.busy, 5);
            break;
        case PPXQ_ERROR:
            cr_assert_eq(d.code, PPXQ_BAD_SHAPE);
            cr_assert_str_eq(d.message, "hello");
            break;
        case PPXQ_JOB_SUBMIT:
            cr_assert_str_eq(d.name, "nm");
            cr_assert_eq(d.n_command, 3);
            cr_assert_str_eq(d.command[2], "-n");
            cr_assert_str_eq(d.sim_model, "gaussian");
            break;
        case PPXQ_JOB_STATUS:
        case PPXQ_JOB_CANCEL:
            cr_assert_str_eq(d.job_id, "j7");
            break;
        case PPXQ_JOB_WAIT:
            cr_assert_str_eq(d.job_id, "j7");
            cr_assert_eq(d.max_seconds, m.max_seconds);
            break;
        case PPXQ_JOB_REPLY:
            cr_assert_eq(d.n_jobs, 1);
            cr_assert_str_eq(d.jobs[0].id, "j7");
            cr_assert_str_eq(d.jobs[0].command[1], "npe");
            cr_assert_eq(d.jobs[0].state, PPXQ_JOB_CANCELLED);
            cr_assert_eq(d.jobs[0].done, 12);
            cr_assert_eq(d.jobs[0].total, 40);
            cr_assert(isnan(d.jobs[0].loss));
            cr_assert_eq(d.jobs[0].eta_seconds, -1);
            cr_assert_str_eq(d.jobs[0].outputs[1], "b");
            break;
        case PPXQ_JOB_FETCH:
            cr_assert_str_eq(d.job_id, "j7");
            cr_assert_str_eq(d.output, "samples.npy");
            cr_assert_eq(d.offset, 1u << 20);
            cr_assert_eq(d.max_bytes, 4096);
            break;
        case PPXQ_JOB_FETCH_REPLY:
            cr_assert_str_eq(d.output, "samples.npy");
            cr_assert_eq(d.size, 5u << 20);
            cr_assert_eq(d.n_data, 5);
            cr_assert_eq(memcmp(d.data, bytes, 5), 0);
            break;
        case PPXQ_SIM_LIST_REPLY:
            cr_assert_eq(d.n_pools, 1);
            cr_assert_str_eq(d.pools[0].model, "gaussian");
            cr_assert_eq(d.pools[0].busy, 2);
            cr_assert_eq(d.pools[0].left, 7);
            break;
        case PPXQ_LOG_RATIO:
            cr_assert_eq(d.observations.rows, 2);
            cr_assert_eq(d.thetas.rows, 3);
            cr_assert_eq(d.thetas1.rows, 1);
            cr_assert_eq(d.thetas1.data[1], 4.0);
            break;
        case PPXQ_LOG_RATIO_REPLY:
            cr_assert_eq(d.n_log_prob, 6);
            cr_assert_eq(d.log_prob[5], 6.0);
            break;
        case PPXQ_SCORE:
            cr_assert_eq(d.thetas.rows, 3);
            break;
        case PPXQ_SCORE_REPLY:
            cr_assert_eq(d.score.rows, 3);
            cr_assert_eq(d.score.data[5], 6.0);
            break;
        default:
            break;
        }
        ppxq_msg_clear(&d);
        free(buf);
    }
    ppxq_encoder_destroy(&e);
}

Test(serve_codec, refuses_garbage_oversize_and_unknown_tags)
{
    ppxq_msg d;
    ppxq_msg_init(&d);
    ppxq_error err;
    int verified;
    uint8_t junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (uint8_t)(i * 37 + 11);
    cr_assert_eq(ppxq_decode(junk, sizeof junk, 0, &d, &verified, &err), PPXQ_R_VERIFY);
    cr_assert_eq(verified, 0);
    cr_assert_eq(ppxq_decode(junk, 0, 0, &d, NULL, &err), PPXQ_R_VERIFY);
    ppxq_encoder *e = ppxq_encoder_new();
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_STATUS;
    m.request_id = 42;
    size_t len;
    const uint8_t *b = ppxq_encode(e, &m, &len, &err);
    cr_assert_not_null(b);
    cr_assert_eq(ppxq_decode(b, len, len - 1, &d, NULL, &err), PPXQ_R_TOO_LARGE);
    /* Truncations never verify. */
    for (size_t cut = 1; cut < len; cut++)
        cr_assert_neq(ppxq_decode(b, cut, 0, &d, NULL, &err), PPXQ_R_OK, "cut at %zu", cut);
    /* Unknown body tag: refused, with the request id recovered. */
    uint8_t *copy = malloc(len);
    memcpy(copy, b, len);
    int patched = 0;
    for (size_t i = 0; i < len; i++)
        if (copy[i] == PPXQ_STATUS) {
            uint8_t save = copy[i];
            copy[i] = 200;
            ppxq_result r = ppxq_decode(copy, len, 0, &d, &verified, &err);
            if (r == PPXQ_R_UNKNOWN_TYPE) {
                cr_assert_eq(d.request_id, 42);
                patched = 1;
                break;
            }
            copy[i] = save;
        }
    cr_assert(patched, "could not find the body tag byte");
    free(copy);
    ppxq_msg_clear(&d);
    ppxq_encoder_destroy(&e);
}

/* ---- end to end ----------------------------------------------------------------- */

Test(serve, sample_and_logprob_equal_in_process)
{
    server s;
    setup(&s, "uniform:-3:3x2", 1, NULL);
    ppx_query *q = client(&s, 10000);
    const ppxq_matrix *sm;
    const double *acc;
    int rc = ppx_query_sample(q, "gauss", &g_obs[0][0], 2, C, 500, 1234, 0, &sm, &acc);
    cr_assert_eq(rc, PPXQ_OK, "%s", ppx_query_error(q));
    npe_posterior *p = load_posterior(s.model);
    double *mine = malloc(500 * D * sizeof *mine);
    char err[256];
    for (uint32_t i = 0; i < 2; i++) {
        rng r;
        rng_seed(&r, 1234, i);
        npe_sample_report rep;
        cr_assert_eq(npe_sample(p, g_obs[i], 500, &r, 10, mine, &rep, err, sizeof err), 0, "%s", err);
        cr_assert_eq(sm[i].rows, 500);
        cr_assert_eq(sm[i].cols, D);
        cr_assert_eq(memcmp(sm[i].data, mine, 500 * D * sizeof *mine), 0, "samples of observation %u differ", i);
        cr_assert_eq(acc[i], rep.acceptance);
    }
    /* log_prob, normalised and not */
    double th[4 * D] = {0.1, 0.2, -1, 2, 2.5, -2.9, 5.0, 0.0}; /* the last one outside the support */
    const double *lp;
    for (int norm = 0; norm < 2; norm++) {
        rc = ppx_query_log_prob(q, "gauss", g_obs[1], C, th, 4, D, norm, 77, 2000, &lp);
        cr_assert_eq(rc, PPXQ_OK, "%s", ppx_query_error(q));
        double want[4];
        rng r;
        rng_seed(&r, 77, 0);
        if (norm) cr_assert_eq(npe_log_prob_normalised(p, th, 4, g_obs[1], 2000, &r, 10, want, NULL, err, sizeof err), 0);
        else cr_assert_eq(npe_log_prob(p, th, 4, g_obs[1], 1, want, err, sizeof err), 0);
        for (int i = 0; i < 4; i++) cr_assert_eq(memcmp(&lp[i], &want[i], sizeof(double)), 0, "row %d: %g vs %g", i, lp[i], want[i]);
        cr_assert(isinf(lp[3]) && lp[3] < 0);
    }
    /* list models */
    const ppxq_model_info *mi;
    uint32_t nm;
    cr_assert_eq(ppx_query_list_models(q, &mi, &nm), PPXQ_OK);
    cr_assert_eq(nm, 1);
    cr_assert_str_eq(mi[0].name, "gauss");
    cr_assert_str_eq(mi[0].kind, "NPE-MAF");
    cr_assert_eq(mi[0].theta_dim, D);
    cr_assert_eq(mi[0].x_dim, C);
    cr_assert_str_eq(mi[0].theta_names[0], "mu");
    cr_assert_str_eq(mi[0].theta_names[1], "sigma");
    cr_assert_eq(mi[0].n_simulations, 1234);
    cr_assert_eq(mi[0].generation, 1);
    cr_assert_neq(mi[0].checksum, 0);
    cr_assert_str_eq(mi[0].path, s.model);
    cr_assert(strstr(mi[0].prior, "uniform") != NULL, "%s", mi[0].prior);
    const ppxq_status_info *st;
    cr_assert_eq(ppx_query_status(q, &st), PPXQ_OK);
    cr_assert_eq(st->workers, 2);
    cr_assert_eq(st->n_models, 1);
    cr_assert(st->requests >= 4);
    free(mine);
    npe_posterior_destroy(&p);
    ppx_query_close(&q);
    stop_server(&s);
}

/* Run ppxctl with args; stdout into out (may be NULL).  Returns the exit code. */
static int run_ppxctl(const char *const *args, char *out, size_t out_len)
{
    char *bin = tk_build_path("ppxctl");
    cr_assert(access(bin, X_OK) == 0, "%s not built", bin);
    char cmd[4096];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "%s", bin);
    for (int i = 0; args[i]; i++) n += (size_t)snprintf(cmd + n, sizeof cmd - n, " '%s'", args[i]);
    snprintf(cmd + n, sizeof cmd - n, " 2>/dev/null");
    free(bin);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = 0;
    if (out) {
        got = fread(out, 1, out_len - 1, p);
        out[got] = 0;
    } else {
        char buf[4096];
        while (fread(buf, 1, sizeof buf, p) > 0) {
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(serve, ppxctl_end_to_end)
{
    server s;
    setup(&s, "normal:0:1x2", 0, NULL);
    char out[65536], npy[200];
    snprintf(npy, sizeof npy, "%s/s.npy", s.dir);
    const char *sample[] = {"--endpoint", s.endpoint, "sample", "--model", "gauss", "--obs", "0.1,0.2,-0.3", "-n", "300",
                            "--seed", "5", "-o", npy, NULL};
    cr_assert_eq(run_ppxctl(sample, NULL, 0), 0);
    double *got;
    size_t rows, cols;
    char err[256];
    cr_assert_eq(npy_read(npy, &got, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rows, 300);
    cr_assert_eq(cols, D);
    npe_posterior *p = load_posterior(s.model);
    double want[300 * D];
    rng r;
    rng_seed(&r, 5, 0);
    cr_assert_eq(npe_sample(p, g_obs[0], 300, &r, 10, want, NULL, err, sizeof err), 0);
    cr_assert_eq(memcmp(got, want, sizeof want), 0, "ppxctl samples differ from in-process");
    free(got);
    /* summary output */
    const char *summary[] = {"--endpoint", s.endpoint, "sample", "--model", "gauss", "--obs", "0.1,0.2,-0.3", "-n", "100", NULL};
    cr_assert_eq(run_ppxctl(summary, out, sizeof out), 0);
    cr_assert(strstr(out, "acceptance 1") && strstr(out, "mean"), "%s", out);
    /* logprob: values printed with %.17g round-trip exactly */
    const char *lp[] = {"--endpoint", s.endpoint, "logprob", "--model", "gauss", "--obs", "0.1,0.2,-0.3", "--theta", "0.5,0.5",
                        "--theta", "-1,1", NULL};
    cr_assert_eq(run_ppxctl(lp, out, sizeof out), 0);
    double th[4] = {0.5, 0.5, -1, 1}, lw[2];
    rng_seed(&r, 0, 0);
    cr_assert_eq(npe_log_prob_normalised(p, th, 2, g_obs[0], SERVE_N_DRAWS_FOR_TEST, &r, 10, lw, NULL, err, sizeof err), 0);
    double a, b;
    cr_assert_eq(sscanf(out, "%lf %lf", &a, &b), 2, "%s", out);
    cr_assert_eq(a, lw[0]);
    cr_assert_eq(b, lw[1]);
    /* models, status */
    const char *models[] = {"--endpoint", s.endpoint, "models", NULL};
    cr_assert_eq(run_ppxctl(models, out, sizeof out), 0);
    cr_assert(strstr(out, "gauss") && strstr(out, "NPE-MAF") && strstr(out, "mu,sigma"), "%s", out);
    const char *status[] = {"--endpoint", s.endpoint, "status", NULL};
    cr_assert_eq(run_ppxctl(status, out, sizeof out), 0);
    cr_assert(strstr(out, "workers      2"), "%s", out);
    /* exit codes: server error 1, usage 2 */
    const char *unknown[] = {"--endpoint", s.endpoint, "sample", "--model", "nope", "--obs", "1,2,3", "-n", "3", NULL};
    cr_assert_eq(run_ppxctl(unknown, NULL, 0), 1);
    const char *usage[] = {"--endpoint", s.endpoint, "sample", "--obs", "1,2,3", NULL};
    cr_assert_eq(run_ppxctl(usage, NULL, 0), 2);
    const char *help[] = {"sample", "--help", NULL};
    cr_assert_eq(run_ppxctl(help, out, sizeof out), 0);
    cr_assert(strstr(out, "usage: ppxctl sample"), "%s", out);
    /* admin from a local plain endpoint: unload, load back under a name, reload */
    const char *unload[] = {"--endpoint", s.endpoint, "unload", "gauss", NULL};
    cr_assert_eq(run_ppxctl(unload, NULL, 0), 0);
    cr_assert_eq(run_ppxctl(unknown, NULL, 0), 1);
    const char *load[] = {"--endpoint", s.endpoint, "load", s.model, "--name", "g2", NULL};
    cr_assert_eq(run_ppxctl(load, out, sizeof out), 0);
    cr_assert(strstr(out, "loaded 'g2'"), "%s", out);
    const char *reload[] = {"--endpoint", s.endpoint, "reload", "g2", NULL};
    cr_assert_eq(run_ppxctl(reload, out, sizeof out), 0);
    cr_assert(strstr(out, "generation 2"), "%s", out);
    npe_posterior_destroy(&p);
    stop_server(&s);
    /* no server: exit 3 */
    const char *dead[] = {"--endpoint", s.endpoint, "--timeout-ms", "300", "status", NULL};
    cr_assert_eq(run_ppxctl(dead, NULL, 0), 3);
}

/* ---- bad input ------------------------------------------------------------------- */

Test(serve, bad_requests_get_error_replies_and_the_daemon_stays_up)
{
    server s;
    const char *extra[] = {"--max-n", "1000", "--max-request-bytes", "4096", NULL};
    setup(&s, "uniform:-3:3x2", 0, extra);
    ppx_query *q = client(&s, 5000);
    const ppxq_msg *rp;
    /* garbage */
    uint8_t junk[100];
    for (int i = 0; i < 100; i++) junk[i] = (uint8_t)(i * 91 + 3);
    cr_assert_eq(ppx_query_raw(q, junk, sizeof junk, 0, &rp), PPXQ_MALFORMED, "%s", ppx_query_error(q));
    /* oversized request */
    uint8_t *big = calloc(8192, 1);
    cr_assert_eq(ppx_query_raw(q, big, 8192, 0, &rp), PPXQ_MALFORMED);
    cr_assert(strstr(ppx_query_error(q), "limit"), "%s", ppx_query_error(q));
    free(big);
    /* wrong shapes, NaN, unknown model, n too large */
    double x4[4] = {1, 2, 3, 4}, xnan[3] = {1, NAN, 3};
    cr_assert_eq(ppx_query_sample(q, "gauss", x4, 1, 4, 10, 1, 0, NULL, NULL), PPXQ_BAD_SHAPE);
    cr_assert_eq(ppx_query_sample(q, "gauss", x4, 0, 3, 10, 1, 0, NULL, NULL), PPXQ_BAD_SHAPE);
    cr_assert_eq(ppx_query_sample(q, "gauss", xnan, 1, 3, 10, 1, 0, NULL, NULL), PPXQ_NAN_INPUT);
    cr_assert_eq(ppx_query_sample(q, "nope", x4, 1, 3, 10, 1, 0, NULL, NULL), PPXQ_UNKNOWN_MODEL);
    cr_assert(strstr(ppx_query_error(q), "gauss"), "the error lists the served models: %s", ppx_query_error(q));
    cr_assert_eq(ppx_query_sample(q, "gauss", x4, 1, 3, 1001, 1, 0, NULL, NULL), PPXQ_N_TOO_LARGE);
    cr_assert_eq(ppx_query_sample(q, "gauss", x4, 1, 3, 0, 1, 0, NULL, NULL), PPXQ_BAD_SHAPE);
    double th[3] = {0, 0, 0}, thinf[2] = {INFINITY, 0};
    cr_assert_eq(ppx_query_log_prob(q, "gauss", x4, 3, th, 1, 3, 1, 0, 0, NULL), PPXQ_BAD_SHAPE);
    cr_assert_eq(ppx_query_log_prob(q, "gauss", x4, 2, th, 1, 2, 1, 0, 0, NULL), PPXQ_BAD_SHAPE);
    cr_assert_eq(ppx_query_log_prob(q, "gauss", x4, 3, thinf, 1, 2, 1, 0, 0, NULL), PPXQ_NAN_INPUT);
    cr_assert_eq(ppx_query_log_prob(q, "gauss", xnan, 3, th, 1, 2, 1, 0, 0, NULL), PPXQ_NAN_INPUT);
    /* protocol version */
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_STATUS;
    m.version = 99;
    cr_assert_eq(ppx_query_send_msg(q, &m, &rp), PPXQ_VERSION_MISMATCH);
    /* a reply type sent as a request */
    ppxq_msg_init(&m);
    m.type = PPXQ_STATUS_REPLY;
    cr_assert_eq(ppx_query_send_msg(q, &m, &rp), PPXQ_MALFORMED);
    /* admin from a local endpoint is allowed, but a missing file is LOAD_FAILED */
    cr_assert_eq(ppx_query_load(q, "/nonexistent/x.ppxm", "x", NULL, NULL), PPXQ_LOAD_FAILED);
    cr_assert_eq(ppx_query_reload(q, "nope", NULL, NULL), PPXQ_UNKNOWN_MODEL);
    /* a corrupt model file */
    char bad[200];
    snprintf(bad, sizeof bad, "%s/bad.ppxm", s.dir);
    FILE *f = fopen(bad, "wb");
    fwrite("PPXMODEL garbage", 1, 16, f);
    fclose(f);
    cr_assert_eq(ppx_query_load(q, bad, NULL, NULL, NULL), PPXQ_LOAD_FAILED);
    /* still up and counting */
    const ppxq_status_info *st;
    cr_assert_eq(ppx_query_status(q, &st), PPXQ_OK);
    cr_assert(st->errors >= 17, "errors %llu", (unsigned long long)st->errors);
    /* and still sampling */
    cr_assert_eq(ppx_query_sample(q, "gauss", x4, 1, 3, 10, 1, 0, NULL, NULL), PPXQ_OK);
    ppx_query_close(&q);
    stop_server(&s);
}

/* Raw ZeroMQ clients: a REQ socket (delimiter frame) and a multi-frame DEALER. */
Test(serve, raw_sockets_and_extra_frames)
{
    server s;
    setup(&s, "normal:0:1x2", 0, NULL);
    void *ctx = zmq_ctx_new();
    void *req = zmq_socket(ctx, ZMQ_REQ);
    int t = 5000, linger = 0;
    zmq_setsockopt(req, ZMQ_RCVTIMEO, &t, sizeof t);
    zmq_setsockopt(req, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(req, s.endpoint), 0);
    ppxq_encoder *e = ppxq_encoder_new();
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_LIST_MODELS;
    m.request_id = 5;
    size_t len;
    const uint8_t *b = ppxq_encode(e, &m, &len, NULL);
    cr_assert_eq(zmq_send(req, b, len, 0), (int)len);
    uint8_t buf[4096];
    int n = zmq_recv(req, buf, sizeof buf, 0);
    cr_assert(n > 0);
    ppxq_msg d;
    ppxq_msg_init(&d);
    cr_assert_eq(ppxq_decode(buf, (size_t)n, 0, &d, NULL, NULL), PPXQ_R_OK);
    cr_assert_eq(d.type, PPXQ_LIST_MODELS_REPLY);
    cr_assert_eq(d.request_id, 5);
    ppxq_msg_clear(&d);
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &t, sizeof t);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(dealer, s.endpoint), 0);
    zmq_send(dealer, b, len, ZMQ_SNDMORE);
    zmq_send(dealer, b, len, 0);
    n = zmq_recv(dealer, buf, sizeof buf, 0);
    cr_assert(n > 0);
    cr_assert_eq(ppxq_decode(buf, (size_t)n, 0, &d, NULL, NULL), PPXQ_R_OK);
    cr_assert_eq(d.type, PPXQ_ERROR);
    cr_assert_eq(d.code, PPXQ_MALFORMED);
    ppxq_msg_clear(&d);
    /* bare payload without delimiter works too */
    zmq_send(dealer, b, len, 0);
    n = zmq_recv(dealer, buf, sizeof buf, 0);
    cr_assert(n > 0);
    cr_assert_eq(ppxq_decode(buf, (size_t)n, 0, &d, NULL, NULL), PPXQ_R_OK);
    cr_assert_eq(d.type, PPXQ_LIST_MODELS_REPLY);
    ppxq_msg_clear(&d);
    ppxq_encoder_destroy(&e);
    zmq_close(req);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    stop_server(&s);
}

/* ---- concurrency ------------------------------------------------------------------ */

#define N_CLIENTS 64
#define N_QUERIES 100
#define N_SAMP 16

typedef struct conc_arg {
    const char *endpoint;
    int index;
    const double *expected; /* [N_QUERIES distinct seeds... ] see below */
    int ok, wrong, failed;
    char why[256];
} conc_arg;

/* Seeds cycle over 10 values; expected[s] holds the N_SAMP x D samples for
 * seed s at g_obs[0]. */
static void *conc_thread(void *p)
{
    conc_arg *a = p;
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 60000;
    ppx_query *q = ppx_query_connect(a->endpoint, &o, err, sizeof err);
    if (!q) {
        a->failed = N_QUERIES;
        return NULL;
    }
    for (int i = 0; i < N_QUERIES; i++) {
        int seed = (a->index + i) % 10;
        const ppxq_matrix *sm;
        int rc = ppx_query_sample(q, "gauss", g_obs[0], 1, C, N_SAMP, (uint64_t)seed, 0, &sm, NULL);
        if (rc != PPXQ_OK) {
            a->failed++;
            snprintf(a->why, sizeof a->why, "%s", ppx_query_error(q));
            continue;
        }
        if (memcmp(sm[0].data, a->expected + (size_t)seed * N_SAMP * D, N_SAMP * D * sizeof(double)) == 0) a->ok++;
        else a->wrong++;
    }
    ppx_query_close(&q);
    return NULL;
}

Test(serve, many_concurrent_clients_all_answered_correctly)
{
    server s;
    setup(&s, "uniform:-3:3x2", 1, NULL);
    npe_posterior *p = load_posterior(s.model);
    double *expected = malloc(10 * N_SAMP * D * sizeof *expected);
    char err[256];
    for (int seed = 0; seed < 10; seed++) {
        rng r;
        rng_seed(&r, (uint64_t)seed, 0);
        cr_assert_eq(npe_sample(p, g_obs[0], N_SAMP, &r, 10, expected + (size_t)seed * N_SAMP * D, NULL, err, sizeof err), 0);
    }
    pthread_t th[N_CLIENTS];
    conc_arg args[N_CLIENTS];
    double t0 = tk_now();
    for (int i = 0; i < N_CLIENTS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].endpoint = s.endpoint;
        args[i].index = i;
        args[i].expected = expected;
        cr_assert_eq(pthread_create(&th[i], NULL, conc_thread, &args[i]), 0);
    }
    int ok = 0, wrong = 0, failed = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        wrong += args[i].wrong;
        failed += args[i].failed;
        if (args[i].failed) cr_log_warn("client %d: %s", i, args[i].why);
    }
    double secs = tk_now() - t0;
    cr_log_info("%d clients x %d queries in %.2f s", N_CLIENTS, N_QUERIES, secs);
    cr_assert_eq(wrong, 0);
    cr_assert_eq(failed, 0);
    cr_assert_eq(ok, N_CLIENTS * N_QUERIES);
    cr_assert(secs < 120, "took %.1f s", secs);
    free(expected);
    npe_posterior_destroy(&p);
    stop_server(&s);
}

/* ---- overload and deadline ---------------------------------------------------------- */

typedef struct busy_arg {
    const char *endpoint;
    int busy, ok, other;
} busy_arg;

static void *busy_thread(void *p)
{
    busy_arg *a = p;
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 60000;
    ppx_query *q = ppx_query_connect(a->endpoint, &o, err, sizeof err);
    if (!q) return NULL;
    for (int i = 0; i < 5; i++) {
        int rc = ppx_query_sample(q, "gauss", g_obs[0], 1, C, 20000, 1, 0, NULL, NULL);
        if (rc == PPXQ_BUSY) a->busy++;
        else if (rc == PPXQ_OK) a->ok++;
        else a->other++;
    }
    ppx_query_close(&q);
    return NULL;
}

Test(serve, overload_answers_busy)
{
    server s;
    const char *extra[] = {"--queue", "1", NULL};
    setup(&s, "normal:0:1x2", 0, extra);
    enum { NT = 16 };
    pthread_t th[NT];
    busy_arg a[NT];
    for (int i = 0; i < NT; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].endpoint = s.endpoint;
        pthread_create(&th[i], NULL, busy_thread, &a[i]);
    }
    int busy = 0, ok = 0, other = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        busy += a[i].busy;
        ok += a[i].ok;
        other += a[i].other;
    }
    cr_assert_eq(other, 0);
    cr_assert_eq(busy + ok, NT * 5);
    cr_assert_gt(busy, 0, "no BUSY with a queue of 1 and %d clients", NT);
    cr_assert_gt(ok, 0);
    ppx_query *q = client(&s, 5000);
    const ppxq_status_info *st;
    cr_assert_eq(ppx_query_status(q, &st), PPXQ_OK);
    cr_assert_eq(st->busy, (uint64_t)busy);
    ppx_query_close(&q);
    stop_server(&s);
}

Test(serve, deadline_bounds_a_request)
{
    server s;
    const char *extra[] = {"--deadline-ms", "50", "--max-n", "100000000", "--max-reply-bytes", "1000000000", NULL};
    setup(&s, "normal:0:1x2", 0, extra);
    ppx_query *q = client(&s, 10000);
    double t0 = tk_now();
    int rc = ppx_query_sample(q, "gauss", g_obs[0], 1, C, 50000000, 1, 0, NULL, NULL);
    cr_assert(rc == PPXQ_DEADLINE || rc == PPXQ_SAMPLING_FAILED, "rc %d: %s", rc, ppx_query_error(q));
    cr_assert(tk_now() - t0 < 5, "took %.1f s", tk_now() - t0);
    cr_assert_eq(ppx_query_status(q, NULL), PPXQ_OK);
    ppx_query_close(&q);
    stop_server(&s);
}

/* ---- reload under load -------------------------------------------------------------- */

typedef struct reload_arg {
    const char *endpoint;
    volatile int *stop;
    int ok, failed;
    char why[256];
} reload_arg;

static void *reload_thread(void *p)
{
    reload_arg *a = p;
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 30000;
    ppx_query *q = ppx_query_connect(a->endpoint, &o, err, sizeof err);
    if (!q) return NULL;
    while (!*a->stop) {
        int rc = ppx_query_sample(q, "gauss", g_obs[1], 1, C, 2000, 3, 0, NULL, NULL);
        if (rc == PPXQ_OK) a->ok++;
        else {
            a->failed++;
            snprintf(a->why, sizeof a->why, "%s", ppx_query_error(q));
        }
    }
    ppx_query_close(&q);
    return NULL;
}

Test(serve, reload_while_queries_are_in_flight)
{
    server s;
    setup(&s, "uniform:-3:3x2", 0, NULL);
    volatile int stop = 0;
    enum { NT = 8 };
    pthread_t th[NT];
    reload_arg a[NT];
    for (int i = 0; i < NT; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].endpoint = s.endpoint;
        a[i].stop = &stop;
        pthread_create(&th[i], NULL, reload_thread, &a[i]);
    }
    ppx_query *q = client(&s, 10000);
    const ppxq_model_info *info;
    uint32_t last_crc = 0;
    for (int k = 0; k < 5; k++) {
        usleep(50000);
        write_model(s.model, "uniform:-3:3x2", 100 + (uint64_t)k); /* new weights: a new checksum */
        cr_assert_eq(ppx_query_reload(q, "gauss", NULL, &info), PPXQ_OK, "%s", ppx_query_error(q));
        cr_assert_not_null(info);
        cr_assert_eq(info->generation, (uint32_t)k + 2);
        cr_assert_neq(info->checksum, last_crc);
        last_crc = info->checksum;
    }
    usleep(50000);
    stop = 1;
    int ok = 0, failed = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
        failed += a[i].failed;
        if (a[i].failed) cr_log_warn("%s", a[i].why);
    }
    cr_assert_eq(failed, 0);
    cr_assert_gt(ok, 0);
    /* The served model is now the last file: same samples as in-process. */
    npe_posterior *p = load_posterior(s.model);
    const ppxq_matrix *sm;
    cr_assert_eq(ppx_query_sample(q, "gauss", g_obs[1], 1, C, 100, 9, 0, &sm, NULL), PPXQ_OK);
    double want[100 * D];
    rng r;
    rng_seed(&r, 9, 0);
    char err[256];
    cr_assert_eq(npe_sample(p, g_obs[1], 100, &r, 10, want, NULL, err, sizeof err), 0);
    cr_assert_eq(memcmp(sm[0].data, want, sizeof want), 0);
    npe_posterior_destroy(&p);
    ppx_query_close(&q);
    stop_server(&s);
}

/* ---- CURVE ----------------------------------------------------------------------------- */

static void read_pair(const char *prefix, char pub[41], char sec[41])
{
    char path[256], err[256];
    snprintf(path, sizeof path, "%s.key", prefix);
    cr_assert_eq(ppx_query_read_key_pair(path, pub, sec, err, sizeof err), 0, "%s", err);
    cr_assert_eq(strlen(sec), 40);
}

Test(serve, curve_allows_known_keys_only)
{
    server s;
    nn_set_threads(1);
    tmpdir(&s);
    write_model(s.model, "normal:0:1x2", 7);
    char pre_srv[128], pre_cli[128], pre_adm[128], pre_bad[128], allow[160], admin[160], err[256];
    snprintf(pre_srv, sizeof pre_srv, "%s/server", s.dir);
    snprintf(pre_cli, sizeof pre_cli, "%s/client", s.dir);
    snprintf(pre_adm, sizeof pre_adm, "%s/admin", s.dir);
    snprintf(pre_bad, sizeof pre_bad, "%s/stranger", s.dir);
    cr_assert_eq(ppx_query_write_key_pair(pre_srv, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ppx_query_write_key_pair(pre_cli, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ppx_query_write_key_pair(pre_adm, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ppx_query_write_key_pair(pre_bad, err, sizeof err), 0, "%s", err);
    struct stat sb;
    char keyfile[160];
    snprintf(keyfile, sizeof keyfile, "%s.key", pre_srv);
    cr_assert_eq(stat(keyfile, &sb), 0);
    cr_assert_eq(sb.st_mode & 077, 0, "the secret key file is readable by others");
    /* the allow list: the client's .pub file verbatim */
    snprintf(allow, sizeof allow, "%s.pub", pre_cli);
    snprintf(admin, sizeof admin, "%s.pub", pre_adm);
    char spub[41], ssec[41], cpub[41], csec[41], apub[41], asec[41], bpub[41], bsec[41];
    read_pair(pre_srv, spub, ssec);
    read_pair(pre_cli, cpub, csec);
    read_pair(pre_adm, apub, asec);
    read_pair(pre_bad, bpub, bsec);
    const char *extra[] = {"--curve-secret", keyfile, "--curve-allow", allow, "--curve-admin", admin, NULL};
    start_server(&s, 1, extra);
    ppx_query_options o = ppx_query_options_default();
    o.server_key = spub;
    o.client_public = cpub;
    o.client_secret = csec;
    wait_ready(&s, &o);
    ppx_query *q = ppx_query_connect(s.endpoint, &o, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    const ppxq_matrix *sm;
    cr_assert_eq(ppx_query_sample(q, "gauss", g_obs[0], 1, C, 10, 1, 0, &sm, NULL), PPXQ_OK, "%s", ppx_query_error(q));
    /* an allowed non-admin key may not administer */
    cr_assert_eq(ppx_query_unload(q, "gauss", NULL), PPXQ_NOT_ALLOWED);
    ppx_query_close(&q);
    /* an unknown key gets nothing */
    o.client_public = bpub;
    o.client_secret = bsec;
    o.timeout_ms = 1000;
    q = ppx_query_connect(s.endpoint, &o, err, sizeof err);
    cr_assert_not_null(q);
    double t0 = tk_now();
    cr_assert_eq(ppx_query_status(q, NULL), PPX_QUERY_E_REFUSED, "%s", ppx_query_error(q));
    cr_assert(tk_now() - t0 < 0.9, "refusal took %.2f s", tk_now() - t0);
    ppx_query_close(&q);
    /* a plain client gets nothing either */
    ppx_query_options plain = ppx_query_options_default();
    plain.timeout_ms = 1000;
    q = ppx_query_connect(s.endpoint, &plain, err, sizeof err);
    int prc = ppx_query_status(q, NULL);
    cr_assert(prc == PPX_QUERY_E_REFUSED || prc == PPX_QUERY_E_TIMEOUT, "plain client: %d", prc);
    ppx_query_close(&q);
    /* the admin key may */
    o.client_public = apub;
    o.client_secret = asec;
    o.timeout_ms = 5000;
    q = ppx_query_connect(s.endpoint, &o, err, sizeof err);
    cr_assert_eq(ppx_query_reload(q, "gauss", NULL, NULL), PPXQ_OK, "%s", ppx_query_error(q));
    cr_assert_eq(ppx_query_unload(q, "gauss", NULL), PPXQ_OK, "%s", ppx_query_error(q));
    ppx_query_close(&q);
    /* ppxctl with key files */
    char out[4096], cli_key[160];
    snprintf(cli_key, sizeof cli_key, "%s.key", pre_cli);
    char srv_pub[160];
    snprintf(srv_pub, sizeof srv_pub, "%s.pub", pre_srv);
    const char *st[] = {"--endpoint", s.endpoint, "--curve-server-key", srv_pub, "--curve-client-key", cli_key, "status", NULL};
    cr_assert_eq(run_ppxctl(st, out, sizeof out), 0);
    cr_assert(strstr(out, "models       (none)"), "%s", out);
    char bad_key[160];
    snprintf(bad_key, sizeof bad_key, "%s.key", pre_bad);
    const char *st_bad[] = {"--endpoint", s.endpoint, "--curve-server-key", srv_pub, "--curve-client-key", bad_key,
                            "--timeout-ms", "500", "status", NULL};
    cr_assert_eq(run_ppxctl(st_bad, NULL, 0), 3);
    stop_server(&s);
}

Test(serve, plain_non_loopback_refused_at_start)
{
    server s;
    nn_set_threads(1);
    tmpdir(&s);
    write_model(s.model, "normal:0:1x2", 7);
    char *ppxd = tk_build_path("ppxd");
    char ep[64], modelarg[200];
    snprintf(ep, sizeof ep, "tcp://0.0.0.0:%d", tk_free_tcp_port());
    snprintf(modelarg, sizeof modelarg, "gauss=%s", s.model);
    char *argv[] = {ppxd, "serve", "--serve", ep, "--model", modelarg, "--quiet", NULL};
    pid_t pid = tk_spawn(argv);
    int st = tk_wait(pid, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    /* a missing model file fails at start too */
    char *argv2[] = {ppxd, "serve", "--serve", "ipc://@ppxd-never", "--model", "x=/nonexistent.ppxm", "--quiet", NULL};
    pid = tk_spawn(argv2);
    st = tk_wait(pid, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    /* usage errors exit 2 */
    char *argv3[] = {ppxd, "serve", "--model", "x", NULL};
    pid = tk_spawn(argv3);
    st = tk_wait(pid, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
    /* with --insecure-plain it starts, and refuses admin from that endpoint */
    snprintf(s.endpoint, sizeof s.endpoint, "%s", ep);
    char *argv4[] = {ppxd, "serve", "--serve", ep, "--model", modelarg, "--quiet", "--insecure-plain", NULL};
    s.pid = tk_spawn(argv4);
    track(s.pid, 1);
    snprintf(s.endpoint, sizeof s.endpoint, "tcp://127.0.0.1:%s", strrchr(ep, ':') + 1);
    wait_ready(&s, NULL);
    ppx_query *q = client(&s, 5000);
    cr_assert_eq(ppx_query_unload(q, "gauss", NULL), PPXQ_NOT_ALLOWED);
    cr_assert_eq(ppx_query_status(q, NULL), PPXQ_OK);
    ppx_query_close(&q);
    free(ppxd);
    stop_server(&s);
}

/* ---- NRE models ---------------------------------------------------------------------- */

Test(serve, nre_model_sample_and_logprob_equal_in_process)
{
    server s;
    nn_set_threads(1);
    tmpdir(&s);
    /* A briefly trained NRE classifier on theta ~ U(-1,1)^2, x = (t0, t1, t0+t1) + noise. */
    enum { N = 400 };
    double *th = malloc(N * D * sizeof *th), *x = malloc(N * C * sizeof *x);
    rng r;
    rng_seed(&r, 3, 0);
    for (int i = 0; i < N; i++) {
        th[i * D] = 2 * rng_uniform(&r) - 1;
        th[i * D + 1] = 2 * rng_uniform(&r) - 1;
        x[i * C] = th[i * D] + 0.1 * rng_normal(&r);
        x[i * C + 1] = th[i * D + 1] + 0.1 * rng_normal(&r);
        x[i * C + 2] = th[i * D] + th[i * D + 1] + 0.1 * rng_normal(&r);
    }
    char err[256];
    npe_data d;
    cr_assert_eq(npe_data_init(&d, th, x, N, D, C, err, sizeof err), 0, "%s", err);
    const char *spec[1] = {"uniform:-1:1x2"};
    prior *pr = prior_parse(spec, 1, err, sizeof err);
    npe_train_config tc = npe_train_defaults();
    tc.max_epochs = 2;
    tc.progress = 0;
    nre_net_config net = nre_net_defaults();
    net.hidden = 16;
    nre_posterior *p = nre_train(&d, pr, &net, &tc, NULL, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(model_file_save(nre_posterior_model(p), s.model, err, sizeof err), 0, "%s", err);
    nre_posterior_destroy(&p);
    npe_data_free(&d);
    prior_destroy(&pr);
    free(th);
    free(x);
    start_server(&s, 0, NULL);
    wait_ready(&s, NULL);
    model_file *m = model_file_load(s.model, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    p = nre_posterior_from_model(m, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    model_file_destroy(&m);
    ppx_query *q = client(&s, 20000);
    const ppxq_matrix *sm;
    cr_assert_eq(ppx_query_sample(q, "gauss", &g_obs[0][0], 2, C, 200, 11, 0, &sm, NULL), PPXQ_OK, "%s",
                 ppx_query_error(q));
    double want[200 * D];
    for (uint32_t i = 0; i < 2; i++) {
        rng_seed(&r, 11, i);
        nre_sample_config sc = nre_sample_defaults();
        cr_assert_eq(nre_sample(p, g_obs[i], 200, &r, &sc, want, NULL, err, sizeof err), 0, "%s", err);
        cr_assert_eq(memcmp(sm[i].data, want, sizeof want), 0, "NRE samples of observation %u differ", i);
    }
    double t[4] = {0.1, 0.2, -0.5, 0.5}, lp_want[2];
    const double *lp;
    cr_assert_eq(ppx_query_log_prob(q, "gauss", g_obs[0], C, t, 2, D, 1, 4, 500, &lp), PPXQ_OK, "%s", ppx_query_error(q));
    rng_seed(&r, 4, 0);
    cr_assert_eq(nre_log_prob_normalised(p, t, 2, g_obs[0], 500, &r, lp_want, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(lp, lp_want, sizeof lp_want), 0, "%g %g vs %g %g", lp[0], lp[1], lp_want[0], lp_want[1]);
    const ppxq_model_info *mi;
    uint32_t nm;
    cr_assert_eq(ppx_query_list_models(q, &mi, &nm), PPXQ_OK);
    cr_assert_str_eq(mi[0].kind, "NRE");
    nre_posterior_destroy(&p);
    ppx_query_close(&q);
    stop_server(&s);
}

/* The same daemon trains and serves: `ppxd train ... --serve EP` publishes
 * the model it just wrote and answers queries for it until SIGTERM. */
Test(serve, train_then_serve_in_one_daemon)
{
    server s;
    memset(&s, 0, sizeof s);
    tmpdir(&s);
    /* A small conditional Gaussian: theta ~ N(0, 1), x = theta + 0.5 eps. */
    enum { N = 600 };
    double *th = malloc(N * sizeof *th), *x = malloc(N * sizeof *x);
    cr_assert(th && x);
    rng r;
    rng_seed(&r, 5, 0);
    for (int i = 0; i < N; i++) {
        th[i] = rng_normal(&r);
        x[i] = th[i] + 0.5 * rng_normal(&r);
    }
    char thp[256], xp[256], err[256];
    snprintf(thp, sizeof thp, "%s/theta.npy", s.dir);
    snprintf(xp, sizeof xp, "%s/x.npy", s.dir);
    cr_assert_eq(npy_write(thp, th, N, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npy_write(xp, x, N, 1, err, sizeof err), 0, "%s", err);
    free(th);
    free(x);
    tk_endpoint(s.endpoint, sizeof s.endpoint, "trainserve");
    char *ppxd = tk_build_path("ppxd");
    const char *argv[] = {ppxd, "train", "npe", "--data", thp, xp, "--prior", "normal:0:1", "--flow", "maf",
                          "--transforms", "1", "--hidden", "8", "--max-epochs", "3", "-o", s.model,
                          "--serve", s.endpoint, "--serve-name", "fresh", "--quiet", NULL};
    s.pid = tk_spawn((char *const *)argv);
    cr_assert(s.pid > 0);
    track(s.pid, 1);
    free(ppxd);
    /* Training takes a moment: poll until the server answers. */
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 300;
    int ready = 0;
    for (int i = 0; i < 200 && !ready; i++) {
        ppx_query *q = ppx_query_connect(s.endpoint, &o, err, sizeof err);
        cr_assert_not_null(q, "%s", err);
        ready = ppx_query_status(q, NULL) == PPXQ_OK;
        ppx_query_close(&q);
        int st;
        cr_assert_eq(waitpid(s.pid, &st, WNOHANG), 0, "ppxd train --serve exited early");
    }
    cr_assert(ready, "ppxd train --serve never answered");
    /* The published model answers under its name, like in-process sampling. */
    char out[4096];
    const char *args[] = {"--endpoint", s.endpoint, "sample", "--model", "fresh", "--obs", "0.5", "-n", "200",
                          "--seed", "3", NULL};
    cr_assert_eq(run_ppxctl(args, out, sizeof out), 0, "ppxctl sample failed: %s", out);
    cr_assert(access(s.model, R_OK) == 0, "the model file was written too");
    stop_server(&s);
}

/* ---- hardening (issue 11) ----------------------------------------------------------- */

/* Resident set size of a process in KiB (from /proc), or -1. */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
    fclose(f);
    return kib;
}

typedef struct load_arg {
    const char *endpoint, *path;
    int rc;
    double seconds;
} load_arg;

static void *load_thread(void *p)
{
    load_arg *a = p;
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 20000;
    ppx_query *q = ppx_query_connect(a->endpoint, &o, err, sizeof err);
    a->rc = -100;
    if (!q) return NULL;
    double t0 = tk_now();
    a->rc = ppx_query_load(q, a->path, "x", NULL, NULL);
    a->seconds = tk_now() - t0;
    ppx_query_close(&q);
    return NULL;
}

/* A failed Load says "cannot load" and nothing about why (defect 3). */
static void expect_generic_refusal(ppx_query *q, const char *path)
{
    cr_assert_eq(ppx_query_load(q, path, "x", NULL, NULL), PPXQ_LOAD_FAILED, "%s: %s", path, ppx_query_error(q));
    const char *e = ppx_query_error(q);
    cr_assert(strstr(e, "cannot load"), "%s: %s", path, e);
    static const char *const leaks[] = {"No such", "ermission", "regular", "magic", "outside", "limit", "directory",
                                        "version", "checksum", "truncated", "FIFO", "device"};
    for (size_t i = 0; i < sizeof leaks / sizeof *leaks; i++)
        cr_assert(!strstr(e, leaks[i]), "the reply to Load %s tells too much: %s", path, e);
}

Test(serve, load_refuses_devices_fifos_huge_files_and_paths_outside_the_model_dir)
{
    server s;
    nn_set_threads(1);
    tmpdir(&s);
    write_model(s.model, "normal:0:1x2", 7);
    /* /dev is a model directory here only so that /dev/zero reaches the
     * regular-file check rather than the confinement check. */
    const char *extra[] = {"--model-dir", s.dir, "--model-dir", "/dev", "--deadline-ms", "20000", NULL};
    start_server(&s, 0, extra);
    wait_ready(&s, NULL);
    ppx_query *q = client(&s, 20000);
    /* defect 1: a character device of endless zeros is refused at once, without memory */
    double t0 = tk_now();
    expect_generic_refusal(q, "/dev/zero");
    cr_assert_lt(tk_now() - t0, 2.0);
    long rss = rss_kib(s.pid);
    cr_assert(rss > 0 && rss < 256 * 1024, "ppxd RSS %ld KiB after Load /dev/zero", rss);
    /* a sparse 2 GiB regular file is over the default 1 GiB cap: refused before any read */
    char huge[200];
    snprintf(huge, sizeof huge, "%s/huge.ppxm", s.dir);
    FILE *f = fopen(huge, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), (off_t)2 << 30), 0);
    fclose(f);
    t0 = tk_now();
    expect_generic_refusal(q, huge);
    cr_assert_lt(tk_now() - t0, 2.0);
    rss = rss_kib(s.pid);
    cr_assert(rss > 0 && rss < 256 * 1024, "ppxd RSS %ld KiB after Load of a 2 GiB file", rss);
    /* defect 2: FIFOs without writers, as many loads at once as there are workers */
    char fifo[200];
    snprintf(fifo, sizeof fifo, "%s/pipe.ppxm", s.dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    pthread_t th[2];
    load_arg la[2] = {{s.endpoint, fifo, 0, 0}, {s.endpoint, fifo, 0, 0}};
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, load_thread, &la[i]);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(la[i].rc, PPXQ_LOAD_FAILED, "FIFO load %d: rc %d", i, la[i].rc);
        cr_assert_lt(la[i].seconds, 2.0, "FIFO load took %.1f s", la[i].seconds);
    }
    cr_assert_eq(ppx_query_status(q, NULL), PPXQ_OK);
    expect_generic_refusal(q, fifo);
    /* defect 3: outside the model directories, existing or not, one answer */
    expect_generic_refusal(q, "/etc/passwd");
    expect_generic_refusal(q, "/nonexistent/x.ppxm");
    expect_generic_refusal(q, "../../etc/passwd");
    char link[200];
    snprintf(link, sizeof link, "%s/escape.ppxm", s.dir);
    cr_assert_eq(symlink("/etc/passwd", link), 0);
    expect_generic_refusal(q, link);
    /* inside it: a model loads, by absolute or relative path */
    cr_assert_eq(ppx_query_load(q, s.model, "a", NULL, NULL), PPXQ_OK, "%s", ppx_query_error(q));
    cr_assert_eq(ppx_query_load(q, "gauss.ppxm", "b", NULL, NULL), PPXQ_OK, "%s", ppx_query_error(q));
    double x[C] = {0.1, 0.2, 0.3};
    cr_assert_eq(ppx_query_sample(q, "b", x, 1, C, 10, 1, 0, NULL, NULL), PPXQ_OK, "%s", ppx_query_error(q));
    ppx_query_close(&q);
    unlink(fifo);
    stop_server(&s);
}

Test(serve, load_needs_a_model_dir_and_max_model_bytes_caps_it)
{
    server s;
    nn_set_threads(1);
    tmpdir(&s);
    write_model(s.model, "normal:0:1x2", 7);
    struct stat st;
    cr_assert_eq(stat(s.model, &st), 0);
    /* a model of N bytes with --max-model-bytes N - 1 is refused, even at start */
    char *ppxd = tk_build_path("ppxd");
    char cap[32], modelarg[200];
    snprintf(cap, sizeof cap, "%lld", (long long)st.st_size - 1);
    snprintf(modelarg, sizeof modelarg, "gauss=%s", s.model);
    char *argv[] = {ppxd, "serve", "--serve", "ipc://@ppxd-never-2", "--model", modelarg, "--max-model-bytes", cap,
                    "--quiet", NULL};
    pid_t pid = tk_spawn(argv);
    int status = tk_wait(pid, 10000);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
    free(ppxd);
    /* exactly N is fine */
    snprintf(cap, sizeof cap, "%lld", (long long)st.st_size);
    const char *extra[] = {"--max-model-bytes", cap, NULL};
    start_server(&s, 0, extra);
    wait_ready(&s, NULL);
    ppx_query *q = client(&s, 5000);
    cr_assert_eq(ppx_query_load(q, s.model, "again", NULL, NULL), PPXQ_OK, "%s", ppx_query_error(q));
    ppx_query_close(&q);
    stop_server(&s);
}

Test(serve, plain_tcp_clients_may_query_but_not_administer)
{
    server s;
    setup(&s, "normal:0:1x2", 1, NULL);
    ppx_query *q = client(&s, 5000);
    cr_assert_eq(ppx_query_status(q, NULL), PPXQ_OK);
    cr_assert_eq(ppx_query_load(q, s.model, "x", NULL, NULL), PPXQ_NOT_ALLOWED);
    cr_assert_eq(ppx_query_reload(q, "gauss", NULL, NULL), PPXQ_NOT_ALLOWED);
    cr_assert_eq(ppx_query_unload(q, "gauss", NULL), PPXQ_NOT_ALLOWED);
    cr_assert_eq(ppx_query_sample(q, "gauss", g_obs[0], 1, C, 10, 1, 0, NULL, NULL), PPXQ_OK);
    ppx_query_close(&q);
    stop_server(&s);
}

static void *stuck_sample_thread(void *p)
{
    const char *ep = p;
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 3000;
    ppx_query *q = ppx_query_connect(ep, &o, err, sizeof err);
    if (q) {
        ppx_query_sample(q, "gauss", g_obs[0], 1, C, 1000, 1, 0, NULL, NULL);
        ppx_query_close(&q);
    }
    return NULL;
}

Test(serve, sigterm_stops_the_server_within_seconds_while_workers_are_busy)
{
    server s;
    /* A prior far from where the random flow puts its mass: nearly every
     * draw is rejected, so each Sample keeps its worker busy until the
     * (long) deadline. */
    const char *extra[] = {"--deadline-ms", "120000", NULL};
    setup(&s, "uniform:50:51x2", 0, extra);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, stuck_sample_thread, s.endpoint);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL); /* gave up after 3 s; both workers still sampling */
    ppx_query *q = client(&s, 500);
    cr_assert_neq(ppx_query_status(q, NULL), PPXQ_OK, "a worker was free: the test would prove nothing");
    ppx_query_close(&q);
    double t0 = tk_now();
    kill(s.pid, SIGTERM);
    int st = tk_wait(s.pid, 15000);
    double took = tk_now() - t0;
    if (st == -1) {
        st = tk_stop(s.pid, 100);
        cr_assert_fail("ppxd serve still running 15 s after SIGTERM");
    }
    track(s.pid, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    cr_assert_lt(took, 6.0, "shutdown took %.1f s", took);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s.dir);
    cr_expect_eq(system(cmd), 0);
}

Test(serve, sample_reply_bytes_are_bounded)
{
    server s;
    /* 5000 x 2 doubles = 80,000 bytes fits 100,000; 10,000 x 2 does not,
     * though both are within --max-n */
    const char *extra[] = {"--max-reply-bytes", "100000", "--max-n", "1000000", NULL};
    setup(&s, "normal:0:1x2", 0, extra);
    ppx_query *q = client(&s, 10000);
    cr_assert_eq(ppx_query_sample(q, "gauss", g_obs[0], 1, C, 5000, 1, 0, NULL, NULL), PPXQ_OK, "%s",
                 ppx_query_error(q));
    cr_assert_eq(ppx_query_sample(q, "gauss", g_obs[0], 1, C, 10000, 1, 0, NULL, NULL), PPXQ_N_TOO_LARGE);
    cr_assert(strstr(ppx_query_error(q), "--max-reply-bytes"), "%s", ppx_query_error(q));
    /* two observations of 5000 are 160,000 bytes */
    cr_assert_eq(ppx_query_sample(q, "gauss", &g_obs[0][0], 2, C, 5000, 1, 0, NULL, NULL), PPXQ_N_TOO_LARGE);
    ppx_query_close(&q);
    stop_server(&s);
}
