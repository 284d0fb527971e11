/* Tests for `ppxd diagnose` (server/diagnose.c) end to end: usage errors,
 * offline test pairs with the report's files, a biased test set failing
 * with --strict, and the posterior predictive check through launched
 * simulators (which must set theta per simulation).
 *
 * Models are small and trained in the test (a few seconds each).
 * Tolerances are stated where used. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "export.h"
#include "galton.h"
#include "gold/gold_est.h"
#include "nn/nn.h"
#include "rng.h"
#include "testkit.h"

#define Z 4.0

TestSuite(diagnose, .timeout = 240);

/* Run a shell command, output into log; returns the exit code. */
static int sh(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(const char *log, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd - 80, fmt, ap);
    va_end(ap);
    cr_assert(n > 0 && n < (int)sizeof cmd - 80);
    snprintf(cmd + n, 80, " >'%s' 2>&1", log);
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "did not exit normally: %s", cmd);
    return WEXITSTATUS(st);
}

static char *text_of(const char *path)
{
    size_t n;
    char *t = (char *)tk_slurp(path, &n);
    cr_assert_not_null(t, "cannot read %s", path);
    return t;
}

static void expect_in(const char *path, const char *want)
{
    char *t = text_of(path);
    cr_expect(strstr(t, want) != NULL, "%s lacks '%s':\n%s", path, want, t);
    free(t);
}

static void join(char *buf, size_t len, const char *dir, const char *file)
{
    snprintf(buf, len, "%s/%s", dir, file);
}

Test(diagnose, usage_errors_exit_2_before_anything_is_written)
{
    char *ppxd = tk_build_path("ppxd");
    char dir[256], log[300], out[300];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "diag-usage"), 0);
    join(log, sizeof log, dir, "log");
    join(out, sizeof out, dir, "out");
    cr_expect_eq(sh(log, "%s diagnose", ppxd), 2);
    expect_in(log, "--model");
    cr_expect_eq(sh(log, "%s diagnose --model m.ppxm", ppxd), 2);
    expect_in(log, "-o DIR");
    cr_expect_eq(sh(log, "%s diagnose --model m.ppxm -o %s", ppxd, out), 2);
    expect_in(log, "nothing to check");
    cr_expect_eq(sh(log, "%s diagnose --model m.ppxm -o %s --data a.npy b.npy --ppc-n 50", ppxd, out), 2);
    expect_in(log, "--ppc-n needs --obs and simulators");
    cr_expect_eq(sh(log, "%s diagnose --model m.ppxm -o %s --data a.npy b.npy --alpha 2", ppxd, out), 2);
    cr_expect_eq(sh(log, "%s diagnose --model m.ppxm -o %s --data a.npy", ppxd, out), 2);
    expect_in(log, "two files");
    /* A model that does not exist: a run-time failure, nothing written. */
    cr_expect_eq(sh(log, "%s diagnose --model %s/none.ppxm -o %s --data a.npy b.npy", ppxd, dir, out), 1);
    expect_in(log, "none.ppxm");
    cr_expect_eq(sh(log, "%s diagnose --help", ppxd), 0);
    expect_in(log, "TARP");
    FILE *f = fopen(out, "r");
    cr_expect_null(f, "the output directory was created by a failed run");
    if (f) fclose(f);
    tk_tmpdir_remove(dir);
    free(ppxd);
}

/* theta ~ N(0, 1), x = theta + shift + N(0, 1): the exact posterior for
 * shift 0 is N(x / 2, 1/2). */
static void write_pairs(const char *tf, const char *xf, size_t n, double shift, uint64_t seed)
{
    double *t = malloc(n * sizeof *t), *x = malloc(n * sizeof *x);
    rng r;
    rng_seed(&r, seed, 0);
    for (size_t i = 0; i < n; i++) {
        t[i] = rng_normal(&r);
        x[i] = t[i] + shift + rng_normal(&r);
    }
    char err[300];
    cr_assert_eq(npy_write(tf, t, n, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npy_write(xf, x, n, 1, err, sizeof err), 0, "%s", err);
    free(t);
    free(x);
}

Test(diagnose, offline_report_arrays_and_strict_failure)
{
    char *ppxd = tk_build_path("ppxd");
    char dir[256], out[256], log[300], tf[300], xf[300], mf[300], p[400];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "diag-offline"), 0);
    cr_assert_eq(tk_tmpdir(out, sizeof out, "diag-offline-out"), 0);
    join(log, sizeof log, dir, "log");
    join(tf, sizeof tf, dir, "t.npy");
    join(xf, sizeof xf, dir, "x.npy");
    join(mf, sizeof mf, dir, "m.ppxm");
    write_pairs(tf, xf, 4000, 0.0, 1);
    int rc = sh(log, "%s train npe --data %s %s --prior normal:0:1 --flow maf --max-epochs 40 -o %s --quiet", ppxd, tf,
                xf, mf);
    if (rc) cr_assert_fail("training failed (%d):\n%s", rc, text_of(log));
    /* The training log: a header and one line per epoch. */
    snprintf(p, sizeof p, "%s.log.csv", mf);
    char *t = text_of(p);
    cr_expect(strncmp(t, "epoch,train_loss,val_loss,seconds\n1,", 36) == 0, "%s", t);
    int lines = 0;
    for (char *c = t; *c; c++) lines += *c == '\n';
    cr_expect_geq(lines, 21, "%d lines", lines); /* patience 20: at least 21 epochs */
    free(t);

    /* Fresh test pairs from the same model: the report and its arrays. */
    write_pairs(tf, xf, 300, 0.0, 2);
    rc = sh(log, "%s diagnose --model %s --data %s %s -L 200 -o %s --quiet", ppxd, mf, tf, xf, out);
    if (rc) cr_assert_fail("diagnose failed (%d):\n%s", rc, text_of(log));
    expect_in(log, "300 rounds x 200 posterior samples (files)");
    expect_in(log, "SBC theta_0");
    expect_in(log, "coverage (HPD)");
    join(p, sizeof p, out, "report.json");
    const char *keys[] = {"\"format\": \"ppxd-diagnose/1\"", "\"sbc\": {\"verdict\": ", "\"coverage\": {\"verdict\": ",
                          "\"tarp\": {\"verdict\": ", "\"levels\": [0.05, 0.1,", "\"ppc\": null", "\"c2st\": null",
                          "\"counts\": [", "\"rounds\": 300"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) expect_in(p, keys[k]);
    double *v;
    size_t rows, cols;
    char err[300];
    join(p, sizeof p, out, "ranks.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_expect(rows == 300 && cols == 1);
    for (size_t i = 0; i < rows; i++) cr_assert(v[i] >= 0 && v[i] <= 200 && v[i] == floor(v[i]), "rank %g", v[i]);
    free(v);
    join(p, sizeof p, out, "hpd.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_expect_eq(rows, 300);
    for (size_t i = 0; i < rows; i++) cr_assert(v[i] >= 0 && v[i] <= 1);
    free(v);
    join(p, sizeof p, out, "coverage.csv");
    expect_in(p, "level,hpd_coverage,tarp_coverage,std_error\n0.0500,");

    /* An observation and reference samples from sbibm-style CSV files
     * (header lines): the exact posterior N(x_o / 2, 1/2) for x_o = 1. */
    char obs[300], ref[300], truth[300];
    join(obs, sizeof obs, dir, "observation.csv");
    join(ref, sizeof ref, dir, "reference.csv");
    join(truth, sizeof truth, dir, "true_parameters.csv");
    FILE *f = fopen(obs, "w");
    fputs("data_1\n1.0\n", f);
    fclose(f);
    f = fopen(truth, "w");
    fputs("parameter_1\n0.4\n", f);
    fclose(f);
    f = fopen(ref, "w");
    fputs("parameter_1\n", f);
    rng r;
    rng_seed(&r, 9, 0);
    for (int i = 0; i < 400; i++) fprintf(f, "%.9g\n", 0.5 + sqrt(0.5) * rng_normal(&r));
    fclose(f);
    rc = sh(log, "%s diagnose --model %s --obs-file %s --reference %s --truth %s --c2st-max 0.6 -o %s --quiet", ppxd, mf,
            obs, ref, truth, out);
    if (rc) cr_assert_fail("diagnose with a reference failed (%d):\n%s", rc, text_of(log));
    expect_in(log, "C2ST");
    expect_in(log, "400 vs 400 samples");
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"c2st\": {\"verdict\": ");
    expect_in(p, "\"threshold\": 0.6, \"n_reference\": 400, \"n_model\": 400}");
    join(p, sizeof p, out, "reference.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_expect(rows == 400 && cols == 1);
    rng_seed(&r, 9, 0);
    for (int i = 0; i < 400; i++) {
        double want = 0.5 + sqrt(0.5) * rng_normal(&r);
        cr_expect_float_eq(v[i], want, 1e-8 * (1 + fabs(want)), "row %d of the CSV: %g, wrote %g", i, v[i], want);
    }
    free(v);
    join(p, sizeof p, out, "truth.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_expect(rows == 1 && cols == 1 && v[0] == 0.4);
    free(v);
    /* A CSV with a ragged row is refused before anything runs. */
    f = fopen(ref, "a");
    fputs("1,2\n", f);
    fclose(f);
    cr_expect_eq(sh(log, "%s diagnose --model %s --obs-file %s --reference %s -o %s", ppxd, mf, obs, ref, out), 2);
    expect_in(log, "has 2 values");

    /* Test pairs from another simulator (x shifted by 2): the model's
     * posterior mean is off by 1 = 1.4 posterior sd, SBC and coverage fail,
     * --strict exits 3. */
    write_pairs(tf, xf, 300, 2.0, 3);
    rc = sh(log, "%s diagnose --model %s --data %s %s -L 200 -o %s --quiet --strict", ppxd, mf, tf, xf, out);
    cr_expect_eq(rc, 3, "exit %d:\n%s", rc, text_of(log));
    expect_in(log, "overall: FAIL");
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"fail\"");
    expect_in(p, "\"coverage\": {\"verdict\": \"overconfident\"");
    expect_in(log, "hint: an overconfident NPE often calibrates with a wider flow");
    tk_tmpdir_remove(out);
    tk_tmpdir_remove(dir);
    free(ppxd);
}

/* clients/examples/gaussian: mu ~ N(1, sqrt 5), obs0, obs1 ~ N(mu, sqrt 2);
 * for obs 8, 9 the posterior is N(7.25, 0.913), so the predictive of obs0
 * has mean 7.25 and sd sqrt(0.833 + 2) = 1.68.  Simulating at the prior
 * instead (theta not set) would give mean 1. */
Test(diagnose, live_test_pairs_and_predictive_check_set_theta)
{
    char *ppxd = tk_build_path("ppxd"), *sim = tk_build_path("examples/gaussian");
    char dir[256], out[256], log[300], mf[300], p[400];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "diag-live"), 0);
    cr_assert_eq(tk_tmpdir(out, sizeof out, "diag-live-out"), 0);
    join(log, sizeof log, dir, "log");
    join(mf, sizeof mf, dir, "g.ppxm");
    char prefix[300];
    join(prefix, sizeof prefix, dir, "train");
    int rc = sh(log, "%s train npe --sim-cmd '%s {endpoint}' -j 2 -n 4000 --theta mu --x obs0,obs1 --flow maf "
                "--max-epochs 60 --save-data %s -o %s --quiet", ppxd, sim, prefix, mf);
    if (rc) cr_assert_fail("training failed (%d):\n%s", rc, text_of(log));
    rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 -n 200 -L 100 --obs obs0=8 --obs obs1=9 "
            "--ppc-n 400 -o %s --quiet", ppxd, mf, sim, out);
    if (rc) cr_assert_fail("diagnose failed (%d):\n%s", rc, text_of(log));
    expect_in(log, "200 rounds x 100 posterior samples (live, fresh seeds)");
    expect_in(log, "PPC obs0");
    double *v;
    size_t rows, cols;
    char err[300];
    join(p, sizeof p, out, "ppc_x.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_assert(rows == 400 && cols == 2, "%zu x %zu", rows, cols);
    double mean = 0;
    for (size_t i = 0; i < rows; i++) mean += v[2 * i] / (double)rows;
    /* Z standard errors of the mean plus 0.5 for the model's error (4000
     * simulations, x_o in the prior's tail). */
    cr_expect_leq(fabs(mean - 7.25), Z * 1.68 / sqrt(400.0) + 0.5, "predictive mean of obs0 %g", mean);
    free(v);
    join(p, sizeof p, out, "test_theta.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_expect(rows == 200 && cols == 1);
    /* Fresh prior draws: mean 1, sd sqrt 5. */
    mean = 0;
    for (size_t i = 0; i < rows; i++) mean += v[i] / (double)rows;
    cr_expect_leq(fabs(mean - 1.0), Z * sqrt(5.0 / 200.0), "test theta mean %g", mean);
    /* ... and not the training simulations, although both ran with seed 1. */
    double *tr;
    size_t tr_rows, tr_cols;
    join(p, sizeof p, dir, "train_theta.npy");
    cr_assert_eq(npy_read(p, &tr, &tr_rows, &tr_cols, err, sizeof err), 0, "%s", err);
    size_t same = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t k = 0; k < tr_rows; k++) same += v[i] == tr[k];
    cr_expect_eq(same, 0, "%zu test thetas repeat training thetas", same);
    free(tr);
    free(v);
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"ppc\": {\"verdict\": \"pass\", \"simulations\": 400");
    join(p, sizeof p, out, "ppc.csv");
    expect_in(p, "name,x_o,mean,sd,z,p,q05,q50,q95\nobs0,8,");
    tk_tmpdir_remove(out);
    tk_tmpdir_remove(dir);
    free(ppxd);
    free(sim);
}

/* The first number after key in the file at path. */
static double number_after(const char *path, const char *key)
{
    char *t = text_of(path);
    const char *s = strstr(t, key);
    cr_assert(s, "%s lacks '%s':\n%s", path, key, t);
    double v = strtod(s + strlen(key), NULL);
    free(t);
    return v;
}

/* A one-dimensional theta's report in dir is calibrated within sampling
 * error: the SBC mean rank within Z standard errors of L / 2 (rank uniform
 * on 0..L: sd sqrt(((L+1)^2 - 1) / 12)), HPD coverage and TARP at 50% and
 * 90% within Z sqrt(c (1 - c) / n) of nominal. */
static void expect_calibrated(const char *dir, int n, int L)
{
    char p[400];
    join(p, sizeof p, dir, "report.json");
    double mean_rank = number_after(p, "\"mean_rank\": ");
    double rank_se = sqrt(((L + 1.0) * (L + 1.0) - 1.0) / 12.0 / n);
    cr_expect_leq(fabs(mean_rank - L / 2.0), Z * rank_se, "mean rank %g", mean_rank);
    join(p, sizeof p, dir, "coverage.csv");
    FILE *f = fopen(p, "r");
    cr_assert(f);
    char line[256];
    int checked = 0;
    while (fgets(line, sizeof line, f)) {
        double lv, hpd, tarp, se;
        if (sscanf(line, "%lf,%lf,%lf,%lf", &lv, &hpd, &tarp, &se) != 4) continue;
        if (fabs(lv - 0.5) > 1e-9 && fabs(lv - 0.9) > 1e-9) continue;
        double s = sqrt(lv * (1 - lv) / n);
        fprintf(stderr, "%s: mean rank %.2f (L/2 %g), HPD coverage %.3f TARP %.3f at %g (sd %.3f)\n", dir, mean_rank,
                L / 2.0, hpd, tarp, lv, s);
        cr_expect_leq(fabs(hpd - lv), Z * s, "HPD coverage %g at %g", hpd, lv);
        cr_expect_leq(fabs(tarp - lv), Z * s, "TARP coverage %g at %g", tarp, lv);
        checked++;
    }
    fclose(f);
    cr_expect_eq(checked, 2);
}

/* An IC model on clients/examples/gaussian (mu ~ N(1, sqrt 5), obs0, obs1 ~
 * N(mu, sqrt 2)), trained briefly: its posterior is importance sampling
 * through the simulator, so with a reasonable ESS it is calibrated whatever
 * the network learnt.  Checks, with tolerances from the sampling error of n
 * rounds of L samples (rank uniform on 0..L: sd sqrt(((L+1)^2 - 1) / 12);
 * a coverage c: sd sqrt(c (1 - c) / n)):
 *   - SBC passes, the mean rank within Z standard errors of L / 2, HPD
 *     coverage (from the KDE) and TARP at 50% and 90% within Z standard
 *     errors of nominal; ess.npy has one ESS per round in [1, K];
 *   - the posterior at x_o = (8, 9) has the exact N(7.25, 0.913)'s mean and
 *     sd within Z standard errors (sd / sqrt(ESS), sd / sqrt(2 ESS));
 *   - test pairs that the simulator did not make (x shifted by +3 from
 *     --data) fail SBC: the posterior then sits ~1.4 posterior sds below
 *     theta*. */
Test(diagnose, ic_model_importance_sampled_posterior_is_calibrated)
{
    char *ppxd = tk_build_path("ppxd"), *sim = tk_build_path("examples/gaussian");
    char dir[256], out[256], log[300], mf[300], p[400];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "diag-ic"), 0);
    cr_assert_eq(tk_tmpdir(out, sizeof out, "diag-ic-out"), 0);
    join(log, sizeof log, dir, "log");
    join(mf, sizeof mf, dir, "g.ppxm");
    int rc = sh(log, "%s train ic --sim-cmd '%s {endpoint}' -j 2 --seed 1 --max-traces 5000 -o %s --quiet", ppxd, sim,
                mf);
    if (rc) cr_assert_fail("training failed (%d):\n%s", rc, text_of(log));
    const int n = 200, L = 100, K = 100;
    rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 -n %d -L %d --traces %d --obs obs0=8 "
            "--obs obs1=9 --ppc-n 400 --seed 4 -o %s", ppxd, mf, sim, n, L, K, out);
    if (rc) cr_assert_fail("diagnose failed (%d):\n%s", rc, text_of(log));
    expect_in(log, "g.ppxm (IC, theta 1, x 2)");
    expect_in(log, "theta (the named latent Samples of the first trace): mu");
    expect_in(log, "200 rounds x 100 posterior samples (live, fresh seeds)");
    expect_in(log, "IC posterior: 100 importance-sampling traces per round, ESS min");
    expect_in(log, "diagnose: "); /* per-round progress */
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"pass\"");
    expect_in(p, "\"traces_per_round\": 100, \"ess\": {\"min\": ");
    expect_in(p, "\"density\": \"weighted Gaussian KDE");
    expect_calibrated(out, n, L);
    double *v;
    size_t rows, cols;
    char err[300];
    join(p, sizeof p, out, "ess.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_expect(rows == (size_t)n && cols == 1, "%zu x %zu", rows, cols);
    for (size_t i = 0; i < rows; i++) cr_expect(v[i] >= 1 - 1e-9 && v[i] <= K + 1e-9, "ESS %g", v[i]);
    free(v);
    /* The posterior at x_o against the exact one. */
    char *t = text_of(log);
    const char *e = strstr(t, "IC posterior at x_o: ESS ");
    cr_assert(e, "%s", t);
    double ess = strtod(e + strlen("IC posterior at x_o: ESS "), NULL);
    free(t);
    cr_assert_gt(ess, 10);
    join(p, sizeof p, out, "ppc_theta.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_assert(rows == 400 && cols == 1);
    double m1 = 0, m2 = 0;
    for (size_t i = 0; i < rows; i++) {
        m1 += v[i] / (double)rows;
        m2 += v[i] * v[i] / (double)rows;
    }
    free(v);
    const double s0 = sqrt(1.0 / (1.0 / 5.0 + 2.0 / 2.0));
    double sd = sqrt(m2 - m1 * m1);
    cr_expect_leq(fabs(m1 - 7.25), Z * s0 / sqrt(ess), "posterior mean %g (ESS %g)", m1, ess);
    cr_expect_leq(fabs(sd - s0), Z * s0 / sqrt(2 * ess), "posterior sd %g (ESS %g)", sd, ess);

    /* Test pairs from another simulator: x = the gaussian's obs + 3. */
    char tf[300], xf[300];
    join(tf, sizeof tf, dir, "t.npy");
    join(xf, sizeof xf, dir, "x.npy");
    double th[100], xx[200];
    rng r;
    rng_seed(&r, 11, 0);
    for (int i = 0; i < 100; i++) {
        th[i] = 1 + sqrt(5.0) * rng_normal(&r);
        for (int k = 0; k < 2; k++) xx[2 * i + k] = th[i] + 3 + sqrt(2.0) * rng_normal(&r);
    }
    cr_assert_eq(npy_write(tf, th, 100, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npy_write(xf, xx, 100, 2, err, sizeof err), 0, "%s", err);
    rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 --data %s %s -L %d --traces %d -o %s --quiet "
            "--strict", ppxd, mf, sim, tf, xf, L, K, out);
    cr_expect_eq(rc, 3, "exit %d:\n%s", rc, text_of(log));
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"fail\"");
    /* An IC model needs simulators; --method is not for it. */
    cr_expect_eq(sh(log, "%s diagnose --model %s --data %s %s -o %s", ppxd, mf, tf, xf, out), 2);
    expect_in(log, "importance sampling through the simulators");
    cr_expect_eq(sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' --data %s %s --method mh -o %s", ppxd, mf,
                    sim, tf, xf, out), 2);
    expect_in(log, "--method is for NRE and gold models");
    tk_tmpdir_remove(out);
    tk_tmpdir_remove(dir);
    free(ppxd);
    free(sim);
}

/* A gold ratio model (ALICE) on the Galton board, theta ~ U(-1, 1): its
 * posterior ~ r^(x | theta, -0.6) x prior, the prior read from the
 * simulator's first trace.  Mined with theta0 from the prior (4,000 rows, no
 * score: ALICE needs none), trained briefly.  Checks (tolerances as in the IC test):
 *   - SBC passes and its mean rank is within Z standard errors of L / 2;
 *     HPD coverage and TARP at 50% and 90% within Z standard errors;
 *   - the posterior mean at x_o = 10 against the exact one (the oracle on a
 *     grid of 4001 points): within Z sd / sqrt(M) (SIR draws ~ independent)
 *     plus 0.1 for the estimator's own error (posterior sd ~0.4);
 *   - a wrong prior (--prior uniform:-0.5:0.5) is reported and fails SBC;
 *   - a SALLY model is refused (exit 2) with the reason. */
Test(diagnose, gold_ratio_model_is_calibrated_and_sally_refused)
{
    nn_set_threads(1);
    char *ppxd = tk_build_path("ppxd"), *sim = tk_build_path("examples/galton");
    char dir[256], out[256], log[300], mf[300], sf[300], p[400], err[300];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "diag-gold"), 0);
    cr_assert_eq(tk_tmpdir(out, sizeof out, "diag-gold-out"), 0);
    join(log, sizeof log, dir, "log");
    join(mf, sizeof mf, dir, "alice.ppxr");
    join(sf, sizeof sf, dir, "sally.ppxr");
    gold_data g;
    double t0 = tk_now();
    cr_assert_eq(tk_galton_mine(MINE_THETA_PRIOR, 0, 1, 0, 4000, &g), 0);
    double t1 = tk_now();
    gold_train_config cfg;
    gold_train_defaults(&cfg);
    cfg.method = GOLD_ALICE;
    cfg.min_steps = 3000;
    gold_model *gm = gold_train(&cfg, &g);
    cr_assert(gm);
    cr_assert_eq(gold_model_save(gm, mf, err, sizeof err), 0, "%s", err);
    gold_model_destroy(&gm);
    gold_data_free(&g);
    double t2 = tk_now();

    const int n = 300, L = 100;
    int rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 -n %d -L %d --obs x=10 --ppc-n 1000 "
                "--seed 2 -o %s", ppxd, mf, sim, n, L, out);
    if (rc) cr_assert_fail("diagnose failed (%d):\n%s", rc, text_of(log));
    fprintf(stderr, "gold diagnose: mining %.1f s, training %.1f s, diagnose %.1f s\n", t1 - t0, t2 - t1,
            tk_now() - t2);
    expect_in(log, "alice.ppxr (ALICE, theta 1, x 1)");
    expect_in(log, "prior from the simulator's first trace: uniform:-1:1");
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"pass\"");
    expect_in(p, "\"density\": \"log r^(x | theta, theta_ref) + log prior\"");
    expect_calibrated(out, n, L);
    /* exact posterior mean and sd at x = 10 */
    double z = 0, m1 = 0, m2 = 0;
    for (int k = 0; k <= 4000; k++) {
        double th = -1 + k / 2000.0, pp[TK_GALTON_NPOS], dp[TK_GALTON_NPOS];
        tk_galton_exact(th, pp, dp);
        z += pp[10];
        m1 += th * pp[10];
        m2 += th * th * pp[10];
    }
    double em = m1 / z, esd = sqrt(m2 / z - em * em);
    double *v;
    size_t rows, cols;
    join(p, sizeof p, out, "ppc_theta.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_assert(rows == 1000 && cols == 1);
    double mean = 0;
    for (size_t i = 0; i < rows; i++) mean += v[i] / (double)rows;
    free(v);
    cr_expect_leq(fabs(mean - em), Z * esd / sqrt(1000.0) + 0.1, "posterior mean at x = 10: %g, exact %g (sd %g)", mean,
                  em, esd);

    /* The wrong prior: test thetas outside it, SBC fails. */
    rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 -n %d -L %d --prior uniform:-0.5:0.5 --seed 2 "
            "-o %s --strict", ppxd, mf, sim, n, L, out);
    cr_expect_eq(rc, 3, "exit %d:\n%s", rc, text_of(log));
    expect_in(log, "lie outside the model's prior");
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"fail\"");

    /* SALLY: a score, refused. */
    cr_assert_eq(tk_galton_mine(MINE_THETA_FIXED, -0.8, 0, 1, 200, &g), 0);
    gold_train_defaults(&cfg);
    cfg.method = GOLD_SALLY;
    cfg.epochs = 1;
    cfg.min_steps = 0;
    gm = gold_train(&cfg, &g);
    cr_assert(gm);
    cr_assert_eq(gold_model_save(gm, sf, err, sizeof err), 0, "%s", err);
    gold_model_destroy(&gm);
    gold_data_free(&g);
    rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -n 10 -o %s", ppxd, sf, sim, out);
    cr_expect_eq(rc, 2, "exit %d:\n%s", rc, text_of(log));
    expect_in(log, "is a SALLY model");
    expect_in(log, "not a posterior");
    /* A gold model without simulators needs --prior. */
    rc = sh(log, "%s diagnose --model %s --obs x=10 -o %s", ppxd, mf, out);
    cr_expect_eq(rc, 2, "exit %d:\n%s", rc, text_of(log));
    expect_in(log, "stores no prior");
    tk_tmpdir_remove(out);
    tk_tmpdir_remove(dir);
    free(ppxd);
    free(sim);
}

/* Gold density models (NDE, SCANDAL) on the Galton board, theta ~ U(-1, 1):
 * the posterior ~ P^(x | theta) x prior (P^ the probability of the whole
 * number x, the dequantised density integrated over [x, x + 1)), sampled by
 * SIR from the prior read from the simulator's first trace.  Mined with
 * theta0 from the prior with the joint score (NDE 4,000 rows, which it
 * ignores: mining wants a score or a reference; SCANDAL 2,000), trained
 * briefly.  Checks, tolerances from n rounds of L samples as in the IC test
 * (expect_calibrated: mean rank within Z standard errors of L / 2, HPD and
 * TARP coverage at 50% and 90% within Z sqrt(c (1 - c) / n)):
 *   - NDE: the kind and density named, SBC passes, calibrated; the posterior
 *     mean at x_o = 10 within Z sd / sqrt(M) + 0.1 of the exact one (as the
 *     ratio test); a wrong prior (--prior uniform:-0.5:0.5) fails SBC;
 *   - SCANDAL: accepted, SBC passes and calibrated. */
static void galton_exact_posterior(int xo, double *mean, double *sd)
{
    double z = 0, m1 = 0, m2 = 0;
    for (int k = 0; k <= 4000; k++) {
        double th = -1 + k / 2000.0, pp[TK_GALTON_NPOS], dp[TK_GALTON_NPOS];
        tk_galton_exact(th, pp, dp);
        z += pp[xo];
        m1 += th * pp[xo];
        m2 += th * th * pp[xo];
    }
    *mean = m1 / z;
    *sd = sqrt(m2 / z - *mean * *mean);
}

Test(diagnose, gold_density_models_nde_scandal_are_calibrated)
{
    nn_set_threads(1);
    char *ppxd = tk_build_path("ppxd"), *sim = tk_build_path("examples/galton");
    char dir[256], out[256], log[300], mf[300], sf[300], p[400], err[300];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "diag-dens"), 0);
    cr_assert_eq(tk_tmpdir(out, sizeof out, "diag-dens-out"), 0);
    join(log, sizeof log, dir, "log");
    join(mf, sizeof mf, dir, "nde.ppxr");
    join(sf, sizeof sf, dir, "scandal.ppxr");
    gold_data g;
    double t0 = tk_now();
    cr_assert_eq(tk_galton_mine(MINE_THETA_PRIOR, 0, 0, 1, 4000, &g), 0); /* the score: NDE ignores it */
    gold_train_config cfg;
    gold_train_defaults(&cfg);
    cfg.method = GOLD_NDE;
    cfg.min_steps = 3000;
    gold_model *gm = gold_train(&cfg, &g);
    cr_assert(gm);
    cr_assert_eq(gold_model_save(gm, mf, err, sizeof err), 0, "%s", err);
    gold_model_destroy(&gm);
    gold_data_free(&g);
    double t1 = tk_now();

    const int n = 300, L = 100;
    int rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 -n %d -L %d --obs x=10 --ppc-n 1000 "
                "--seed 2 -o %s", ppxd, mf, sim, n, L, out);
    if (rc) cr_assert_fail("diagnose failed (%d):\n%s", rc, text_of(log));
    fprintf(stderr, "NDE diagnose: mining + training %.1f s, diagnose %.1f s\n", t1 - t0, tk_now() - t1);
    expect_in(log, "nde.ppxr (NDE, theta 1, x 1)");
    expect_in(log, "prior from the simulator's first trace: uniform:-1:1");
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"pass\"");
    expect_in(p, "\"density\": \"log p^(x | theta) + log prior");
    expect_calibrated(out, n, L);
    double em, esd;
    galton_exact_posterior(10, &em, &esd);
    double *v;
    size_t rows, cols;
    join(p, sizeof p, out, "ppc_theta.npy");
    cr_assert_eq(npy_read(p, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_assert(rows == 1000 && cols == 1);
    double mean = 0;
    for (size_t i = 0; i < rows; i++) mean += v[i] / (double)rows;
    free(v);
    cr_expect_leq(fabs(mean - em), Z * esd / sqrt(1000.0) + 0.1, "posterior mean at x = 10: %g, exact %g (sd %g)", mean,
                  em, esd);
    /* The wrong prior: SBC fails. */
    rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 -n %d -L %d --prior uniform:-0.5:0.5 --seed 2 "
            "-o %s --strict", ppxd, mf, sim, n, L, out);
    cr_expect_eq(rc, 3, "exit %d:\n%s", rc, text_of(log));
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"fail\"");

    /* SCANDAL */
    cr_assert_eq(tk_galton_mine(MINE_THETA_PRIOR, 0, 0, 1, 2000, &g), 0);
    gold_train_defaults(&cfg);
    cfg.method = GOLD_SCANDAL;
    cfg.min_steps = 2000;
    gm = gold_train(&cfg, &g);
    cr_assert(gm);
    cr_assert_eq(gold_model_save(gm, sf, err, sizeof err), 0, "%s", err);
    gold_model_destroy(&gm);
    gold_data_free(&g);
    rc = sh(log, "%s diagnose --model %s --sim-cmd '%s {endpoint}' -j 2 -n %d -L %d --seed 3 -o %s", ppxd, sf, sim, n,
            L, out);
    if (rc) cr_assert_fail("diagnose failed (%d):\n%s", rc, text_of(log));
    expect_in(log, "scandal.ppxr (SCANDAL, theta 1, x 1)");
    join(p, sizeof p, out, "report.json");
    expect_in(p, "\"sbc\": {\"verdict\": \"pass\"");
    expect_calibrated(out, n, L);
    tk_tmpdir_remove(out);
    tk_tmpdir_remove(dir);
    free(ppxd);
    free(sim);
}
