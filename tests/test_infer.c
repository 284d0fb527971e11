/* test_infer.c — `ppxd simulate`, `ppxd infer`, `ppxd export` and `ppxd info`
 * from the user's side, on simulators written the way real PPX programs are:
 * observations drawn by ppxd are data, not evidence; LMH moves control=false
 * draws; LMH writes its chains; repeated names mean the last value; unnamed
 * draws are reached by address, pattern and @result; a hung simulator does
 * not stall the others.
 *
 * The upstream-style model (tests/sims/sim_upstream.c): a ~ N(0, 1) with
 * control=false, b ~ N(a, 1), y ~ N(a + b, 0.5) observed.  (a, b) is
 * Gaussian with covariance [[1, 1], [1, 2]], and s = a + b has variance 5,
 * cov(a, s) = 2 and cov(b, s) = 3, so given y (var(y) = 5.25):
 *   E[a|y] = 2y/5.25, var(a|y) = 1 - 4/5.25;  E[b|y] = 3y/5.25, var(b|y) = 2 - 9/5.25. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "stats.h"
#include "testkit.h"
#include "trace_store.h"

static char g_dir[128];

static void setup(void) { cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "infer"), 0); }
static void teardown(void) { tk_tmpdir_remove(g_dir); }

static char *tmp(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", g_dir, name) > 0);
    return p;
}

/* "--sim-cmd" value: [env VARS ]BUILD/rel {endpoint}. */
static char *sim_cmd(const char *env, const char *rel)
{
    char *path = tk_build_path(rel), *cmd = NULL;
    cr_assert(asprintf(&cmd, "%s%s%s {endpoint}", env ? "env " : "", env ? env : "", path) > 0);
    free(path);
    return cmd;
}

static char *text_of(const char *path)
{
    size_t n;
    char *s = (char *)tk_slurp(path, &n);
    return s ? s : strdup("");
}

/* Run ppxd with the given arguments (NULL-terminated); stdout in *out,
 * stderr in *err (malloc'd).  Returns the exit code. */
static int ppxd(char **out, char **err, ...)
{
    char *argv[64];
    int n = 0;
    argv[n++] = tk_build_path("ppxd");
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) && n < 63;) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char *o = tmp("stdout.txt"), *e = tmp("stderr.txt");
    int rc = tk_run(argv, o, e, 120000);
    cr_assert_neq(rc, -1, "ppxd %s timed out", argv[1]);
    *out = text_of(o);
    *err = text_of(e);
    free(o);
    free(e);
    free(argv[0]);
    return rc;
}

/* The summary row of `label`: mean and sd.  1 when found. */
static int summary_row(const char *out, const char *label, double *mean, double *sd)
{
    const char *p = out;
    size_t len = strlen(label);
    while ((p = strstr(p, label))) {
        if ((p == out || p[-1] == '\n') && p[len] == ' ') return sscanf(p + len, "%lf %lf", mean, sd) == 2;
        p += len;
    }
    return 0;
}

/* "ESS E, log evidence L" of an importance-sampling title line. */
static void ess_and_logz(const char *out, double *ess, double *logz)
{
    const char *p = strstr(out, "ESS ");
    cr_assert_not_null(p, "no ESS in: %s", out);
    cr_assert_eq(sscanf(p, "ESS %lf, log evidence %lf", ess, logz), 2, "%s", p);
}

static double *read_npy(const char *path, size_t *rows, size_t *cols)
{
    double *d = NULL;
    char why[256];
    cr_assert_eq(npy_read(path, &d, rows, cols, why, sizeof why), 0, "%s", why);
    return d;
}

/* --- bug 1: drawn observations are data, not evidence ------------------------------ */

Test(infer, no_observe_is_the_exact_prior, .init = setup, .fini = teardown)
{
    char *cmd = sim_cmd(NULL, "examples/gaussian"), *out, *err;
    int rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-j", "2", "-n", "500", "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    double ess, logz;
    ess_and_logz(out, &ess, &logz);
    cr_assert_eq(ess, 500.0, "every trace has weight 1: ESS = n, got %g", ess);
    cr_assert_eq(logz, 0.0, "log evidence of no evidence is 0, got %g", logz);
    free(out);
    free(err);
    free(cmd);
}

Test(infer, one_observation_gives_its_marginal_evidence, .init = setup, .fini = teardown)
{
    /* obs0 ~ N(mu, sqrt 2), mu ~ N(1, sqrt 5): obs0 ~ N(1, sqrt 7) marginally.
     * obs1 is drawn (no value) and must not enter the evidence. */
    char *cmd = sim_cmd(NULL, "examples/gaussian"), *out, *err;
    int rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-j", "2", "-n", "20000", "--observe", "obs0=8", "--seed",
                  "7", "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    double ess, logz;
    ess_and_logz(out, &ess, &logz);
    double exact = -0.5 * 49.0 / 7.0 - 0.5 * log(2 * M_PI * 7.0);
    /* The estimate of Z has relative sd about 1/sqrt(ESS); 4 of those. */
    cr_assert(fabs(logz - exact) < 4.0 / sqrt(ess), "log evidence %g, exact %g (ESS %g)", logz, exact, ess);
    free(out);
    free(err);
    free(cmd);
}

/* The weighted traces of -o give back the run's ESS and log evidence from
 * the exported @log_weight column (as printed: ESS to 0.1, log evidence
 * to 6 significant digits). */
Test(infer, exported_log_weights_give_the_runs_ess_and_evidence, .init = setup, .fini = teardown)
{
    char *cmd = sim_cmd(NULL, "examples/gaussian"), *out, *err, *ppxt = tmp("w.ppxt"), *npy = tmp("w.npy");
    int rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-j", "2", "-n", "3000", "--observe", "obs0=8", "--observe",
                  "obs1=9", "--seed", "5", "-o", ppxt, "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    double ess, logz;
    ess_and_logz(out, &ess, &logz);
    free(out);
    free(err);
    rc = ppxd(&out, &err, "export", ppxt, "--names", "mu,@log_weight,@log_prior,@log_likelihood,@log_proposal", "-o",
              npy, NULL);
    cr_assert_eq(rc, 0, "%s", err);
    size_t r, c;
    double *d = read_npy(npy, &r, &c);
    cr_assert_eq(r, 3000);
    cr_assert_eq(c, 5);
    double mx = -INFINITY;
    for (size_t i = 0; i < r; i++) {
        const double *row = d + i * c;
        /* Prior IS: q is the prior, so log w is the observes' log likelihood. */
        cr_assert_float_eq(row[4], row[2], 1e-12);
        cr_assert_float_eq(row[1], row[2] + row[3] - row[4], 1e-9);
        if (row[1] > mx) mx = row[1];
    }
    double sw = 0, sw2 = 0;
    for (size_t i = 0; i < r; i++) {
        double w = exp(d[i * c + 1] - mx);
        sw += w;
        sw2 += w * w;
    }
    double ess2 = sw * sw / sw2, logz2 = mx + log(sw / (double)r);
    cr_assert(fabs(ess2 - ess) <= 0.05 + 1e-9 * ess, "ESS from the exported weights %g, the run's %g", ess2, ess);
    cr_assert(fabs(logz2 - logz) <= 5e-6 * fabs(logz), "log evidence %.9g, the run's %g", logz2, logz);
    free(d);
    free(out);
    free(err);
    free(cmd);
    free(ppxt);
    free(npy);
}

Test(infer, simulate_writes_unweighted_traces_of_a_branching_model, .init = setup, .fini = teardown)
{
    /* branching: the likelihood's spread depends on a latent; with nothing
     * observed every trace is a prior draw of weight 1. */
    char *cmd = sim_cmd(NULL, "examples/branching"), *file = tmp("b.ppxt"), *out, *err;
    int rc = ppxd(&out, &err, "simulate", "--sim-cmd", cmd, "-j", "2", "-n", "2000", "-o", file, "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    char why[256];
    trace_reader *r = trace_reader_open(file, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    trace *t = trace_new();
    uint64_t n = 0, drawn = 0;
    double sum_r = 0;
    while (trace_reader_next(r, t) == 1) {
        cr_assert_eq(t->log_weight, 0.0, "trace %llu has log weight %g", (unsigned long long)t->id, t->log_weight);
        cr_assert_eq(t->log_likelihood, 0.0);
        for (size_t i = 0; i < t->n_entries; i++)
            if (t->entries[i].kind == TRACE_OBSERVE) {
                cr_assert_eq(t->entries[i].observed, TRACE_DRAWN, "a drawn observation is marked so");
                cr_assert(isfinite(t->entries[i].log_prob), "its log-probability is still recorded");
                drawn++;
            }
        sum_r += t->entries[0].value.data[0];
        n++;
    }
    cr_assert_eq(n, 2000);
    cr_assert_eq(drawn, n);
    trace_reader_close(&r);
    trace_destroy(&t);
    /* And infer agrees: with no --observe, ESS is n. */
    free(out);
    free(err);
    rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-j", "2", "-n", "1000", "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    double ess, logz;
    ess_and_logz(out, &ess, &logz);
    cr_assert_eq(ess, 1000.0);
    (void)sum_r;
    free(out);
    free(err);
    free(file);
    free(cmd);
}

/* --- bug 2 and 3: LMH moves control=false draws and writes its chains ----------------- */

/* Mean of column j of an n x cols chain file and its Monte Carlo standard
 * error by batch means (each chain's samples are correlated). */
static void chain_mean(const double *x, size_t n, size_t cols, size_t j, double *mean, double *se)
{
    double *c = malloc(n * sizeof *c), s = 0, v = 0;
    for (size_t i = 0; i < n; i++) {
        c[i] = x[i * cols + j];
        s += c[i];
    }
    *mean = s / n;
    for (size_t i = 0; i < n; i++) v += (c[i] - *mean) * (c[i] - *mean);
    double ess = stats_ess_batch_means(c, n);
    *se = sqrt(v / (n - 1) / ess);
    free(c);
}

Test(infer, lmh_moves_uncontrolled_draws_and_writes_its_chains, .init = setup, .fini = teardown)
{
    char *cmd = sim_cmd(NULL, "testsims/sim_upstream"), *npy = tmp("chain.npy"), *file = tmp("chain.ppxt"), *out,
         *err;
    int rc = ppxd(&out, &err, "infer", "--method", "lmh", "--sim-cmd", cmd, "-j", "2", "-n", "40000", "--observe",
                  "y=3", "--latent", "a", "--latent", "b", "--samples-out", npy, "-o", file, "--seed", "3", "--quiet",
                  NULL);
    cr_assert_eq(rc, 0, "%s", err);
    size_t rows, cols;
    double *x = read_npy(npy, &rows, &cols);
    cr_assert_eq(rows, 40000);
    cr_assert_eq(cols, 2);
    double y = 3, ma, sa, mb, sb;
    chain_mean(x, rows, cols, 0, &ma, &sa);
    chain_mean(x, rows, cols, 1, &mb, &sb);
    double ea = 2 * y / 5.25, eb = 3 * y / 5.25;
    cr_assert(sa > 1e-3, "a (control=false) never moved: standard error %g", sa);
    cr_assert(fabs(ma - ea) < 4 * sa, "E[a|y] %g, exact %g (se %g)", ma, ea, sa);
    cr_assert(fabs(mb - eb) < 4 * sb, "E[b|y] %g, exact %g (se %g)", mb, eb, sb);
    /* The chain's spread of a is the posterior's, not a point. */
    double va = 0;
    for (size_t i = 0; i < rows; i++) va += (x[i * 2] - ma) * (x[i * 2] - ma);
    cr_assert(sqrt(va / rows) > 0.5 * sqrt(1 - 4 / 5.25), "sd of a %g", sqrt(va / rows));

    /* -o: the chains' traces, chain by chain, in the order of --samples-out. */
    char why[256];
    trace_reader *r = trace_reader_open(file, why, sizeof why);
    cr_assert_not_null(r, "-o wrote no file: %s", why);
    trace *t = trace_new();
    size_t k = 0;
    while (trace_reader_next(r, t) == 1) {
        cr_assert(k < rows);
        cr_assert_eq(t->id, k);
        cr_assert_eq(t->log_weight, 0.0, "chain states are equally weighted");
        cr_assert_eq(t->entries[0].value.data[0], x[k * 2], "trace %zu's a is row %zu of the samples", k, k);
        cr_assert_eq(t->entries[1].value.data[0], x[k * 2 + 1]);
        k++;
    }
    cr_assert_eq(k, rows, "%zu chain traces for %zu samples", k, rows);
    trace_reader_close(&r);
    trace_destroy(&t);
    char cwd_tmp[300];
    snprintf(cwd_tmp, sizeof cwd_tmp, "%s.chain0.tmp", file);
    cr_assert_neq(access(cwd_tmp, F_OK), 0, "the chains' temporary files are removed");
    free(x);
    free(out);
    free(err);
    free(npy);
    free(file);
    free(cmd);
}

/* --- bug 4 and reporting: repeated names, addresses, @result, info ---------------------- */

Test(infer, repeated_names_mean_the_last_value_everywhere, .init = setup, .fini = teardown)
{
    char *cmd = sim_cmd(NULL, "testsims/sim_upstream"), *file = tmp("u.ppxt"), *csv = tmp("u.csv"), *out, *err;
    int rc = ppxd(&out, &err, "simulate", "--sim-cmd", cmd, "-n", "300", "-o", file, "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    free(out);
    free(err);
    rc = ppxd(&out, &err, "export", file, "--names", "x,x_second__Normal__1,x_first__Normal__1", "-o", csv, NULL);
    cr_assert_eq(rc, 0, "%s", err);
    FILE *f = fopen(csv, "r");
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "x,x_second__Normal__1,x_first__Normal__1\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        double x, second, first;
        cr_assert_eq(sscanf(line, "%lf,%lf,%lf", &x, &second, &first), 3);
        cr_assert_eq(x, second, "x is its last draw");
        cr_assert_neq(x, first);
        rows++;
    }
    fclose(f);
    cr_assert_eq(rows, 300);
    free(out);
    free(err);
    /* The summary agrees: x's row is x_second's. */
    rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-n", "300", "--latent", "x", "--latent", "x_second*",
              "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    double m1, s1, m2, s2;
    cr_assert(summary_row(out, "x", &m1, &s1), "%s", out);
    cr_assert(summary_row(out, "x_second__Normal__1", &m2, &s2), "%s", out);
    cr_assert_eq(m1, m2);
    cr_assert_eq(s1, s2);
    free(out);
    free(err);
    free(file);
    free(csv);
    free(cmd);
}

Test(infer, unnamed_draws_are_reached_by_address_pattern_and_result, .init = setup, .fini = teardown)
{
    char *cmd = sim_cmd("PPX_SIM_NAMES=0 ", "testsims/sim_upstream"), *file = tmp("n.ppxt"), *npy = tmp("n.npy"),
         *out, *err;
    /* Nothing is named: --observe reaches the Observe by its address, and
     * the default summary shows the return value and the controlled draws
     * (b, not a: a is control=false). */
    int rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-j", "2", "-n", "20000", "--observe", "y_site=3", "-o",
                  file, "--seed", "5", "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    double m, sd, ess, logz;
    ess_and_logz(out, &ess, &logz);
    cr_assert(ess < 20000 * 0.9, "y_site=3 conditions the Observe: ESS %g", ess);
    cr_assert(summary_row(out, "@result", &m, &sd), "summary: %s", out);
    cr_assert(fabs(m - 5 * 3 / 5.25) < 4 * sqrt(5 - 25 / 5.25) / sqrt(ess), "E[a+b|y] %g", m);
    cr_assert(summary_row(out, "b_site__Normal__1", &m, &sd), "summary: %s", out);
    cr_assert(!strstr(out, "a_site"), "control=false draws are not in the default summary: %s", out);
    free(out);
    free(err);

    /* --latent: full address, glob, @result; export likewise. */
    rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-n", "200", "--latent", "a_site__Normal__1", "--latent",
              "b_*", "--latent", "@result", "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(summary_row(out, "a_site__Normal__1", &m, &sd), "%s", out);
    cr_assert(summary_row(out, "b_site__Normal__1", &m, &sd), "%s", out);
    cr_assert(summary_row(out, "@result", &m, &sd), "%s", out);
    free(out);
    free(err);
    rc = ppxd(&out, &err, "infer", "--sim-cmd", cmd, "-n", "20", "--latent", "nowhere", "--quiet", NULL);
    cr_assert_neq(rc, 0, "an unknown column is an error");
    cr_assert(strstr(err, "'nowhere'") && strstr(err, "ppxd info"), "the error says what and where to look: %s", err);
    free(out);
    free(err);
    rc = ppxd(&out, &err, "export", file, "--names", "a_site,b_site__Normal__1,@result", "-o", npy, NULL);
    cr_assert_eq(rc, 0, "%s", err);
    size_t rows, cols;
    double *x = read_npy(npy, &rows, &cols);
    cr_assert_eq(rows, 20000);
    cr_assert_eq(cols, 3);
    for (size_t i = 0; i < rows; i++)
        cr_assert_float_eq(x[i * 3] + x[i * 3 + 1], x[i * 3 + 2], 1e-12, "result is a + b (row %zu)", i);
    free(x);
    free(out);
    free(err);

    /* info lists the addresses with their kinds. */
    rc = ppxd(&out, &err, "info", file, NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "a_site__Normal__1") && strstr(out, "control=false"), "%s", out);
    cr_assert(strstr(out, "b_site__Normal__1"), "%s", out);
    cr_assert(strstr(out, "y_site__Normal__1") && strstr(out, "observe"), "%s", out);
    cr_assert(strstr(out, "20000"), "each address's trace count: %s", out);
    free(out);
    free(err);
    free(file);
    free(npy);
    free(cmd);
}

Test(infer, info_counts_repeated_addresses, .init = setup, .fini = teardown)
{
    /* gaussian_rejection draws a variable number of times at one address. */
    char *cmd = sim_cmd(NULL, "examples/gaussian_rejection"), *file = tmp("r.ppxt"), *out, *err;
    int rc = ppxd(&out, &err, "simulate", "--sim-cmd", cmd, "-n", "300", "-o", file, "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    free(out);
    free(err);
    rc = ppxd(&out, &err, "info", file, NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "__n ") && strstr(out, "1.."), "an address drawn several times shows its instances: %s", out);
    free(out);
    free(err);
    free(file);
    free(cmd);
}

/* --- issue 11, defect 6: one hung simulator does not stall the others ------------------ */

Test(infer, hung_simulator_does_not_stall_the_others, .init = setup, .fini = teardown)
{
    char *lock = tmp("hang.lock"), env[300];
    snprintf(env, sizeof env, "PPX_SIM_HANG_LOCK=%s PPX_SIM_HANG_EVERY=10 ", lock);
    char *hang = sim_cmd(env, "testsims/sim_slow"), *ok = sim_cmd(NULL, "testsims/sim_slow");
    char *f1 = tmp("h.csv"), *f2 = tmp("c.csv"), *t1 = tmp("h.ppxt"), *t2 = tmp("c.ppxt"), *out, *err;
    double t0 = tk_now();
    int rc = ppxd(&out, &err, "simulate", "--sim-cmd", hang, "-j", "4", "-n", "1000", "-o", t1, "--timeout-ms",
                  "5000", "--seed", "9", "--quiet", NULL);
    double took = tk_now() - t0;
    cr_assert_eq(rc, 0, "%s", err);
    /* A hang holds the lowest index for 5 s; the others would fill the
     * commit window and wait it out.  Backup copies finish it instead. */
    cr_assert(strstr(err, "backup copies"), "the hung trace was run again elsewhere: %s", err);
    cr_assert(took < 5.0, "the run took %.1f s: the healthy simulators waited for the hung one", took);
    free(out);
    free(err);
    rc = ppxd(&out, &err, "simulate", "--sim-cmd", ok, "-j", "2", "-n", "1000", "-o", t2, "--seed", "9", "--quiet",
              NULL);
    cr_assert_eq(rc, 0, "%s", err);
    free(out);
    free(err);
    /* The same traces as a clean run with the same seed. */
    cr_assert_eq(ppxd(&out, &err, "export", t1, "--names", "mu,obs0,obs1", "-o", f1, NULL), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(ppxd(&out, &err, "export", t2, "--names", "mu,obs0,obs1", "-o", f2, NULL), 0, "%s", err);
    free(out);
    free(err);
    char *a = text_of(f1), *b = text_of(f2);
    cr_assert(strlen(a) > 1000);
    cr_assert_str_eq(a, b, "backup copies change no trace");
    free(a);
    free(b);
    free(lock);
    free(hang);
    free(ok);
    free(f1);
    free(f2);
    free(t1);
    free(t2);
}

/* --- RMH (issue 12): random-walk Metropolis-Hastings through the CLI --------------------- */

Test(infer, rmh_matches_the_exact_gaussian_posterior, .init = setup, .fini = teardown)
{
    /* mu ~ N(1, sqrt 5), obs ~ N(mu, sqrt 2), obs = 8, 9: mu | obs ~ N(7.25, sqrt(5/6)). */
    char *cmd = sim_cmd(NULL, "examples/gaussian"), *npy = tmp("rmh.npy"), *out, *err;
    int rc = ppxd(&out, &err, "infer", "--method", "rmh", "--sim-cmd", cmd, "-j", "2", "-n", "20000", "--observe",
                  "obs0=8", "--observe", "obs1=9", "--samples-out", npy, "--seed", "11", "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "random-walk Metropolis-Hastings"), "%s", out);
    size_t rows, cols;
    double *x = read_npy(npy, &rows, &cols);
    cr_assert_eq(rows, 20000);
    double m, se, v = 0;
    chain_mean(x, rows, cols, 0, &m, &se);
    for (size_t i = 0; i < rows; i++) v += (x[i] - m) * (x[i] - m);
    double sd = sqrt(v / (rows - 1));
    cr_assert(fabs(m - 7.25) < 4 * se, "RMH mean %g, exact 7.25 (se %g)", m, se);
    /* sd: with ESS e the sd's relative standard error is about 1/sqrt(2e). */
    double ess = stats_ess_batch_means(x, rows);
    cr_assert(fabs(sd - sqrt(5.0 / 6.0)) < 4 * sqrt(5.0 / 6.0) / sqrt(2 * ess), "RMH sd %g (ESS %g)", sd, ess);
    free(x);
    free(out);
    free(err);
    free(npy);
    free(cmd);
}

Test(infer, rmh_moves_uncontrolled_draws, .init = setup, .fini = teardown)
{
    char *cmd = sim_cmd(NULL, "testsims/sim_upstream"), *npy = tmp("rmhu.npy"), *out, *err;
    int rc = ppxd(&out, &err, "infer", "--method", "rmh", "--sim-cmd", cmd, "-j", "2", "-n", "30000", "--observe",
                  "y=3", "--latent", "a", "--latent", "b", "--samples-out", npy, "--seed", "2", "--quiet", NULL);
    cr_assert_eq(rc, 0, "%s", err);
    size_t rows, cols;
    double *x = read_npy(npy, &rows, &cols);
    double ma, sa, mb, sb;
    chain_mean(x, rows, cols, 0, &ma, &sa);
    chain_mean(x, rows, cols, 1, &mb, &sb);
    cr_assert(sa > 1e-3, "a never moved");
    cr_assert(fabs(ma - 6 / 5.25) < 4 * sa, "E[a|y] %g (se %g)", ma, sa);
    cr_assert(fabs(mb - 9 / 5.25) < 4 * sb, "E[b|y] %g (se %g)", mb, sb);
    free(x);
    free(out);
    free(err);
    free(npy);
    free(cmd);
}
