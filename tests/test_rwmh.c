/* test_rwmh.c — the random-walk MH kernels of src/rwmh.h: for each of the 11
 * families, a chain that targets the prior itself through the kernel (with
 * its proposal ratio) must reproduce the prior's mean and variance.  A wrong
 * ratio (e.g. forgetting the log-walk's Jacobian) or a kernel that leaves or
 * cannot reach part of the support shows as a biased mean. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "rwmh.h"
#include "stats.h"

#define STEPS 200000

/* Run the chain for element-wise d (n values), return per-element chain
 * means, variances and batch-means standard errors of the mean. */
static void run_chain(const dist *d, const double *x0, double *mean, double *var, double *se, double *acc)
{
    rng r;
    rng_seed(&r, 42, (uint64_t)d->kind);
    size_t n = d->n;
    double x[8], y[8];
    memcpy(x, x0, n * sizeof *x);
    double lp = dist_log_prob(d, x);
    cr_assert(isfinite(lp));
    double *chain = malloc(STEPS * n * sizeof *chain);
    size_t accepted = 0;
    for (size_t s = 0; s < STEPS; s++) {
        double lr = rwmh_propose(d, x, &r, y);
        double lq = dist_log_prob(d, y);
        if (isfinite(lq) && log(rng_uniform_pos(&r)) < lq - lp + lr) {
            memcpy(x, y, n * sizeof *x);
            lp = lq;
            accepted++;
        }
        for (size_t i = 0; i < n; i++) chain[i * STEPS + s] = x[i];
    }
    for (size_t i = 0; i < n; i++) {
        double *c = chain + i * STEPS, m = 0, v = 0;
        for (size_t s = 0; s < STEPS; s++) m += c[s];
        m /= STEPS;
        for (size_t s = 0; s < STEPS; s++) v += (c[s] - m) * (c[s] - m);
        v /= STEPS - 1;
        mean[i] = m;
        var[i] = v;
        se[i] = sqrt(v / stats_ess_batch_means(c, STEPS));
    }
    *acc = (double)accepted / STEPS;
    free(chain);
}

static void check_family(dist_kind kind, const double *p0, size_t n0, const double *p1, size_t n1, size_t k,
                         const double *x0)
{
    dist d;
    char why[128];
    cr_assert_eq(dist_init(&d, kind, p0, n0, p1, n1, k, why, sizeof why), 0, "%s", why);
    cr_assert_eq(dist_validate(&d, why, sizeof why), 0, "%s", why);
    double mean[8], var[8], se[8], em[8], ev[8], acc;
    run_chain(&d, x0, mean, var, se, &acc);
    dist_mean(&d, em);
    dist_variance(&d, ev);
    cr_assert(acc > 0.05, "%s: acceptance %.3f", dist_kind_name(kind), acc);
    for (size_t i = 0; i < d.n; i++) {
        cr_assert(fabs(mean[i] - em[i]) < 4 * se[i] + 1e-12, "%s[%zu]: chain mean %g, prior mean %g (se %g)",
                  dist_kind_name(kind), i, mean[i], em[i], se[i]);
        /* The variance is estimated less precisely: 15% (a few standard
         * errors at these effective sample sizes). */
        cr_assert(fabs(var[i] - ev[i]) < 0.15 * ev[i] + 1e-12, "%s[%zu]: chain variance %g, prior variance %g",
                  dist_kind_name(kind), i, var[i], ev[i]);
    }
}

Test(rwmh, normal) { double m = 3, s = 2, x = 0; check_family(DIST_NORMAL, &m, 1, &s, 1, 0, &x); }
Test(rwmh, uniform) { double lo = -1, hi = 4, x = 3.9; check_family(DIST_UNIFORM, &lo, 1, &hi, 1, 0, &x); }
Test(rwmh, beta) { double a = 0.7, b = 2.5, x = 0.5; check_family(DIST_BETA, &a, 1, &b, 1, 0, &x); }
Test(rwmh, exponential) { double r = 0.5, x = 1; check_family(DIST_EXPONENTIAL, &r, 1, NULL, 0, 0, &x); }
Test(rwmh, gamma) { double a = 3, r = 2, x = 1; check_family(DIST_GAMMA, &a, 1, &r, 1, 0, &x); }
Test(rwmh, lognormal) { double m = 0.5, s = 0.4, x = 1; check_family(DIST_LOGNORMAL, &m, 1, &s, 1, 0, &x); }
Test(rwmh, weibull) { double sc = 2, c = 1.5, x = 1; check_family(DIST_WEIBULL, &sc, 1, &c, 1, 0, &x); }
Test(rwmh, poisson) { double r = 12, x = 0; check_family(DIST_POISSON, &r, 1, NULL, 0, 0, &x); }
Test(rwmh, binomial) { double n = 30, p = 0.3, x = 30; check_family(DIST_BINOMIAL, &n, 1, &p, 1, 0, &x); }
Test(rwmh, bernoulli) { double p = 0.2, x = 1; check_family(DIST_BERNOULLI, &p, 1, NULL, 0, 0, &x); }
Test(rwmh, categorical) { double w[4] = {1, 2, 3, 4}, x = 0; check_family(DIST_CATEGORICAL, w, 4, NULL, 0, 4, &x); }

Test(rwmh, element_wise_tensors_with_broadcast)
{
    /* Three Normals with their own means and a shared sd; two Categorical
     * rows of their own weights. */
    double m[3] = {-5, 0, 5}, s = 1.5, x[3] = {0, 0, 0};
    check_family(DIST_NORMAL, m, 3, &s, 1, 0, x);
    double w[6] = {1, 1, 8, 5, 4, 1}, c[2] = {0, 0};
    check_family(DIST_CATEGORICAL, w, 6, NULL, 0, 3, c);
}

Test(rwmh, bounded_kernels_stay_in_the_support)
{
    double lo = 2, hi = 2.5, a = 0.5, b = 0.5;
    dist u, be;
    char why[64];
    cr_assert_eq(dist_init(&u, DIST_UNIFORM, &lo, 1, &hi, 1, 0, why, sizeof why), 0);
    cr_assert_eq(dist_init(&be, DIST_BETA, &a, 1, &b, 1, 0, why, sizeof why), 0);
    rng r;
    rng_seed(&r, 1, 1);
    double x = 2.01, y, z = 0.999, w;
    for (int i = 0; i < 100000; i++) {
        cr_assert_eq(rwmh_propose(&u, &x, &r, &y), 0.0, "a reflected walk is symmetric");
        cr_assert(y >= lo && y <= hi, "Uniform proposal %g outside [%g, %g]", y, lo, hi);
        x = y;
        rwmh_propose(&be, &z, &r, &w);
        cr_assert(w >= 0 && w <= 1, "Beta proposal %g outside [0, 1]", w);
        z = w;
    }
}
