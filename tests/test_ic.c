/* Tests for src/ic: proposal heads, the LSTM cell, the IC network (BPTT
 * gradients, growth, batching, save/load, inference path).
 *
 * Gradients are checked against central differences as in test_nn.c: each
 * float parameter x is moved to x +- EPS and the numerical derivative
 * compared with |a - n| <= RTOL max(|a|,|n|) + ATOL.  Heads compute in
 * double from float outputs, so their tolerances are tighter.  Densities
 * are integrated numerically (continuous: composite Simpson on a grid wide
 * enough that the tails are below 1e-6; positive families in log space)
 * and masses summed over the support; both must give 1 within 1e-4. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"
#include "ic/ic.h"
#include "ic/ic_head.h"
#include "ic/ic_lstm.h"
#include "nn/nn.h"
#include "rng.h"
#include "trace.h"

#define EPS 1e-3f
#define RTOL 1e-2
#define ATOL 2e-3

static void setup(void) { nn_set_threads(1); }
TestSuite(ic, .init = setup);

/* ---- heads ------------------------------------------------------------------------------------------------- */

typedef struct head_case {
    dist_kind kind;
    double p0, p1;
    int k;
    const double *probs;
} head_case;

static const double cat_probs[5] = {1, 2, 3, 0.5, 1.5};

static const head_case cases[] = {
    {DIST_NORMAL, 1.0, 2.0, 0, NULL},      {DIST_UNIFORM, -1.0, 3.0, 0, NULL},
    {DIST_CATEGORICAL, 0, 0, 5, cat_probs}, {DIST_POISSON, 3.5, 0, 0, NULL},
    {DIST_BERNOULLI, 0.3, 0, 0, NULL},     {DIST_BETA, 2.0, 5.0, 0, NULL},
    {DIST_EXPONENTIAL, 1.5, 0, 0, NULL},   {DIST_GAMMA, 2.0, 3.0, 0, NULL},
    {DIST_LOGNORMAL, 0.5, 0.25, 0, NULL},  {DIST_BINOMIAL, 10.0, 0.4, 0, NULL},
    {DIST_WEIBULL, 2.0, 1.5, 0, NULL},
};
#define N_CASES (sizeof cases / sizeof cases[0])
#define KMIX 3

/* Random head outputs in [-0.5, 0.5] (for Uniform's Beta exponents only
 * [0, 0.5], so that a, b >= 1 and the density is bounded for quadrature). */
static void random_outputs(const head_case *hc, float *o, int w, rng *r)
{
    for (int j = 0; j < w; j++) o[j] = (float)(rng_uniform(r) - 0.5);
    if (hc->kind == DIST_UNIFORM)
        for (int j = KMIX; j < w; j++) o[j] = (float)(0.5 * rng_uniform(r));
}

static double lq(const head_case *hc, const float *o, double x)
{
    return ic_head_logq(hc->kind, KMIX, hc->k, hc->p0, hc->p1, hc->probs, o, x, NULL, 0);
}

Test(ic, head_widths)
{
    for (size_t c = 0; c < N_CASES; c++) cr_assert(ic_head_width(cases[c].kind, KMIX, cases[c].k) > 0);
    cr_assert_eq(ic_head_width(DIST_CATEGORICAL, KMIX, 7), 7);
    cr_assert_eq(ic_head_width(DIST_BERNOULLI, KMIX, 0), 2);
    cr_assert_eq(ic_head_width(DIST_NONE, KMIX, 0), 0);
}

Test(ic, head_gradients_match_finite_differences)
{
    rng r;
    rng_seed(&r, 11, 0);
    for (size_t c = 0; c < N_CASES; c++) {
        const head_case *hc = &cases[c];
        int w = ic_head_width(hc->kind, KMIX, hc->k);
        float o[64], d[64];
        for (int rep = 0; rep < 5; rep++) {
            random_outputs(hc, o, w, &r);
            double logq;
            double x = ic_head_sample(hc->kind, KMIX, hc->k, hc->p0, hc->p1, hc->probs, o, &r, &logq);
            memset(d, 0, sizeof d);
            double l0 = ic_head_logq(hc->kind, KMIX, hc->k, hc->p0, hc->p1, hc->probs, o, x, d, 1.0);
            cr_assert(isfinite(l0), "%s: log q %g", dist_kind_name(hc->kind), l0);
            cr_assert(fabs(l0 - logq) < 1e-9, "%s: sampled log q %g vs %g", dist_kind_name(hc->kind), logq, l0);
            for (int j = 0; j < w; j++) {
                float s = o[j];
                o[j] = s + EPS;
                double up = lq(hc, o, x);
                float hi = o[j];
                o[j] = s - EPS;
                double dn = lq(hc, o, x);
                float lo = o[j];
                o[j] = s;
                double num = (up - dn) / ((double)hi - (double)lo);
                cr_assert(fabs(num - d[j]) <= 1e-3 * fmax(fabs(num), fabs(d[j])) + 1e-4,
                          "%s output %d: analytic %g numeric %g", dist_kind_name(hc->kind), j, d[j], num);
            }
        }
    }
}

/* Composite Simpson of f on [a, b] with n (even) intervals. */
static double simpson(double (*f)(const head_case *, const float *, double), const head_case *hc, const float *o,
                      double a, double b, int n)
{
    double h = (b - a) / n, s = f(hc, o, a) + f(hc, o, b);
    for (int i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * f(hc, o, a + i * h);
    return s * h / 3;
}

static double dens(const head_case *hc, const float *o, double x)
{
    double l = lq(hc, o, x);
    return l == -INFINITY ? 0 : exp(l);
}

/* q in log space: q(e^y) e^y. */
static double dens_log(const head_case *hc, const float *o, double y)
{
    double l = lq(hc, o, exp(y));
    return l == -INFINITY ? 0 : exp(l + y);
}

Test(ic, head_densities_integrate_to_one)
{
    rng r;
    rng_seed(&r, 12, 0);
    for (size_t c = 0; c < N_CASES; c++) {
        const head_case *hc = &cases[c];
        int w = ic_head_width(hc->kind, KMIX, hc->k);
        float o[64];
        for (int rep = 0; rep < 3; rep++) {
            random_outputs(hc, o, w, &r);
            double total = 0;
            switch (hc->kind) {
            case DIST_NORMAL: total = simpson(dens, hc, o, hc->p0 - 40 * hc->p1, hc->p0 + 40 * hc->p1, 200000); break;
            case DIST_UNIFORM: total = simpson(dens, hc, o, hc->p0, hc->p1, 200000); break;
            case DIST_BETA: total = simpson(dens, hc, o, 0, 1, 200000); break;
            case DIST_EXPONENTIAL:
            case DIST_GAMMA:
            case DIST_LOGNORMAL:
            case DIST_WEIBULL: total = simpson(dens_log, hc, o, -40, 20, 200000); break;
            case DIST_POISSON:
                for (int x = 0; x < 2000; x++) total += dens(hc, o, x);
                break;
            case DIST_BINOMIAL:
                for (int x = 0; x <= (int)hc->p0; x++) total += dens(hc, o, x);
                cr_assert_eq(dens(hc, o, hc->p0 + 1), 0.0, "Binomial mass above the count");
                break;
            case DIST_CATEGORICAL:
                for (int x = 0; x < hc->k; x++) total += dens(hc, o, x);
                cr_assert_eq(dens(hc, o, hc->k), 0.0);
                break;
            case DIST_BERNOULLI: total = dens(hc, o, 0) + dens(hc, o, 1); break;
            default: cr_assert_fail();
            }
            cr_assert(fabs(total - 1) < 1e-4, "%s: integrates to %.8f", dist_kind_name(hc->kind), total);
            if (dist_is_discrete(hc->kind)) cr_assert_eq(dens(hc, o, 0.5), 0.0, "non-integer value has mass");
        }
    }
}

/* Sampling: the sample mean is within 4 standard errors of the mean
 * computed from the density (quadrature / sums). */
static double xdens(const head_case *hc, const float *o, double x) { return x * dens(hc, o, x); }
static double x2dens(const head_case *hc, const float *o, double x) { return x * x * dens(hc, o, x); }
static double xdens_log(const head_case *hc, const float *o, double y) { return exp(y) * dens_log(hc, o, y); }
static double x2dens_log(const head_case *hc, const float *o, double y) { return exp(2 * y) * dens_log(hc, o, y); }

Test(ic, head_sampling_matches_density)
{
    rng r;
    rng_seed(&r, 13, 0);
    for (size_t c = 0; c < N_CASES; c++) {
        const head_case *hc = &cases[c];
        int w = ic_head_width(hc->kind, KMIX, hc->k);
        float o[64];
        random_outputs(hc, o, w, &r);
        double m1 = 0, m2 = 0;
        switch (hc->kind) {
        case DIST_NORMAL:
            m1 = simpson(xdens, hc, o, hc->p0 - 40 * hc->p1, hc->p0 + 40 * hc->p1, 200000);
            m2 = simpson(x2dens, hc, o, hc->p0 - 40 * hc->p1, hc->p0 + 40 * hc->p1, 200000);
            break;
        case DIST_UNIFORM:
        case DIST_BETA: {
            double a = hc->kind == DIST_BETA ? 0 : hc->p0, b = hc->kind == DIST_BETA ? 1 : hc->p1;
            m1 = simpson(xdens, hc, o, a, b, 200000);
            m2 = simpson(x2dens, hc, o, a, b, 200000);
            break;
        }
        case DIST_EXPONENTIAL:
        case DIST_GAMMA:
        case DIST_LOGNORMAL:
        case DIST_WEIBULL:
            m1 = simpson(xdens_log, hc, o, -40, 20, 200000);
            m2 = simpson(x2dens_log, hc, o, -40, 20, 200000);
            break;
        default: {
            int top = hc->kind == DIST_POISSON ? 2000 : hc->kind == DIST_BINOMIAL ? (int)hc->p0 : hc->kind == DIST_CATEGORICAL ? hc->k - 1 : 1;
            for (int x = 0; x <= top; x++) {
                m1 += x * dens(hc, o, x);
                m2 += (double)x * x * dens(hc, o, x);
            }
        }
        }
        const int N = 20000;
        double s = 0;
        for (int i = 0; i < N; i++) {
            double l;
            s += ic_head_sample(hc->kind, KMIX, hc->k, hc->p0, hc->p1, hc->probs, o, &r, &l);
        }
        double se = sqrt((m2 - m1 * m1) / N);
        cr_assert(fabs(s / N - m1) < 4 * se, "%s: sample mean %g, density mean %g (se %g)", dist_kind_name(hc->kind),
                  s / N, m1, se);
    }
}

Test(ic, head_outside_support)
{
    float o[64] = {0};
    head_case u = {DIST_UNIFORM, -1, 3, 0, NULL};
    cr_assert_eq(lq(&u, o, 3.5), -INFINITY);
    head_case e = {DIST_EXPONENTIAL, 1.5, 0, 0, NULL};
    cr_assert_eq(lq(&e, o, -0.1), -INFINITY);
    head_case p = {DIST_POISSON, 2, 0, 0, NULL};
    cr_assert_eq(lq(&p, o, -1), -INFINITY);
    cr_assert(isnan(lq(&p, o, NAN)));
}

/* ---- LSTM cell ---------------------------------------------------------------------------------------------- */

Test(ic, lstm_cell_gradients)
{
    enum { B = 3, IN = 4, H = 5 };
    rng r;
    rng_seed(&r, 21, 0);
    float x[B * IN], hp[B * H], cp[B * H], w[4 * H * (IN + H)], b[4 * H], R[B * H], Rc[B * H];
    nn_init_uniform(x, B * IN, 1, &r);
    nn_init_uniform(hp, B * H, 1, &r);
    nn_init_uniform(cp, B * H, 1, &r);
    nn_init_uniform(w, 4 * H * (IN + H), 0.7f, &r);
    nn_init_uniform(b, 4 * H, 0.5f, &r);
    nn_init_uniform(R, B * H, 1, &r);
    nn_init_uniform(Rc, B * H, 1, &r);
    float h[B * H], c[B * H], xh[B * (IN + H)], g[B * 4 * H], tc[B * H], scratch[B * (4 * H + IN + H)];
    /* L = sum h R + sum c Rc (so dc input of the cell is Rc) */
#define LOSS()                                                                                \
    (ic_lstm_forward(h, c, xh, g, tc, x, hp, cp, w, b, B, IN, H), ({                          \
         double s_ = 0;                                                                       \
         for (int i_ = 0; i_ < B * H; i_++) s_ += (double)h[i_] * R[i_] + (double)c[i_] * Rc[i_]; \
         s_;                                                                                  \
     }))
    (void)LOSS();
    float dx[B * IN] = {0}, dhp[B * H] = {0}, dcp[B * H] = {0}, dw[4 * H * (IN + H)] = {0}, db[4 * H] = {0};
    ic_lstm_backward(dx, dhp, dcp, dw, db, scratch, R, Rc, xh, g, tc, cp, w, B, IN, H);
    struct { float *p, *d; int n; } sets[] = {{x, dx, B * IN}, {hp, dhp, B * H}, {cp, dcp, B * H},
                                               {w, dw, 4 * H * (IN + H)}, {b, db, 4 * H}};
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
        for (int i = 0; i < sets[s].n; i++) {
            float v = sets[s].p[i];
            sets[s].p[i] = v + EPS;
            float hi = sets[s].p[i];
            double up = LOSS();
            sets[s].p[i] = v - EPS;
            float lo = sets[s].p[i];
            double dn = LOSS();
            sets[s].p[i] = v;
            double num = (up - dn) / ((double)hi - lo);
            cr_assert(fabs(num - sets[s].d[i]) <= RTOL * fmax(fabs(num), fabs(sets[s].d[i])) + ATOL,
                      "set %zu [%d]: analytic %g numeric %g", s, i, sets[s].d[i], num);
        }
#undef LOSS
}

/* ---- the network ------------------------------------------------------------------------------------------- */

static void add_sample(trace *t, const char *addr, dist_kind kind, const double *p0, size_t n0, const double *p1,
                       size_t n1, size_t k, const double *val, size_t n, int control)
{
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = TRACE_SAMPLE;
    e.base_address = addr;
    e.name = addr;
    e.dist = kind;
    e.param[0].data = (double *)p0;
    e.param[0].len = n0;
    e.param[1].data = (double *)p1;
    e.param[1].len = n1;
    e.k = k;
    e.value.data = (double *)val;
    e.value.len = n;
    e.control = control;
    cr_assert(trace_append(t, &e));
}

static void add_observe(trace *t, const char *name, const double *val, size_t n)
{
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = TRACE_OBSERVE;
    e.base_address = name;
    e.name = name;
    e.dist = DIST_NORMAL;
    static const double z = 0, one = 1;
    e.param[0].data = (double *)&z;
    e.param[0].len = 1;
    e.param[1].data = (double *)&one;
    e.param[1].len = 1;
    e.value.data = (double *)val;
    e.value.len = n;
    e.control = 1;
    e.observed = 1;
    cr_assert(trace_append(t, &e));
}

/* A trace with several kinds of draw: a 3-element Normal, a Categorical, a
 * Poisson, a Gamma, a Uniform and (branch) a Binomial, plus an uncontrolled
 * Normal that the network must skip. */
static trace *make_trace(rng *r, int branch)
{
    trace *t = trace_new();
    double y[2] = {rng_normal(r), 2 + rng_normal(r)};
    double loc[3] = {0, 1, 2}, sc = 1.5, v3[3] = {rng_normal(r), rng_normal(r), rng_normal(r)};
    add_sample(t, "a", DIST_NORMAL, loc, 3, &sc, 1, 0, v3, 3, 1);
    double pr[3] = {0.2, 0.5, 0.3}, cv = (double)rng_below(r, 3);
    add_sample(t, "b", DIST_CATEGORICAL, pr, 3, NULL, 0, 3, &cv, 1, 1);
    double unc = rng_normal(r), z = 0, one = 1;
    add_sample(t, "u", DIST_NORMAL, &z, 1, &one, 1, 0, &unc, 1, 0);
    double rate = 3, pv = (double)rng_below(r, 7);
    add_sample(t, "c", DIST_POISSON, &rate, 1, NULL, 0, 0, &pv, 1, 1);
    double ga = 2, gr = 3, gv = 0.2 + rng_uniform(r);
    add_sample(t, "d", DIST_GAMMA, &ga, 1, &gr, 1, 0, &gv, 1, 1);
    double lo = -1, hi = 2, uv = -1 + 3 * rng_uniform(r);
    add_sample(t, "e", DIST_UNIFORM, &lo, 1, &hi, 1, 0, &uv, 1, 1);
    if (branch) {
        double bn = 6, bp = 0.3, bv = (double)rng_below(r, 7);
        add_sample(t, "f", DIST_BINOMIAL, &bn, 1, &bp, 1, 0, &bv, 1, 1);
    }
    add_observe(t, "y", y, 2);
    return t;
}

static ic_config small_config(int lstm)
{
    ic_config c = {2, 4, 3, 2, 2, 2, 3, 2, lstm};
    return c;
}

static ic_net *small_net(int lstm, uint64_t seed)
{
    ic_config c = small_config(lstm);
    const char *names[] = {"y"};
    int widths[] = {2};
    return ic_net_new(&c, names, widths, 1, seed);
}

static void check_net_gradients(int lstm)
{
    rng r;
    rng_seed(&r, 31 + lstm, 0);
    ic_net *net = small_net(lstm, 5);
    cr_assert(net);
    enum { B = 4 };
    trace *ts[B];
    ic_item items[B];
    ic_item *ptr[B];
    memset(items, 0, sizeof items);
    for (int i = 0; i < B; i++) {
        ts[i] = make_trace(&r, i == 2); /* item 2 has another address sequence */
        cr_assert_eq(ic_item_from_trace(net, &items[i], ts[i], 1), 0);
        ptr[i] = &items[i];
    }
    cr_assert_eq(items[0].T, 5, "the uncontrolled draw is not a step");
    cr_assert_eq(items[2].T, 6);
    ic_net_set_zscore(net, (const trace *const *)ts, B);
    for (int i = 0; i < B; i++) cr_assert_eq(ic_item_from_trace(net, &items[i], ts[i], 0), 0);
    /* Move the parameters away from their initialisation (small head
     * weights, zero biases) so every path carries gradient. */
    for (size_t i = 0; i < net->n_params; i++) net->params[i] += (float)(0.3 * (rng_uniform(&r) - 0.5));
    ic_net_invalidate(net);
    ic_net_zero_grad(net);
    double l0 = ic_net_loss(net, ptr, B, 1);
    cr_assert(isfinite(l0));
    float *g = malloc(net->n_params * sizeof *g);
    memcpy(g, net->grads, net->n_params * sizeof *g);
    size_t nonzero = 0;
    for (size_t i = 0; i < net->n_params; i++) {
        float v = net->params[i];
        net->params[i] = v + EPS;
        float hi = net->params[i];
        double up = ic_net_loss(net, ptr, B, 0);
        net->params[i] = v - EPS;
        float lo = net->params[i];
        double dn = ic_net_loss(net, ptr, B, 0);
        net->params[i] = v;
        double num = (up - dn) / ((double)hi - lo);
        nonzero += g[i] != 0;
        cr_assert(fabs(num - g[i]) <= RTOL * fmax(fabs(num), fabs(g[i])) + ATOL,
                  "%s param %zu of %zu: analytic %g numeric %g", lstm ? "lstm" : "ff", i, net->n_params, g[i], num);
    }
    cr_assert(nonzero > net->n_params / 2, "only %zu of %zu gradients non-zero", nonzero, net->n_params);
    /* backward accumulates */
    ic_net_loss(net, ptr, B, 1);
    for (size_t i = 0; i < net->n_params; i++) cr_assert(fabsf(net->grads[i] - 2 * g[i]) <= 1e-5f + 1e-4f * fabsf(g[i]));
    free(g);
    for (int i = 0; i < B; i++) {
        ic_item_free(&items[i]);
        trace_destroy(&ts[i]);
    }
    ic_net_destroy(&net);
}

Test(ic, lstm_net_bptt_gradients) { check_net_gradients(1); }
Test(ic, feedforward_net_gradients) { check_net_gradients(0); }

Test(ic, growth_keeps_adam_state)
{
    rng r;
    rng_seed(&r, 41, 0);
    ic_net *net = small_net(1, 6);
    trace *t = make_trace(&r, 0);
    ic_item it;
    memset(&it, 0, sizeof it);
    ic_item *p = &it;
    cr_assert_eq(ic_item_from_trace(net, &it, t, 1), 0);
    nn_adam_config ac = nn_adam_defaults();
    for (int s = 0; s < 3; s++) {
        ic_net_zero_grad(net);
        ic_net_loss(net, &p, 1, 1);
        ic_net_adam_step(net, &ac, 1e-2f, 0);
    }
    size_t n0 = net->n_params, na0 = net->n_addrs;
    float *pp = malloc(n0 * sizeof *pp), *mm = malloc(n0 * sizeof *mm), *vv = malloc(n0 * sizeof *vv);
    memcpy(pp, net->params, n0 * sizeof *pp);
    memcpy(mm, net->m, n0 * sizeof *mm);
    memcpy(vv, net->v, n0 * sizeof *vv);
    trace *t2 = make_trace(&r, 1); /* adds address f */
    cr_assert_eq(ic_item_from_trace(net, &it, t2, 1), 0);
    cr_assert_eq(net->n_addrs, na0 + 1);
    cr_assert(net->n_params > n0);
    cr_assert_eq(memcmp(pp, net->params, n0 * sizeof *pp), 0);
    cr_assert_eq(memcmp(mm, net->m, n0 * sizeof *mm), 0);
    cr_assert_eq(memcmp(vv, net->v, n0 * sizeof *vv), 0);
    for (size_t i = n0; i < net->n_params; i++) cr_assert(net->m[i] == 0 && net->v[i] == 0 && net->grads[i] == 0);
    /* a known address with another shape is not the same address */
    cr_assert_eq(ic_net_address(net, "a__Normal__1", DIST_NORMAL, 2, 0, 1), -1);
    cr_assert(ic_net_address(net, "a__Normal__1", DIST_NORMAL, 3, 0, 0) >= 0);
    cr_assert_eq(ic_net_address(net, "zzz", DIST_NORMAL, 1, 0, 0), -1);
    free(pp);
    free(mm);
    free(vv);
    ic_item_free(&it);
    trace_destroy(&t);
    trace_destroy(&t2);
    ic_net_destroy(&net);
}

/* The inference path (one LSTM step per draw, batched over states) gives
 * the training path's log q; sampling returns the density it scores;
 * save/load keeps everything. */
static double score_trace(ic_net *net, const trace *t, const float *eo, int sample, rng *r)
{
    ic_state st;
    cr_assert_eq(ic_state_init(net, &st), 0);
    double total = 0;
    for (size_t e = 0; e < t->n_entries; e++) {
        const trace_entry *te = &t->entries[e];
        if (te->kind != TRACE_SAMPLE || !te->control) continue;
        int a = ic_net_address(net, te->address, te->dist, (int)te->value.len, (int)te->k, 0);
        cr_assert(a >= 0);
        size_t n = te->value.len, k = te->dist == DIST_CATEGORICAL ? te->k : 1;
        double p0[64], p1[64], x[64];
        ic_expand_params(te->dist, n, k, te->param[0].data, te->param[0].len, te->param[1].data, te->param[1].len, p0,
                         p1);
        memcpy(x, te->value.data, n * sizeof *x);
        ic_query q = {&st, a, p0, p1, r, x, 0};
        cr_assert_eq((sample ? ic_net_propose : ic_net_score)(net, eo, &q, 1), 0);
        if (sample) {
            double chk = 0;
            for (size_t i = 0; i < n; i++) cr_assert(isfinite(x[i]));
            chk = q.logq;
            cr_assert(isfinite(chk));
        }
        total += q.logq;
    }
    ic_state_free(&st);
    return total;
}

Test(ic, inference_path_matches_training_and_file_round_trip)
{
    rng r;
    rng_seed(&r, 51, 0);
    ic_net *net = small_net(1, 7);
    trace *ts[3];
    ic_item items[3];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 3; i++) {
        ts[i] = make_trace(&r, i == 1);
        cr_assert_eq(ic_item_from_trace(net, &items[i], ts[i], 1), 0);
    }
    for (size_t i = 0; i < net->n_params; i++) net->params[i] += (float)(0.3 * (rng_uniform(&r) - 0.5));
    ic_net_invalidate(net);
    float eo[8];
    for (int i = 0; i < 3; i++) {
        ic_item *p = &items[i];
        double loss = ic_net_loss(net, &p, 1, 0);
        ic_net_embed_obs(net, items[i].obs, eo);
        double s = score_trace(net, ts[i], eo, 0, &r);
        cr_assert(fabs(-loss - s) < 1e-4 * fmax(1, fabs(s)), "trace %d: training %g, inference %g", i, -loss, s);
    }
    /* batched: three states in one call give the same as one at a time */
    {
        ic_state st[3];
        ic_query q[3];
        double p0[3][8], p1[3][8], x[3][8], single[3];
        const trace_entry *te = &ts[0]->entries[0];
        int a = ic_net_address(net, te->address, te->dist, 3, 0, 0);
        for (int i = 0; i < 3; i++) {
            ic_state_init(net, &st[i]);
            ic_expand_params(te->dist, 3, 1, te->param[0].data, te->param[0].len, te->param[1].data, te->param[1].len,
                             p0[i], p1[i]);
            for (int j = 0; j < 3; j++) x[i][j] = 0.3 * i - 0.2 * j;
            ic_net_embed_obs(net, items[i].obs, eo);
            ic_query one = {&st[i], a, p0[i], p1[i], &r, x[i], 0};
            ic_net_score(net, eo, &one, 1);
            single[i] = one.logq;
            ic_state_reset(net, &st[i]);
            q[i] = one;
        }
        /* all three with the same observation embedding as the last */
        for (int i = 0; i < 3; i++) {
            ic_state_reset(net, &st[i]);
            ic_query one = {&st[i], a, p0[i], p1[i], &r, x[i], 0};
            ic_net_score(net, eo, &one, 1);
            single[i] = one.logq;
            ic_state_reset(net, &st[i]);
        }
        cr_assert_eq(ic_net_score(net, eo, q, 3), 0);
        for (int i = 0; i < 3; i++) cr_assert(fabs(q[i].logq - single[i]) < 1e-5, "row %d", i);
        for (int i = 0; i < 3; i++) ic_state_free(&st[i]);
    }
    /* proposing gives finite values and log q */
    ic_net_embed_obs(net, items[0].obs, eo);
    score_trace(net, ts[1], eo, 1, &r);
    /* save / load */
    char path[] = "/tmp/ppxd-test-ic-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    char err[256];
    snprintf(net->prov.source, sizeof net->prov.source, "unit test");
    cr_assert_eq(ic_net_save(net, path, err, sizeof err), 0, "%s", err);
    ic_net *back = ic_net_load(path, err, sizeof err);
    cr_assert(back, "%s", err);
    cr_assert_eq(back->n_params, net->n_params);
    cr_assert_eq(memcmp(back->params, net->params, net->n_params * sizeof(float)), 0);
    cr_assert_eq(back->n_addrs, net->n_addrs);
    cr_assert_str_eq(back->prov.source, "unit test");
    for (int i = 0; i < 2; i++) cr_assert_eq(back->obs_mean[i], net->obs_mean[i]);
    ic_item_free(&items[0]);
    cr_assert_eq(ic_item_from_trace(back, &items[0], ts[0], 0), 0);
    ic_net_embed_obs(back, items[0].obs, eo);
    double s1 = score_trace(back, ts[0], eo, 0, &r);
    ic_net_embed_obs(net, items[0].obs, eo);
    double s0 = score_trace(net, ts[0], eo, 0, &r);
    cr_assert_eq(s0, s1);
    /* a corrupted file is refused */
    FILE *f = fopen(path, "r+b");
    fseek(f, 100, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    ic_net *bad = ic_net_load(path, err, sizeof err);
    cr_assert_null(bad);
    cr_assert(strstr(err, "corrupted"), "%s", err);
    unlink(path);
    ic_net_destroy(&back);
    for (int i = 0; i < 3; i++) {
        ic_item_free(&items[i]);
        trace_destroy(&ts[i]);
    }
    ic_net_destroy(&net);
}

/* Training reduces the loss on a simple problem: mu ~ N(0, 1), y ~ N(mu, 0.5);
 * the IC proposal must learn q(mu | y) close to the exact posterior
 * N(0.8 y, sqrt(0.2)): after training, the mean loss on fresh traces is
 * within 0.1 nats of the exact posterior's entropy-based optimum. */
Test(ic, training_learns_gaussian_posterior)
{
    rng r;
    rng_seed(&r, 61, 0);
    ic_config c = ic_config_defaults(1);
    const char *names[] = {"y"};
    int widths[] = {1};
    ic_net *net = ic_net_new(&c, names, widths, 1, 3);
    cr_assert(net);
    enum { B = 64 };
    trace *ts[B];
    ic_item items[B], *ptr[B];
    memset(items, 0, sizeof items);
    for (int i = 0; i < B; i++) {
        ts[i] = trace_new();
        ptr[i] = &items[i];
    }
    nn_adam_config ac = nn_adam_defaults();
    double z = 0, one = 1;
    double last = 0;
    for (int step = 0; step < 1500; step++) {
        for (int i = 0; i < B; i++) {
            trace_reset(ts[i]);
            double mu = rng_normal(&r), y = mu + 0.5 * rng_normal(&r);
            add_sample(ts[i], "mu", DIST_NORMAL, &z, 1, &one, 1, 0, &mu, 1, 1);
            add_observe(ts[i], "y", &y, 1);
            if (step == 0 && i == B - 1) ic_net_set_zscore(net, (const trace *const *)ts, B);
        }
        for (int i = 0; i < B; i++) ic_item_from_trace(net, &items[i], ts[i], 1);
        ic_net_zero_grad(net);
        last = ic_net_loss(net, ptr, B, step >= 1500 - 50 ? 0 : 1);
        if (step < 1500 - 50) ic_net_adam_step(net, &ac, 1e-3f, 10);
        else if (step == 1500 - 50) last = 0;
    }
    /* The optimum is the posterior's expected -log density: 0.5 log(2 pi e 0.2). */
    double opt = 0.5 * log(2 * M_PI * M_E * 0.2);
    (void)last;
    double tot = 0;
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < B; i++) {
            trace_reset(ts[i]);
            double mu = rng_normal(&r), y = mu + 0.5 * rng_normal(&r);
            add_sample(ts[i], "mu", DIST_NORMAL, &z, 1, &one, 1, 0, &mu, 1, 1);
            add_observe(ts[i], "y", &y, 1);
            ic_item_from_trace(net, &items[i], ts[i], 0);
        }
        tot += ic_net_loss(net, ptr, B, 0);
    }
    double mean = tot / 20;
    /* se of the mean loss over 1280 draws of a chi-square-like term: ~0.02 */
    cr_assert(mean < opt + 0.1, "loss %g, optimum %g", mean, opt);
    for (int i = 0; i < B; i++) {
        ic_item_free(&items[i]);
        trace_destroy(&ts[i]);
    }
    ic_net_destroy(&net);
}
