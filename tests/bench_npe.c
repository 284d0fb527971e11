/* bench_npe — NPE accuracy and speed on two sbibm tasks (two_moons,
 * gaussian_linear), printed next to the Python toolkit sbi's figures.
 *
 * Per task: 10^4 simulations generated here with rng.h following
 * shared/data/sbibm/README.md; for NSF and MAF flows and each seed: training
 * wall and CPU time, epochs, then for each of the 10 reference observations
 * 10,000 posterior samples (time per observation) and their C2ST against the
 * 10,000 reference posterior samples (src/nn/c2st.h, sbibm's definition).
 * One OpenBLAS thread (the budget is "one core").
 *
 * Environment: PPXD_BENCH_SEEDS (default 2) seeds per flow;
 * PPXD_BENCH_OBS (default 3; sbibm's protocol is 10) observations per task
 * (each C2ST trains 5 classifiers on 16,000 points: ~10 s of CPU, so the
 * default keeps the whole run to several minutes); PPXD_BENCH_SIMS
 * (default 10000); PPXD_BENCH_TASKS ("two_moons,gaussian_linear");
 * PPXD_BENCH_THETA_TF (1, the default: NPE's automatic theta transforms; 2: also
 * the logit of uniform dimensions; 0: none);
 * PPXD_BENCH_FLOWS ("nsf,maf"); PPXD_BENCH_HIDDEN, PPXD_BENCH_PATIENCE: the flow's
 * width and the early-stopping patience, for experiments (defaults: npe.h's); PPXD_SBIBM_DIR (default: ../shared/data/sbibm
 * from the repository, then /work/shared/data/sbibm).
 * Not a test: it prints figures and exits 0 (also when the data are absent).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "nn/c2st.h"
#include "nn/nn.h"
#include "npe.h"
#include "prior.h"
#include "rng.h"

#define MAX_OBS 10
#define N_POST 10000

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

/* ---- the two simulators (README formulas) ------------------------------------- */

static void sim_two_moons(rng *r, double *theta, double *x)
{
    theta[0] = -1.0 + 2.0 * rng_uniform(r);
    theta[1] = -1.0 + 2.0 * rng_uniform(r);
    const double half_pi = 1.57079632679489661923;
    double a = -half_pi + 2.0 * half_pi * rng_uniform(r);
    double rad = 0.1 + 0.01 * rng_normal(r);
    x[0] = rad * cos(a) + 0.25 - fabs(theta[0] + theta[1]) / sqrt(2.0);
    x[1] = rad * sin(a) + (-theta[0] + theta[1]) / sqrt(2.0);
}

static void sim_gaussian_linear(rng *r, double *theta, double *x)
{
    const double sd = sqrt(0.1);
    for (int j = 0; j < 10; j++) {
        theta[j] = sd * rng_normal(r);
        x[j] = theta[j] + sd * rng_normal(r);
    }
}

typedef struct task {
    const char *name;
    int D, C;
    void (*sim)(rng *, double *, double *);
    const char *prior;
    double published_c2st; /* sbibm NPE median at 10^4 simulations */
} task;

static const task tasks[] = {
    {"two_moons", 2, 2, sim_two_moons, "uniform:-1:1x2", 0.608},
    {"gaussian_linear", 10, 10, sim_gaussian_linear, "normal:0:0.31622776601683794x10", 0.534},
};

/* ---- reference data ----------------------------------------------------------------- */

/* Numbers of a CSV with one header line, via a FILE*; rows x cols into *out. */
static int read_csv(FILE *f, int cols, double **out, size_t *rows)
{
    char line[8192];
    size_t n = 0, cap = 0;
    double *v = NULL;
    if (!fgets(line, sizeof line, f)) return -1; /* header */
    while (fgets(line, sizeof line, f)) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            double *nv = realloc(v, cap * (size_t)cols * sizeof *nv);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        char *p = line;
        for (int j = 0; j < cols; j++) {
            char *e;
            v[n * (size_t)cols + (size_t)j] = strtod(p, &e);
            if (e == p) {
                free(v);
                return -1;
            }
            p = e;
            if (*p == ',') p++;
        }
        n++;
    }
    *out = v;
    *rows = n;
    return 0;
}

static int load_obs(const char *dir, const task *t, int k, double *x_o, double **ref, size_t *n_ref)
{
    char path[1024], cmd[1100];
    snprintf(path, sizeof path, "%s/%s/%d/observation.csv", dir, t->name, k);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    double *o = NULL;
    size_t rows = 0;
    int rc = read_csv(f, t->C, &o, &rows);
    fclose(f);
    if (rc < 0 || rows != 1) {
        free(o);
        return -1;
    }
    memcpy(x_o, o, (size_t)t->C * sizeof *x_o);
    free(o);
    /* The reference samples are bzip2'd CSV; bzcat is on every Debian. */
    snprintf(cmd, sizeof cmd, "bzcat '%s/%s/%d/reference_posterior_samples.csv.bz2'", dir, t->name, k);
    f = popen(cmd, "r");
    if (!f) return -1;
    rc = read_csv(f, t->D, ref, n_ref);
    if (pclose(f) != 0 || rc < 0) {
        if (rc == 0) free(*ref);
        return -1;
    }
    return 0;
}

static const char *find_data(void)
{
    static const char *const cands[] = {"../shared/data/sbibm", "/work/shared/data/sbibm"};
    const char *e = getenv("PPXD_SBIBM_DIR");
    struct stat st;
    if (e && *e) return stat(e, &st) == 0 ? e : NULL;
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (stat(cands[i], &st) == 0) return cands[i];
    return NULL;
}

static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

/* ---- one task ------------------------------------------------------------------------- */

static void run_task(const char *dir, const task *t, int n_sims, int n_seeds, int n_obs, const char *flows)
{
    double x_obs[MAX_OBS][16];
    double *ref[MAX_OBS] = {0};
    size_t n_ref[MAX_OBS] = {0};
    int have = 0;
    for (int k = 0; k < n_obs; k++) {
        if (load_obs(dir, t, k + 1, x_obs[k], &ref[k], &n_ref[k]) < 0) {
            fprintf(stderr, "bench_npe: cannot read observation %d of %s (skipped)\n", k + 1, t->name);
            break;
        }
        have++;
    }
    if (!have) return;
    char err[512];
    const char *spec[1] = {t->prior};
    prior *pr = prior_parse(spec, 1, err, sizeof err);
    double *theta = malloc((size_t)n_sims * (size_t)t->D * sizeof *theta);
    double *x = malloc((size_t)n_sims * (size_t)t->C * sizeof *x);
    double *post = malloc((size_t)N_POST * (size_t)t->D * sizeof *post);
    if (!pr || !theta || !x || !post) {
        fprintf(stderr, "bench_npe: %s\n", pr ? "out of memory" : err);
        goto out;
    }
    printf("\n== %s: D = %d, %d simulations, prior %s, %d observations, %d samples each, C2ST vs %zu reference "
           "samples\n", t->name, t->D, n_sims, t->prior, have, N_POST, n_ref[0]);
    printf("%-4s %4s %8s %8s %6s %10s  %-*s %6s\n", "flow", "seed", "train_s", "cpu_s", "epochs", "sample_ms",
           7 * have, "C2ST per observation", "mean");
    fflush(stdout);
    static const flow_kind kinds[2] = {FLOW_NSF, FLOW_MAF};
    for (int fk = 0; fk < 2; fk++) {
        if (!listed(flows, fk == 0 ? "nsf" : "maf")) continue;
        double sum_c2st = 0, sum_train = 0;
        int n_c2st = 0;
        for (int s = 1; s <= n_seeds; s++) {
            rng r;
            rng_seed(&r, 1000 + (uint64_t)s, 0);
            for (int i = 0; i < n_sims; i++) t->sim(&r, theta + (size_t)i * (size_t)t->D, x + (size_t)i * (size_t)t->C);
            npe_data d;
            if (npe_data_init(&d, theta, x, (size_t)n_sims, t->D, t->C, err, sizeof err) < 0) {
                fprintf(stderr, "bench_npe: %s\n", err);
                continue;
            }
            flow_config fc = flow_config_default(kinds[fk], t->D, t->C);
            fc.hidden = env_int("PPXD_BENCH_HIDDEN", fc.hidden);
            npe_train_config cfg = npe_train_defaults();
            cfg.seed = (uint64_t)s;
            cfg.threads = 1;
            /* PPXD_BENCH_THETA_TF: 1 (default) NPE's automatic theta transforms,
             * 2 also the logit of uniform dimensions, 0 none, for comparison
             * within one run. */
            cfg.theta_transform = env_int("PPXD_BENCH_THETA_TF", NPE_TF_AUTO);
            cfg.patience = env_int("PPXD_BENCH_PATIENCE", cfg.patience);
            npe_train_report rep;
            double w0 = wall_now(), c0 = cpu_now();
            npe_posterior *p = npe_train(&d, pr, &fc, &cfg, &rep, err, sizeof err);
            double tw = wall_now() - w0, tc = cpu_now() - c0;
            npe_data_free(&d);
            if (!p) {
                fprintf(stderr, "bench_npe: training failed: %s\n", err);
                continue;
            }
            sum_train += tw;
            double c2[MAX_OBS], samp_ms = 0, c2st_cpu = 0, c2st_epochs = 0;
            int ok = 0;
            for (int k = 0; k < have; k++) {
                npe_sample_report sr;
                double t0 = wall_now();
                if (npe_sample(p, x_obs[k], N_POST, &r, 60, post, &sr, err, sizeof err) < 0) {
                    fprintf(stderr, "bench_npe: sampling failed: %s\n", err);
                    c2[k] = NAN;
                    continue;
                }
                samp_ms += 1e3 * (wall_now() - t0);
                c2st_config cc = c2st_defaults();
                cc.seed = (uint64_t)k + 1;
                double ep = 0, c0c = cpu_now();
                if (c2st(ref[k], n_ref[k], post, N_POST, (size_t)t->D, &cc, &c2[k], &ep) < 0) c2[k] = NAN;
                c2st_cpu += cpu_now() - c0c;
                c2st_epochs += ep;
                if (isfinite(c2[k])) {
                    sum_c2st += c2[k];
                    n_c2st++;
                }
                ok++;
            }
            double mean = 0;
            int nm = 0;
            printf("%-4s %4d %8.1f %8.1f %6d %10.1f  ", fk == 0 ? "NSF" : "MAF", s, tw, tc, rep.epochs,
                   ok ? samp_ms / ok : NAN);
            for (int k = 0; k < have; k++) {
                printf("%6.3f ", c2[k]);
                if (isfinite(c2[k])) mean += c2[k], nm++;
            }
            printf("%6.3f   (C2ST: %.0f s CPU, %.0f epochs per fold)\n", nm ? mean / nm : NAN, c2st_cpu,
                   ok ? c2st_epochs / ok : 0.0);
            fflush(stdout);
            npe_posterior_destroy(&p);
        }
        if (n_c2st)
            printf("%-4s mean over seeds: C2ST %.3f, training %.1f s (wall)\n", fk == 0 ? "NSF" : "MAF",
                   sum_c2st / n_c2st, sum_train / n_seeds);
        fflush(stdout);
    }
    if (strcmp(t->name, "two_moons") == 0)
        printf("sbi (Python, same CPU class): NSF 151 s training, mean C2ST 0.591; MAF 79-189 s, C2ST 0.63-0.74; "
               "published NPE %.3f (median, 10^4 sims).  Goal: mean C2ST <= 0.59, training <= 15 s on one core.\n",
               t->published_c2st);
    else
        printf("published NPE (sbibm) C2ST %.3f (median, 10^4 simulations).\n", t->published_c2st);
out:
    for (int k = 0; k < have; k++) free(ref[k]);
    free(theta);
    free(x);
    free(post);
    prior_destroy(&pr);
}

int main(int argc, char **argv)
{
    (void)argc;
    nn_blas_fix_coretype(argv); /* same OpenBLAS kernels as ppxd itself */
    const char *dir = find_data();
    if (!dir) {
        printf("bench_npe: sbibm reference data not found (set PPXD_SBIBM_DIR); skipped\n");
        return 0;
    }
    nn_set_threads(1);
    int n_seeds = env_int("PPXD_BENCH_SEEDS", 2), n_obs = env_int("PPXD_BENCH_OBS", 3);
    int n_sims = env_int("PPXD_BENCH_SIMS", 10000);
    if (n_obs < 1 || n_obs > MAX_OBS) n_obs = MAX_OBS;
    if (n_seeds < 1) n_seeds = 1;
    if (n_sims < 100) n_sims = 100;
    const char *which = getenv("PPXD_BENCH_TASKS");
    const char *flows = getenv("PPXD_BENCH_FLOWS");
    if (!flows || !*flows) flows = "nsf,maf";
    printf("bench_npe: NPE on sbibm tasks, data from %s, 1 OpenBLAS thread\n", dir);
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (!which || !*which || listed(which, tasks[i].name)) run_task(dir, &tasks[i], n_sims, n_seeds, n_obs, flows);
    return 0;
}
