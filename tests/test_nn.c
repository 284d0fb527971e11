/* Tests for src/nn/nn.c and src/nn/mlp.c.
 *
 * Gradients: every kernel and network is checked against float32 central
 * differences.  The scalar being differentiated is L = sum_i out[i] R[i] with
 * R a fixed random projection (so dout = R), accumulated in double; for the
 * losses L is the loss itself.  Each input and parameter element x is moved to
 * x ± EPS (in float; the actual float step is used as the denominator) and
 * the numerical derivative compared with the analytic one with
 * |a - n| <= RTOL max(|a|, |n|) + ATOL.  The absolute floor covers float
 * roundoff in L: a relative 1e-7 error in a sum of O(10) O(1) terms, divided
 * by 2 EPS, is ~1e-4.  ReLU kinks: inputs of the bare ReLU kernel are kept
 * away from 0; in networks the fixed seeds give no pre-activation within
 * the perturbation of 0 (deterministic, so this cannot flake).
 *
 * Every gradient check also runs the backward twice on the same buffers and
 * checks that the gradients double (backward accumulates). */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/mlp.h"
#include "nn/nn.h"
#include "nn/simd.h"
#include "rng.h"

#define EPS 1e-3f
#define RTOL 1e-2
#define ATOL 2e-3

static void setup(void)
{
    nn_set_threads(1);
}

TestSuite(nn, .init = setup);

/* ---- helpers --------------------------------------------------------------- */

static float *fnew(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    cr_assert(p);
    return p;
}

static void fill_normal(float *p, size_t n, rng *r, double scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(scale * rng_normal(r));
}

/* Values with |x| in [0.1, 2]: no ReLU kink within EPS. */
static void fill_away_from_zero(float *p, size_t n, rng *r)
{
    for (size_t i = 0; i < n; i++) {
        const double m = 0.1 + 1.9 * rng_uniform(r);
        p[i] = (float)(rng_uniform(r) < 0.5 ? -m : m);
    }
}

static double dot_fd(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

typedef struct gc_param {
    const char *name;
    float *x;    /* the values perturbed */
    float *g;    /* the analytic gradient buffer (accumulated into by backward) */
    size_t n;
} gc_param;

typedef double (*gc_loss_fn)(void *ctx);  /* forward, return L */
typedef void (*gc_grad_fn)(void *ctx);    /* forward + backward, accumulating */

/* The gradient check described at the top of the file. */
static void gradcheck(const char *what, gc_param *ps, int np, gc_loss_fn loss, gc_grad_fn grad,
                      void *ctx)
{
    float **g1 = calloc((size_t)np, sizeof *g1);
    cr_assert(g1);
    for (int k = 0; k < np; k++)
        nn_zero(ps[k].g, ps[k].n);
    grad(ctx);
    for (int k = 0; k < np; k++) {
        g1[k] = fnew(ps[k].n);
        memcpy(g1[k], ps[k].g, ps[k].n * sizeof(float));
    }
    /* Accumulation: a second backward adds the same gradient again. */
    grad(ctx);
    for (int k = 0; k < np; k++)
        for (size_t i = 0; i < ps[k].n; i++)
            cr_assert(fabs(ps[k].g[i] - 2.0 * g1[k][i]) <= 1e-5 * fabs(g1[k][i]) + 1e-7,
                      "%s: d/d%s[%zu]: second backward gave %.8g, expected 2 x %.8g "
                      "(backward must accumulate)",
                      what, ps[k].name, i, ps[k].g[i], g1[k][i]);
    int fails = 0;
    double worst = 0.0;
    for (int k = 0; k < np; k++) {
        for (size_t i = 0; i < ps[k].n; i++) {
            float *x = ps[k].x + i;
            const float orig = *x;
            const float xp = orig + EPS, xm = orig - EPS;
            *x = xp;
            const double lp = loss(ctx);
            *x = xm;
            const double lm = loss(ctx);
            *x = orig;
            const double num = (lp - lm) / ((double)xp - (double)xm);
            const double ana = g1[k][i];
            const double err = fabs(ana - num);
            const double tol = RTOL * fmax(fabs(ana), fabs(num)) + ATOL;
            if (err / tol > worst)
                worst = err / tol;
            if (err > tol && fails++ < 8)
                fprintf(stderr, "%s: d/d%s[%zu]: analytic %.6g, numerical %.6g\n", what,
                        ps[k].name, i, ana, num);
        }
    }
    for (int k = 0; k < np; k++)
        free(g1[k]);
    free(g1);
    cr_assert(fails == 0, "%s: %d gradient entries disagree with finite differences", what,
              fails);
    cr_assert(worst <= 1.0);
}

/* ---- linear / masked linear ------------------------------------------------- */

typedef struct lin_ctx {
    int B, I, O;
    float *inp, *w, *b, *mask, *scratch, *out, *R;
    float *dinp, *dw, *db;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    if (c->mask)
        nn_masked_linear_forward(c->out, c->inp, c->w, c->mask, c->b, c->scratch, c->B, c->I,
                                 c->O);
    else
        nn_linear_forward(c->out, c->inp, c->w, c->b, c->B, c->I, c->O);
    return dot_fd(c->out, c->R, (size_t)c->B * c->O);
}

static void lin_grad(void *p)
{
    lin_ctx *c = p;
    lin_loss(c);
    if (c->mask)
        nn_masked_linear_backward(c->dinp, c->dw, c->db, c->R, c->inp, c->w, c->mask,
                                  c->scratch, c->B, c->I, c->O);
    else
        nn_linear_backward(c->dinp, c->dw, c->db, c->R, c->inp, c->w, c->B, c->I, c->O);
}

static lin_ctx lin_make(int B, int I, int O, int masked, rng *r)
{
    lin_ctx c = {.B = B, .I = I, .O = O};
    c.inp = fnew((size_t)B * I);
    c.w = fnew((size_t)O * I);
    c.b = fnew((size_t)O);
    c.out = fnew((size_t)B * O);
    c.R = fnew((size_t)B * O);
    c.dinp = fnew((size_t)B * I);
    c.dw = fnew((size_t)O * I);
    c.db = fnew((size_t)O);
    fill_normal(c.inp, (size_t)B * I, r, 1.0);
    fill_normal(c.w, (size_t)O * I, r, 0.5);
    fill_normal(c.b, (size_t)O, r, 0.5);
    fill_normal(c.R, (size_t)B * O, r, 1.0);
    if (masked) {
        c.mask = fnew((size_t)O * I);
        c.scratch = fnew((size_t)O * I);
        for (size_t i = 0; i < (size_t)O * I; i++)
            c.mask[i] = rng_uniform(r) < 0.5 ? 0.0f : 1.0f;
    }
    return c;
}

static void lin_free(lin_ctx *c)
{
    free(c->inp); free(c->w); free(c->b); free(c->out); free(c->R);
    free(c->dinp); free(c->dw); free(c->db); free(c->mask); free(c->scratch);
}

Test(nn, linear_forward_values)
{
    /* out = inp W^T + b by hand. */
    const float inp[2 * 3] = {1, 2, 3, -1, 0, 2};
    const float w[2 * 3] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
    const float b[2] = {10, -10};
    float out[4];
    nn_linear_forward(out, inp, w, b, 2, 3, 2);
    const float want[4] = {1 - 3 + 10, 3 - 10, -1 - 2 + 10, 0.5f - 10};
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(out[i], want[i], 1e-6f);
    nn_linear_forward(out, inp, w, NULL, 2, 3, 2);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(out[i], want[i] - b[i % 2], 1e-6f);
}

Test(nn, linear_gradcheck)
{
    rng r;
    rng_seed(&r, 1, 0);
    lin_ctx c = lin_make(4, 5, 3, 0, &r);
    gc_param ps[] = {{"inp", c.inp, c.dinp, 20}, {"W", c.w, c.dw, 15}, {"b", c.b, c.db, 3}};
    gradcheck("linear", ps, 3, lin_loss, lin_grad, &c);
    lin_free(&c);
}

Test(nn, linear_backward_null_grads)
{
    /* NULL gradient pointers are skipped; the others are unaffected. */
    rng r;
    rng_seed(&r, 2, 0);
    lin_ctx c = lin_make(3, 4, 2, 0, &r);
    lin_grad(&c);
    float dw_all[8];
    memcpy(dw_all, c.dw, sizeof dw_all);
    nn_zero(c.dw, 8);
    nn_linear_backward(NULL, c.dw, NULL, c.R, c.inp, c.w, 3, 4, 2);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(c.dw[i], dw_all[i]);
    lin_free(&c);
}

/* The fused linear + activation gives the separate calls' results (to the
 * rounding of where the bias is added: exactly, with OpenBLAS), for every
 * activation, masked or not, with and without a bias, in place, and for
 * rows narrower than, as wide as and wider than a vector (the bias pattern
 * wraps across rows). */
Test(nn, linear_act_forward_matches_separate_calls)
{
    rng r;
    rng_seed(&r, 9, 0);
    const int B = 13, I = 7, Os[] = {1, 3, 16, 17, 21, 50};
    for (size_t oi = 0; oi < sizeof Os / sizeof Os[0]; oi++) {
        const int O = Os[oi];
        float *inp = fnew((size_t)B * I), *w = fnew((size_t)O * I), *b = fnew((size_t)O);
        float *mask = fnew((size_t)O * I), *scratch = fnew((size_t)O * I);
        float *pre1 = fnew((size_t)B * O), *post1 = fnew((size_t)B * O);
        float *pre2 = fnew((size_t)B * O), *post2 = fnew((size_t)B * O);
        fill_normal(inp, (size_t)B * I, &r, 1.0);
        fill_normal(w, (size_t)O * I, &r, 1.0);
        fill_normal(b, (size_t)O, &r, 1.0);
        for (int i = 0; i < O * I; i++)
            mask[i] = rng_uniform(&r) < 0.5 ? 0.0f : 1.0f;
        for (int a = 0; a < NN_ACT_COUNT; a++)
            for (int variant = 0; variant < 4; variant++) {
                const int masked = variant & 1;
                const float *bias = variant & 2 ? NULL : b;
                if (masked)
                    nn_masked_linear_forward(pre1, inp, w, mask, bias, scratch, B, I, O);
                else
                    nn_linear_forward(pre1, inp, w, bias, B, I, O);
                nn_act_forward((nn_act)a, post1, pre1, (size_t)B * O);
                if (masked)
                    nn_masked_linear_act_forward(pre2, post2, inp, w, mask, bias, scratch, (nn_act)a,
                                                 B, I, O);
                else
                    nn_linear_act_forward(pre2, post2, inp, w, bias, (nn_act)a, B, I, O);
                for (int i = 0; i < B * O; i++) {
                    cr_assert(fabsf(pre2[i] - pre1[i]) <= 1e-6f * fabsf(pre1[i]) + 1e-7f,
                              "%s, O = %d: pre[%d] %a vs %a", nn_act_name((nn_act)a), O, i, pre2[i], pre1[i]);
                    cr_assert(fabsf(post2[i] - post1[i]) <= 1e-6f * fabsf(post1[i]) + 1e-7f,
                              "%s, O = %d: post[%d] %a vs %a", nn_act_name((nn_act)a), O, i, post2[i], post1[i]);
                }
                if (!masked) {
                    nn_linear_act_forward(pre2, pre2, inp, w, bias, (nn_act)a, B, I, O);
                    cr_assert(memcmp(pre2, post2, (size_t)B * O * sizeof(float)) == 0, "%s: in place",
                              nn_act_name((nn_act)a));
                }
            }
        free(inp); free(w); free(b); free(mask); free(scratch);
        free(pre1); free(post1); free(pre2); free(post2);
    }
}

Test(nn, masked_linear_gradcheck)
{
    rng r;
    rng_seed(&r, 3, 0);
    lin_ctx c = lin_make(4, 6, 5, 1, &r);
    gc_param ps[] = {{"inp", c.inp, c.dinp, 24}, {"W", c.w, c.dw, 30}, {"b", c.b, c.db, 5}};
    gradcheck("masked linear", ps, 3, lin_loss, lin_grad, &c);
    /* Masked-out weights: exactly zero gradient, and no influence on the output. */
    nn_zero(c.dw, 30);
    lin_grad(&c);
    float out0[20];
    memcpy(out0, c.out, sizeof out0);
    int n_masked = 0;
    for (int i = 0; i < 30; i++)
        if (c.mask[i] == 0.0f) {
            n_masked++;
            cr_assert_eq(c.dw[i], 0.0f);
            c.w[i] = 1e6f;
        }
    cr_assert(n_masked > 0);
    lin_loss(&c);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(c.out[i], out0[i]);
    lin_free(&c);
}

/* ---- activations ------------------------------------------------------------ */

typedef struct act_ctx {
    nn_act a;
    size_t n;
    float *inp, *out, *R, *dinp;
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *c = p;
    nn_act_forward(c->a, c->out, c->inp, c->n);
    return dot_fd(c->out, c->R, c->n);
}

static void act_grad(void *p)
{
    act_ctx *c = p;
    act_loss(c);
    nn_act_backward(c->a, c->dinp, c->inp, c->R, c->n);
}

Test(nn, activation_gradcheck)
{
    for (int a = 0; a < NN_ACT_COUNT; a++) {
        rng r;
        rng_seed(&r, 10 + (uint64_t)a, 0);
        act_ctx c = {.a = (nn_act)a, .n = 60};
        c.inp = fnew(c.n);
        c.out = fnew(c.n);
        c.R = fnew(c.n);
        c.dinp = fnew(c.n);
        if (a == NN_ACT_RELU)
            fill_away_from_zero(c.inp, c.n, &r);
        else
            fill_normal(c.inp, c.n, &r, 2.0);
        c.inp[0] = 12.0f; /* saturated regions too */
        c.inp[1] = -12.0f;
        fill_normal(c.R, c.n, &r, 1.0);
        gc_param ps[] = {{"inp", c.inp, c.dinp, c.n}};
        gradcheck(nn_act_name((nn_act)a), ps, 1, act_loss, act_grad, &c);
        free(c.inp); free(c.out); free(c.R); free(c.dinp);
    }
}

Test(nn, activation_values)
{
    const float x[5] = {-2.0f, -0.5f, 0.0f, 0.5f, 3.0f};
    float y[5];
    nn_relu_forward(y, x, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(y[i], x[i] > 0 ? x[i] : 0.0f);
    nn_elu_forward(y, x, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(y[i], x[i] > 0 ? x[i] : expm1f(x[i]), 1e-6f);
    nn_tanh_forward(y, x, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(y[i], tanhf(x[i]), 1e-6f);
    nn_gelu_forward(y, x, 5);
    for (int i = 0; i < 5; i++) {
        const double v = x[i];
        const double want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        cr_assert(fabs(y[i] - want) < 1e-6, "gelu(%g) = %g, want %g", v, y[i], want);
    }
    /* In place is allowed for the forward. */
    float z[5];
    memcpy(z, x, sizeof z);
    nn_gelu_forward(z, z, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(z[i], y[i]);
    /* Names round-trip. */
    for (int a = 0; a < NN_ACT_COUNT; a++)
        cr_assert_eq(nn_act_from_name(nn_act_name((nn_act)a)), a);
    cr_assert_eq(nn_act_from_name("swish"), -1);
}

/* Tight check of the activation derivatives: the float kernel against a
 * double-precision central difference of the double formula (step 1e-5,
 * error ~1e-10), to float accuracy.  Catches errors far below the 1% of the
 * float finite-difference checks (e.g. a wrong constant in GELU's cubic term). */
static double act_ref(nn_act a, double x)
{
    switch (a) {
    case NN_ACT_RELU: return x > 0 ? x : 0;
    case NN_ACT_TANH: return tanh(x);
    case NN_ACT_ELU: return x > 0 ? x : expm1(x);
    case NN_ACT_GELU: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    default: return x;
    }
}

Test(nn, activation_derivative_tight)
{
    for (int a = 0; a < NN_ACT_COUNT; a++) {
        for (int k = -400; k <= 400; k++) {
            const float x = k * 0.01f + 0.005f; /* never exactly 0 */
            const float one = 1.0f;
            float d = 0.0f;
            nn_act_backward((nn_act)a, &d, &x, &one, 1);
            const double h = 1e-5;
            const double ref = (act_ref((nn_act)a, (double)x + h) -
                                act_ref((nn_act)a, (double)x - h)) / (2 * h);
            cr_assert(fabs(d - ref) <= 2e-6 * fmax(1.0, fabs(ref)),
                      "%s'(%g) = %.9g, reference %.9g", nn_act_name((nn_act)a), x, d, ref);
            float y;
            nn_act_forward((nn_act)a, &y, &x, 1);
            cr_assert(fabs(y - act_ref((nn_act)a, x)) <= 2e-6 * fmax(1.0, fabs(y)),
                      "%s(%g) = %.9g", nn_act_name((nn_act)a), x, y);
        }
    }
}

/* ---- layer norm --------------------------------------------------------------- */

typedef struct ln_ctx {
    int B, C;
    float *inp, *gamma, *beta, *out, *mean, *rstd, *R, *dinp, *dgamma, *dbeta;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *c = p;
    nn_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->gamma, c->beta, c->B, c->C);
    return dot_fd(c->out, c->R, (size_t)c->B * c->C);
}

static void ln_grad(void *p)
{
    ln_ctx *c = p;
    ln_loss(c);
    nn_layernorm_backward(c->dinp, c->dgamma, c->dbeta, c->R, c->inp, c->gamma, c->mean,
                          c->rstd, c->B, c->C);
}

Test(nn, layernorm_gradcheck)
{
    rng r;
    rng_seed(&r, 20, 0);
    ln_ctx c = {.B = 3, .C = 7};
    const size_t n = 21;
    c.inp = fnew(n); c.out = fnew(n); c.R = fnew(n); c.dinp = fnew(n);
    c.gamma = fnew(7); c.beta = fnew(7); c.dgamma = fnew(7); c.dbeta = fnew(7);
    c.mean = fnew(3); c.rstd = fnew(3);
    fill_normal(c.inp, n, &r, 1.0);
    for (int i = 0; i < 7; i++)
        c.inp[i] += 5.0f; /* a row with a large mean */
    fill_normal(c.gamma, 7, &r, 0.3);
    for (int i = 0; i < 7; i++)
        c.gamma[i] += 1.0f;
    fill_normal(c.beta, 7, &r, 0.5);
    fill_normal(c.R, n, &r, 1.0);
    gc_param ps[] = {{"inp", c.inp, c.dinp, n}, {"gamma", c.gamma, c.dgamma, 7},
                     {"beta", c.beta, c.dbeta, 7}};
    gradcheck("layernorm", ps, 3, ln_loss, ln_grad, &c);
    /* The forward normalises: with gamma 1, beta 0 every row has mean 0, var ~1. */
    for (int i = 0; i < 7; i++) {
        c.gamma[i] = 1.0f;
        c.beta[i] = 0.0f;
    }
    ln_loss(&c);
    for (int b = 0; b < 3; b++) {
        double m = 0, v = 0;
        for (int i = 0; i < 7; i++)
            m += c.out[b * 7 + i];
        m /= 7;
        for (int i = 0; i < 7; i++)
            v += (c.out[b * 7 + i] - m) * (c.out[b * 7 + i] - m);
        v /= 7;
        cr_assert(fabs(m) < 1e-5 && fabs(v - 1) < 1e-3, "row %d: mean %g var %g", b, m, v);
    }
    free(c.inp); free(c.out); free(c.R); free(c.dinp); free(c.gamma); free(c.beta);
    free(c.dgamma); free(c.dbeta); free(c.mean); free(c.rstd);
}

/* ---- residual block -------------------------------------------------------------- */

typedef struct rb_ctx {
    nn_act act;
    int B, H;
    float *inp, *w1, *b1, *w2, *b2, *out, *a0, *h1, *a1, *R, *scratch;
    float *dinp, *dw1, *db1, *dw2, *db2;
} rb_ctx;

static double rb_loss(void *p)
{
    rb_ctx *c = p;
    nn_resblock_forward(c->out, c->a0, c->h1, c->a1, c->inp, c->w1, c->b1, c->w2, c->b2, c->act,
                        c->B, c->H);
    return dot_fd(c->out, c->R, (size_t)c->B * c->H);
}

static void rb_grad(void *p)
{
    rb_ctx *c = p;
    rb_loss(c);
    nn_resblock_backward(c->dinp, c->dw1, c->db1, c->dw2, c->db2, c->scratch, c->R, c->inp,
                         c->a0, c->h1, c->a1, c->w1, c->w2, c->act, c->B, c->H);
}

Test(nn, resblock_gradcheck)
{
    for (int a = 0; a < NN_ACT_COUNT; a++) {
        rng r;
        rng_seed(&r, 30 + (uint64_t)a, 0);
        const int B = 4, H = 5;
        const size_t bh = (size_t)B * H, hh = (size_t)H * H;
        rb_ctx c = {.act = (nn_act)a, .B = B, .H = H};
        c.inp = fnew(bh); c.out = fnew(bh); c.a0 = fnew(bh); c.h1 = fnew(bh); c.a1 = fnew(bh);
        c.R = fnew(bh); c.scratch = fnew(2 * bh); c.dinp = fnew(bh);
        c.w1 = fnew(hh); c.w2 = fnew(hh); c.dw1 = fnew(hh); c.dw2 = fnew(hh);
        c.b1 = fnew(H); c.b2 = fnew(H); c.db1 = fnew(H); c.db2 = fnew(H);
        if (a == NN_ACT_RELU)
            fill_away_from_zero(c.inp, bh, &r);
        else
            fill_normal(c.inp, bh, &r, 1.0);
        fill_normal(c.w1, hh, &r, 0.5);
        fill_normal(c.w2, hh, &r, 0.5);
        fill_normal(c.b1, H, &r, 0.3);
        fill_normal(c.b2, H, &r, 0.3);
        fill_normal(c.R, bh, &r, 1.0);
        gc_param ps[] = {{"inp", c.inp, c.dinp, bh}, {"W1", c.w1, c.dw1, hh},
                         {"b1", c.b1, c.db1, (size_t)H}, {"W2", c.w2, c.dw2, hh},
                         {"b2", c.b2, c.db2, (size_t)H}};
        char what[64];
        snprintf(what, sizeof what, "resblock/%s", nn_act_name((nn_act)a));
        gradcheck(what, ps, 5, rb_loss, rb_grad, &c);
        free(c.inp); free(c.out); free(c.a0); free(c.h1); free(c.a1); free(c.R);
        free(c.scratch); free(c.dinp); free(c.w1); free(c.w2); free(c.dw1); free(c.dw2);
        free(c.b1); free(c.b2); free(c.db1); free(c.db2);
    }
}

Test(nn, resblock_zero_branch_is_identity)
{
    /* With W2 = 0 and b2 = 0 the block is exactly the identity. */
    const int B = 2, H = 3;
    float inp[6] = {1, -2, 3, 0.5f, 0, -1}, w1[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, b1[3] = {1, 1, 1};
    float w2[9] = {0}, b2[3] = {0}, out[6], a0[6], h1[6], a1[6];
    nn_resblock_forward(out, a0, h1, a1, inp, w1, b1, w2, b2, NN_ACT_GELU, B, H);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(out[i], inp[i]);
}

/* ---- losses --------------------------------------------------------------------- */

typedef struct xent_ctx {
    int B, C;
    float *logits, *probs, *dlogits, *targets_f;
    int *targets;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    return nn_softmax_xent_forward(c->probs, c->logits, c->targets, c->B, c->C);
}

static void xent_grad(void *p)
{
    xent_ctx *c = p;
    xent_loss(c);
    nn_softmax_xent_backward(c->dlogits, c->probs, c->targets, c->B, c->C);
}

static double bce_loss(void *p)
{
    xent_ctx *c = p;
    return nn_bce_logits_forward(c->logits, c->targets_f, c->B);
}

static void bce_grad(void *p)
{
    xent_ctx *c = p;
    nn_bce_logits_backward(c->dlogits, c->logits, c->targets_f, c->B);
}

Test(nn, softmax_xent_gradcheck_and_values)
{
    rng r;
    rng_seed(&r, 40, 0);
    xent_ctx c = {.B = 4, .C = 5};
    c.logits = fnew(20); c.probs = fnew(20); c.dlogits = fnew(20);
    int targets[4] = {0, 3, 4, 1};
    c.targets = targets;
    fill_normal(c.logits, 20, &r, 2.0);
    gc_param ps[] = {{"logits", c.logits, c.dlogits, 20}};
    gradcheck("softmax xent", ps, 1, xent_loss, xent_grad, &c);
    /* Value: uniform logits give log C; probabilities sum to 1. */
    for (int i = 0; i < 20; i++)
        c.logits[i] = 0.25f;
    cr_assert(fabs(xent_loss(&c) - log(5.0)) < 1e-6);
    /* Huge logits: finite loss (no log of an underflowed probability). */
    c.logits[0] = -200.0f;
    c.logits[1] = 200.0f;
    const double l = xent_loss(&c);
    cr_assert(isfinite(l) && l > 100.0);
    for (int b = 0; b < 4; b++) {
        double s = 0;
        for (int k = 0; k < 5; k++)
            s += c.probs[b * 5 + k];
        cr_assert(fabs(s - 1.0) < 1e-6);
    }
    free(c.logits); free(c.probs); free(c.dlogits);
}

Test(nn, bce_logits_gradcheck_and_values)
{
    rng r;
    rng_seed(&r, 41, 0);
    xent_ctx c = {.B = 6};
    c.logits = fnew(6); c.dlogits = fnew(6); c.targets_f = fnew(6);
    fill_normal(c.logits, 6, &r, 2.0);
    const float t[6] = {0, 1, 1, 0, 0.3f, 0.9f};
    memcpy(c.targets_f, t, sizeof t);
    gc_param ps[] = {{"logits", c.logits, c.dlogits, 6}};
    gradcheck("bce with logits", ps, 1, bce_loss, bce_grad, &c);
    /* Values: z = 0 gives log 2; large |z| stays finite and exact. */
    const float z[3] = {0.0f, 100.0f, -100.0f}, tt[3] = {1.0f, 0.0f, 0.0f};
    const double l = nn_bce_logits_forward(z, tt, 3);
    cr_assert(fabs(l - (log(2.0) + 100.0 + log1p(exp(-100.0))) / 3.0) < 1e-9);
    free(c.logits); free(c.dlogits); free(c.targets_f);
}

/* ---- networks ---------------------------------------------------------------------- */

typedef struct net_ctx {
    mlp *m;
    resmlp *rm;
    int B;
    float *inp, *dinp, *R;
} net_ctx;

static double net_loss(void *p)
{
    net_ctx *c = p;
    const float *out;
    size_t n;
    if (c->m) {
        out = mlp_forward(c->m, c->inp, c->B);
        n = (size_t)c->B * c->m->cfg.out;
    } else {
        out = resmlp_forward(c->rm, c->inp, c->B);
        n = (size_t)c->B * c->rm->cfg.out;
    }
    cr_assert(out);
    return dot_fd(out, c->R, n);
}

static void net_grad(void *p)
{
    net_ctx *c = p;
    net_loss(c);
    const int rc = c->m ? mlp_backward(c->m, c->R, c->dinp, c->B)
                        : resmlp_backward(c->rm, c->R, c->dinp, c->B);
    cr_assert_eq(rc, 0);
}

static void check_mlp(const mlp_config *cfg, uint64_t seed, int masked)
{
    rng r;
    rng_seed(&r, seed, 0);
    const int B = 4;
    mlp *m = mlp_new(cfg, 8);
    cr_assert(m);
    mlp_init(m, &r);
    /* Non-zero biases, so their gradients are exercised off the init point. */
    for (int l = 0; l < m->n_layers; l++)
        fill_normal(m->b[l], (size_t)m->dims[l + 1], &r, 0.2);
    if (masked) {
        /* MADE degrees: inputs 1..D, hidden in [1, D-1], output k has degree k+1;
         * hidden unit of degree h sees inputs <= h; output sees hidden < its degree. */
        cr_assert_eq(mlp_enable_masks(m), 0);
        const int D = cfg->in;
        int *deg[16];
        for (int l = 0; l <= m->n_layers; l++) {
            deg[l] = calloc((size_t)m->dims[l], sizeof(int));
            for (int i = 0; i < m->dims[l]; i++)
                deg[l][i] = l == 0 ? i + 1
                            : l == m->n_layers ? i % D + 1
                                               : 1 + (int)rng_below(&r, (uint64_t)(D - 1));
        }
        for (int l = 0; l < m->n_layers; l++)
            for (int o = 0; o < m->dims[l + 1]; o++)
                for (int i = 0; i < m->dims[l]; i++) {
                    const int ok = l == m->n_layers - 1 ? deg[l][i] < deg[l + 1][o]
                                                        : deg[l][i] <= deg[l + 1][o];
                    m->mask[l][(size_t)o * m->dims[l] + i] = ok ? 1.0f : 0.0f;
                }
        for (int l = 0; l <= m->n_layers; l++)
            free(deg[l]);
    }
    net_ctx c = {.m = m, .B = B};
    c.inp = fnew((size_t)B * cfg->in);
    c.dinp = fnew((size_t)B * cfg->in);
    c.R = fnew((size_t)B * cfg->out);
    fill_normal(c.inp, (size_t)B * cfg->in, &r, 1.0);
    fill_normal(c.R, (size_t)B * cfg->out, &r, 1.0);
    gc_param ps[] = {{"params", m->params, m->grads, m->n_params},
                     {"inp", c.inp, c.dinp, (size_t)B * cfg->in}};
    char what[96];
    snprintf(what, sizeof what, "mlp %d-%dx%d-%d %s%s", cfg->in, cfg->hidden,
             cfg->n_hidden_layers, cfg->out, nn_act_name(cfg->act), masked ? " masked" : "");
    gradcheck(what, ps, 2, net_loss, net_grad, &c);
    if (masked) {
        /* Autoregressive: output k (degree k%D+1) depends only on inputs < its degree. */
        for (int o = 0; o < cfg->out; o++) {
            nn_zero(c.R, (size_t)B * cfg->out);
            nn_zero(c.dinp, (size_t)B * cfg->in);
            for (int b = 0; b < B; b++)
                c.R[b * cfg->out + o] = 1.0f;
            net_grad(&c);
            for (int b = 0; b < B; b++)
                for (int i = o % cfg->in; i < cfg->in; i++)
                    cr_assert_eq(c.dinp[b * cfg->in + i], 0.0f,
                                 "output %d depends on input %d", o, i);
        }
        for (int l = 0; l < m->n_layers; l++)
            for (size_t i = 0; i < (size_t)m->dims[l] * m->dims[l + 1]; i++)
                if (m->mask[l][i] == 0.0f)
                    cr_assert_eq(m->dw[l][i], 0.0f);
    }
    free(c.inp); free(c.dinp); free(c.R);
    mlp_destroy(&m);
    cr_assert_null(m);
}

Test(nn, mlp_gradcheck_each_activation)
{
    for (int a = 0; a < NN_ACT_COUNT; a++) {
        const mlp_config cfg = {.in = 3, .hidden = 7, .n_hidden_layers = 2, .out = 2,
                                .act = (nn_act)a};
        check_mlp(&cfg, 50 + (uint64_t)a, 0);
    }
}

Test(nn, mlp_gradcheck_shapes)
{
    const mlp_config linear = {.in = 4, .hidden = 0, .n_hidden_layers = 0, .out = 3,
                               .act = NN_ACT_RELU};
    check_mlp(&linear, 60, 0);
    const mlp_config deep = {.in = 2, .hidden = 5, .n_hidden_layers = 4, .out = 1,
                             .act = NN_ACT_TANH};
    check_mlp(&deep, 61, 0);
}

Test(nn, masked_mlp_gradcheck_made)
{
    /* A MADE-masked stack: 4 inputs, 2 outputs per input. */
    const mlp_config cfg = {.in = 4, .hidden = 10, .n_hidden_layers = 2, .out = 8,
                            .act = NN_ACT_TANH};
    check_mlp(&cfg, 70, 1);
    const mlp_config cfg_relu = {.in = 3, .hidden = 8, .n_hidden_layers = 1, .out = 3,
                                 .act = NN_ACT_RELU};
    check_mlp(&cfg_relu, 71, 1);
}

Test(nn, resmlp_gradcheck_each_activation)
{
    for (int a = 0; a < NN_ACT_COUNT; a++) {
        const resmlp_config cfg = {.in = 3, .hidden = 6, .n_blocks = 2, .out = 2,
                                   .act = (nn_act)a};
        rng r;
        rng_seed(&r, 80 + (uint64_t)a, 0);
        resmlp *m = resmlp_new(&cfg, 8);
        cr_assert(m);
        resmlp_init(m, &r);
        /* Move off the near-identity init so the block weights matter. */
        fill_normal(m->params, m->n_params, &r, 0.4);
        const int B = 4;
        net_ctx c = {.rm = m, .B = B};
        c.inp = fnew((size_t)B * 3);
        c.dinp = fnew((size_t)B * 3);
        c.R = fnew((size_t)B * 2);
        fill_normal(c.inp, (size_t)B * 3, &r, 1.0);
        fill_normal(c.R, (size_t)B * 2, &r, 1.0);
        gc_param ps[] = {{"params", m->params, m->grads, m->n_params},
                         {"inp", c.inp, c.dinp, (size_t)B * 3}};
        char what[64];
        snprintf(what, sizeof what, "resmlp %s", nn_act_name((nn_act)a));
        gradcheck(what, ps, 2, net_loss, net_grad, &c);
        free(c.inp); free(c.dinp); free(c.R);
        resmlp_destroy(&m);
        cr_assert_null(m);
    }
}

/* The sampling forward (context folded into the first layer's bias, fused
 * feature-major layers, caller's scratch) computes the same function as
 * resmlp_forward up to float rounding, for every activation, 0..2 blocks, a
 * hidden width that is not a multiple of any vector width or of the
 * kernel's 5-feature blocks, varying-input counts 0..3 and a row stride
 * wider than needed; the same bits on every instruction set; it refuses a
 * stride too narrow for its rows and leaves a backward refused. */
Test(nn, resmlp_forward_folded_matches_forward)
{
    for (int a = 0; a < NN_ACT_COUNT; a++)
        for (int nb = 0; nb <= 2; nb++)
            for (int nv = 0; nv <= 3; nv++) {
                const int C = 2, in = nv + C, H = 37, O = 7, B = 19;
                const size_t ld = 48; /* round_up(19, 16) = 32 would do */
                const resmlp_config cfg = {.in = in, .hidden = H, .n_blocks = nb, .out = O,
                                           .act = (nn_act)a};
                rng r;
                rng_seed(&r, 300 + (uint64_t)(a * 10 + nb * 4 + nv), 0);
                resmlp *m = resmlp_new(&cfg, B);
                cr_assert(m);
                resmlp_init(m, &r);
                fill_normal(m->params, m->n_params, &r, 0.4);
                float *inp = fnew((size_t)B * in), *var = fnew((size_t)(nv ? nv : 1) * ld);
                float *fold = fnew((size_t)H), *scratch = fnew((size_t)(3 * H + O) * ld);
                float ctx[2];
                fill_normal(ctx, 2, &r, 1.0);
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < in; i++) {
                        const float v = i < nv ? (float)rng_normal(&r) : ctx[i - nv];
                        inp[(size_t)b * in + i] = v;
                        if (i < nv)
                            var[(size_t)i * ld + b] = v; /* feature-major */
                    }
                const float *ref = resmlp_forward(m, inp, B);
                cr_assert(ref);
                float *want = fnew((size_t)B * O);
                memcpy(want, ref, (size_t)B * O * sizeof(float));
                resmlp_fold_inputs(m, nv, ctx, fold);
                cr_assert_null(resmlp_forward_folded(m, var, nv, fold, scratch, B, 31));
                cr_assert_null(resmlp_forward_folded(m, var, nv, fold, scratch, 0, ld));
                const simd_isa isa0 = simd_isa_active();
                float *per_isa = fnew((size_t)O * ld);
                for (int k = 0; k < SIMD_ISA_COUNT; k++) {
                    if (simd_isa_force((simd_isa)k) != 0)
                        continue;
                    const float *o = resmlp_forward_folded(m, var, nv, fold, scratch, B, ld);
                    cr_assert(o);
                    for (int i = 0; i < O; i++) {
                        const float *oi = o + (size_t)i * ld, *pi = per_isa + (size_t)i * ld;
                        if (k == 0)
                            memcpy(per_isa + (size_t)i * ld, oi, (size_t)B * sizeof(float));
                        else
                            cr_assert(memcmp(pi, oi, (size_t)B * sizeof(float)) == 0,
                                      "%s differs from the baseline set",
                                      simd_isa_name((simd_isa)k));
                    }
                }
                simd_isa_force(isa0);
                const float *got = resmlp_forward_folded(m, var, nv, fold, scratch, B, ld);
                cr_assert(got);
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < O; i++) {
                        const float g = got[(size_t)i * ld + b], w = want[(size_t)b * O + i];
                        cr_assert(fabsf(g - w) <= 1e-4f * (1.0f + fabsf(w)),
                                  "act %d blocks %d nv %d: row %d out %d: %g vs %g", a, nb, nv,
                                  b, i, (double)g, (double)w);
                    }
                float d[7] = {1, 1, 1, 1, 1, 1, 1};
                cr_assert_eq(resmlp_backward(m, d, NULL, 1), -1);
                free(per_isa);
                free(inp); free(var); free(fold); free(scratch); free(want);
                resmlp_destroy(&m);
            }
}

/* simd_linear_fm against a double-precision reference of its formula, for
 * feature counts around the kernel's blocks (1..12 outputs, 0..9 inputs),
 * row counts around its vectors and panels, with and without the residual
 * (in place), pre and post: within a few float roundings of the exact sum,
 * the same bits on every set, and columns beyond round_up(n, 16) untouched. */
Test(nn, simd_linear_fm_matches_reference)
{
    rng r;
    rng_seed(&r, 77, 0);
    const size_t ld = 160, fos[] = {1, 4, 5, 6, 12}, fis[] = {0, 1, 3, 9};
    const size_t ns[] = {1, 15, 16, 17, 63, 64, 65, 130};
    float *in = fnew(9 * ld), *w = fnew(12 * 11), *b = fnew(12), *res0 = fnew(12 * ld);
    float *pre = fnew(12 * ld), *post = fnew(12 * ld), *pre0 = fnew(12 * ld), *post0 = fnew(12 * ld);
    fill_normal(in, 9 * ld, &r, 1.0);
    fill_normal(w, 12 * 11, &r, 0.5);
    fill_normal(b, 12, &r, 0.5);
    fill_normal(res0, 12 * ld, &r, 1.0);
    const simd_isa isa0 = simd_isa_active();
    for (size_t a = 0; a < sizeof fos / sizeof *fos; a++)
        for (size_t c = 0; c < sizeof fis / sizeof *fis; c++)
            for (size_t e = 0; e < sizeof ns / sizeof *ns; e++)
                for (int mode = 0; mode < 3; mode++) {
                    /* mode 0: pre and post (tanh); 1: post only (relu); 2: residual in
                     * place into pre, no post. */
                    const size_t fo = fos[a], fi = fis[c], n = ns[e], ldw = 11;
                    const size_t n_pad = (n + 15) / 16 * 16;
                    const nn_act act = mode == 0 ? NN_ACT_TANH : NN_ACT_RELU;
                    int first = 1;
                    for (int k = 0; k < SIMD_ISA_COUNT; k++) {
                        if (simd_isa_force((simd_isa)k) != 0)
                            continue;
                        for (size_t i = 0; i < fo * ld; i++)
                            pre[i] = post[i] = -7.0f;
                        if (mode == 2)
                            memcpy(pre, res0, fo * ld * sizeof(float));
                        simd_linear_fm(mode == 1 ? NULL : pre, mode == 2 ? NULL : post,
                                       mode == 2 ? pre : NULL, in, w, ldw, b, fo, fi, n, ld, act);
                        for (size_t u = 0; u < fo; u++) {
                            for (size_t col = 0; col < n; col++) {
                                double sum = b[u], mag = fabs(b[u]);
                                for (size_t i = 0; i < fi; i++) {
                                    sum += (double)w[u * ldw + i] * in[i * ld + col];
                                    mag += fabs((double)w[u * ldw + i] * in[i * ld + col]);
                                }
                                if (mode == 2) {
                                    sum += res0[u * ld + col];
                                    mag += fabs(res0[u * ld + col]);
                                }
                                const size_t o = u * ld + col;
                                const double tol = 1e-6 * (mag + 1.0) * (double)(fi + 2);
                                if (mode != 1)
                                    cr_assert(fabs(pre[o] - sum) <= tol,
                                              "fo %zu fi %zu n %zu mode %d: [%zu, %zu] %g vs %g",
                                              fo, fi, n, mode, u, col, (double)pre[o], sum);
                                if (mode != 2) {
                                    const double want = mode == 0 ? tanh(sum) : (sum > 0 ? sum : 0);
                                    cr_assert(fabs(post[o] - want) <= tol + 1e-6,
                                              "post fo %zu fi %zu n %zu mode %d: %g vs %g", fo,
                                              fi, n, mode, (double)post[o], want);
                                }
                            }
                            for (size_t col = n_pad; col < ld; col++)
                                cr_assert(pre[u * ld + col] == (mode == 2 ? res0[u * ld + col] : -7.0f) &&
                                              post[u * ld + col] == -7.0f,
                                          "column %zu beyond the padding written", col);
                        }
                        if (first) {
                            memcpy(pre0, pre, fo * ld * sizeof(float));
                            memcpy(post0, post, fo * ld * sizeof(float));
                            first = 0;
                        } else {
                            cr_assert(memcmp(pre0, pre, fo * ld * sizeof(float)) == 0 &&
                                          memcmp(post0, post, fo * ld * sizeof(float)) == 0,
                                      "%s differs from the baseline set",
                                      simd_isa_name((simd_isa)k));
                        }
                    }
                }
    simd_isa_force(isa0);
    free(in); free(w); free(b); free(res0); free(pre); free(post); free(pre0); free(post0);
}

Test(nn, resmlp_zero_blocks_and_views)
{
    const resmlp_config cfg = {.in = 2, .hidden = 4, .n_blocks = 0, .out = 3, .act = NN_ACT_RELU};
    resmlp *m = resmlp_new(&cfg, 5);
    cr_assert(m);
    cr_assert_eq(m->n_params, resmlp_param_count(&cfg));
    cr_assert_eq(m->n_params, (size_t)(4 * 3 + 3 * 5));
    cr_assert_eq(m->b_out + 3, m->params + m->n_params);
    cr_assert_eq(m->db_out + 3, m->grads + m->n_params);
    rng r;
    rng_seed(&r, 90, 0);
    resmlp_init(m, &r);
    const float inp[2] = {0.5f, -1.0f};
    cr_assert(resmlp_forward(m, inp, 1));
    cr_assert_null(resmlp_forward(m, inp, 6)); /* above max_batch */
    float d[3] = {1, 1, 1};
    cr_assert_eq(resmlp_backward(m, d, NULL, 2), -1); /* B differs from the forward */
    cr_assert_eq(resmlp_backward(m, d, NULL, 1), 0);
    resmlp_destroy(&m);
    resmlp_destroy(&m); /* no-op on NULL */
}

Test(nn, mlp_layout_and_misuse)
{
    const mlp_config cfg = {.in = 3, .hidden = 5, .n_hidden_layers = 2, .out = 2,
                            .act = NN_ACT_RELU};
    cr_assert_eq(mlp_param_count(&cfg), (size_t)(5 * 4 + 5 * 6 + 2 * 6));
    mlp *m = mlp_new(&cfg, 4);
    cr_assert(m);
    cr_assert_eq(m->n_layers, 3);
    cr_assert_eq(m->w[0], m->params);
    cr_assert_eq(m->b[0], m->params + 15);
    cr_assert_eq(m->w[1], m->params + 20);
    cr_assert_eq(m->b[2] + 2, m->params + m->n_params);
    cr_assert_eq(m->dw[1] - m->grads, m->w[1] - m->params);
    const float inp[15] = {0};
    cr_assert_null(mlp_forward(m, inp, 5));
    cr_assert_null(mlp_forward(m, inp, 0));
    mlp_destroy(&m);
    const mlp_config bad = {.in = 0, .hidden = 5, .n_hidden_layers = 1, .out = 2};
    cr_assert_null(mlp_new(&bad, 4));
    cr_assert_eq(mlp_param_count(&bad), 0);
    const mlp_config bad_act = {.in = 1, .hidden = 5, .n_hidden_layers = 1, .out = 2,
                                .act = (nn_act)99};
    cr_assert_null(mlp_new(&bad_act, 4));
    cr_assert_null(mlp_new(&cfg, 0));
}

Test(nn, mlp_init_scale_and_determinism)
{
    const mlp_config cfg = {.in = 50, .hidden = 200, .n_hidden_layers = 1, .out = 10,
                            .act = NN_ACT_RELU};
    mlp *a = mlp_new(&cfg, 1), *b = mlp_new(&cfg, 1);
    rng r1, r2;
    rng_seed(&r1, 7, 0);
    rng_seed(&r2, 7, 0);
    mlp_init(a, &r1);
    mlp_init(b, &r2);
    cr_assert(memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0);
    /* Kaiming-uniform: Var = bound^2/3 = 2/fan_in; output layer Xavier. */
    double v0 = 0, v1 = 0;
    for (int i = 0; i < 200 * 50; i++)
        v0 += (double)a->w[0][i] * a->w[0][i];
    v0 /= 200 * 50;
    for (int i = 0; i < 10 * 200; i++)
        v1 += (double)a->w[1][i] * a->w[1][i];
    v1 /= 10 * 200;
    cr_assert(fabs(v0 / (2.0 / 50) - 1) < 0.05, "hidden weight var %g", v0);
    cr_assert(fabs(v1 / (2.0 / 210) - 1) < 0.1, "output weight var %g", v1);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(a->b[0][i], 0.0f);
    mlp_destroy(&a);
    mlp_destroy(&b);
}

Test(nn, mlp_save_load)
{
    const mlp_config cfg = {.in = 3, .hidden = 6, .n_hidden_layers = 2, .out = 2,
                            .act = NN_ACT_GELU};
    rng r;
    rng_seed(&r, 100, 0);
    mlp *m = mlp_new(&cfg, 4);
    mlp_init(m, &r);
    const size_t sz = mlp_save_size(m);
    cr_assert_eq(sz, 40 + m->n_params * sizeof(float));
    unsigned char *blob = malloc(sz);
    cr_assert_eq(mlp_save(m, blob, sz - 1), -1);
    cr_assert_eq(mlp_save(m, blob, sz), 0);
    float inp[12];
    fill_normal(inp, 12, &r, 1.0);
    float out0[8];
    memcpy(out0, mlp_forward(m, inp, 4), sizeof out0);
    /* A fresh network loaded from the blob computes the same outputs. */
    mlp *m2 = mlp_new(&cfg, 4);
    cr_assert_eq(mlp_load(m2, blob, sz), 0);
    const float *o2 = mlp_forward(m2, inp, 4);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(o2[i], out0[i]);
    /* Truncated, corrupted, or mismatched config: refused, params untouched. */
    cr_assert_eq(mlp_load(m2, blob, sz - 4), -1);
    const mlp_config other = {.in = 3, .hidden = 6, .n_hidden_layers = 2, .out = 2,
                              .act = NN_ACT_TANH};
    mlp *m3 = mlp_new(&other, 4);
    cr_assert_eq(mlp_load(m3, blob, sz), -1);
    for (size_t i = 0; i < m3->n_params; i++)
        cr_assert_eq(m3->params[i], 0.0f);
    blob[0] ^= 1;
    cr_assert_eq(mlp_load(m2, blob, sz), -1);
    /* An mlp blob is not a resmlp blob. */
    blob[0] ^= 1;
    const resmlp_config rc = {.in = 3, .hidden = 6, .n_blocks = 2, .out = 2, .act = NN_ACT_GELU};
    resmlp *rm = resmlp_new(&rc, 4);
    cr_assert_eq(resmlp_load(rm, blob, sz), -1);
    free(blob);
    /* resmlp round trip. */
    resmlp_init(rm, &r);
    const size_t rsz = resmlp_save_size(rm);
    blob = malloc(rsz);
    cr_assert_eq(resmlp_save(rm, blob, rsz), 0);
    resmlp *rm2 = resmlp_new(&rc, 4);
    cr_assert_eq(resmlp_load(rm2, blob, rsz), 0);
    cr_assert(memcmp(rm->params, rm2->params, rm->n_params * sizeof(float)) == 0);
    cr_assert_eq(mlp_load(m2, blob, rsz), -1);
    free(blob);
    mlp_destroy(&m);
    mlp_destroy(&m2);
    mlp_destroy(&m3);
    resmlp_destroy(&rm);
    resmlp_destroy(&rm2);
}

/* ---- optimiser ------------------------------------------------------------------------ */

/* The Adam update in double, from the formula in nn.h. */
static void adam_reference(double *p, double g, double *m, double *v, const nn_adam_config *c,
                           double lr, long t)
{
    if (!c->decoupled)
        g += c->weight_decay * *p;
    *m = c->beta1 * *m + (1 - c->beta1) * g;
    *v = c->beta2 * *v + (1 - c->beta2) * g * g;
    if (c->decoupled)
        *p -= lr * c->weight_decay * *p;
    const double mh = *m / (1 - pow(c->beta1, (double)t));
    const double vh = *v / (1 - pow(c->beta2, (double)t));
    *p -= lr * mh / (sqrt(vh) + c->eps);
}

Test(nn, adam_step_matches_closed_form)
{
    rng r;
    rng_seed(&r, 110, 0);
    for (int variant = 0; variant < 3; variant++) {
        nn_adam_config c = nn_adam_defaults();
        if (variant == 1)
            c.weight_decay = 0.1f; /* L2 */
        if (variant == 2) {
            c.weight_decay = 0.1f;
            c.decoupled = 1; /* AdamW */
        }
        enum { N = 16 };
        float p[N], g[N], m[N], v[N];
        double pd[N], md[N], vd[N];
        for (int i = 0; i < N; i++) {
            p[i] = (float)rng_normal(&r);
            g[i] = (float)rng_normal(&r);
            m[i] = (float)(0.1 * rng_normal(&r));
            v[i] = (float)(0.01 * rng_uniform(&r));
            pd[i] = p[i];
            md[i] = m[i];
            vd[i] = v[i];
        }
        const long t = 7;
        const float lr = 0.01f;
        nn_adam_step(p, g, m, v, N, &c, lr, t);
        for (int i = 0; i < N; i++) {
            adam_reference(&pd[i], g[i], &md[i], &vd[i], &c, lr, t);
            cr_assert(fabs(p[i] - pd[i]) < 1e-6, "variant %d: p %g vs %g", variant, p[i], pd[i]);
            cr_assert(fabs(m[i] - md[i]) < 1e-6);
            cr_assert(fabs(v[i] - vd[i]) < 1e-7);
        }
    }
    /* First step from zero moments: p moves by lr * sign(g) (|g| >> eps). */
    nn_adam_config c = nn_adam_defaults();
    float p[3] = {1, 1, 1}, g[3] = {0.5f, -3.0f, 100.0f}, m[3] = {0}, v[3] = {0};
    nn_adam_step(p, g, m, v, 3, &c, 0.1f, 1);
    cr_assert(fabs(p[0] - 0.9) < 1e-6 && fabs(p[1] - 1.1) < 1e-6 && fabs(p[2] - 0.9) < 1e-6);
}

Test(nn, adam_converges_on_quadratic)
{
    /* f(p) = 1/2 sum a_i (p_i - c_i)^2 with curvatures over two decades. */
    enum { N = 10 };
    float p[N], g[N], m[N] = {0}, v[N] = {0}, a[N], cc[N];
    rng r;
    rng_seed(&r, 120, 0);
    for (int i = 0; i < N; i++) {
        a[i] = (float)pow(10.0, 2.0 * i / (N - 1) - 1.0);
        cc[i] = (float)(3 * rng_normal(&r));
        p[i] = 0.0f;
    }
    const nn_lr_schedule sched = {.kind = NN_LR_COSINE, .lr0 = 0.1f, .total_steps = 3000,
                                  .lr_min = 1e-4f};
    const nn_adam_config c = nn_adam_defaults();
    for (long t = 1; t <= 3000; t++) {
        for (int i = 0; i < N; i++)
            g[i] = a[i] * (p[i] - cc[i]);
        nn_adam_step(p, g, m, v, N, &c, nn_lr_at(&sched, t - 1), t);
    }
    for (int i = 0; i < N; i++)
        cr_assert(fabs(p[i] - cc[i]) < 1e-3, "p[%d] = %g, optimum %g", i, p[i], cc[i]);
    /* AdamW on the same curvatures: at a fixed point wd p = -mhat/(sqrt(vhat)+eps)
     * with m -> g, v -> g^2, so either g -> 0 (p = c, possible when |c| < 1/wd)
     * or wd p = -sign(g) (p = ±1/wd): the decoupled decay clamps p to
     * [-1/wd, 1/wd] = [-2, 2].  The optima below stay away from ±2, and the run
     * is long against 1/(1-beta2) = 1000 steps, so that v has forgotten the
     * early, larger gradients (while it remembers them, m/sqrt(v) < 1 and
     * clamped entries sit inside ±2). */
    const float copt[N] = {-5.0f, -3.0f, -1.5f, -0.7f, -0.2f, 0.3f, 0.9f, 1.4f, 3.5f, 6.0f};
    const nn_lr_schedule wsched = {.kind = NN_LR_COSINE, .lr0 = 0.05f, .total_steps = 20000,
                                   .lr_min = 1e-4f};
    nn_adam_config w = nn_adam_defaults();
    w.weight_decay = 0.5f;
    w.decoupled = 1;
    memset(m, 0, sizeof m);
    memset(v, 0, sizeof v);
    for (int i = 0; i < N; i++)
        p[i] = 0.0f;
    for (long t = 1; t <= 20000; t++) {
        for (int i = 0; i < N; i++)
            g[i] = a[i] * (p[i] - copt[i]);
        nn_adam_step(p, g, m, v, N, &w, nn_lr_at(&wsched, t - 1), t);
    }
    for (int i = 0; i < N; i++) {
        const double want = fmax(-2.0, fmin(2.0, copt[i]));
        cr_assert(fabs(p[i] - want) < 1e-2, "AdamW p[%d] = %g, expected %g (optimum %g)", i,
                  p[i], want, copt[i]);
    }
}

Test(nn, clip_grad_norm)
{
    float g[2] = {3.0f, 4.0f};
    cr_assert_float_eq(nn_grad_norm(g, 2), 5.0, 1e-12);
    cr_assert_float_eq(nn_clip_grad_norm(g, 2, 10.0), 5.0, 1e-12);
    cr_assert(g[0] == 3.0f && g[1] == 4.0f); /* under the limit: untouched */
    cr_assert_float_eq(nn_clip_grad_norm(g, 2, 1.0), 5.0, 1e-12);
    cr_assert_float_eq(g[0], 0.6f, 1e-7f);
    cr_assert_float_eq(g[1], 0.8f, 1e-7f);
    cr_assert_float_eq(nn_grad_norm(g, 2), 1.0, 1e-6);
    /* Non-finite norms are reported and leave g alone. */
    float h[3] = {1.0f, INFINITY, 2.0f};
    cr_assert(isinf(nn_clip_grad_norm(h, 3, 1.0)));
    cr_assert(h[0] == 1.0f && h[2] == 2.0f);
    /* Large vector: norm accumulated in double. */
    enum { N = 100000 };
    float *big = fnew(N);
    for (int i = 0; i < N; i++)
        big[i] = 0.01f;
    cr_assert(fabs(nn_grad_norm(big, N) - 0.01f * sqrt((double)N)) < 1e-6);
    free(big);
}

Test(nn, lr_schedules)
{
    nn_lr_schedule s = {.kind = NN_LR_CONSTANT, .lr0 = 0.01f};
    cr_assert_float_eq(nn_lr_at(&s, 0), 0.01f, 1e-9f);
    cr_assert_float_eq(nn_lr_at(&s, 100000), 0.01f, 1e-9f);
    s = (nn_lr_schedule){.kind = NN_LR_EXP, .lr0 = 0.1f, .gamma = 0.5f};
    cr_assert_float_eq(nn_lr_at(&s, 0), 0.1f, 1e-9f);
    cr_assert_float_eq(nn_lr_at(&s, 3), 0.0125f, 1e-9f);
    s = (nn_lr_schedule){.kind = NN_LR_COSINE, .lr0 = 1.0f, .lr_min = 0.1f, .total_steps = 100};
    cr_assert_float_eq(nn_lr_at(&s, 0), 1.0f, 1e-7f);
    cr_assert_float_eq(nn_lr_at(&s, 50), 0.55f, 1e-6f);
    cr_assert_float_eq(nn_lr_at(&s, 100), 0.1f, 1e-7f);
    cr_assert_float_eq(nn_lr_at(&s, 1000), 0.1f, 1e-7f);
    s.warmup_steps = 10;
    cr_assert_float_eq(nn_lr_at(&s, 0), 0.1f * 1.0f, 1e-6f);
    cr_assert(nn_lr_at(&s, 4) < nn_lr_at(&s, 5));
    cr_assert_float_eq(nn_lr_at(&s, 10), nn_lr_at(&(nn_lr_schedule){.kind = NN_LR_COSINE,
                           .lr0 = 1.0f, .lr_min = 0.1f, .total_steps = 100}, 10), 1e-7f);
}

Test(nn, threads)
{
    nn_set_threads(0);
    cr_assert_eq(nn_get_threads(), 1);
    nn_set_threads(2);
    cr_assert_eq(nn_get_threads(), 2);
    nn_set_threads(1);
    cr_assert_eq(nn_get_threads(), 1);
}

/* ---- training -------------------------------------------------------------------------- */

/* XOR of four Gaussian blobs (means (±2, ±2), sd 0.5; label = signs differ):
 * not linearly separable, Bayes accuracy > 0.99.  Softmax over 2 classes. */
static void xor_blobs(float *x, int *y, int n, rng *r)
{
    for (int i = 0; i < n; i++) {
        const int sa = rng_uniform(r) < 0.5, sb = rng_uniform(r) < 0.5;
        x[2 * i] = (float)((sa ? 2.0 : -2.0) + 0.5 * rng_normal(r));
        x[2 * i + 1] = (float)((sb ? 2.0 : -2.0) + 0.5 * rng_normal(r));
        y[i] = sa != sb;
    }
}

static void train_classifier(const mlp_config *cfg, double want_acc)
{
    enum { NTRAIN = 2000, NTEST = 2000, BATCH = 100, EPOCHS = 30 };
    rng r;
    rng_seed(&r, 130, 0);
    float *x = fnew(2 * NTRAIN), *xt = fnew(2 * NTEST);
    int *y = calloc(NTRAIN, sizeof *y), *yt = calloc(NTEST, sizeof *yt);
    xor_blobs(x, y, NTRAIN, &r);
    xor_blobs(xt, yt, NTEST, &r);
    mlp *m = mlp_new(cfg, BATCH);
    mlp_init(m, &r);
    float *probs = fnew(BATCH * 2), *dl = fnew(BATCH * 2);
    const nn_adam_config adam = nn_adam_defaults();
    const nn_lr_schedule sched = {.kind = NN_LR_COSINE, .lr0 = 1e-2f, .lr_min = 1e-4f,
                                  .total_steps = EPOCHS * NTRAIN / BATCH};
    double loss = 0;
    for (int e = 0; e < EPOCHS; e++) {
        loss = 0;
        for (int s = 0; s < NTRAIN; s += BATCH) {
            const float *logits = mlp_forward(m, x + 2 * s, BATCH);
            loss += nn_softmax_xent_forward(probs, logits, y + s, BATCH, 2);
            mlp_zero_grad(m);
            nn_zero(dl, BATCH * 2);
            nn_softmax_xent_backward(dl, probs, y + s, BATCH, 2);
            mlp_backward(m, dl, NULL, BATCH);
            nn_clip_grad_norm(m->grads, m->n_params, 5.0);
            mlp_adam_step(m, &adam, nn_lr_at(&sched, m->step));
        }
        loss /= NTRAIN / BATCH;
    }
    int correct = 0;
    for (int s = 0; s < NTEST; s += BATCH) {
        const float *logits = mlp_forward(m, xt + 2 * s, BATCH);
        for (int i = 0; i < BATCH; i++)
            correct += (logits[2 * i + 1] > logits[2 * i]) == yt[s + i];
    }
    const double acc = (double)correct / NTEST;
    cr_assert(acc > want_acc, "%s MLP: test accuracy %.4f (final train loss %.4f)",
              nn_act_name(cfg->act), acc, loss);
    free(x); free(xt); free(y); free(yt); free(probs); free(dl);
    mlp_destroy(&m);
}

Test(nn, mlp_learns_xor_blobs)
{
    for (int a = 0; a < NN_ACT_IDENTITY; a++) {
        const mlp_config cfg = {.in = 2, .hidden = 16, .n_hidden_layers = 2, .out = 2,
                                .act = (nn_act)a};
        train_classifier(&cfg, 0.95);
    }
}

Test(nn, resmlp_learns_regression)
{
    /* y = sin(2 x0) + x1^2 / 2 on [-2,2]^2: the residual MLP fits it with a
     * mean-squared error well below the target's variance. */
    enum { N = 2000, BATCH = 100, EPOCHS = 60 };
    const resmlp_config cfg = {.in = 2, .hidden = 32, .n_blocks = 2, .out = 1, .act = NN_ACT_RELU};
    resmlp *m = resmlp_new(&cfg, BATCH);
    rng r;
    rng_seed(&r, 140, 0);
    resmlp_init(m, &r);
    float *x = fnew(2 * N), *y = fnew(N), *d = fnew(BATCH);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) {
        x[2 * i] = (float)(4 * rng_uniform(&r) - 2);
        x[2 * i + 1] = (float)(4 * rng_uniform(&r) - 2);
        y[i] = sinf(2 * x[2 * i]) + 0.5f * x[2 * i + 1] * x[2 * i + 1];
        mean += y[i];
    }
    mean /= N;
    for (int i = 0; i < N; i++)
        var += (y[i] - mean) * (y[i] - mean);
    var /= N;
    const nn_adam_config adam = nn_adam_defaults();
    double mse = 0;
    for (int e = 0; e < EPOCHS; e++) {
        mse = 0;
        for (int s = 0; s < N; s += BATCH) {
            const float *out = resmlp_forward(m, x + 2 * s, BATCH);
            for (int i = 0; i < BATCH; i++) {
                const float err = out[i] - y[s + i];
                mse += (double)err * err;
                d[i] = 2.0f * err / BATCH;
            }
            resmlp_zero_grad(m);
            resmlp_backward(m, d, NULL, BATCH);
            resmlp_adam_step(m, &adam, 3e-3f);
        }
        mse /= N;
    }
    cr_assert(mse < 0.02 * var, "resmlp MSE %g vs target variance %g", mse, var);
    free(x); free(y); free(d);
    resmlp_destroy(&m);
}

/* ---- vectorised kernels (src/nn/simd.h) ------------------------------------------------ */

/* Error of y in units of the last place of float at the exact value t
 * (double): a correctly rounded result is within 0.5. */
static double ulp_err(float y, double t)
{
    if (isnan(t))
        return isnan(y) ? 0.0 : INFINITY;
    if (isinf(t))
        return y == t ? 0.0 : INFINITY;
    int e;
    frexp(fmax(fabs(t), (double)FLT_MIN), &e);
    return fabs((double)y - t) / ldexp(1.0, e - 24);
}

/* The float with the given bits. */
static float fbits(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* simd_tanh against the exact tanh (double) on every float of the ranges
 * where tanh changes character, and on a sample of all others.  Bound: an
 * exhaustive run over all 2^32 floats during development gave at most 2.52
 * ulp (near the top of binades below 0.1, where the last roundings of
 * expm1(2x) / (expm1(2x) + 2) add up); 3 ulp leaves no room for a wrong
 * constant or polynomial term (those give errors of thousands of ulp).
 * Against glibc's tanhf: 5 ulp, as tanhf is itself up to 2.2 ulp from the
 * exact value (near 0.2, on the other side). */
Test(nn, simd_tanh_accuracy_and_edges)
{
    enum { CHUNK = 4096 };
    float x[CHUNK], y[CHUNK];
    /* Ranges of non-negative floats, every step-th one (and its negative):
     * denormals, tiny values, the worst cases found exhaustively (near 0.0625
     * and 0.2), the switch of formula at 0.55, the saturation point (tanhf
     * becomes 1 at 9.0109), and everything in steps of 251 ulp. */
    const struct { float lo, hi; uint32_t step; } ranges[] = {
        {0.0f, 1e-30f, 997},     {1e-8f, 1e-3f, 101},    {0.0312f, 0.0313f, 1},
        {0.0624f, 0.0626f, 1},   {0.2f, 0.21f, 1},       {0.49f, 0.61f, 1},
        {8.9f, 9.2f, 1},         {0.0f, 100.0f, 251},    {100.0f, FLT_MAX, 9973},
    };
    double worst = 0.0, worst_libm = 0.0;
    float worst_x = 0.0f;
    long checked = 0;
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
        uint32_t lo, hi;
        memcpy(&lo, &ranges[k].lo, 4);
        memcpy(&hi, &ranges[k].hi, 4);
        for (uint64_t b = lo; b <= hi;) {
            int n = 0;
            for (; n < CHUNK && b <= hi; n += 2, b += ranges[k].step) {
                x[n] = fbits((uint32_t)b);
                x[n + 1] = -x[n];
            }
            simd_tanh(y, x, (size_t)n);
            for (int i = 0; i < n; i++) {
                const double e = ulp_err(y[i], tanh((double)x[i]));
                const double el = ulp_err(y[i], (double)tanhf(x[i]));
                if (e > worst) {
                    worst = e;
                    worst_x = x[i];
                }
                if (el > worst_libm)
                    worst_libm = el;
                /* Odd, and exactly +-1 wherever tanhf is. */
                cr_assert(signbit(y[i]) == signbit(x[i]), "tanh(%a) = %a: wrong sign", x[i], y[i]);
                if (fabsf(tanhf(x[i])) == 1.0f)
                    cr_assert(fabsf(y[i]) == 1.0f, "tanh(%a) = %a, tanhf gives +-1", x[i], y[i]);
            }
            checked += n;
        }
    }
    cr_log_info("simd_tanh (%s): %ld values, worst %.3f ulp at %a (exact), %.3f ulp vs tanhf",
                simd_isa_name(simd_isa_active()), checked, worst, worst_x, worst_libm);
    cr_assert(worst <= 3.0, "tanh error %.3f ulp at %a", worst, worst_x);
    cr_assert(worst_libm <= 5.0, "tanh differs from tanhf by %.3f ulp", worst_libm);

    /* Edges: signed zeros, denormals, infinities, NaN. */
    const float ex[] = {0.0f, -0.0f, 0x1p-149f, -0x1p-149f, FLT_MIN, -FLT_MIN, 1e-20f, -1e-20f,
                        0.55f, -0.55f, 9.0f, -9.0f, 9.0109f, -9.0109f, 10.0f, 1e30f,
                        INFINITY, -INFINITY, NAN, -NAN};
    enum { NE = sizeof ex / sizeof ex[0] };
    float ey[NE];
    simd_tanh(ey, ex, NE);
    for (int i = 0; i < NE; i++) {
        if (isnan(ex[i])) {
            cr_assert(isnan(ey[i]), "tanh(NaN) = %a", ey[i]);
            continue;
        }
        const float want = tanhf(ex[i]);
        if (ex[i] == 0.0f || fabsf(ex[i]) < 1e-10f || isinf(ex[i]) || fabsf(ex[i]) >= 9.0109f)
            cr_assert(ey[i] == want && signbit(ey[i]) == signbit(want), "tanh(%a) = %a, want %a",
                      ex[i], ey[i], want);
        else
            cr_assert(ulp_err(ey[i], tanh((double)ex[i])) <= 3.0, "tanh(%a) = %a", ex[i], ey[i]);
    }
    cr_assert(ey[10] == 0x1.fffffep-1f, "tanh(9) rounds to 1 - 2^-24, as tanhf");
}

/* ELU's expm1 (x <= 0) and its derivative's exp, on a dense sample of the
 * negative floats (below); exhaustive development runs gave
 * 1.16 ulp (expm1) and 1.05 ulp (exp): bound 2.  Above 0 ELU is the identity
 * and its derivative exactly 1.  GELU (built on tanh) against its double
 * formula: relative 1e-6 plus, for x < 0 where 1 + tanh(u) cancels, the
 * rounding of that sum (a few ulp of 1, 2e-7) times |x| / 2. */
Test(nn, simd_elu_gelu_accuracy)
{
    enum { CHUNK = 4096 };
    float x[CHUNK], y[CHUNK], d[CHUNK], one[CHUNK];
    for (int i = 0; i < CHUNK; i++)
        one[i] = 1.0f;
    double w1 = 0.0, w2 = 0.0;
    /* Negative floats from -0 to -104 (bit patterns grow with |x|): every
     * 257th, and every one in [-0.35, -0.25], where the worst cases are. */
    uint32_t lo, hi, dlo, dhi;
    const float flo = -0.0f, fhi = -104.0f, fdlo = -0.25f, fdhi = -0.35f;
    memcpy(&lo, &flo, 4);
    memcpy(&hi, &fhi, 4);
    memcpy(&dlo, &fdlo, 4);
    memcpy(&dhi, &fdhi, 4);
    for (uint64_t b = lo; b <= hi;) {
        int n = 0;
        for (; n < CHUNK && b <= hi; n++)
            x[n] = fbits((uint32_t)b), b += b >= dlo && b < dhi ? 1 : 257;
        simd_elu(y, x, (size_t)n);
        memset(d, 0, sizeof d);
        simd_elu_grad(d, x, one, (size_t)n);
        for (int i = 0; i < n; i++) {
            const double e1 = ulp_err(y[i], expm1((double)x[i]));
            cr_assert(e1 <= 2.0, "expm1(%a) = %a: %.3f ulp", x[i], y[i], e1);
            w1 = fmax(w1, e1);
            if (x[i] >= -87.3f) {
                const double e2 = ulp_err(d[i], exp((double)x[i]));
                cr_assert(e2 <= 2.0, "exp(%a) = %a: %.3f ulp", x[i], d[i], e2);
                w2 = fmax(w2, e2);
            } else {
                cr_assert(d[i] == 0.0f, "exp(%a) = %a: subnormal results flush to 0", x[i], d[i]);
            }
        }
    }
    cr_log_info("simd elu: expm1 worst %.3f ulp, exp worst %.3f ulp", w1, w2);
    const float ex[] = {0.0f, -0.0f, 1e-30f, 3.5f, INFINITY, -INFINITY, NAN};
    float ey[7], ed[7] = {0};
    simd_elu(ey, ex, 7);
    simd_elu_grad(ed, ex, one, 7);
    cr_assert(ey[0] == 0.0f && !signbit(ey[0]) && ey[1] == 0.0f && signbit(ey[1]), "ELU keeps the sign of 0");
    cr_assert(ey[2] == 1e-30f && ey[3] == 3.5f && ey[4] == INFINITY && ey[5] == -1.0f && isnan(ey[6]));
    cr_assert(ed[0] == 1.0f && ed[2] == 1.0f && ed[3] == 1.0f && ed[4] == 1.0f && ed[5] == 0.0f && isnan(ed[6]));

    rng r;
    rng_seed(&r, 31, 0);
    for (int i = 0; i < CHUNK; i++)
        x[i] = (float)(4.0 * rng_normal(&r));
    simd_gelu(y, x, CHUNK);
    for (int i = 0; i < CHUNK; i++) {
        const double v = x[i];
        const double want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        cr_assert(fabs(y[i] - want) <= 1e-6 * fabs(want) + 1e-7 * fabs(v) + 1e-30,
                  "gelu(%g) = %.9g, want %.9g", v, y[i], want);
    }
}

/* ReLU keeps the semantics of x > 0 ? x : 0 exactly: NaN and -0 give +0. */
Test(nn, simd_relu_semantics)
{
    const float x[] = {-0.0f, 0.0f, NAN, -NAN, INFINITY, -INFINITY, 1e-45f, -1e-45f, 3.0f, -3.0f,
                       FLT_MAX, -FLT_MAX, 0.5f, -0.5f, 2.0f, -2.0f, 7.0f};
    enum { N = sizeof x / sizeof x[0] };
    float y[N], d[N], dout[N];
    for (int i = 0; i < N; i++)
        dout[i] = i % 3 == 0 ? NAN : (float)(i + 1);
    nn_relu_forward(y, x, N);
    for (int i = 0; i < N; i++) {
        const float want = x[i] > 0.0f ? x[i] : 0.0f;
        cr_assert(memcmp(&y[i], &want, 4) == 0, "relu(%a) = %a, want %a", x[i], y[i], want);
        d[i] = -0.0f;
    }
    nn_relu_backward(d, x, dout, N);
    for (int i = 0; i < N; i++) {
        float want = -0.0f;
        want += x[i] > 0.0f ? dout[i] : 0.0f;
        cr_assert(memcmp(&d[i], &want, 4) == 0 || (isnan(d[i]) && isnan(want)),
                  "relu'(%a) dout %a: %a, want %a", x[i], dout[i], d[i], want);
    }
}

/* The same bits from every instruction set the CPU has, for every array
 * length (tails take the same path as the body) and position. */
Test(nn, simd_instruction_sets_agree)
{
    enum { N = 1000 };
    float *x = fnew(N + 64), *g = fnew(N + 64), *p0 = fnew(N + 64), *m0 = fnew(N + 64),
          *v0 = fnew(N + 64);
    double *xd = calloc(N, sizeof *xd), *yd = calloc(N, sizeof *yd), *yd0 = calloc(N, sizeof *yd0);
    cr_assert(xd && yd && yd0);
    rng r;
    rng_seed(&r, 32, 0);
    fill_normal(x, N + 64, &r, 3.0);
    fill_normal(g, N + 64, &r, 1.0);
    fill_normal(p0, N + 64, &r, 1.0);
    fill_normal(m0, N + 64, &r, 0.1);
    for (int i = 0; i < N + 64; i++)
        v0[i] = (float)(0.01 * rng_uniform(&r));
    for (int i = 0; i < N; i++)
        xd[i] = 50.0 * rng_normal(&r);
    x[5] = NAN;
    x[6] = -0.0f;
    x[7] = INFINITY;
    const simd_isa orig = simd_isa_active();
    /* Results of the kernels for (offset, length) pairs, per set. */
    enum { NK = 9 };
    const size_t lens[] = {1, 3, 4, 7, 15, 16, 17, 33, 63, 64, 65, 1000};
    enum { NL = sizeof lens / sizeof lens[0] };
    float *ref[NK][NL];
    double ref_ss[NL];
    const simd_adam_coef ac = {0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 1e-3f, 1.5f};
    int sets = 0;
    for (int s = 0; s < SIMD_ISA_COUNT; s++) {
        if (simd_isa_force((simd_isa)s) != 0)
            continue;
        sets++;
        for (int li = 0; li < NL; li++) {
            const size_t n = lens[li], off = (size_t)li % 5; /* odd alignments too */
            const float *xi = x + off, *gi = g + off;
            float *out[NK];
            for (int k = 0; k < NK; k++) {
                out[k] = fnew(3 * n);
                memcpy(out[k], p0 + off, n * sizeof(float)); /* dinp starts non-zero */
            }
            simd_relu(out[0], xi, n);
            simd_tanh(out[1], xi, n);
            simd_elu(out[2], xi, n);
            simd_gelu(out[3], xi, n);
            simd_relu_grad(out[4], xi, gi, n);
            simd_tanh_grad(out[5], xi, gi, n);
            simd_elu_grad(out[6], xi, gi, n);
            simd_gelu_grad(out[7], xi, gi, n);
            /* Adam: params, m, v side by side in out[8]. */
            memcpy(out[8] + n, m0 + off, n * sizeof(float));
            memcpy(out[8] + 2 * n, v0 + off, n * sizeof(float));
            simd_adam(out[8], gi, out[8] + n, out[8] + 2 * n, n, &ac);
            const double ss = simd_sum_squares(xi + 8, n);
            if (n == N)
                simd_exp_d(yd, xd, N);
            if (sets == 1) {
                for (int k = 0; k < NK; k++)
                    ref[k][li] = out[k];
                ref_ss[li] = ss;
                if (n == N)
                    memcpy(yd0, yd, N * sizeof *yd);
                continue;
            }
            for (int k = 0; k < NK; k++) {
                const size_t bytes = (k == 8 ? 3 * n : n) * sizeof(float);
                cr_assert(memcmp(out[k], ref[k][li], bytes) == 0, "kernel %d, n = %zu: %s differs from %s", k,
                          n, simd_isa_name((simd_isa)s), simd_isa_name(SIMD_BASE));
                free(out[k]);
            }
            cr_assert(memcmp(&ss, &ref_ss[li], sizeof ss) == 0, "sum of squares, n = %zu, %s", n,
                      simd_isa_name((simd_isa)s));
            if (n == N)
                cr_assert(memcmp(yd, yd0, N * sizeof *yd) == 0, "exp_d: %s", simd_isa_name((simd_isa)s));
        }
    }
    /* Position independence: element i of a long array equals the same
     * element computed alone or at the start of a tail. */
    for (int li = 0; li < NL; li++) {
        const size_t n = lens[li], off = (size_t)li % 5;
        for (size_t i = 0; i < n; i += 1 + n / 7) {
            float t1, t2;
            simd_tanh(&t1, x + off + i, 1);
            simd_gelu(&t2, x + off + i, 1);
            cr_assert(memcmp(&t1, &ref[1][li][i], 4) == 0 && memcmp(&t2, &ref[3][li][i], 4) == 0,
                      "element %zu of %zu differs when computed alone", i, n);
        }
    }
    for (int k = 0; k < NK; k++)
        for (int li = 0; li < NL; li++)
            free(ref[k][li]);
    cr_log_info("simd: %d instruction sets agree bit for bit (in use: %s)", sets, simd_isa_name(orig));
    cr_assert_eq(simd_isa_force(orig), 0);
    free(x); free(g); free(p0); free(m0); free(v0); free(xd); free(yd); free(yd0);
}

/* Kernels made of single IEEE operations give exactly their scalar loops;
 * Adam exactly nn_adam_step's documented float formula; the sum of squares
 * exactly its 16 documented partial sums. */
Test(nn, simd_exact_kernels_match_scalar_loops)
{
    enum { R = 37, C = 23, N = R * C };
    float *x = fnew(N), *y = fnew(N), *z = fnew(N), *b = fnew(C);
    rng r;
    rng_seed(&r, 33, 0);
    fill_normal(x, N, &r, 1.0);
    fill_normal(y, N, &r, 1.0);
    fill_normal(b, C, &r, 1.0);
    memcpy(z, y, N * sizeof *z);
    simd_add(z, x, N);
    for (int i = 0; i < N; i++)
        cr_assert(z[i] == y[i] + x[i]);
    memcpy(z, y, N * sizeof *z);
    simd_scale(z, 0.3f, N);
    for (int i = 0; i < N; i++)
        cr_assert(z[i] == y[i] * 0.3f);
    float cs[C];
    memcpy(cs, b, sizeof cs);
    simd_col_sums_add(cs, x, R, C);
    for (int c = 0; c < C; c++) {
        float acc = b[c];
        for (int rr = 0; rr < R; rr++)
            acc += x[rr * C + c];
        cr_assert(cs[c] == acc, "column %d: %a vs %a", c, cs[c], acc);
    }
    simd_fill_rows(z, b, R, C);
    for (int i = 0; i < N; i++)
        cr_assert(z[i] == b[i % C]);
    double part[16] = {0}, want = 0.0;
    for (int i = 0; i < N; i++)
        part[i % 16] += (double)x[i] * x[i];
    for (int j = 0; j < 16; j++)
        want += part[j];
    const double got = simd_sum_squares(x, N);
    cr_assert(memcmp(&got, &want, sizeof got) == 0, "sum of squares %.17g, want %.17g", got, want);
    cr_assert(fabs(nn_grad_norm(x, N) - sqrt(want)) <= 0.0);
    /* Adam, plain and both weight-decay forms, over an odd length. */
    for (int variant = 0; variant < 3; variant++) {
        nn_adam_config c = nn_adam_defaults();
        c.weight_decay = variant ? 0.05f : 0.0f;
        c.decoupled = variant == 2;
        float *p = fnew(N), *m = fnew(N), *v = fnew(N), *pr = fnew(N), *mr = fnew(N), *vr = fnew(N);
        fill_normal(p, N, &r, 1.0);
        fill_normal(m, N, &r, 0.1);
        for (int i = 0; i < N; i++)
            v[i] = (float)(0.01 * rng_uniform(&r));
        memcpy(pr, p, N * sizeof *p);
        memcpy(mr, m, N * sizeof *m);
        memcpy(vr, v, N * sizeof *v);
        const float lr = 3e-3f;
        const long t = 11;
        nn_adam_step(p, x, m, v, N, &c, lr, t);
        const float b1 = c.beta1, b2 = c.beta2, eps = c.eps, wd = c.weight_decay;
        const float step_size = (float)(lr / (1.0 - pow(b1, (double)t)));
        const float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(b2, (double)t)));
        const float decay = c.decoupled ? 1.0f - lr * wd : 1.0f, l2 = c.decoupled ? 0.0f : wd;
        for (int i = 0; i < N; i++) {
            const float g = x[i] + l2 * pr[i];
            mr[i] = b1 * mr[i] + (1.0f - b1) * g;
            vr[i] = b2 * vr[i] + (1.0f - b2) * g * g;
            const float denom = sqrtf(vr[i]) * inv_sqrt_bc2 + eps;
            pr[i] = pr[i] * decay - step_size * mr[i] / denom;
            cr_assert(p[i] == pr[i] && m[i] == mr[i] && v[i] == vr[i], "adam variant %d, element %d", variant, i);
        }
        free(p); free(m); free(v); free(pr); free(mr); free(vr);
    }
    free(x); free(y); free(z); free(b);
}

/* The double exp of the spline softmaxes: within 2 ulp of libm's exp (itself
 * correctly rounded in practice) from -745 to 709.78, including the
 * subnormal results; 0, inf and NaN where exp gives them. */
Test(nn, simd_exp_d_accuracy)
{
    enum { N = 20000 };
    double *x = calloc(N, sizeof *x), *y = calloc(N, sizeof *y);
    cr_assert(x && y);
    double worst = 0.0;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < N; i++)
            x[i] = pass == 0 ? -745.0 + (709.7 + 745.0) * i / (N - 1)
                 : pass == 1 ? -1.0 + 2.0 * i / (N - 1) : -1e-6 * i / N;
        simd_exp_d(y, x, N);
        for (int i = 0; i < N; i++) {
            const double want = exp(x[i]);
            /* ulp of the result (of the smallest subnormal below 2^-1022). */
            int e;
            frexp(fmax(want, 0x1p-1022), &e);
            const double u = fmax(ldexp(1.0, e - 53), 0x1p-1074);
            const double err = fabs(y[i] - want) / u;
            cr_assert(err <= 2.0, "exp(%.17g) = %.17g, libm %.17g", x[i], y[i], want);
            worst = fmax(worst, err);
        }
    }
    const double ex[] = {0.0, -0.0, 709.78, 709.79, 710.0, 1e300, INFINITY, -745.2, -746.0, -1e300,
                         -INFINITY, NAN};
    double ey[12];
    simd_exp_d(ey, ex, 12);
    cr_assert(ey[0] == 1.0 && ey[1] == 1.0 && isfinite(ey[2]) && isinf(ey[3]) && isinf(ey[4]) &&
              isinf(ey[5]) && isinf(ey[6]));
    cr_assert(ey[7] == 0.0 && ey[8] == 0.0 && ey[9] == 0.0 && ey[10] == 0.0 && isnan(ey[11]));
    cr_log_info("simd_exp_d: worst %.3f ulp", worst);
    free(x);
    free(y);
}

/* The double log and softplus of the flows' transforms (MAF scales, spline
 * knot derivatives): log within 1 ulp of libm's log from the smallest
 * subnormal to the largest double, softplus and sigmoid within 3 and 2 ulp of
 * their libm forms (max(u, 0) + log1p(exp(-|u|)) and the sign-split logistic,
 * themselves within an ulp or so) over +-750, where exp(+-u) under- or
 * overflows; the special values as libm's. */
Test(nn, simd_log_softplus_d_accuracy)
{
    enum { N = 40000 };
    double *x = calloc(N, sizeof *x), *y = calloc(N, sizeof *y), *sg = calloc(N, sizeof *sg);
    cr_assert(x && y && sg);
    rng r;
    rng_seed(&r, 34, 0);
    double wl = 0.0, wsp = 0.0, wsg = 0.0;
    for (int i = 0; i < N; i++) {
        const double u = rng_uniform(&r);
        x[i] = i % 4 == 0 ? exp(1400.0 * u - 700.0) : i % 4 == 1 ? 0.5 + u
             : i % 4 == 2 ? 1.0 + 1e-6 * (u - 0.5) : ldexp(u, -1060);
    }
    simd_log_d(y, x, N);
    for (int i = 0; i < N; i++) {
        const double want = log(x[i]);
        int e;
        frexp(fabs(want), &e);
        const double err = want == 0.0 ? fabs(y[i]) / 0x1p-1074 : fabs(y[i] - want) / ldexp(1.0, e - 53);
        cr_assert(err <= 1.0, "log(%.17g) = %.17g, libm %.17g", x[i], y[i], want);
        wl = fmax(wl, err);
    }
    for (int i = 0; i < N; i++)
        x[i] = i % 2 ? 80.0 * (rng_uniform(&r) - 0.5) : 1500.0 * (rng_uniform(&r) - 0.5);
    simd_softplus_d(y, sg, x, N);
    for (int i = 0; i < N; i++) {
        const double u = x[i];
        const double sp = fmax(u, 0.0) + log1p(exp(-fabs(u)));
        const double sig = u >= 0 ? 1.0 / (1.0 + exp(-u)) : exp(u) / (1.0 + exp(u));
        int e;
        frexp(fmax(sp, 0x1p-1022), &e);
        const double esp = fabs(y[i] - sp) / fmax(ldexp(1.0, e - 53), 0x1p-1074);
        frexp(fmax(sig, 0x1p-1022), &e);
        const double esg = fabs(sg[i] - sig) / fmax(ldexp(1.0, e - 53), 0x1p-1074);
        cr_assert(esp <= 3.0 && esg <= 2.0, "softplus(%.17g) = %.17g (%.17g), sigmoid %.17g (%.17g)", u, y[i],
                  sp, sg[i], sig);
        wsp = fmax(wsp, esp);
        wsg = fmax(wsg, esg);
    }
    const double lx[] = {0.0, -0.0, -1.0, INFINITY, 1.0, 0x1p-1074, DBL_MAX, NAN};
    double ly[8];
    simd_log_d(ly, lx, 8);
    cr_assert(ly[0] == -INFINITY && ly[1] == -INFINITY && isnan(ly[2]) && ly[3] == INFINITY && ly[4] == 0.0);
    cr_assert(ly[5] == log(0x1p-1074) && ly[6] == log(DBL_MAX) && isnan(ly[7]));
    const double px[] = {0.0, -INFINITY, INFINITY, 745.0, -745.0, NAN};
    double py[6], ps[6];
    simd_softplus_d(py, ps, px, 6);
    cr_assert(py[0] == log(2.0) && ps[0] == 0.5);
    cr_assert(py[1] == 0.0 && ps[1] == 0.0 && py[2] == INFINITY && ps[2] == 1.0);
    cr_assert(py[3] == 745.0 && ps[3] == 1.0 && py[4] > 0.0 && py[4] == ps[4] && isnan(py[5]) && isnan(ps[5]));
    /* In place, and without the sigmoid. */
    simd_softplus_d(x, NULL, x, N);
    cr_assert(memcmp(x, y, N * sizeof *x) == 0);
    /* Every instruction set gives the same bits. */
    const simd_isa orig = simd_isa_active();
    for (int s = 0; s < SIMD_ISA_COUNT; s++) {
        if (simd_isa_force((simd_isa)s) != 0)
            continue;
        double a[37], b1[37], b2[37];
        for (int i = 0; i < 37; i++)
            a[i] = exp(20.0 * sin(i * 1.3));
        simd_log_d(b1, a, 37);
        simd_softplus_d(b2, NULL, b1, 37);
        if (s == 0) {
            memcpy(y, b1, sizeof b1);
            memcpy(sg, b2, sizeof b2);
        } else {
            cr_assert(memcmp(y, b1, sizeof b1) == 0 && memcmp(sg, b2, sizeof b2) == 0, "%s differs",
                      simd_isa_name((simd_isa)s));
        }
    }
    cr_assert_eq(simd_isa_force(orig), 0);
    cr_log_info("simd log_d worst %.3f ulp, softplus %.3f, sigmoid %.3f", wl, wsp, wsg);
    free(x);
    free(y);
    free(sg);
}
