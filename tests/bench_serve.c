/* bench_serve — figures for `ppxd serve` (server/serve.h), not a test.
 *
 * Four 2-D NPE models (theta 2, x 2) with freshly initialised weights
 * (flow_init; theta's scale narrowed to 0.3 so that the acceptance inside
 * the bounded prior is ~1, as for a trained posterior) are written to model files and served by one ppxd (subprocess,
 * --serve-threads = online CPUs) on tcp loopback:
 *   nsf    ppxd train npe's default flow: NSF coupling (5 transforms, 10
 *          bins, 50 hidden, 2 residual blocks), prior uniform(-3, 3) x 2;
 *   maf    sbi's default MAF (5 transforms, 50 hidden, 2 blocks), prior
 *          uniform(-3, 3) x 2;
 *   small  MAF with 2 transforms, 16 hidden, 1 block, same prior;
 *   tiny   the small MAF with a normal(0, 1) x 2 prior (no rejection: npe
 *          draws exactly n), so the query cost is mostly the server's own.
 * For each model, printed next to its goal:
 *   - latency p50 / p99 of a 10,000-sample Sample query (one client);
 *   - throughput (queries/s) of 100-sample queries with 1, 8 and 64
 *     concurrent clients (one connection each);
 *   - the in-process npe_sample time of the same model for 10,000 and 100
 *     samples in the same run (one thread), as the floor.
 * Environment: PPXD_BENCH_SECONDS (default 2) per throughput point,
 * PPXD_BENCH_QUERIES (default 100) latency samples per model.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flow/flow.h"
#include "model_file.h"
#include "nn/nn.h"
#include "npe.h"
#include "ppx_query.h"
#include "prior.h"
#include "rng.h"
#include "testkit.h"

static const double g_x[2] = {0.3, -0.2};

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

typedef struct bench_model {
    const char *name, *prior;
    flow_kind kind;
    int n_transforms, hidden, n_blocks; /* 0: sbi default */
} bench_model;

static const bench_model g_models[] = {
    {"nsf", "uniform:-3:3x2", FLOW_NSF, 0, 0, 0},
    {"maf", "uniform:-3:3x2", FLOW_MAF, 0, 0, 0},
    {"small", "uniform:-3:3x2", FLOW_MAF, 2, 16, 1},
    {"tiny", "normal:0:1x2", FLOW_MAF, 2, 16, 1},
};
#define N_MODELS (sizeof g_models / sizeof g_models[0])

static int write_model(const char *path, const bench_model *bm)
{
    model_file *m = model_file_new(bm->kind == FLOW_NSF ? MODEL_NPE_NSF : MODEL_NPE_MAF, 2, 2);
    if (!m) return -1;
    m->flow = flow_config_default(bm->kind, 2, 2);
    if (bm->n_transforms) m->flow.n_transforms = bm->n_transforms;
    if (bm->hidden) m->flow.hidden = bm->hidden;
    if (bm->n_blocks) m->flow.n_blocks = bm->n_blocks;
    flow *f = flow_new(&m->flow, 8);
    if (!f) return -1;
    rng r;
    rng_seed(&r, 42, 0);
    flow_init(f, &r);
    size_t np = flow_n_params(f);
    float *p = malloc(np * sizeof *p);
    flow_get_params(f, p);
    model_file_set_params(m, p, np);
    free(p);
    /* Freshly initialised flows are wide: narrow theta so that ~all draws
     * fall inside uniform(-3, 3) (a trained posterior's acceptance). */
    m->theta_std[0] = m->theta_std[1] = 0.3;
    flow_destroy(&f);
    char err[256];
    const char *spec[1] = {bm->prior};
    prior *pr = prior_parse(spec, 1, err, sizeof err);
    model_file_set_prior(m, pr);
    prior_destroy(&pr);
    int rc = model_file_save(m, path, err, sizeof err);
    if (rc < 0) fprintf(stderr, "bench_serve: %s\n", err);
    model_file_destroy(&m);
    return rc;
}

typedef struct tp_arg {
    const char *endpoint, *model;
    double until;
    long done, failed;
} tp_arg;

static void *tp_thread(void *p)
{
    tp_arg *a = p;
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 30000;
    ppx_query *q = ppx_query_connect(a->endpoint, &o, err, sizeof err);
    if (!q) return NULL;
    uint64_t seed = 0;
    while (tk_now() < a->until) {
        if (ppx_query_sample(q, a->model, g_x, 1, 2, 100, seed++, 0, NULL, NULL) == PPXQ_OK) a->done++;
        else a->failed++;
    }
    ppx_query_close(&q);
    return NULL;
}

/* In-process npe_sample times (seconds, median) for 10,000 and 100 samples. */
static void in_process(const char *path, double *t10k, double *t100)
{
    char err[256];
    model_file *m = model_file_load(path, err, sizeof err);
    npe_posterior *p = m ? npe_posterior_from_model(m, err, sizeof err) : NULL;
    model_file_destroy(&m);
    *t10k = *t100 = NAN;
    if (!p) return;
    double *buf = malloc(10000 * 2 * sizeof *buf);
    double a[20], b[100];
    for (int i = 0; i < 20; i++) {
        rng r;
        rng_seed(&r, (uint64_t)i, 0);
        double t0 = tk_now();
        npe_sample(p, g_x, 10000, &r, 60, buf, NULL, err, sizeof err);
        a[i] = tk_now() - t0;
    }
    for (int i = 0; i < 100; i++) {
        rng r;
        rng_seed(&r, (uint64_t)i, 0);
        double t0 = tk_now();
        npe_sample(p, g_x, 100, &r, 60, buf, NULL, err, sizeof err);
        b[i] = tk_now() - t0;
    }
    *t10k = quantile(a, 20, 0.5);
    *t100 = quantile(b, 100, 0.5);
    npe_posterior_destroy(&p);
    free(buf);
}

int main(int argc, char **argv)
{
    (void)argc;
    nn_blas_fix_coretype(argv); /* same OpenBLAS kernels as ppxd itself */
    nn_set_threads(1);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    char dir[] = "/tmp/ppxd-bench-serve-XXXXXX";
    if (!mkdtemp(dir)) return 0;
    char paths[N_MODELS][128], margs[N_MODELS][640], ep[64], threads[24], cmd[200];
    for (size_t k = 0; k < N_MODELS; k++) {
        snprintf(paths[k], sizeof paths[k], "%s/%s.ppxm", dir, g_models[k].name);
        snprintf(margs[k], sizeof margs[k], "%s=%s", g_models[k].name, paths[k]);
        if (write_model(paths[k], &g_models[k]) < 0) return 0;
    }
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", tk_free_tcp_port());
    snprintf(threads, sizeof threads, "%ld", ncpu > 0 ? ncpu : 1);
    char *ppxd = tk_build_path("ppxd");
    char *serve_argv[] = {ppxd, "serve", "--serve", ep, "--model", margs[0], "--model", margs[1], "--model", margs[2],
                          "--model", margs[3], "--serve-threads", threads, "--quiet", NULL};
    pid_t pid = tk_spawn(serve_argv);
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    ppx_query *q = ppx_query_connect(ep, &o, err, sizeof err);
    int up = 0;
    for (int i = 0; q && i < 100 && !up; i++) {
        ppx_query_set_timeout(q, 200);
        up = ppx_query_status(q, NULL) == PPXQ_OK;
    }
    if (!up) {
        fprintf(stderr, "bench_serve: ppxd serve did not start\n");
        ppx_query_close(&q);
        tk_stop(pid, 2000);
        return 0;
    }
    ppx_query_set_timeout(q, 60000);
    int nq = env_int("PPXD_BENCH_QUERIES", 100);
    if (nq < 10) nq = 10;
    double secs = env_int("PPXD_BENCH_SECONDS", 2);
    printf("ppxd serve: 2-D NPEs on tcp loopback, %s worker threads, %ld CPUs; goals: p50 <= 10 ms for 10,000 "
           "samples, >= 2,000 queries/s of 100 samples on 2 cores\n", threads, ncpu);
    for (size_t k = 0; k < N_MODELS; k++) {
        const bench_model *bm = &g_models[k];
        double in10k, in100;
        in_process(paths[k], &in10k, &in100);
        printf("\n[%s] %s %d transforms x %d hidden x %d blocks, prior %s\n", bm->name,
               bm->kind == FLOW_NSF ? "NSF (coupling, 10 bins)" : "MAF",
               bm->n_transforms ? bm->n_transforms : 5, bm->hidden ? bm->hidden : 50, bm->n_blocks ? bm->n_blocks : 2,
               bm->prior);
        printf("  in-process npe_sample (one thread): 10,000 samples %8.2f ms, 100 samples %7.3f ms\n", 1e3 * in10k,
               1e3 * in100);
        double *lat = malloc((size_t)nq * sizeof *lat);
        for (int i = 0; i < 3; i++) ppx_query_sample(q, bm->name, g_x, 1, 2, 10000, 1000 + (uint64_t)i, 0, NULL, NULL);
        int failed = 0;
        for (int i = 0; i < nq; i++) {
            double t0 = tk_now();
            if (ppx_query_sample(q, bm->name, g_x, 1, 2, 10000, (uint64_t)i, 0, NULL, NULL) != PPXQ_OK) failed++;
            lat[i] = tk_now() - t0;
        }
        double p50 = quantile(lat, nq, 0.5), p99 = quantile(lat, nq, 0.99);
        printf("  served, 10,000 samples, %d queries%s: p50 %8.2f ms  p99 %8.2f ms  (goal p50 <= 10 ms: %s)\n", nq,
               failed ? " (SOME FAILED)" : "", 1e3 * p50, 1e3 * p99, p50 <= 0.010 ? "met" : "NOT met");
        free(lat);
        int clients[3] = {1, 8, 64};
        for (int c = 0; c < 3; c++) {
            int n = clients[c];
            pthread_t *th = calloc((size_t)n, sizeof *th);
            tp_arg *a = calloc((size_t)n, sizeof *a);
            double t0 = tk_now();
            for (int i = 0; i < n; i++) {
                a[i].endpoint = ep;
                a[i].model = bm->name;
                a[i].until = t0 + secs;
                pthread_create(&th[i], NULL, tp_thread, &a[i]);
            }
            long done = 0, bad = 0;
            for (int i = 0; i < n; i++) {
                pthread_join(th[i], NULL);
                done += a[i].done;
                bad += a[i].failed;
            }
            double qps = (double)done / (tk_now() - t0);
            printf("  served, 100 samples, %2d clients: %8.0f queries/s%s  (goal >= 2,000/s: %s)\n", n, qps,
                   bad ? " (some failed)" : "", qps >= 2000 ? "met" : "NOT met");
            free(th);
            free(a);
        }
    }
    ppx_query_close(&q);
    tk_stop(pid, 5000);
    free(ppxd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_serve: could not remove %s\n", dir);
    return 0;
}
