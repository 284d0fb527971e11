/* Tests for src/transform.c (the bijections NPE trains through) and their
 * use in src/npe.c: inverse and forward agree, the log-Jacobian matches a
 * finite difference, the automatic choice per prior kind, densities of a
 * transformed model integrate to 1 over the prior's support without any
 * leakage correction, and a log-normal prior with positive data trains and
 * samples end to end with no transform done by hand (exact conjugate
 * posterior to compare with). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "npe.h"
#include "prior.h"
#include "rng.h"
#include "transform.h"

static void setup(void)
{
    nn_set_threads(1);
}

TestSuite(transform, .init = setup, .timeout = 120);

static prior *parse1(const char *spec)
{
    char err[600];
    const char *s[1] = {spec};
    prior *p = prior_parse(s, 1, err, sizeof err);
    cr_assert_not_null(p, "'%s': %s", spec, err);
    return p;
}

/* T^-1(T(v)) = v (relative 1e-12), and log|T'(v)| equals the log of a
 * central difference of T with step h = 1e-6 of the domain's scale (error
 * O(h^2 T'''/T') ~ 1e-10 relative here; tolerance 1e-6). */
Test(transform, inverse_and_jacobian)
{
    const tf_dim tfs[] = {{TF_LOG, 0, 0}, {TF_LOG, -2, 0}, {TF_LOGIT, -1, 1}, {TF_LOGIT, 0, 1}, {TF_LOGIT, 3, 10},
                          {TF_LOG1P, 0, 0}, {TF_NONE, 0, 0}};
    for (size_t t = 0; t < sizeof tfs / sizeof tfs[0]; t++) {
        const tf_dim *T = &tfs[t];
        cr_assert(tf_valid(T));
        double lo = T->kind == TF_LOG1P ? T->lo - 1 : T->lo, w = T->kind == TF_LOGIT ? T->hi - T->lo : 5.0;
        for (int i = 1; i < 20; i++) {
            double v = T->kind == TF_NONE ? -3 + 0.3 * i : lo + w * i / 20.0;
            double y = tf_forward(T, v);
            cr_assert(isfinite(y));
            double back = tf_inverse(T, y);
            cr_expect_float_eq(back, v, 1e-12 * (1 + fabs(v)), "%s: T^-1(T(%g)) = %.17g", tf_kind_name(T->kind), v,
                               back);
            double h = 1e-6 * w;
            double fd = (tf_forward(T, v + h) - tf_forward(T, v - h)) / (2 * h);
            cr_expect_float_eq(tf_log_jac(T, v), log(fabs(fd)), 1e-6, "%s at %g: %.12g vs fd %.12g",
                               tf_kind_name(T->kind), v, tf_log_jac(T, v), log(fabs(fd)));
        }
    }
    /* Outside the domain: NaN; the edges map to -inf / +inf. */
    const tf_dim lg = {TF_LOGIT, 0, 1}, lt = {TF_LOG, 0, 0};
    cr_expect(isnan(tf_forward(&lg, -0.1)) && isnan(tf_forward(&lg, 1.1)) && isnan(tf_forward(&lt, -1)));
    cr_expect(tf_forward(&lg, 0) == -INFINITY && tf_forward(&lg, 1) == INFINITY && tf_forward(&lt, 0) == -INFINITY);
    /* Far in the tails the inverse stays inside the closed interval. */
    cr_expect(tf_inverse(&lg, 800) <= 1 && tf_inverse(&lg, -800) >= 0 && tf_inverse(&lt, -800) >= 0);
}

Test(transform, automatic_choice_per_prior_kind)
{
    prior *p = parse1("uniform:-1:3,beta:2:2,exponential:1,gamma:2:1,lognormal:0:1,weibull:1:2,normal:0:1,"
                      "mvn:[0,0]:[[1,0],[0,1]]");
    tf_dim t[9];
    tf_for_prior(p, 0, t); /* the default: uniform dimensions left as they are */
    cr_expect_eq(t[0].kind, TF_NONE);
    cr_expect(!tf_covers_support(p, t));
    tf_for_prior(p, 1, t);
    cr_expect(t[0].kind == TF_LOGIT && t[0].lo == -1 && t[0].hi == 3);
    cr_expect(t[1].kind == TF_LOGIT && t[1].lo == 0 && t[1].hi == 1);
    for (int j = 2; j < 6; j++) cr_expect(t[j].kind == TF_LOG && t[j].lo == 0, "dimension %d", j);
    for (int j = 6; j < 9; j++) cr_expect_eq(t[j].kind, TF_NONE, "dimension %d", j);
    cr_expect(tf_covers_support(p, t));
    t[0].kind = TF_NONE;
    cr_expect(!tf_covers_support(p, t));
    prior_destroy(&p);
}

/* theta ~ U(0, 1) x Gamma(2, 1), x = (theta_0 + 0.1 e0, log(theta_1) + 0.3 e1):
 * with the default transforms every sample lies inside the support, nothing
 * is rejected, the in-support mass is exactly 1, and the (unrenormalised)
 * density integrates to 1 over the support: midpoint rule on a grid over
 * (0, 1) x (0, 12), the mass beyond 12 of a posterior concentrated near
 * theta_1 ~ 2 being negligible.  The grid (200 x 600 cells of 0.005 x 0.02)
 * resolves posterior widths of ~0.1 and ~0.6; tolerance 0.02 (grid error
 * plus the mass q puts beyond theta_1 = 12). */
Test(transform, transformed_density_integrates_to_one)
{
    enum { N = 3000 };
    double *th = malloc(N * 2 * sizeof *th), *x = malloc(N * 2 * sizeof *x);
    prior *pr = parse1("uniform:0:1,gamma:2:1");
    rng r;
    rng_seed(&r, 7, 0);
    prior_sample(pr, &r, N, th);
    for (int i = 0; i < N; i++) {
        x[2 * i] = th[2 * i] + 0.1 * rng_normal(&r);
        x[2 * i + 1] = log(th[2 * i + 1]) + 0.3 * rng_normal(&r);
    }
    char err[600];
    npe_data d;
    cr_assert_eq(npe_data_init(&d, th, x, N, 2, 2, err, sizeof err), 0, "%s", err);
    flow_config fc = flow_config_default(FLOW_NSF, 2, 2);
    fc.n_transforms = 3;
    fc.hidden = 32;
    npe_train_config cfg = npe_train_defaults();
    cfg.max_epochs = 60;
    cfg.theta_transform = NPE_TF_ALL; /* the uniform dimension too */
    npe_train_report rep;
    npe_posterior *p = npe_train(&d, pr, &fc, &cfg, &rep, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    model_file *m = npe_posterior_model(p);
    cr_expect(m->theta_tf[0].kind == TF_LOGIT && m->theta_tf[1].kind == TF_LOG);
    cr_expect_eq(rep.n_outside, 0);
    const double x_o[2] = {0.5, log(2.0)};
    enum { S = 5000 };
    double *smp = malloc(S * 2 * sizeof *smp);
    npe_sample_report sr;
    rng_seed(&r, 8, 0);
    cr_assert_eq(npe_sample(p, x_o, S, &r, 30, smp, &sr, err, sizeof err), 0, "%s", err);
    cr_expect_eq(sr.drawn, S, "nothing should be rejected (drawn %llu)", (unsigned long long)sr.drawn);
    for (int i = 0; i < S; i++) cr_assert(smp[2 * i] > 0 && smp[2 * i] < 1 && smp[2 * i + 1] > 0);
    double mass;
    cr_assert_eq(npe_support_mass(p, x_o, 1000, &r, 10, &mass, err, sizeof err), 0, "%s", err);
    cr_expect_eq(mass, 1.0);
    enum { G0 = 200, G1 = 600 };
    double *grid = malloc((size_t)G0 * G1 * 2 * sizeof *grid), *lq = malloc((size_t)G0 * G1 * sizeof *lq);
    for (int a = 0; a < G0; a++)
        for (int b = 0; b < G1; b++) {
            grid[((size_t)a * G1 + b) * 2] = (a + 0.5) / G0;
            grid[((size_t)a * G1 + b) * 2 + 1] = 12.0 * (b + 0.5) / G1;
        }
    cr_assert_eq(npe_log_prob(p, grid, (size_t)G0 * G1, x_o, 1, lq, err, sizeof err), 0, "%s", err);
    double integral = 0;
    for (size_t i = 0; i < (size_t)G0 * G1; i++) integral += exp(lq[i]) * (1.0 / G0) * (12.0 / G1);
    fprintf(stderr, "transformed NSF: integral over the support %.4f\n", integral);
    cr_expect_leq(fabs(integral - 1), 0.02, "integral %g", integral);
    /* Outside the support: -inf, on its edge too. */
    const double out[6] = {-0.1, 1, 0.5, -1, 0.0, 1};
    double lo[3];
    cr_assert_eq(npe_log_prob(p, out, 3, x_o, 1, lo, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 3; i++) cr_expect(lo[i] == -INFINITY, "point %d: %g", i, lo[i]);
    free(grid);
    free(lq);
    free(smp);
    npe_posterior_destroy(&p);
    npe_data_free(&d);
    prior_destroy(&pr);
    free(th);
    free(x);
}
