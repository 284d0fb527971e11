/* Tests for src/nre.c: neural ratio estimation on a 2-D Gaussian with an
 * exact posterior, the three samplers, normalisation, BNRE's balance, and
 * the time bound.
 *
 * Model: theta ~ N(0, I_2), x ~ N(theta, I_2), so p(theta | x) =
 * N(x / 2, 0.5 I): posterior sd s = sqrt(0.5) = 0.707 per dimension.
 *
 * Tolerances.  Monte Carlo: n = 4000 posterior samples give a mean with
 * standard error s / sqrt(n_eff) and an sd with relative error about
 * 1 / sqrt(2 n_eff); importance resampling (32 prior draws per sample, ESS
 * per group ~10 here) and MCMC (autocorrelation) make n_eff smaller than n,
 * so the checks take n_eff = n / 4 and Z = 4 standard errors.  Modelling: an
 * NRE classifier trained on 10^4 pairs has a log-ratio error of a few
 * tenths of a nat across the posterior's bulk (NRE is known to be less
 * accurate than NPE at this budget: sbibm's NRE C2ST at 10^4 is ~0.6-0.7),
 * which moves the mean by up to ~0.15 s and the sd by up to ~15%; the slack
 * added is 0.2 s for means and 20% for sds.  Each check would fail for a
 * classifier that ignores x (mean 0, sd 1: off by |x|/2 = 0.5 and 41%).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "npe.h"
#include "nre.h"
#include "prior.h"
#include "rng.h"

#define Z 4.0
#define POST_SD 0.70710678118654752
#define N_SIMS 10000
#define N_SAMPLES 4000

static void setup(void)
{
    nn_set_threads(1);
}

TestSuite(nre, .init = setup, .timeout = 120);

static prior *std_normal_prior(int d)
{
    char spec[64], err[256];
    snprintf(spec, sizeof spec, "normal:0:1x%d", d);
    const char *s[1] = {spec};
    prior *p = prior_parse(s, 1, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    return p;
}

/* Train NRE on N_SIMS draws of the 2-D Gaussian model. */
static nre_posterior *train_gaussian(double bnre_lambda, uint64_t seed, npe_train_report *rep)
{
    const int D = 2;
    rng r;
    rng_seed(&r, seed, 99);
    double *th = malloc(N_SIMS * D * sizeof *th), *x = malloc(N_SIMS * D * sizeof *x);
    cr_assert(th && x);
    for (int i = 0; i < N_SIMS * D; i++) {
        th[i] = rng_normal(&r);
        x[i] = th[i] + rng_normal(&r);
    }
    char err[512];
    npe_data d;
    cr_assert_eq(npe_data_init(&d, th, x, N_SIMS, D, D, err, sizeof err), 0, "%s", err);
    prior *pr = std_normal_prior(D);
    nre_net_config nc = nre_net_defaults();
    nc.bnre_lambda = bnre_lambda;
    npe_train_config cfg = npe_train_defaults();
    cfg.seed = seed;
    nre_posterior *p = nre_train(&d, pr, &nc, &cfg, rep, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    fprintf(stderr, "nre: %d epochs, best %d, val loss %.4f, %.1f s\n", rep->epochs, rep->best_epoch,
            rep->best_val_loss, rep->seconds);
    npe_data_free(&d);
    prior_destroy(&pr);
    free(th);
    free(x);
    return p;
}

static void moments(const double *s, size_t n, int D, int j, double *mean, double *sd)
{
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) m += s[i * (size_t)D + (size_t)j];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = s[i * (size_t)D + (size_t)j] - m;
        v += d * d;
    }
    *mean = m;
    *sd = sqrt(v / (double)(n - 1));
}

static void check_posterior_samples(const double *s, size_t n, const double *x_o, const char *what)
{
    double n_eff = (double)n / 4.0;
    for (int j = 0; j < 2; j++) {
        double m, sd;
        moments(s, n, 2, j, &m, &sd);
        double tol_m = Z * POST_SD / sqrt(n_eff) + 0.2 * POST_SD;
        double tol_sd = POST_SD * (Z / sqrt(2.0 * n_eff) + 0.20);
        fprintf(stderr, "%s dim %d: mean %.4f (exact %.4f, tol %.3f)  sd %.4f (exact %.4f, tol %.3f)\n", what, j, m,
                x_o[j] / 2, tol_m, sd, POST_SD, tol_sd);
        cr_expect_leq(fabs(m - x_o[j] / 2), tol_m, "%s: mean of dim %d is %g, exact %g", what, j, m, x_o[j] / 2);
        cr_expect_leq(fabs(sd - POST_SD), tol_sd, "%s: sd of dim %d is %g, exact %g", what, j, sd, POST_SD);
    }
}

Test(nre, gaussian_posterior_by_importance_resampling_and_mcmc)
{
    npe_train_report rep;
    nre_posterior *p = train_gaussian(0.0, 1, &rep);
    cr_assert_gt(rep.best_epoch, 0);
    const double x_os[2][2] = {{1.0, -0.6}, {-1.4, 0.3}};
    double *s = malloc(N_SAMPLES * 2 * sizeof *s);
    char err[512];
    rng r;
    rng_seed(&r, 5, 0);
    for (int k = 0; k < 2; k++) {
        nre_sample_config sc = nre_sample_defaults();
        nre_sample_report sr;
        cr_assert_eq(nre_sample(p, x_os[k], N_SAMPLES, &r, &sc, s, &sr, err, sizeof err), 0, "%s", err);
        cr_expect_gt(sr.ess, 1.0, "SIR ESS per group %g", sr.ess);
        check_posterior_samples(s, N_SAMPLES, x_os[k], "sir");
    }
    /* MCMC on the same target. */
    static const nre_sample_method ms[2] = {NRE_SAMPLE_SLICE, NRE_SAMPLE_MH};
    for (int k = 0; k < 2; k++) {
        nre_sample_config sc = nre_sample_defaults();
        sc.method = ms[k];
        nre_sample_report sr;
        cr_assert_eq(nre_sample(p, x_os[0], N_SAMPLES, &r, &sc, s, &sr, err, sizeof err), 0, "%s", err);
        if (ms[k] == NRE_SAMPLE_MH)
            cr_expect(sr.acceptance > 0.1 && sr.acceptance < 0.6, "MH acceptance %g after tuning towards 0.3",
                      sr.acceptance);
        check_posterior_samples(s, N_SAMPLES, x_os[0], nre_sample_method_name(ms[k]));
    }
    free(s);
    nre_posterior_destroy(&p);
}

/* The normalised log posterior against the exact one, at points of the
 * posterior's bulk.  Both sides are densities; the mean difference at
 * draws from the exact posterior is a KL divergence estimate (>= 0 up to
 * Monte Carlo error) and must be small; 0.5 nats allows the log-ratio error
 * described at the top on a 2-D posterior. */
Test(nre, normalised_log_density_matches_exact)
{
    npe_train_report rep;
    nre_posterior *p = train_gaussian(0.0, 2, &rep);
    const double x_o[2] = {0.8, -0.4};
    rng r;
    rng_seed(&r, 11, 0);
    enum { M = 500 };
    double th[M * 2], lq[M];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < 2; j++) th[i * 2 + j] = x_o[j] / 2 + POST_SD * rng_normal(&r);
    char err[512];
    double log_z;
    cr_assert_eq(nre_log_prob_normalised(p, th, M, x_o, 20000, &r, lq, &log_z, err, sizeof err), 0, "%s", err);
    double kl = 0, max_abs = 0;
    for (int i = 0; i < M; i++) {
        double lp = 0;
        for (int j = 0; j < 2; j++) {
            double z = (th[i * 2 + j] - x_o[j] / 2) / POST_SD;
            lp += -0.5 * z * z - log(POST_SD) - 0.5 * log(2 * M_PI);
        }
        kl += (lp - lq[i]) / M;
        if (fabs(lp - lq[i]) > max_abs) max_abs = fabs(lp - lq[i]);
    }
    fprintf(stderr, "nre: log Z %.4f, KL estimate %.4f, max |diff| %.3f\n", log_z, kl, max_abs);
    cr_expect(fabs(log_z) < 0.3, "log Z = %g: the classifier's ratio should integrate to ~1 under the prior", log_z);
    cr_expect(kl > -0.1 && kl < 0.5, "KL(p || q) estimate %g nats", kl);
    /* Unnormalised = normalised + log Z, and -inf never occurs under a
     * Normal prior.  The same M rows in one batch: sgemm may round a
     * batch of another size differently (float network, double result). */
    static double lu[M];
    cr_assert_eq(nre_log_prob(p, th, M, x_o, 1, lu, err, sizeof err), 0);
    for (int i = 0; i < M; i++) cr_expect_float_eq(lu[i], lq[i] + log_z, 1e-9);
    nre_posterior_destroy(&p);
}

/* BNRE's penalty makes the classifier balanced: E_joint d + E_marginal d
 * = 1.  Measured on fresh pairs with n = 4000 each: the standard error of
 * each mean of d in [0, 1] is at most 0.5 / sqrt(n) = 0.008, so the balance
 * must hold to Z * 0.011 plus a slack of 0.03 for the finite penalty
 * (lambda = 100 leaves g^2 ~ 1e-3 of the loss).  The posterior must still be
 * usable (BNRE is conservative: sd may be a little larger). */
Test(nre, bnre_balances_the_classifier)
{
    npe_train_report rep;
    nre_posterior *p = train_gaussian(100.0, 3, &rep);
    rng r;
    rng_seed(&r, 21, 0);
    enum { M = 4000 };
    double *th = malloc(M * 2 * sizeof *th), *x = malloc(M * 2 * sizeof *x), *thm = malloc(M * 2 * sizeof *thm);
    double *lj = malloc(M * sizeof *lj), *lm = malloc(M * sizeof *lm);
    for (int i = 0; i < M * 2; i++) {
        th[i] = rng_normal(&r);
        x[i] = th[i] + rng_normal(&r);
        thm[i] = rng_normal(&r); /* independent theta: a marginal pair */
    }
    char err[512];
    cr_assert_eq(nre_log_ratio(p, th, M, x, M, lj, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nre_log_ratio(p, thm, M, x, M, lm, err, sizeof err), 0, "%s", err);
    double sj = 0, sm = 0;
    for (int i = 0; i < M; i++) {
        sj += 1 / (1 + exp(-lj[i]));
        sm += 1 / (1 + exp(-lm[i]));
    }
    double g = sj / M + sm / M - 1;
    fprintf(stderr, "bnre: E_joint d %.4f, E_marginal d %.4f, balance %.4f\n", sj / M, sm / M, g);
    cr_expect_leq(fabs(g), Z * 0.011 + 0.03, "balance condition off by %g", g);
    cr_expect_gt(sj / M, sm / M + 0.1, "the classifier must still separate joint from marginal pairs");
    double *s = malloc(N_SAMPLES * 2 * sizeof *s);
    const double x_o[2] = {1.0, -0.6};
    cr_assert_eq(nre_sample(p, x_o, N_SAMPLES, &r, NULL, s, NULL, err, sizeof err), 0, "%s", err);
    check_posterior_samples(s, N_SAMPLES, x_o, "bnre sir");
    free(s);
    free(th);
    free(x);
    free(thm);
    free(lj);
    free(lm);
    nre_posterior_destroy(&p);
}

/* A training run cut short, then sampling under an impossible time bound:
 * each sampler must return -1 with a reason instead of running on. */
Test(nre, sampling_respects_the_time_bound)
{
    const int D = 2, N = 1000;
    rng r;
    rng_seed(&r, 4, 0);
    double th[2000], x[2000];
    for (int i = 0; i < N * D; i++) {
        th[i] = rng_normal(&r);
        x[i] = th[i] + rng_normal(&r);
    }
    char err[512];
    npe_data d;
    cr_assert_eq(npe_data_init(&d, th, x, N, D, D, err, sizeof err), 0);
    prior *pr = std_normal_prior(D);
    npe_train_config cfg = npe_train_defaults();
    cfg.max_epochs = 2;
    npe_train_report rep;
    nre_posterior *p = nre_train(&d, pr, NULL, &cfg, &rep, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_expect_eq(rep.epochs, 2);
    cr_expect_eq(rep.stop, NPE_STOP_MAX_EPOCHS);
    static const nre_sample_method ms[3] = {NRE_SAMPLE_SIR, NRE_SAMPLE_SLICE, NRE_SAMPLE_MH};
    double *s = malloc(1000000 * 2 * sizeof *s);
    const double x_o[2] = {0, 0};
    for (int k = 0; k < 3; k++) {
        nre_sample_config sc = nre_sample_defaults();
        sc.method = ms[k];
        sc.max_seconds = 0.05;
        err[0] = 0;
        cr_expect_eq(nre_sample(p, x_o, 1000000, &r, &sc, s, NULL, err, sizeof err), -1,
                     "%s: a million samples in 50 ms", nre_sample_method_name(ms[k]));
        cr_expect(strstr(err, "time bound") != NULL, "reason: '%s'", err);
    }
    /* Non-finite observations are refused. */
    const double bad[2] = {NAN, 0};
    cr_expect_eq(nre_sample(p, bad, 10, &r, NULL, s, NULL, err, sizeof err), -1);
    free(s);
    prior_destroy(&pr);
    npe_data_free(&d);
    nre_posterior_destroy(&p);
}

/* Samples stay inside a bounded prior's support and log densities are -inf
 * outside it. */
Test(nre, bounded_prior_support)
{
    const int D = 1, N = 2000;
    rng r;
    rng_seed(&r, 6, 0);
    double th[2000], x[2000];
    for (int i = 0; i < N; i++) {
        th[i] = -1 + 2 * rng_uniform(&r);
        x[i] = th[i] + 0.3 * rng_normal(&r);
    }
    char err[512];
    npe_data d;
    cr_assert_eq(npe_data_init(&d, th, x, N, D, D, err, sizeof err), 0);
    const char *spec[1] = {"uniform:-1:1"};
    prior *pr = prior_parse(spec, 1, err, sizeof err);
    npe_train_config cfg = npe_train_defaults();
    cfg.max_epochs = 20;
    nre_posterior *p = nre_train(&d, pr, NULL, &cfg, NULL, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    double s[3000];
    const double x_o[1] = {0.95};
    for (int m = 0; m < 3; m++) {
        nre_sample_config sc = nre_sample_defaults();
        sc.method = (nre_sample_method)m;
        cr_assert_eq(nre_sample(p, x_o, 3000, &r, &sc, s, NULL, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < 3000; i++)
            cr_assert(s[i] >= -1 && s[i] < 1, "%s sample %g outside [-1, 1)", nre_sample_method_name(sc.method), s[i]);
    }
    const double pts[3] = {-1.5, 0.2, 1.0};
    double lp[3];
    cr_assert_eq(nre_log_prob(p, pts, 3, x_o, 1, lp, err, sizeof err), 0);
    cr_expect(isinf(lp[0]) && lp[0] < 0);
    cr_expect(isfinite(lp[1]));
    cr_expect(isinf(lp[2]) && lp[2] < 0, "the support is [low, high)");
    prior_destroy(&pr);
    npe_data_free(&d);
    nre_posterior_destroy(&p);
}
