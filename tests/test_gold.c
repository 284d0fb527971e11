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
 * - the model file round trip gives bit-identical predictions;
 * - NDE/SCANDAL (cond_mog.h): the density loss's gradient; the mixture's
 *   gradient and every Hessian column against finite differences; the
 *   tangent score and its weight derivative (the second derivative)
 *   against finite differences; the density integrates to 1 and its
 *   samples have its mean; trained on Galton, the probabilities of all x
 *   sum to 1, the score is the derivative of log P^, samples are whole
 *   numbers with P^'s frequencies, and both beat the trivial estimator;
 * - the joint score from parameter tangents (gold_score.c) on a hand-made
 *   trace (tensor draws, a broadcast parameter, Categorical weights, D = 2
 *   theta named in another order than the tangents name them) against the
 *   closed-form derivatives written out here, and its refusals.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gold_cmd.h"
#include "gold/gold_data.h"
#include "gold/gold_est.h"
#include "gold/gold_score.h"
#include "gold/ratio_net.h"
#include "mine.h"
#include "nn/nn.h"
#include "rng.h"
#include "trace.h"
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
        if (gold_method_is_density((gold_method)m)) continue; /* gold_density_loss: below */
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

Test(gold, density_loss_gradients_match_finite_differences)
{
    enum { B = 7, D = 2 };
    rng r;
    rng_seed(&r, 4, 0);
    double lp[B], th[B * D], w[B], t[B * D], glp[B], gth[B * D];
    for (int b = 0; b < B; b++) {
        lp[b] = rng_normal(&r) - 1;
        w[b] = b % 3 != 0;
        for (int k = 0; k < D; k++) {
            th[b * D + k] = rng_normal(&r);
            t[b * D + k] = rng_normal(&r);
        }
    }
    for (int with_score = 0; with_score < 2; with_score++) {
        const double *tp = with_score ? th : NULL;
        gold_density_loss(3.0, B, D, lp, tp, w, t, glp, gth);
        const double h = 1e-6;
        for (int i = 0; i < B + (with_score ? B * D : 0); i++) {
            double *v = i < B ? &lp[i] : &th[i - B];
            const double keep = *v;
            *v = keep + h;
            const double up = gold_density_loss(3.0, B, D, lp, tp, w, t, NULL, NULL);
            *v = keep - h;
            const double dn = gold_density_loss(3.0, B, D, lp, tp, w, t, NULL, NULL);
            *v = keep;
            const double fd = (up - dn) / (2 * h), an = i < B ? glp[i] : gth[i - B];
            cr_assert(fabs(fd - an) <= 1e-7 + 1e-6 * fabs(an), "%d: analytic %.10g, fd %.10g", i, an, fd);
        }
        /* rows without a score at their theta (w = 0) have no score gradient */
        for (int k = 0; with_score && k < D; k++) cr_assert_eq(gth[0 * D + k], 0.0);
    }
}

/* One mixture conditional: d lp / d o against finite differences of lp, and
 * every column of the Hessian (cond_mog_mix_hvp with v = e_j) against finite
 * differences of the gradient.  Double arithmetic on float parameters: the
 * steps are powers of two, so o +- h is exact in float, and the truncation
 * error (h^2 ~ 1e-6 relative) sets the tolerance. */
Test(gold, mixture_gradient_and_hessian_match_finite_differences)
{
    enum { K = 4, P = 3 * K };
    rng r;
    rng_seed(&r, 21, 0);
    for (int trial = 0; trial < 6; trial++) {
        float o[P];
        for (int k = 0; k < K; k++) {
            o[k] = (float)rng_normal(&r);
            o[K + k] = (float)(1.5 * rng_normal(&r));
            o[2 * K + k] = (float)(0.5 * rng_normal(&r) - 0.3);
        }
        if (trial == 5) o[2 * K] = -12; /* a clipped sigma: no gradient, no curvature through it */
        const double x = rng_normal(&r);
        double g[P], gu[P], gd[P], hv[P], v[P];
        cond_mog_mix_eval(o, K, x, g);
        const float h = 1.0f / 1024;
        for (int j = 0; j < P; j++) {
            const float keep = o[j];
            o[j] = keep + h;
            const double up = cond_mog_mix_eval(o, K, x, gu);
            o[j] = keep - h;
            const double dn = cond_mog_mix_eval(o, K, x, gd);
            o[j] = keep;
            const double fd = (up - dn) / (2.0 * h);
            cr_assert(fabs(fd - g[j]) < 1e-5 + 1e-4 * fabs(g[j]), "trial %d: dlp/do[%d] %.8g, fd %.8g", trial, j, g[j], fd);
            for (int i = 0; i < P; i++) v[i] = i == j;
            cond_mog_mix_hvp(o, K, x, v, hv);
            for (int i = 0; i < P; i++) {
                const double fdh = (gu[i] - gd[i]) / (2.0 * h);
                cr_assert(fabs(fdh - hv[i]) < 1e-4 + 1e-3 * fabs(hv[i]), "trial %d: H[%d][%d] %.8g, fd %.8g", trial, i,
                          j, hv[i], fdh);
            }
        }
        if (trial == 5) cr_assert_eq(g[2 * K], 0.0);
    }
}

/* The autoregressive mixture: the score (tangent forward) against finite
 * differences of log p^ in theta, and the backward of L = sum a lp + sum c
 * t^ (the second derivative: through the input gradient) against finite
 * differences in every weight, float32 tolerances as for the ratio net
 * (the mixture's terms are in double, so a smaller step still rounds well). */
Test(gold, cond_mog_score_and_second_derivative)
{
    enum { C = 2, D = 2, K = 3, B = 4 };
    cond_mog *m = cond_mog_new(C, D, K, 6, 2, B);
    cr_assert(m);
    rng r;
    rng_seed(&r, 12, 0);
    cond_mog_init(m, &r);
    for (int i = 0; i < C; i++)
        for (size_t p = 0; p < m->net[i]->net->n_params; p++) m->net[i]->net->params[p] *= 1.5f;
    double x[B * C], th[B * D], a[B], c[B * D];
    for (int i = 0; i < B * C; i++) x[i] = rng_normal(&r);
    for (int i = 0; i < B * D; i++) th[i] = (float)rng_normal(&r); /* float values: th +- h below is exact */
    for (int b = 0; b < B; b++) a[b] = rng_normal(&r);
    for (int i = 0; i < B * D; i++) c[i] = rng_normal(&r);
    cr_assert_eq(cond_mog_forward(m, x, th, B, 1), 0);
    double that[B * D];
    memcpy(that, m->that, sizeof that);
    const double h = 1.0 / 128;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < D; k++) {
            double *v = &th[b * D + k], L[2];
            const double keep = *v;
            for (int s = 0; s < 2; s++) {
                *v = keep + (s ? -h : h);
                cond_mog_forward(m, x, th, B, 0);
                L[s] = m->lp[b];
            }
            *v = keep;
            const double fd = (L[0] - L[1]) / (2 * h);
            cr_assert(fabs(fd - that[b * D + k]) < 1e-3 + 1e-2 * fabs(fd), "row %d theta %d: score %.6g, fd %.6g", b, k,
                      that[b * D + k], fd);
        }
    cond_mog_zero_grad(m);
    cr_assert_eq(cond_mog_forward(m, x, th, B, 1), 0);
    cr_assert_eq(cond_mog_backward(m, a, c, B), 0);
    const size_t np = cond_mog_n_params(m);
    float *grad = malloc(np * sizeof *grad), *par = malloc(np * sizeof *par);
    cond_mog_get_grads(m, grad);
    cond_mog_get_params(m, par);
    int checked = 0;
    const float hw = 2.5e-3f; /* the 1.5x weights make a sharp mixture: 1e-2 leaves 10% truncation error */
    for (size_t p = 0; p < np; p++) {
        const float keep = par[p];
        double L[2];
        for (int s = 0; s < 2; s++) {
            par[p] = keep + (s ? -hw : hw);
            cond_mog_set_params(m, par);
            cond_mog_forward(m, x, th, B, 1);
            double l = 0;
            for (int b = 0; b < B; b++) l += a[b] * m->lp[b];
            for (int i = 0; i < B * D; i++) l += c[i] * m->that[i];
            L[s] = l;
        }
        par[p] = keep;
        cond_mog_set_params(m, par);
        const double fd = (L[0] - L[1]) / (2 * hw);
        cr_assert(fabs(fd - grad[p]) < 3e-3 + 2e-2 * fabs(fd), "param %zu: backward %.6g, fd %.6g", p, grad[p], fd);
        checked += fabs(grad[p]) > 1e-3;
    }
    cr_assert(checked > (int)np / 2, "only %d of %zu non-trivial gradients", checked, np);
    /* without the score term: the NLL gradient alone, from a forward without tangents, is the same */
    float *g2 = malloc(np * sizeof *g2);
    cond_mog_zero_grad(m);
    cond_mog_forward(m, x, th, B, 1);
    cond_mog_backward(m, a, NULL, B);
    cond_mog_get_grads(m, grad);
    cond_mog_zero_grad(m);
    cond_mog_forward(m, x, th, B, 0);
    cr_assert_eq(cond_mog_backward(m, a, c, B), -1, "a score backward after a forward without tangents");
    cr_assert_eq(cond_mog_backward(m, a, NULL, B), 0);
    cond_mog_get_grads(m, g2);
    for (size_t p = 0; p < np; p++) cr_assert(fabs(grad[p] - g2[p]) <= 1e-6f * (1 + fabs(grad[p])), "param %zu", p);
    free(g2);
    free(grad);
    free(par);
    cond_mog_destroy(&m);
    cr_assert_null(m);
}

/* p^(x | theta) integrates to 1 over x (C = 2, a 2-D grid; Riemann sum with
 * step 0.08 over [-16, 16]^2: the components' means lie within +-4 and their
 * sds near 0.5, so the tails beyond are negligible), for a
 * random network at two theta points; and its samples have the density's
 * moments (mean of x_0 within 4 standard errors). */
Test(gold, cond_mog_density_integrates_to_one)
{
    enum { C = 2, D = 1, K = 3, N = 401 };
    cond_mog *m = cond_mog_new(C, D, K, 8, 1, N);
    cr_assert(m);
    rng r;
    rng_seed(&r, 7, 0);
    cond_mog_init(m, &r);
    const double lo = -16, hi = 16, dx = (hi - lo) / (N - 1);
    double x[N * C], th[N * D];
    for (int t = 0; t < 2; t++) {
        double total = 0, mean0 = 0;
        for (int i = 0; i < N; i++) {
            for (int j = 0; j < N; j++) {
                x[j * C] = lo + i * dx;
                x[j * C + 1] = lo + j * dx;
                th[j] = t ? 1.3 : -0.4;
            }
            cr_assert_eq(cond_mog_forward(m, x, th, N, 0), 0);
            for (int j = 0; j < N; j++) {
                total += exp(m->lp[j]) * dx * dx;
                mean0 += x[j * C] * exp(m->lp[j]) * dx * dx;
            }
        }
        cr_assert(fabs(total - 1) < 1e-3, "theta %d: integral %.6f", t, total);
        /* samples */
        enum { S = 20000 };
        double *xs = malloc(S * C * sizeof *xs), *ts = malloc(S * sizeof *ts);
        for (int i = 0; i < S; i++) ts[i] = t ? 1.3 : -0.4;
        cr_assert_eq(cond_mog_sample(m, ts, S, &r, xs), 0);
        double sm = 0, s2 = 0;
        for (int i = 0; i < S; i++) sm += xs[i * C] / S;
        for (int i = 0; i < S; i++) s2 += pow(xs[i * C] - sm, 2) / (S - 1);
        cr_assert(fabs(sm - mean0) < 4 * sqrt(s2 / S), "theta %d: sample mean %.4f, density mean %.4f", t, sm, mean0);
        free(xs);
        free(ts);
    }
    cond_mog_destroy(&m);
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

/* A density model trained on the Galton board: x is whole numbers, so it is
 * modelled dequantised; the probabilities of all whole x (the density
 * integrated over each unit cell; -40..70 covers the mixture's tails) sum
 * to 1 at any theta; the score is the theta derivative of log P^ (central
 * differences, step 1e-3: truncation ~1e-6, well inside 1e-3); log r^ is the
 * difference of log P^; samples are whole numbers with P^'s frequencies. */
static void density_checks(gold_model *m)
{
    enum { NX = 111 };
    cr_assert(m->deq[0], "the Galton x is whole numbers: dequantised");
    double x[NX], th[NX], lp[NX], lp2[NX], sc[NX], lr[NX], th1[NX];
    for (int i = 0; i < NX; i++) x[i] = i - 40;
    for (int t = 0; t < 3; t++) {
        const double theta = -0.9 + 0.35 * t;
        for (int i = 0; i < NX; i++) th[i] = theta;
        cr_assert_eq(gold_model_log_prob(m, x, th, NX, lp), 0);
        double total = 0;
        for (int i = 0; i < NX; i++) total += exp(lp[i]);
        cr_assert(fabs(total - 1) < 1e-3, "theta %g: sum of P^(x) %.6f", theta, total);
    }
    for (int i = 0; i < NX; i++) th[i] = -0.8 + 1e-3;
    gold_model_log_prob(m, x, th, NX, lp2);
    for (int i = 0; i < NX; i++) th[i] = -0.8 - 1e-3;
    gold_model_log_prob(m, x, th, NX, lp);
    for (int i = 0; i < NX; i++) th[i] = -0.8;
    cr_assert_eq(gold_model_score(m, x, th, NX, sc), 0);
    for (int i = 40; i < 40 + NPOS; i++) {
        const double fd = (lp2[i] - lp[i]) / 2e-3;
        cr_assert(fabs(fd - sc[i]) < 1e-3 * (1 + fabs(fd)), "x %g: score %.6g, fd of log P^ %.6g", x[i], sc[i], fd);
    }
    gold_model_log_prob(m, x, th, NX, lp);
    for (int i = 0; i < NX; i++) th1[i] = -0.5;
    gold_model_log_prob(m, x, th1, NX, lp2);
    cr_assert_eq(gold_model_log_ratio(m, x, th, th1, NX, lr), 0);
    for (int i = 0; i < NX; i++) cr_assert_eq(lr[i], lp[i] - lp2[i]);
    enum { S = 4000 };
    double *ts = malloc(S * sizeof *ts), *xs = malloc(S * sizeof *xs);
    for (int i = 0; i < S; i++) ts[i] = -0.8;
    rng r;
    rng_seed(&r, 8, 0);
    cr_assert_eq(gold_model_sample(m, ts, S, &r, xs), 0);
    int n15 = 0;
    for (int i = 0; i < S; i++) {
        cr_assert_eq(xs[i], floor(xs[i]));
        n15 += xs[i] == 15;
    }
    const double p15 = exp(lp[40 + 15]);
    cr_assert(fabs(n15 - S * p15) < 5 * sqrt(S * p15 * (1 - p15)) + 1, "x = 15: %d of %d, P^ %.4f", n15, S, p15);
    free(ts);
    free(xs);
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
    const gold_method methods[] = {GOLD_CARL,  GOLD_ROLR,   GOLD_RASCAL, GOLD_CASCAL,
                                   GOLD_ALICE, GOLD_ALICES, GOLD_NDE,    GOLD_SCANDAL};
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
        if (gold_method_is_density(methods[i])) density_checks(m);
        if (i == 2 || methods[i] == GOLD_SCANDAL) {
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

/* NDE's default mixture grows with the training file (1 component per 1,000
 * usable rows, 1..10; gold_default_components), SCANDAL keeps 10, and an
 * explicit count overrides both. */
Test(gold, nde_default_components_grow_with_rows)
{
    cr_expect_eq(gold_default_components(GOLD_NDE, 200), 1);
    cr_expect_eq(gold_default_components(GOLD_NDE, 1999), 1);
    cr_expect_eq(gold_default_components(GOLD_NDE, 4000), 4);
    cr_expect_eq(gold_default_components(GOLD_NDE, 10000), 10);
    cr_expect_eq(gold_default_components(GOLD_NDE, 1000000), 10);
    cr_expect_eq(gold_default_components(GOLD_SCANDAL, 200), 10);
    gold_data g;
    cr_assert_eq(tk_galton_mine(MINE_THETA_GRID, 0, 1, 1, 3000, &g), 0);
    const struct { gold_method m; size_t rows; int comp, want; } cases[] = {
        {GOLD_NDE, 3000, 0, 3}, {GOLD_NDE, 1200, 0, 1}, {GOLD_NDE, 3000, 5, 5}, {GOLD_SCANDAL, 1200, 0, 10}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gold_train_config cfg;
        gold_train_defaults(&cfg);
        cfg.method = cases[i].m;
        cfg.max_rows = cases[i].rows;
        cfg.components = cases[i].comp;
        cfg.epochs = 1;
        cfg.min_steps = 0;
        cfg.progress = 0;
        gold_model *m = gold_train(&cfg, &g);
        cr_assert(m);
        cr_expect_eq(m->components, cases[i].want, "case %zu: %d components", i, m->components);
        cr_expect_eq(m->dens->K, cases[i].want);
        gold_model_destroy(&m);
    }
    gold_data_free(&g);
}

/* ---- the joint score from parameter tangents ------------------------------------ */

static trace_entry tg_entry(trace_kind kind, const char *address, const char *name, dist_kind kind_d, double *p0,
                            size_t n0, double *p1, size_t n1, size_t k, double *v, size_t n, const trace_tangent *tg)
{
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.base_address = address;
    e.name = name;
    e.dist = kind_d;
    e.param[0] = (trace_array){p0, n0, NULL, 1};
    e.param[1] = (trace_array){p1, n1, NULL, 1};
    e.k = k;
    e.value = (trace_array){v, n, NULL, 1};
    dist d;
    char why[100];
    cr_assert_eq(dist_init(&d, kind_d, p0, n0, p1, n1, k, why, sizeof why), 0, "%s", why);
    e.log_prob = dist_log_prob(&d, v);
    e.control = 1;
    e.observed = kind == TRACE_OBSERVE ? TRACE_DRAWN : TRACE_LATENT;
    e.tangent = tg;
    return e;
}

Test(gold, tangent_score_matches_closed_forms)
{
    trace *t = trace_new();
    cr_assert_not_null(t);
    const char *names3[3] = {"a", "b", "c"}; /* the simulator's theta */
    const char *mine2[2] = {"b", "a"};       /* what is mined, in another order */
    /* theta Samples themselves: excluded even with a tangent */
    double pa[2] = {0, 1}, va = 0.3, vb = -0.2;
    trace_tangent self = {3, names3, {NULL, NULL}, {0, 0}};
    trace_entry e = tg_entry(TRACE_SAMPLE, "ta", "a", DIST_NORMAL, &pa[0], 1, &pa[1], 1, 0, &va, 1, &self);
    cr_assert_not_null(trace_append(t, &e));
    e = tg_entry(TRACE_SAMPLE, "tb", "b", DIST_NORMAL, &pa[0], 1, &pa[1], 1, 0, &vb, 1, NULL);
    cr_assert_not_null(trace_append(t, &e));
    /* Normal over 3 elements: mean [3], stddev broadcast [1]; tangents
     * [3, 3] and [1, 3] over (a, b, c) */
    double mu[3] = {0.5, -1.0, 2.0}, sd = 1.5, x[3] = {1.0, 0.2, 1.1};
    double dmu[9] = {1, 2, 3, -1, 0.5, 0, 0.25, -2, 1}, dsd[3] = {0.3, -0.7, 9};
    trace_tangent tn = {3, names3, {dmu, dsd}, {9, 3}};
    e = tg_entry(TRACE_SAMPLE, "n", "", DIST_NORMAL, mu, 3, &sd, 1, 0, x, 3, &tn);
    cr_assert_not_null(trace_append(t, &e));
    /* Categorical, 2 elements of 3 unnormalised weights, tangent [6, 3] */
    double w[6] = {1, 2, 3, 0.5, 0.5, 2}, c[2] = {2, 0};
    double dw[18] = {0.1, 0.2, 0, -0.3, 0.1, 0, 0.4, -0.2, 0, 1, 0, 0, 0, 0.6, 0, -0.5, 0.25, 0};
    trace_tangent tc = {3, names3, {dw, NULL}, {18, 0}};
    e = tg_entry(TRACE_SAMPLE, "c", "", DIST_CATEGORICAL, w, 6, NULL, 0, 3, c, 2, &tc);
    cr_assert_not_null(trace_append(t, &e));
    /* an Observe declared independent of theta, a Uniform with zero tangents, a Tag */
    double rate = 2.0, kobs = 3.0, lo = 0, hi = 1, u = 0.5, zero[3] = {0, 0, 0};
    trace_tangent none = {0, NULL, {NULL, NULL}, {0, 0}}, tu = {3, names3, {zero, zero}, {3, 3}};
    e = tg_entry(TRACE_OBSERVE, "o", "obs", DIST_POISSON, &rate, 1, NULL, 0, 0, &kobs, 1, &none);
    cr_assert_not_null(trace_append(t, &e));
    e = tg_entry(TRACE_SAMPLE, "u", "", DIST_UNIFORM, &lo, 1, &hi, 1, 0, &u, 1, &tu);
    cr_assert_not_null(trace_append(t, &e));
    trace_entry tag;
    memset(&tag, 0, sizeof tag);
    tag.kind = TRACE_TAG;
    tag.base_address = "x";
    tag.name = "x";
    tag.value = (trace_array){x, 1, NULL, 1};
    cr_assert_not_null(trace_append(t, &tag));

    /* closed forms: d log N(x|m,s)/dm = (x-m)/s^2, /ds = (x-m)^2/s^3 - 1/s;
     * d log (w_c / sum w)/dw_j = [j = c]/w_c - 1/sum w */
    double want[3] = {0, 0, 0}; /* per (a, b, c) */
    for (int i = 0; i < 3; i++) {
        const double r = x[i] - mu[i];
        for (int q = 0; q < 3; q++)
            want[q] += r / (sd * sd) * dmu[i * 3 + q] + (r * r / (sd * sd * sd) - 1 / sd) * dsd[q];
    }
    for (int i = 0; i < 2; i++) {
        const double *wi = w + 3 * i, sum = wi[0] + wi[1] + wi[2];
        for (int j = 0; j < 3; j++) {
            const double g = (j == (int)c[i] ? 1 / wi[j] : 0) - 1 / sum;
            for (int q = 0; q < 3; q++) want[q] += g * dw[(3 * i + j) * 3 + q];
        }
    }
    double score[2];
    gold_bad why;
    char msg[200] = "";
    cr_assert(gold_trace_has_tangents(t, mine2, 2));
    cr_assert_eq(gold_tangent_score(t, mine2, 2, score, &why, msg, sizeof msg), 0, "%s", msg);
    cr_assert(fabs(score[0] - want[1]) < 1e-12 && fabs(score[1] - want[0]) < 1e-12, "score (%.15g, %.15g), want (%.15g, %.15g)",
              score[0], score[1], want[1], want[0]);
    /* the same from finite differences of dist_log_prob along the tangents
     * (Normal and Categorical; h = 1e-6: error ~1e-9) */
    for (int q = 0; q < 2; q++) {
        const int col = q == 0 ? 1 : 0;
        double lp[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            const double h = sgn ? -1e-6 : 1e-6;
            double m2[3], s2 = sd + h * dsd[col], w2[6];
            for (int i = 0; i < 3; i++) m2[i] = mu[i] + h * dmu[i * 3 + col];
            for (int i = 0; i < 6; i++) w2[i] = w[i] + h * dw[i * 3 + col];
            dist dn, dc;
            char dwhy[100];
            cr_assert_eq(dist_init(&dn, DIST_NORMAL, m2, 3, &s2, 1, 0, dwhy, sizeof dwhy), 0);
            cr_assert_eq(dist_init(&dc, DIST_CATEGORICAL, w2, 6, NULL, 0, 3, dwhy, sizeof dwhy), 0);
            lp[sgn] = dist_log_prob(&dn, x) + dist_log_prob(&dc, c);
        }
        const double fd = (lp[0] - lp[1]) / 2e-6;
        cr_assert(fabs(fd - score[q]) < 1e-6, "theta %s: FD %.10g, tangents %.10g", mine2[q], fd, score[q]);
    }
    /* refusals: a theta the tangents do not name; a draw without tangent;
     * a Uniform bound that moves with theta */
    const char *other[1] = {"d"};
    cr_assert_eq(gold_tangent_score(t, other, 1, score, &why, msg, sizeof msg), -1);
    cr_assert_eq(why, GOLD_BAD_NO_TANGENT, "%s", msg);
    cr_assert(strstr(msg, "does not name theta 'd'"), "%s", msg);
    double *ud = (double *)t->entries[5].tangent->d[0]; /* the Uniform's low (the trace's copy) */
    cr_assert_eq(t->entries[5].dist, DIST_UNIFORM);
    ud[1] = 0.5;
    cr_assert_eq(gold_tangent_score(t, mine2, 2, score, &why, msg, sizeof msg), -1);
    cr_assert_eq(why, GOLD_BAD_THETA_SUPPORT, "%s", msg);
    ud[1] = 0;
    t->entries[2].tangent = NULL; /* the Normal */
    cr_assert(!gold_trace_has_tangents(t, mine2, 2));
    cr_assert_eq(gold_tangent_score(t, mine2, 2, score, &why, msg, sizeof msg), -1);
    cr_assert_eq(why, GOLD_BAD_NO_TANGENT, "%s", msg);
    trace_destroy(&t);
}
