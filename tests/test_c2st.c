/* Tests for src/nn/c2st.c: the classifier two-sample test.
 *
 * Tolerances: the C2ST score is a cross-validated accuracy over all n = n0 + n1
 * points (each point is tested exactly once), so its sampling standard error
 * is about sqrt(p (1-p) / n) for a classifier with true accuracy p.  Checks
 * allow Z = 4 standard errors plus a small margin for what the binomial
 * error misses: the classifier's own variability (training noise, slight
 * over- or under-fitting; a classifier trained on finitely many points is
 * somewhat worse than Bayes-optimal).
 * Each test stays well under 20 s on one core (elapsed times go to stderr). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nn/c2st.h"
#include "nn/nn.h"
#include "rng.h"

#define Z 4.0

static void setup(void)
{
    nn_set_threads(1);
}

TestSuite(c2st, .init = setup, .timeout = 60);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* n x d samples of N(shift, sd^2 I) (shift added to every coordinate). */
static double *gaussian(size_t n, size_t d, double shift, double sd, rng *r)
{
    double *x = malloc(n * d * sizeof *x);
    cr_assert(x);
    for (size_t i = 0; i < n * d; i++)
        x[i] = shift + sd * rng_normal(r);
    return x;
}

/* Standard normal CDF. */
static double phi(double z)
{
    return 0.5 * erfc(-z / sqrt(2.0));
}

static double run(const char *what, const double *x0, size_t n0, const double *x1, size_t n1,
                  size_t d, const c2st_config *cfg)
{
    double score = -1, epochs = 0;
    const double t0 = now();
    const clock_t c0 = clock();
    cr_assert_eq(c2st(x0, n0, x1, n1, d, cfg, &score, &epochs), 0);
    fprintf(stderr, "c2st %s: score %.4f, %.1f epochs per fold, %.2f s wall, %.2f s CPU\n",
            what, score, epochs, now() - t0, (double)(clock() - c0) / CLOCKS_PER_SEC);
    return score;
}

Test(c2st, same_distribution_scores_half)
{
    const size_t n = 2000, d = 2;
    rng r;
    rng_seed(&r, 1, 0);
    double *x0 = gaussian(n, d, 0.0, 1.0, &r), *x1 = gaussian(n, d, 0.0, 1.0, &r);
    const double s = run("same", x0, n, x1, n, d, NULL);
    const double tol = Z * sqrt(0.25 / (2.0 * n)) + 0.01;
    cr_assert(fabs(s - 0.5) <= tol, "same distribution: score %.4f, expected 0.5 +- %.4f", s,
              tol);
    free(x0);
    free(x1);
}

Test(c2st, separated_sets_score_near_one)
{
    const size_t n = 2000, d = 2;
    rng r;
    rng_seed(&r, 2, 0);
    double *x0 = gaussian(n, d, 0.0, 1.0, &r), *x1 = gaussian(n, d, 4.0, 1.0, &r);
    const double s = run("separated", x0, n, x1, n, d, NULL);
    /* Bayes accuracy Phi(4 sqrt(2) / 2) = 0.9976. */
    cr_assert(s > 0.95, "separated sets: score %.4f", s);
    free(x0);
    free(x1);
}

Test(c2st, one_sd_shift_gives_bayes_accuracy)
{
    /* 1-D N(0,1) against N(1,1): Bayes-optimal accuracy Phi(0.5) = 0.6915. */
    const size_t n = 3000, d = 1;
    rng r;
    rng_seed(&r, 3, 0);
    double *x0 = gaussian(n, d, 0.0, 1.0, &r), *x1 = gaussian(n, d, 1.0, 1.0, &r);
    const double s = run("1-sd shift", x0, n, x1, n, d, NULL);
    const double p = phi(0.5);
    const double tol = Z * sqrt(p * (1 - p) / (2.0 * n)) + 0.015;
    cr_assert(fabs(s - p) <= tol, "1-sd shift: score %.4f, expected %.4f +- %.4f", s, p, tol);
    free(x0);
    free(x1);
}

Test(c2st, deterministic_and_affine_invariant)
{
    /* Same seed, same score; an affine change of units applied to both sets
     * is undone by the z-scoring (up to float rounding of the features). */
    const size_t n = 600, d = 3;
    rng r;
    rng_seed(&r, 4, 0);
    double *x0 = gaussian(n, d, 0.0, 1.0, &r), *x1 = gaussian(n, d, 0.5, 1.0, &r);
    c2st_config cfg = c2st_defaults();
    cfg.seed = 11;
    cfg.max_epochs = 100; /* small n keeps improving the training loss for ~800 epochs */
    const double a = run("det a", x0, n, x1, n, d, &cfg);
    const double b = run("det b", x0, n, x1, n, d, &cfg);
    cr_assert_eq(a, b);
    for (size_t i = 0; i < n * d; i++) {
        x0[i] = 1000.0 * x0[i] - 5e4;
        x1[i] = 1000.0 * x1[i] - 5e4;
    }
    const double c = run("affine", x0, n, x1, n, d, &cfg);
    cr_assert(fabs(a - c) <= 0.02, "affine change: %.4f vs %.4f", c, a);
    /* A different seed gives a (slightly) different but similar score. */
    cfg.seed = 12;
    const double e = run("seed 12", x0, n, x1, n, d, &cfg);
    cr_assert(fabs(e - a) <= 0.05);
    free(x0);
    free(x1);
}

Test(c2st, max_epochs_and_unequal_sizes)
{
    const size_t n0 = 500, n1 = 300, d = 2;
    rng r;
    rng_seed(&r, 5, 0);
    double *x0 = gaussian(n0, d, 0.0, 1.0, &r), *x1 = gaussian(n1, d, 3.0, 1.0, &r);
    /* Bayes accuracy for the 2-D shift of 3 sd per coordinate: Phi(3 sqrt(2)/2) = 0.983
     * (with the 5:3 prior a little higher). */
    const double s = run("unequal sizes", x0, n0, x1, n1, d, NULL);
    cr_assert(s > 0.95, "unequal sizes: score %.4f", s);
    c2st_config cfg = c2st_defaults();
    cfg.max_epochs = 3;
    double score, epochs;
    cr_assert_eq(c2st(x0, n0, x1, n1, d, &cfg, &score, &epochs), 0);
    cr_assert_eq(epochs, 3.0);
    cr_assert(score >= 0.0 && score <= 1.0);
    free(x0);
    free(x1);
}

Test(c2st, invalid_arguments)
{
    double x[20] = {0}, bad[4] = {0, NAN, 0, 0}, s;
    cr_assert_eq(c2st(x, 10, x, 10, 0, NULL, &s, NULL), -1);      /* d = 0 */
    cr_assert_eq(c2st(x, 2, x, 2, 1, NULL, &s, NULL), -1);        /* fewer than 2 per fold */
    cr_assert_eq(c2st(bad, 4, x, 10, 1, NULL, &s, NULL), -1);     /* NaN */
    cr_assert_eq(c2st(NULL, 4, x, 10, 1, NULL, &s, NULL), -1);
    c2st_config cfg = c2st_defaults();
    cfg.n_folds = 1;
    cr_assert_eq(c2st(x, 10, x, 10, 1, &cfg, &s, NULL), -1);
    /* Constant first set: sd 0 is replaced by 1, not divided by. */
    double c0[40], c1[40];
    for (int i = 0; i < 40; i++) {
        c0[i] = 2.0;
        c1[i] = i % 2 ? 5.0 : -1.0;
    }
    cr_assert_eq(c2st(c0, 40, c1, 40, 1, NULL, &s, NULL), 0);
    cr_assert(s > 0.9, "constant vs two-point: %.4f", s);
}
