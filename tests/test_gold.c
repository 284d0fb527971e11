/* Tests for the gold estimators (src/gold/gold_est.c, src/gold/ratio_net.c).
 *
 * - every loss's gradient with respect to the network outputs (log r^ and
 *   t^) against central finite differences, in double;
 * - the ratio network's tangent forward (d f / d theta input) against finite
 *   differences of the forward, and its backward (the derivative of a loss
 *   of f AND of the input gradient with respect to the weights: a second
 *   derivative) against finite differences of that loss, in float32 (steps
 *   and tolerances sized for float rounding: the forward is accurate to
 *   ~1e-6 relative, so a step of 1e-2 gives ~1e-4 rounding error and
 *   ~1e-4 truncation error on these O(1) quantities);
 * - trained on mined Galton data (theta0 on a grid of 101 points in
 *   [-1, 0], theta1 = -0.6; with theta0 over the simulator's whole prior
 *   U(-1, 1) the r_xz targets at theta0 near 1 are so extreme that they
 *   dominate ROLR/RASCAL's losses), every ratio method's log r^(x | -0.8) has an MSE
 *   weighted by p(x | theta1) against the exact oracle far below the trivial
 *   estimator's 0.0632 (required: under a third of it); SALLY's t^(x) at
 *   theta_ref = -0.8 against the exact t(x), weighted by p(x|theta_ref),
 *   below a tenth of the trivial t^ = 0 (the Fisher information 1.41), and
 *   its Fisher information E[t^2] within 15% of 1.41 (the mined joint
 *   scores give the (x, z) information, 2.34 = 1.53^2, within 0.25);
 *   ppxd limits' summed log r^ over 2000 events at -0.8 peaks near -0.8;
 * - the model file round trip gives bit-identical predictions.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gold_cmd.h"
#include "gold/gold_data.h"
#include "gold/gold_est.h"
#include "gold/ratio_net.h"
#include "mine.h"
#include "nn/nn.h"
#include "rng.h"
#include "galton.h"
#include "testkit.h"

static void setup(void) { nn_set_threads(1); }

TestSuite(gold, .init = setup, .timeout = 600);

Test(gold, loss_gradients_match_finite_differences)
{
    enum { B = 9, D = 2 };
    rng r;
    rng_seed(&r, 3, 0);
    double f[B], th[B * D], y[B], lr[B], t[B * D];
    for (int b = 0; b < B; b++) {
        f[b] = 2 * rng_normal(&r);
        y[b] = b % 2;
        lr[b] = rng_normal(&r);
        for (int k = 0; k < D; k++) {
            th[b * D + k] = rng_normal(&r);
            t[b * D + k] = rng_normal(&r);
        }
    }
    f[0] = 12; /* beyond the ROLR clip: zero gradient there */
    for (int m = 0; m < GOLD_METHOD_COUNT; m++) {
        double g[B], gt[B * D];
        gold_loss((gold_method)m, 0.7, 10, B, D, f, th, y, lr, t, g, gt);
        const double h = 1e-6;
        for (int i = 0; i < B + B * D; i++) {
            double *v = i < B ? &f[i] : &th[i - B];
            const double keep = *v;
            *v = keep + h;
            const double up = gold_loss((gold_method)m, 0.7, 10, B, D, f, th, y, lr, t, NULL, NULL);
            *v = keep - h;
            const double dn = gold_loss((gold_method)m, 0.7, 10, B, D, f, th, y, lr, t, NULL, NULL);
            *v = keep;
            const double fd = (up - dn) / (2 * h), an = i < B ? g[i] : gt[i - B];
            cr_assert(fabs(fd - an) <= 1e-6 + 1e-5 * fabs(an), "%s: %s[%d] analytic %.10g, finite difference %.10g",
                      gold_method_name((gold_method)m), i < B ? "dL/df" : "dL/dt", i < B ? i : i - B, an, fd);
        }
        if (m == GOLD_ROLR || m == GOLD_RASCAL) cr_assert_eq(g[0], 0.0);
        /* the score term is there exactly for the methods that have one */
        double any = 0;
        for (int i = 0; i < B * D; i++) any += fabs(gt[i]);
        cr_assert((any > 0) == gold_method_uses_score((gold_method)m), "%s", gold_method_name((gold_method)m));
    }
}

/* f and the tangent for one input row, in double for the finite differences. */
static double net_f(ratio_net *rn, const float *in, int B, int b)
{
    const float *f = mlp_forward(rn->net, in, B);
    return f[b];
}

Test(gold, ratio_net_tangent_and_second_derivative)
{
    enum { C = 3, D = 2, B = 5 };
    ratio_net *rn = ratio_net_new(C, D, 6, 2, 1, B);
    cr_assert(rn);
    rng r;
    rng_seed(&r, 11, 0);
    mlp_init(rn->net, &r);
    /* larger weights than the init so tanh curvature matters */
    for (size_t i = 0; i < rn->net->n_params; i++) rn->net->params[i] *= 1.5f;
    float in[B * (C + D)], a[B], c[B * D];
    for (int i = 0; i < B * (C + D); i++) in[i] = (float)rng_normal(&r);
    for (int b = 0; b < B; b++) a[b] = (float)rng_normal(&r);
    for (int i = 0; i < B * D; i++) c[i] = (float)rng_normal(&r);
    cr_assert(ratio_net_forward_jvp(rn, in, B));
    float tdot[B * D];
    memcpy(tdot, rn->tdot, sizeof tdot);
    /* tangent = d f / d input theta_k */
    const float h = 1e-2f;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < D; k++) {
            float *v = &in[b * (C + D) + C + k];
            const float keep = *v;
            *v = keep + h;
            const double up = net_f(rn, in, B, b);
            *v = keep - h;
            const double dn = net_f(rn, in, B, b);
            *v = keep;
            const double fd = (up - dn) / (2 * h);
            cr_assert(fabs(fd - tdot[b * D + k]) < 1e-3 + 1e-2 * fabs(fd), "row %d theta %d: tangent %.6g, fd %.6g", b,
                      k, tdot[b * D + k], fd);
        }
    /* backward of L = sum a f + sum c tdot against finite differences in every parameter */
    mlp_zero_grad(rn->net);
    cr_assert(ratio_net_forward_jvp(rn, in, B));
    cr_assert_eq(ratio_net_backward_jvp(rn, a, c, B), 0);
    float *grad = malloc(rn->net->n_params * sizeof *grad);
    memcpy(grad, rn->net->grads, rn->net->n_params * sizeof *grad);
    int checked = 0;
    for (size_t p = 0; p < rn->net->n_params; p++) {
        float *w = &rn->net->params[p];
        const float keep = *w;
        double L[2];
        for (int s = 0; s < 2; s++) {
            *w = keep + (s ? -h : h);
            const float *f = ratio_net_forward_jvp(rn, in, B);
            double l = 0;
            for (int b = 0; b < B; b++) l += a[b] * f[b];
            for (int i = 0; i < B * D; i++) l += c[i] * rn->tdot[i];
            L[s] = l;
        }
        *w = keep;
        const double fd = (L[0] - L[1]) / (2 * h);
        cr_assert(fabs(fd - grad[p]) < 2e-3 + 1e-2 * fabs(fd), "param %zu: backward %.6g, fd %.6g", p, grad[p], fd);
        checked += fabs(grad[p]) > 1e-3;
    }
    cr_assert(checked > (int)rn->net->n_params / 2, "only %d non-trivial gradients", checked);
    /* without the score term the backward equals mlp_backward */
    mlp_zero_grad(rn->net);
    ratio_net_forward_jvp(rn, in, B);
    ratio_net_backward_jvp(rn, a, NULL, B);
    memcpy(grad, rn->net->grads, rn->net->n_params * sizeof *grad);
    mlp_zero_grad(rn->net);
    mlp_forward(rn->net, in, B);
    mlp_backward(rn->net, a, NULL, B);
    for (size_t p = 0; p < rn->net->n_params; p++)
        cr_assert(fabs(grad[p] - rn->net->grads[p]) <= 1e-6f * (1 + fabs(grad[p])), "param %zu", p);
    free(grad);
    ratio_net_destroy(&rn);
    cr_assert_null(rn);
}

/* ---- Galton ------------------------------------------------------------------------ */

#define NPOS TK_GALTON_NPOS

/* MSE of log r^(x | -0.8) weighted by p(x | -0.6). */
static double galton_mse(gold_model *m)
{
    double p0[NPOS], d0[NPOS], p1[NPOS], d1[NPOS], x[NPOS], th[NPOS], lr[NPOS];
    tk_galton_exact(-0.8, p0, d0);
    tk_galton_exact(-0.6, p1, d1);
    for (int i = 0; i < NPOS; i++) {
        x[i] = i;
        th[i] = -0.8;
    }
    cr_assert_eq(gold_model_log_r(m, x, th, NPOS, lr), 0);
    double mse = 0;
    for (int i = 0; i < NPOS; i++)
        if (p1[i] > 0) mse += p1[i] * pow(lr[i] - (log(p0[i]) - log(p1[i])), 2);
    return mse;
}

Test(gold, trained_estimators_beat_the_trivial_one_on_galton)
{
    gold_data g;
    cr_assert_eq(tk_galton_mine(MINE_THETA_GRID, 0, 1, 1, 10000, &g), 0);
    cr_assert(g.n > 9900, "%zu rows", g.n);
    double lo = 1, hi = -1;
    for (size_t i = 0; i < g.n; i++) {
        lo = fmin(lo, g.theta0[i]);
        hi = fmax(hi, g.theta0[i]);
    }
    cr_assert(lo == -1 && hi == 0, "theta0 in [%g, %g]", lo, hi);
    const gold_method methods[] = {GOLD_CARL, GOLD_ROLR, GOLD_RASCAL, GOLD_CASCAL, GOLD_ALICE, GOLD_ALICES};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        gold_train_config cfg;
        gold_train_defaults(&cfg);
        cfg.method = methods[i];
        cfg.min_steps = 3000; /* a third of the default: enough to beat the trivial estimator, and quicker */
        gold_model *m = gold_train(&cfg, &g);
        cr_assert(m, "%s", gold_method_name(methods[i]));
        const double mse = galton_mse(m);
        fprintf(stderr, "gold %-7s MSE(log r^) %.5f (trivial 0.0632)\n", gold_method_name(methods[i]), mse);
        cr_assert(mse < 0.0632 / 3, "%s: MSE %.5f", gold_method_name(methods[i]), mse);
        if (methods[i] == GOLD_ALICES) {
            /* limits: 2000 events from the exact p(x | -0.8); the best fit on a 0.01 grid lies within
             * 0.1 of it (the MLE's sd is 1/sqrt(2000 x 1.41) = 0.019; the rest is model error) */
            double p0[NPOS], d0[NPOS], ev[2000], grid[101], sum[101];
            tk_galton_exact(-0.8, p0, d0);
            rng r;
            rng_seed(&r, 17, 0);
            for (int e = 0; e < 2000; e++) {
                double u = rng_uniform(&r), c = 0;
                int x = 0;
                while (x < NPOS - 1 && (c += p0[x]) < u) x++;
                ev[e] = x;
            }
            for (int k = 0; k < 101; k++) grid[k] = -1 + 0.01 * k;
            cr_assert_eq(gold_limits(m, ev, 2000, grid, 101, sum), 0);
            int best = 0;
            for (int k = 1; k < 101; k++)
                if (sum[k] > sum[best]) best = k;
            cr_assert(fabs(grid[best] + 0.8) < 0.1, "best fit %g", grid[best]);
        }
        if (i == 2) {
            /* the file round trip: identical predictions */
            char dir[256], path[300], err[300];
            cr_assert_eq(tk_tmpdir(dir, sizeof dir, "goldm"), 0);
            snprintf(path, sizeof path, "%s/m.ppxr", dir);
            cr_assert_eq(gold_model_save(m, path, err, sizeof err), 0, "%s", err);
            cr_assert(gold_model_file_is(path));
            gold_model *m2 = gold_model_load(path, err, sizeof err);
            cr_assert(m2, "%s", err);
            cr_assert_eq(galton_mse(m2), mse);
            gold_model_destroy(&m2);
            tk_tmpdir_remove(dir);
        }
        gold_model_destroy(&m);
    }
    gold_data_free(&g);
}

Test(gold, sally_learns_the_score)
{
    gold_data g;
    cr_assert_eq(tk_galton_mine(MINE_THETA_FIXED, -0.8, 0, 1, 4000, &g), 0);
    gold_train_config cfg;
    gold_train_defaults(&cfg);
    cfg.method = GOLD_SALLY;
    cfg.epochs = 100; /* 3000 training rows: 24 steps per epoch; at 20 epochs t^ is still shrunk to half */
    gold_model *m = gold_train(&cfg, &g);
    cr_assert(m);
    double p0[NPOS], d0[NPOS], x[NPOS], t[NPOS];
    tk_galton_exact(-0.8, p0, d0);
    for (int i = 0; i < NPOS; i++) x[i] = i;
    cr_assert_eq(gold_model_score(m, x, NULL, NPOS, t), 0);
    double mse = 0, fisher = 0;
    for (int i = 0; i < NPOS; i++)
        if (p0[i] > 0) {
            mse += p0[i] * pow(t[i] - d0[i] / p0[i], 2);
            fisher += p0[i] * pow(d0[i] / p0[i], 2);
        }
    fprintf(stderr, "gold sally   MSE(t^) %.5f (trivial %.4f)\n", mse, fisher);
    cr_assert(mse < fisher / 10, "SALLY MSE %.5f vs trivial %.4f", mse, fisher);
    /* Fisher information: from the mined joint scores, E[t(x,z)^2] (the (x, z) information: the
     * spec's sd 1.53 gives 2.34), and from SALLY, close to the exact 1.41 of x alone */
    double info_joint, info_sally;
    cr_assert_eq(gold_fisher(NULL, &g, 100, &info_joint), 4000);
    cr_assert_eq(gold_fisher(m, &g, 100, &info_sally), 4000);
    fprintf(stderr, "gold fisher  joint %.3f  sally %.3f  exact %.3f (per event)\n", info_joint / 100,
            info_sally / 100, fisher);
    cr_assert(fabs(info_joint / 100 - 2.34) < 0.25, "joint information %.3f", info_joint / 100);
    cr_assert(info_sally < info_joint && fabs(info_sally / 100 - fisher) < 0.15 * fisher, "SALLY information %.3f",
              info_sally / 100);
    gold_model_destroy(&m);
    gold_data_free(&g);
}
