/* ic_head.c — proposal heads (see ic_head.h). */
#include "ic/ic_head.h"

#include <assert.h>
#include <math.h>
#include <string.h>

typedef enum family {
    FAM_NONE = 0,
    FAM_NORMAL,    /* mixture of Normals, relative loc/scale */
    FAM_BOUNDED,   /* mixture of Betas on [low, high] */
    FAM_POSITIVE,  /* mixture of LogNormals */
    FAM_CATEGORY,  /* logits added to the prior's log-probabilities */
    FAM_POISSON,   /* mixture of Poissons */
    FAM_BINOMIAL   /* mixture of Binomials */
} family;

static family family_of(dist_kind kind)
{
    switch (kind) {
    case DIST_NORMAL: return FAM_NORMAL;
    case DIST_UNIFORM:
    case DIST_BETA: return FAM_BOUNDED;
    case DIST_EXPONENTIAL:
    case DIST_GAMMA:
    case DIST_LOGNORMAL:
    case DIST_WEIBULL: return FAM_POSITIVE;
    case DIST_CATEGORICAL:
    case DIST_BERNOULLI: return FAM_CATEGORY;
    case DIST_POISSON: return FAM_POISSON;
    case DIST_BINOMIAL: return FAM_BINOMIAL;
    default: return FAM_NONE;
    }
}

int ic_head_width(dist_kind kind, int K, int k)
{
    switch (family_of(kind)) {
    case FAM_NORMAL:
    case FAM_BOUNDED:
    case FAM_POSITIVE: return 3 * K;
    case FAM_POISSON:
    case FAM_BINOMIAL: return 2 * K;
    case FAM_CATEGORY: return kind == DIST_BERNOULLI ? 2 : k;
    default: return 0;
    }
}

/* v clamped to the allowed range; *inside = 1 when not clamped (gradient passes). */
static double clampo(double v, int *inside)
{
    if (v > IC_HEAD_CLAMP) {
        *inside = 0;
        return IC_HEAD_CLAMP;
    }
    if (v < -IC_HEAD_CLAMP) {
        *inside = 0;
        return -IC_HEAD_CLAMP;
    }
    *inside = 1;
    return v;
}

/* The prior-derived constants of the mixture families. */
typedef struct base {
    double a, b;      /* NORMAL: loc, scale; BOUNDED: alpha, beta; POSITIVE: m0, s0;
                         POISSON: rate; BINOMIAL: count, logit(p) */
    double lo, width; /* BOUNDED: interval */
} base;

static base make_base(dist_kind kind, double p0, double p1)
{
    base c = {0, 0, 0, 1};
    switch (kind) {
    case DIST_NORMAL: c.a = p0; c.b = p1; break;
    case DIST_UNIFORM: c.a = 1; c.b = 1; c.lo = p0; c.width = p1 - p0; break;
    case DIST_BETA: c.a = p0; c.b = p1; c.lo = 0; c.width = 1; break;
    case DIST_LOGNORMAL: c.a = p0; c.b = p1; break;
    case DIST_EXPONENTIAL:
    case DIST_GAMMA:
    case DIST_WEIBULL: {
        dist d;
        double m, v;
        dist_init(&d, kind, &p0, 1, kind == DIST_EXPONENTIAL ? NULL : &p1, kind == DIST_EXPONENTIAL ? 0 : 1, 0, NULL, 0);
        dist_mean(&d, &m);
        dist_variance(&d, &v);
        if (!(m > 0) || !isfinite(m)) m = 1;
        if (!(v > 0) || !isfinite(v)) v = m * m;
        double s2 = log1p(v / (m * m));
        c.b = sqrt(s2);
        c.a = log(m) - 0.5 * s2;
        break;
    }
    case DIST_POISSON: c.a = p0 > 1e-6 ? p0 : 1e-6; break;
    case DIST_BINOMIAL: {
        double p = p1 < 1e-9 ? 1e-9 : p1 > 1 - 1e-9 ? 1 - 1e-9 : p1;
        c.a = p0;
        c.b = log(p) - log1p(-p);
        break;
    }
    default: break;
    }
    return c;
}

/* Component log-probability of x given its two raw outputs ra (and rb), and
 * d log p / d ra, d rb (when ga != NULL). */
static double comp_logp(family f, const base *c, double ra, double rb, double x, double *ga, double *gb)
{
    int ia = 1, ib = 1;
    double lp = 0, g0 = 0, g1 = 0;
    switch (f) {
    case FAM_NORMAL: {
        ra = clampo(ra, &ia);
        rb = clampo(rb, &ib);
        double mean = c->a + c->b * ra, sd = c->b * exp(rb);
        double z = (x - mean) / sd;
        lp = -0.5 * z * z - log(sd) - 0.5 * log(2 * M_PI);
        g0 = z / sd * c->b;       /* d/d ra */
        g1 = (z * z - 1.0);       /* d/d rb: sd * d/dsd */
        break;
    }
    case FAM_BOUNDED: {
        ra = clampo(ra, &ia);
        rb = clampo(rb, &ib);
        double u = (x - c->lo) / c->width;
        if (!(u >= 0 && u <= 1)) return -INFINITY;
        if (u < 1e-12) u = 1e-12;
        if (u > 1 - 1e-12) u = 1 - 1e-12;
        double al = c->a * exp(ra), be = c->b * exp(rb);
        lp = lgamma(al + be) - lgamma(al) - lgamma(be) + (al - 1) * log(u) + (be - 1) * log1p(-u) - log(c->width);
        if (ga) {
            dist d;
            double g[2];
            dist_init(&d, DIST_BETA, &al, 1, &be, 1, 0, NULL, 0);
            dist_grad_log_prob(&d, &u, &g[0], &g[1]);
            g0 = g[0] * al;
            g1 = g[1] * be;
        }
        break;
    }
    case FAM_POSITIVE: {
        ra = clampo(ra, &ia);
        rb = clampo(rb, &ib);
        if (!(x >= 0)) return -INFINITY;
        if (x < 1e-300) x = 1e-300;
        double lx = log(x), loc = c->a + ra, sc = c->b * exp(rb);
        double z = (lx - loc) / sc;
        lp = -0.5 * z * z - log(sc) - lx - 0.5 * log(2 * M_PI);
        g0 = z / sc;
        g1 = z * z - 1.0;
        break;
    }
    case FAM_POISSON: {
        ra = clampo(ra, &ia);
        if (!(x >= 0) || x != floor(x) || isinf(x)) return -INFINITY;
        double lam = c->a * exp(ra);
        lp = x * log(lam) - lam - lgamma(x + 1);
        g0 = x - lam;
        break;
    }
    case FAM_BINOMIAL: {
        ra = clampo(ra, &ia);
        double n = c->a;
        if (!(x >= 0) || x > n || x != floor(x)) return -INFINITY;
        double l = c->b + ra;
        /* log p = -softplus(-l), log(1-p) = -softplus(l) */
        double lp1 = l > 0 ? -log1p(exp(-l)) : l - log1p(exp(l));
        double lq1 = l > 0 ? -l - log1p(exp(-l)) : -log1p(exp(l));
        double p = 1.0 / (1.0 + exp(-l));
        lp = lgamma(n + 1) - lgamma(x + 1) - lgamma(n - x + 1) + x * lp1 + (n - x) * lq1;
        g0 = x - n * p;
        break;
    }
    default: return -INFINITY;
    }
    if (ga) {
        *ga = ia ? g0 : 0;
        if (gb) *gb = ib ? g1 : 0;
    }
    return lp;
}

static double comp_sample(family f, const base *c, double ra, double rb, rng *r)
{
    int in;
    switch (f) {
    case FAM_NORMAL:
        ra = clampo(ra, &in);
        rb = clampo(rb, &in);
        return c->a + c->b * ra + c->b * exp(rb) * rng_normal(r);
    case FAM_BOUNDED: {
        ra = clampo(ra, &in);
        rb = clampo(rb, &in);
        double u = rng_beta(r, c->a * exp(ra), c->b * exp(rb));
        return c->lo + c->width * u;
    }
    case FAM_POSITIVE:
        ra = clampo(ra, &in);
        rb = clampo(rb, &in);
        return exp(c->a + ra + c->b * exp(rb) * rng_normal(r));
    case FAM_POISSON:
        ra = clampo(ra, &in);
        return rng_poisson(r, c->a * exp(ra));
    case FAM_BINOMIAL: {
        ra = clampo(ra, &in);
        double l = c->b + ra;
        return rng_binomial(r, c->a, 1.0 / (1.0 + exp(-l)));
    }
    default: return NAN;
    }
}

/* log-softmax of K logits into out; returns nothing. */
static void log_softmax(const float *o, int K, double *out)
{
    double mx = -INFINITY;
    for (int j = 0; j < K; j++)
        if (o[j] > mx) mx = o[j];
    double s = 0;
    for (int j = 0; j < K; j++) s += exp(o[j] - mx);
    double ls = mx + log(s);
    for (int j = 0; j < K; j++) out[j] = o[j] - ls;
}

/* Categorical logits z_j = log p_j + o_j (p normalised); Bernoulli's two
 * categories are (1-p, p).  Writes z[0..m) and returns log sum exp z. */
static double cat_logits(dist_kind kind, int k, double p0, const double *probs, const float *o, double *z, int *m)
{
    if (kind == DIST_BERNOULLI) {
        *m = 2;
        double p = p0 < 0 ? 0 : p0 > 1 ? 1 : p0;
        z[0] = log(fmax(1 - p, 1e-300)) + o[0];
        z[1] = log(fmax(p, 1e-300)) + o[1];
    } else {
        *m = k;
        double s = 0;
        for (int j = 0; j < k; j++) s += probs[j];
        for (int j = 0; j < k; j++) z[j] = log(fmax(probs[j] / s, 1e-300)) + o[j];
    }
    double mx = -INFINITY;
    for (int j = 0; j < *m; j++)
        if (z[j] > mx) mx = z[j];
    double s = 0;
    for (int j = 0; j < *m; j++) s += exp(z[j] - mx);
    return mx + log(s);
}

double ic_head_logq(dist_kind kind, int K, int k, double p0, double p1, const double *probs, const float *o,
                    double x, float *dout, double scale)
{
    family f = family_of(kind);
    assert(f != FAM_NONE && K >= 1 && K <= IC_HEAD_MAX_K);
    if (isnan(x)) return NAN;
    if (f == FAM_CATEGORY) {
        static _Thread_local double z[IC_HEAD_MAX_CATEGORIES];
        int m;
        assert(kind == DIST_BERNOULLI || (k >= 1 && k <= IC_HEAD_MAX_CATEGORIES));
        double lse = cat_logits(kind, k, p0, probs, o, z, &m);
        if (!(x >= 0) || x >= m || x != floor(x)) return -INFINITY;
        int xi = (int)x;
        if (dout)
            for (int j = 0; j < m; j++) dout[j] += (float)(scale * ((j == xi) - exp(z[j] - lse)));
        return z[xi] - lse;
    }
    base c = make_base(kind, p0, p1);
    double lw[IC_HEAD_MAX_K], lp[IC_HEAD_MAX_K], ga[IC_HEAD_MAX_K], gb[IC_HEAD_MAX_K];
    int two = f != FAM_POISSON && f != FAM_BINOMIAL;
    log_softmax(o, K, lw);
    double mx = -INFINITY;
    for (int j = 0; j < K; j++) {
        lp[j] = lw[j] + comp_logp(f, &c, o[K + j], two ? o[2 * K + j] : 0, x, dout ? &ga[j] : NULL,
                                  dout ? &gb[j] : NULL);
        if (lp[j] > mx) mx = lp[j];
    }
    if (mx == -INFINITY) return -INFINITY;
    double s = 0;
    for (int j = 0; j < K; j++) s += exp(lp[j] - mx);
    double lq = mx + log(s);
    if (dout) {
        for (int j = 0; j < K; j++) {
            double resp = exp(lp[j] - lq), pi = exp(lw[j]);
            dout[j] += (float)(scale * (resp - pi));
            dout[K + j] += (float)(scale * resp * ga[j]);
            if (two) dout[2 * K + j] += (float)(scale * resp * gb[j]);
        }
    }
    return lq;
}

double ic_head_sample(dist_kind kind, int K, int k, double p0, double p1, const double *probs, const float *o,
                      rng *r, double *logq)
{
    family f = family_of(kind);
    assert(f != FAM_NONE && K >= 1 && K <= IC_HEAD_MAX_K);
    double x;
    if (f == FAM_CATEGORY) {
        static _Thread_local double z[IC_HEAD_MAX_CATEGORIES];
        int m;
        double lse = cat_logits(kind, k, p0, probs, o, z, &m);
        double u = rng_uniform(r), acc = 0;
        int j = 0;
        for (; j < m - 1; j++) {
            acc += exp(z[j] - lse);
            if (u < acc) break;
        }
        x = j;
        *logq = z[j] - lse;
        return x;
    }
    base c = make_base(kind, p0, p1);
    double lw[IC_HEAD_MAX_K];
    int two = f != FAM_POISSON && f != FAM_BINOMIAL;
    log_softmax(o, K, lw);
    double u = rng_uniform(r), acc = 0;
    int j = 0;
    for (; j < K - 1; j++) {
        acc += exp(lw[j]);
        if (u < acc) break;
    }
    x = comp_sample(f, &c, o[K + j], two ? o[2 * K + j] : 0, r);
    *logq = ic_head_logq(kind, K, k, p0, p1, probs, o, x, NULL, 0);
    return x;
}

void ic_head_init_bias(dist_kind kind, int K, int k, float *b)
{
    int w = ic_head_width(kind, K, k);
    memset(b, 0, (size_t)w * sizeof *b);
    family f = family_of(kind);
    if (f == FAM_CATEGORY || K == 1) return;
    /* Component locations spread over [-0.5, 0.5] (Normal: prior scales;
     * positive/Poisson: log-scale; Binomial: logit); Beta components skewed
     * to either side by the same amount in log a - log b. */
    for (int j = 0; j < K; j++) {
        float t = (float)j / (float)(K - 1) - 0.5f;
        if (f == FAM_BOUNDED) {
            b[K + j] = t;
            b[2 * K + j] = -t;
        } else {
            b[K + j] = t;
        }
    }
}
