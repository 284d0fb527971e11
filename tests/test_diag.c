/* Tests for src/diag/diag.c: uniformity tests, SBC ranks, HPD expected
 * coverage, TARP and the posterior predictive check.
 *
 * The posteriors are exact or deliberately wrong Gaussians, so every
 * expectation is known.  Tolerances: an empirical coverage over n rounds of a
 * calibrated posterior has standard error sqrt(c (1 - c) / n); checks allow
 * Z = 4 of them.  A wrong posterior must miss by more than 4 of them.  Seeds
 * are fixed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diag/diag.h"
#include "nn/nn.h"
#include "npe.h"
#include "prior.h"
#include "rng.h"
#include "two_moons.h"

#define Z 4.0

static void setup(void)
{
    nn_set_threads(1);
}

/* One suite-wide timeout (the NPE tests train for 7-25 s and run 1000
 * rounds; several times that under make asan).  Not per test: a per-test
 * .timeout makes libcriterion 2.4 leak its timeout records when tests run
 * concurrently, which fails the ASan build's leak check (test_python.c). */
TestSuite(diag, .init = setup, .timeout = 1200);

/* ---- reference values ----------------------------------------------------- */

Test(diag, chi2_survival_matches_tables)
{
    /* Critical values of chi^2 at 5% and 1% (standard tables). */
    cr_expect_float_eq(diag_chi2_sf(3.841458820694124, 1), 0.05, 1e-9);
    cr_expect_float_eq(diag_chi2_sf(6.634896601021214, 1), 0.01, 1e-9);
    cr_expect_float_eq(diag_chi2_sf(18.307038053275146, 10), 0.05, 1e-9);
    cr_expect_float_eq(diag_chi2_sf(30.14352720564616, 19), 0.05, 1e-9);
    cr_expect_float_eq(diag_chi2_sf(36.19086912927004, 19), 0.01, 1e-9);
    /* Two degrees of freedom: exp(-x/2) exactly. */
    for (double x = 0.1; x < 40; x *= 1.7) cr_expect_float_eq(diag_chi2_sf(x, 2), exp(-x / 2), 1e-12 * (1 + exp(-x / 2)));
    cr_expect_eq(diag_chi2_sf(0, 5), 1.0);
    cr_expect_lt(diag_chi2_sf(500, 5), 1e-100);
}

Test(diag, kolmogorov_survival_matches_tables)
{
    cr_expect_float_eq(diag_kolmogorov_sf(1.3580986393225505), 0.05, 1e-6);
    cr_expect_float_eq(diag_kolmogorov_sf(1.6276236115189502), 0.01, 1e-6);
    cr_expect_float_eq(diag_kolmogorov_sf(0.8275735551899077), 0.5, 1e-6);
    cr_expect_eq(diag_kolmogorov_sf(0.0), 1.0);
}

Test(diag, ks_detects_non_uniform_values)
{
    rng r;
    rng_seed(&r, 3, 0);
    size_t n = 2000;
    double *u = malloc(n * sizeof *u), *v = malloc(n * sizeof *v), *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) {
        u[i] = rng_uniform(&r);
        v[i] = u[i] * u[i];
    }
    double d, p;
    diag_ks_uniform(u, n, s, &d, &p);
    /* D_n of uniform values: sqrt(n) D_n is Kolmogorov-distributed, below
     * 1.95 (p = 0.001) almost always. */
    cr_expect_lt(sqrt((double)n) * d, 1.95, "uniform: sqrt(n) D = %g", sqrt((double)n) * d);
    cr_expect_gt(p, 0.001);
    diag_ks_uniform(v, n, s, &d, &p);
    /* u^2 has D = max(sqrt(t) - t) = 1/4. */
    cr_expect_float_eq(d, 0.25, Z / sqrt((double)n));
    cr_expect_lt(p, 1e-20);
    free(u);
    free(v);
    free(s);
}

Test(diag, rank_chi2_counts_and_p_value)
{
    /* Ranks 0..9 (L = 9) each exactly 10 times: chi^2 = 0, p = 1. */
    int r[100];
    for (int i = 0; i < 100; i++) r[i] = i % 10;
    size_t counts[5];
    double x2, p;
    cr_assert_eq(diag_rank_chi2(r, 1, 100, 9, 5, counts, &x2, &p), 0);
    for (int b = 0; b < 5; b++) cr_expect_eq(counts[b], 20);
    cr_expect_float_eq(x2, 0.0, 1e-12);
    cr_expect_float_eq(p, 1.0, 1e-12);
    /* All in the first bin: chi^2 = sum (O - E)^2 / E = (80^2 + 4 * 20^2) / 20. */
    for (int i = 0; i < 100; i++) r[i] = i % 2;
    cr_assert_eq(diag_rank_chi2(r, 1, 100, 9, 5, counts, &x2, &p), 0);
    cr_expect_eq(counts[0], 100);
    cr_expect_float_eq(x2, (80.0 * 80 + 4 * 400) / 20.0, 1e-9);
    cr_expect_lt(p, 1e-30);
    cr_expect_eq(diag_rank_chi2(r, 1, 100, 9, 11, counts, &x2, &p), -1);
}

Test(diag, ties_give_uniform_ranks)
{
    /* Every sample equal to the truth (a point-mass posterior at the truth,
     * which is exact): the random tie-break makes the ranks uniform. */
    rng r;
    rng_seed(&r, 5, 0);
    double v[10] = {0};
    int counts[11] = {0};
    size_t n = 11000;
    for (size_t i = 0; i < n; i++) counts[diag_rank_below(0.0, v, 1, 10, &r)]++;
    for (int k = 0; k <= 10; k++)
        cr_expect_float_eq(counts[k], 1000.0, Z * sqrt(1000.0), "rank %d: %d", k, counts[k]);
}

/* ---- Gaussian posteriors ---------------------------------------------------- */

/* The sbibm gaussian_linear task (D = 10): theta ~ N(0, 0.1 I), x | theta ~
 * N(theta, 0.1 I), so the posterior is N(x / 2, 0.05 I).  The model under
 * test has mean x / 2 + shift (dimension 0 only) and standard deviation
 * scale * sqrt(0.05). */
#define GL_D 10

static void gaussian_linear_run(double scale, double shift, size_t n, size_t L, uint64_t seed, diag_report *rep)
{
    rng r;
    rng_seed(&r, seed, 1);
    double lo[GL_D], hi[GL_D];
    for (int j = 0; j < GL_D; j++) {
        lo[j] = -1.0;
        hi[j] = 1.0;
    }
    diag_calib *c = diag_calib_new(GL_D, L, n, lo, hi, seed);
    cr_assert(c);
    double theta[GL_D], x[GL_D], *s = malloc(L * GL_D * sizeof *s), *lq = malloc(L * sizeof *lq);
    double sd = scale * sqrt(0.05);
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < GL_D; j++) {
            theta[j] = sqrt(0.1) * rng_normal(&r);
            x[j] = theta[j] + sqrt(0.1) * rng_normal(&r);
        }
        double lqt = 0;
        for (int j = 0; j < GL_D; j++) {
            double z = (theta[j] - x[j] / 2 - (j == 0 ? shift : 0)) / sd;
            lqt += -0.5 * z * z;
        }
        for (size_t l = 0; l < L; l++) {
            double a = 0;
            for (int j = 0; j < GL_D; j++) {
                double z = rng_normal(&r);
                s[l * GL_D + j] = x[j] / 2 + (j == 0 ? shift : 0) + sd * z;
                a += -0.5 * z * z;
            }
            lq[l] = a;
        }
        cr_assert_eq(diag_calib_add(c, theta, s, &lqt, lq), 0);
    }
    cr_assert_eq(diag_calib_report(c, 0, NULL, 0, 0.01, rep), 0);
    diag_calib_destroy(&c);
    free(s);
    free(lq);
}

static void expect_calibrated(const diag_coverage *cv, const char *what)
{
    cr_expect_eq(cv->verdict, DIAG_PASS, "%s: %s (KS p %g)", what, diag_verdict_name(cv->verdict), cv->ks_p);
    for (int i = 0; i < cv->n_levels; i++)
        cr_expect_float_eq(cv->coverage[i], cv->levels[i], Z * cv->std_error[i], "%s: coverage %g at level %g", what,
                           cv->coverage[i], cv->levels[i]);
}

/* Coverage at 50/90/95% below nominal by more than Z standard errors. */
static void expect_overconfident(const diag_coverage *cv, const char *what)
{
    cr_expect_eq(cv->verdict, DIAG_OVERCONFIDENT, "%s: %s", what, diag_verdict_name(cv->verdict));
    for (int i = 0; i < cv->n_levels; i++) {
        double c = cv->levels[i];
        if (fabs(c - 0.5) > 1e-9 && fabs(c - 0.9) > 1e-9 && fabs(c - 0.95) > 1e-9) continue;
        cr_expect_lt(cv->coverage[i], c - Z * cv->std_error[i], "%s: coverage %g at level %g", what, cv->coverage[i], c);
    }
    cr_expect_gt(cv->max_shortfall, Z * sqrt(0.25 / (double)cv->n));
    cr_expect_lt(cv->mean_gap, 0);
}

Test(diag, exact_gaussian_linear_posterior_passes)
{
    diag_report rep;
    gaussian_linear_run(1.0, 0.0, 1000, 200, 11, &rep);
    cr_expect_eq(rep.n_rounds, 1000);
    cr_expect_eq(rep.bins, 20);
    cr_expect_eq(rep.sbc_verdict, DIAG_PASS);
    for (int j = 0; j < GL_D; j++) {
        cr_expect_gt(rep.sbc[j].chi2_p, 0.01 / (2 * GL_D), "dim %d chi2 p %g", j, rep.sbc[j].chi2_p);
        /* Mean rank L/2, sd of the mean sqrt(L (L + 2) / 12 / n). */
        cr_expect_float_eq(rep.sbc[j].mean_rank, 100.0, Z * sqrt(200.0 * 202 / 12 / 1000), "dim %d", j);
    }
    expect_calibrated(&rep.hpd, "HPD");
    expect_calibrated(&rep.tarp, "TARP");
    diag_report_free(&rep);
}

Test(diag, posterior_shrunk_by_two_fails_coverage_and_tarp)
{
    diag_report rep;
    gaussian_linear_run(0.5, 0.0, 1000, 200, 12, &rep);
    expect_overconfident(&rep.hpd, "HPD");
    expect_overconfident(&rep.tarp, "TARP");
    /* Too narrow: the truth falls outside the samples, ranks pile up at 0 and L. */
    cr_expect_eq(rep.sbc_verdict, DIAG_FAIL);
    size_t *h = rep.sbc_counts;
    cr_expect_gt(h[0] + h[rep.bins - 1], 4 * 2 * 1000 / rep.bins);
    diag_report_free(&rep);
}

Test(diag, posterior_widened_by_two_is_conservative)
{
    diag_report rep;
    gaussian_linear_run(2.0, 0.0, 1000, 200, 13, &rep);
    cr_expect_eq(rep.hpd.verdict, DIAG_CONSERVATIVE);
    cr_expect_eq(rep.tarp.verdict, DIAG_CONSERVATIVE);
    cr_expect_gt(rep.hpd.mean_gap, 0);
    diag_report_free(&rep);
}

Test(diag, biased_posterior_fails_sbc)
{
    diag_report rep;
    /* Dimension 0's mean off by one posterior standard deviation. */
    gaussian_linear_run(1.0, sqrt(0.05), 1000, 200, 14, &rep);
    cr_expect_eq(rep.sbc_verdict, DIAG_FAIL);
    cr_expect_lt(rep.sbc[0].chi2_p, 1e-10);
    cr_expect_lt(rep.sbc[0].ks_p, 1e-10);
    /* The samples sit above the truth: few below it, a low mean rank. */
    cr_expect_lt(rep.sbc[0].mean_rank, 100.0 - Z * sqrt(200.0 * 202 / 12 / 1000));
    /* The other dimensions are exact. */
    for (int j = 1; j < GL_D; j++) cr_expect_gt(rep.sbc[j].chi2_p, 0.01 / (2 * GL_D), "dim %d", j);
    diag_report_free(&rep);
}

/* Right marginals, wrong joint: theta ~ N(0, [[1, rho], [rho, 1]]) with no
 * data (the posterior is the prior), modelled with correlation -rho.  SBC
 * looks only at marginals and passes; TARP and HPD coverage see it. */
Test(diag, tarp_catches_a_wrong_joint_with_right_marginals)
{
    const double rho = 0.9;
    size_t n = 1000, L = 200;
    rng r;
    rng_seed(&r, 21, 0);
    double lo[2] = {-3, -3}, hi[2] = {3, 3};
    diag_calib *c = diag_calib_new(2, L, n, lo, hi, 21);
    cr_assert(c);
    double *s = malloc(L * 2 * sizeof *s), *lq = malloc(L * sizeof *lq);
    for (size_t i = 0; i < n; i++) {
        double a = rng_normal(&r), b = rng_normal(&r);
        double th[2] = {a, rho * a + sqrt(1 - rho * rho) * b};
        /* log density of N(0, [[1, -rho], [-rho, 1]]) up to a constant. */
        double lqt = -0.5 * (th[0] * th[0] + 2 * rho * th[0] * th[1] + th[1] * th[1]) / (1 - rho * rho);
        for (size_t l = 0; l < L; l++) {
            double u = rng_normal(&r), v = rng_normal(&r);
            s[2 * l] = u;
            s[2 * l + 1] = -rho * u + sqrt(1 - rho * rho) * v;
            lq[l] = -0.5 * (u * u + v * v);
        }
        cr_assert_eq(diag_calib_add(c, th, s, &lqt, lq), 0);
    }
    diag_report rep;
    cr_assert_eq(diag_calib_report(c, 0, NULL, 0, 0.01, &rep), 0);
    cr_expect_eq(rep.sbc_verdict, DIAG_PASS, "marginals are right: chi2 p %g, %g", rep.sbc[0].chi2_p, rep.sbc[1].chi2_p);
    cr_expect_neq(rep.tarp.verdict, DIAG_PASS, "TARP KS p %g", rep.tarp.ks_p);
    cr_expect_lt(rep.tarp.ks_p, 1e-6);
    cr_expect_eq(rep.hpd.verdict, DIAG_OVERCONFIDENT);
    diag_report_free(&rep);
    diag_calib_destroy(&c);
    free(s);
    free(lq);
}

Test(diag, coverage_without_densities_is_skipped)
{
    diag_calib *c = diag_calib_new(1, 4, 3, NULL, NULL, 1);
    double th = 0.5, s[4] = {0.1, 0.2, 0.7, 0.9}, lq[4] = {0};
    cr_assert_eq(diag_calib_add(c, &th, s, NULL, NULL), 0);
    cr_assert_eq(diag_calib_add(c, &th, s, NULL, NULL), 0);
    cr_expect_eq(c->ranks[0], 2);
    double nan_th = NAN;
    cr_expect_eq(diag_calib_add(c, &nan_th, s, NULL, NULL), -1);
    cr_expect_eq(diag_calib_add(c, &th, s, &th, NULL), -1, "logq_true without logq");
    cr_assert_eq(diag_calib_add(c, &th, s, NULL, NULL), 0);
    cr_expect_eq(diag_calib_add(c, &th, s, &th, lq), -1, "full");
    diag_report rep;
    cr_assert_eq(diag_calib_report(c, 0, NULL, 0, 0.01, &rep), 0);
    cr_expect_eq(rep.hpd.verdict, DIAG_SKIPPED);
    diag_report_free(&rep);
    diag_calib_destroy(&c);
}

/* ---- posterior predictive check ---------------------------------------------- */

Test(diag, ppc_distances_per_dimension)
{
    size_t M = 4000;
    rng r;
    rng_seed(&r, 31, 0);
    double *x = malloc(M * 2 * sizeof *x);
    for (size_t m = 0; m < M; m++) {
        x[2 * m] = 1.0 + 2.0 * rng_normal(&r);
        x[2 * m + 1] = -3.0 + 0.5 * rng_normal(&r);
    }
    x[2 * 7] = NAN; /* a failed simulation: the row is skipped */
    diag_ppc_dim d[2];
    diag_verdict v;
    double xo[2] = {3.0, -3.0};
    cr_assert_eq(diag_ppc(xo, x, M, 2, 0.01, d, &v), 0);
    cr_expect_eq(v, DIAG_PASS);
    cr_expect_float_eq(d[0].mean, 1.0, Z * 2.0 / sqrt((double)M));
    cr_expect_float_eq(d[0].sd, 2.0, Z * 2.0 / sqrt(2.0 * M));
    cr_expect_float_eq(d[0].z, 1.0, 0.1);
    /* P(|N(0,1)| > 1) = 0.3173; binomial standard error over M draws. */
    cr_expect_float_eq(d[0].p, 0.3173, Z * 2 * sqrt(0.16 * 0.84 / M));
    cr_expect_float_eq(d[1].p, 1.0, Z * 2 * sqrt(0.25 / M));
    cr_expect_float_eq(d[1].q50, -3.0, 0.05);
    /* Far outside in dimension 1: fails. */
    xo[1] = 0.0;
    cr_assert_eq(diag_ppc(xo, x, M, 2, 0.01, d, &v), 0);
    cr_expect_eq(v, DIAG_FAIL);
    cr_expect_lt(d[1].p, 0.001);
    cr_expect_float_eq(d[1].z, 6.0, 0.5);
    free(x);
}

/* ---- a trained NPE on two_moons ------------------------------------------------ */

/* The acceptance test: NPE (ppxd's default NSF, as `ppxd train npe`
 * trains: npe_train itself defaults to MAF, so the flow is given) trained on
 * 10^4 two_moons simulations has expected coverage within 0.05 of nominal at
 * 50/90/95% over 1000 fresh test pairs (the coverage's own sampling error
 * at n = 1000 is at most 0.016, so 0.05 leaves room for the model's).
 * Seeds are fixed (data stream 1, ppxd's default training seed 1).  What it
 * measures is a property of the trained model, not only sampling error:
 * the HPD statistic is a rank under the model's own density, uniform for
 * any L when the model is right (the exact-posterior tests above), so the
 * deviations are the model's.  Measured on one machine (the float results
 * depend on the CPU's kernels) over training-data seeds 1, 2, 4 and 2024,
 * HPD coverage at 50/90/95%: NSF 0.456/0.931/0.982, 0.438/0.897/0.960,
 * 0.470/0.945/0.985, 0.450/0.924/0.973 (a little too sharp at the modes,
 * a little too wide in the tails; seed 2 misses at 50%); MAF, which this
 * test trained before, 0.582/0.969/0.989 and 0.548/0.960/0.974 for seeds 1
 * and 4 (conservative: affine autoregressive layers cannot draw the thin
 * crescents).  Rechecked (issue 16) with data seeds 3, 5, 7: NSF
 * 0.485/0.935/0.981, 0.434/0.908/0.965, 0.427/0.908/0.968.  So the issue's
 * claim holds at 90/95% for every seed tried but not at 50%: HPD coverage
 * there is 0.43-0.49 (mean 0.45 over 7 seeds), while TARP is 0.47-0.51 at
 * 50% for all.  It is not the test-pair count (the coverage's sd at n =
 * 1000 is 0.016, and every miss has the same sign), nor early stopping:
 * patience 60 instead of 20 (better validation losses, -2.40..-2.47 against
 * -2.38..-2.42) gives 0.441/0.480/0.491/0.457/0.445 for seeds 1/2/3/5/7,
 * better for some seeds, worse for seed 1, and patience 100 leaves seed 7
 * where it was (same best epoch); a logit transform of theta (NPE_TF_ALL)
 * is worse (0.407-0.426 for seeds 2/5/7).  The flow's core is a little too
 * sharp, a model error this test does not hide.  So this test passes for
 * some seeds but not all, and a regression that miscalibrates the flow
 * fails it. */
static void two_moons_coverage_within_5_percent(uint64_t data_seed, int hidden)
{
    const size_t n_train = 10000, n_test = 1000, L = 1000;
    char err[400];
    const char *spec = "uniform:-1:1x2";
    prior *pr = prior_parse(&spec, 1, err, sizeof err);
    cr_assert(pr, "%s", err);
    rng r;
    rng_seed(&r, data_seed, 0);
    double *th = malloc(n_train * 2 * sizeof *th), *x = malloc(n_train * 2 * sizeof *x);
    prior_sample(pr, &r, n_train, th);
    for (size_t i = 0; i < n_train; i++) tk_two_moons(&r, th + 2 * i, x + 2 * i);
    npe_data d;
    cr_assert_eq(npe_data_init(&d, th, x, n_train, 2, 2, err, sizeof err), 0, "%s", err);
    npe_train_config cfg = npe_train_defaults();
    cfg.progress = 0;
    npe_train_report trep;
    flow_config fc = flow_config_default(FLOW_NSF, 2, 2);
    if (hidden > 0) fc.hidden = hidden;
    npe_posterior *p = npe_train(&d, pr, &fc, &cfg, &trep, err, sizeof err);
    cr_assert(p, "%s", err);
    npe_data_free(&d);

    double lo[2] = {-1, -1}, hi[2] = {1, 1};
    diag_calib *c = diag_calib_new(2, L, n_test, lo, hi, 7);
    double *buf = malloc((L + 1) * 2 * sizeof *buf), *lq = malloc((L + 1) * sizeof *lq);
    rng rt;
    rng_seed(&rt, 99, 0); /* fresh: not the training stream */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < n_test; i++) {
        double tt[2], xx[2];
        prior_sample(pr, &rt, 1, tt);
        tk_two_moons(&rt, tt, xx);
        npe_sample_report srep;
        cr_assert_eq(npe_sample(p, xx, L, &rt, 60, buf, &srep, err, sizeof err), 0, "%s", err);
        memcpy(buf + 2 * L, tt, sizeof tt);
        cr_assert_eq(npe_log_prob(p, buf, L + 1, xx, 1, lq, err, sizeof err), 0, "%s", err);
        cr_assert_eq(diag_calib_add(c, tt, buf, &lq[L], lq), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    diag_report rep;
    cr_assert_eq(diag_calib_report(c, 0, NULL, 0, 0.01, &rep), 0);
    fprintf(stderr, "two_moons NPE (data seed %llu, hidden %d): trained %d epochs in %.1f s; %zu rounds x %zu samples in "
            "%.1f s; HPD coverage at 50/90/95%%: %.3f %.3f %.3f, TARP %.3f %.3f %.3f\n", (unsigned long long)data_seed,
            fc.hidden, trep.epochs, trep.seconds, n_test, L,
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), rep.hpd.coverage[9],
            rep.hpd.coverage[17], rep.hpd.coverage[18], rep.tarp.coverage[9], rep.tarp.coverage[17],
            rep.tarp.coverage[18]);
    const int idx[3] = {9, 17, 18}; /* levels 0.50, 0.90, 0.95 */
    for (int k = 0; k < 3; k++) {
        double level = rep.hpd.levels[idx[k]];
        cr_expect_float_eq(level, k == 0 ? 0.5 : k == 1 ? 0.9 : 0.95, 1e-12);
        cr_expect_float_eq(rep.hpd.coverage[idx[k]], level, 0.05, "HPD coverage %g at %g", rep.hpd.coverage[idx[k]], level);
        cr_expect_float_eq(rep.tarp.coverage[idx[k]], level, 0.05, "TARP coverage %g at %g", rep.tarp.coverage[idx[k]],
                           level);
    }
    diag_report_free(&rep);
    diag_calib_destroy(&c);
    npe_posterior_destroy(&p);
    prior_destroy(&pr);
    free(buf);
    free(lq);
    free(th);
    free(x);
}

Test(diag, npe_two_moons_expected_coverage_within_5_percent) { two_moons_coverage_within_5_percent(1, 0); }

/* With a conditioner twice as wide (--hidden 100) the NPE is calibrated at
 * 50/90/95% on each of the data seeds 1, 2, 3, 5, 7 (tests/bench_calib.c,
 * PPXD_CAL_HIDDEN=100: 50% coverage 0.451-0.488; README, Diagnostics).
 * Seed 2 is the one the default width misses at 50% (0.438): 0.480 here. */
/* (~25 s normally; several minutes under make asan) */
Test(diag, npe_two_moons_wider_network_calibrated_on_a_seed_the_default_misses)
{
    two_moons_coverage_within_5_percent(2, 100);
}

/* A coverage curve crossing the diagonal: too many truths in the small
 * regions, too few in the large ones (a posterior too flat at its mode and
 * with tails too light).  u = 0.5 + 0.5 sign(v - 0.5) |2v - 1|^0.6 for
 * uniform v, so coverage(0.1) = P(v < 0.156) and coverage(0.9) = 0.844. */
Test(diag, coverage_directions_from_levels)
{
    size_t n = 2000;
    rng r;
    rng_seed(&r, 41, 0);
    double *u = malloc(n * sizeof *u), *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) {
        double v = rng_uniform(&r), t = pow(fabs(2 * v - 1), 0.6);
        u[i] = 0.5 + 0.5 * (v < 0.5 ? -t : t);
    }
    diag_coverage cv;
    cr_assert_eq(diag_coverage_from_pit(u, n, NULL, 0, 0.01, 0, s, &cv), 0);
    cr_expect_eq(cv.verdict, DIAG_MIXED, "%s", diag_verdict_name(cv.verdict));
    cr_expect_gt(cv.coverage[1], 0.1 + Z * cv.std_error[1]);
    cr_expect_lt(cv.coverage[17], 0.9 - Z * cv.std_error[17]);
    /* Uniform below 0.5, the upper half pushed towards 1: coverage falls
     * short at the high levels only. */
    for (size_t i = 0; i < n; i++) {
        double v = rng_uniform(&r);
        u[i] = v < 0.5 ? v : 0.5 + 0.5 * sqrt(2 * v - 1);
    }
    cr_assert_eq(diag_coverage_from_pit(u, n, NULL, 0, 0.01, 0, s, &cv), 0);
    cr_expect_eq(cv.verdict, DIAG_OVERCONFIDENT, "%s", diag_verdict_name(cv.verdict));
    free(u);
    free(s);
}
