/* rng.c — xoshiro256** with splitmix64 seeding, and exact samplers for the
 * standard distributions that dist.c builds on.
 *
 * References:
 *   Blackman & Vigna, "Scrambled linear pseudorandom number generators" (2021)
 *     for xoshiro256** and splitmix64.
 *   Lemire, "Fast random integer generation in an interval" (2019).
 *   Marsaglia & Tsang, "A simple method for generating gamma variables" (2000).
 *   Hörmann, "The transformed rejection method for generating Poisson random
 *     variables" (1993) — PTRS.
 *   Hörmann, "The generation of binomial random variates" (1993) — BTRS.
 *   Loader, "Fast and accurate computation of binomial probabilities" (2000)
 *     for the log-pmfs used in the rejection tests.
 */
#include "rng.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

#define LN_SQRT_2PI 0.91893853320467274178 /* log(sqrt(2*pi)) */
#define LN_2PI 1.83787706640934548356      /* log(2*pi) */

/* ---- seeding ------------------------------------------------------------ */

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* splitmix64: Weyl sequence plus the Stafford "mix13" finaliser. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* MurmurHash3's 64-bit finaliser: a bijection with full avalanche. */
static uint64_t fmix64(uint64_t z)
{
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdu;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53u;
    return z ^ (z >> 33);
}

/* A second, differently built splitmix-style sequence (another odd Weyl
 * increment and the MurmurHash3 finaliser).  Using a different generator for
 * the stream key means seed == stream cannot make the two sequences cancel,
 * and (seed, stream) -> 256-bit state has no structured collisions. */
static uint64_t splitmix64_alt(uint64_t *x)
{
    return fmix64(*x += 0xd1b54a32d192ed03u);
}

/* State from two 64-bit keys: word i mixes the i-th outputs of the key-a and
 * key-b sequences.  The final nonlinear mix matters: xoshiro is linear over
 * GF(2), so with a bare XOR the states of (seed, t) and (seed', t) would differ
 * by the same mask for every stream t, and that relation would persist in all
 * later states. */
static void seed_from_keys(rng *r, uint64_t a, uint64_t b)
{
    uint64_t xa = a, xb = b;
    for (int i = 0; i < 4; i++)
        r->s[i] = fmix64(splitmix64(&xa) ^ splitmix64_alt(&xb));
    /* The all-zero state is the one fixed point of xoshiro; it has probability
     * 2^-256 here, but a fixed point would be a silent disaster. */
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 0x9e3779b97f4a7c15u;
    r->cached_normal = 0.0;
    r->has_cached = 0;
}

void rng_seed(rng *r, uint64_t seed, uint64_t stream)
{
    assert(r != NULL);
    seed_from_keys(r, seed, stream);
}

void rng_split(rng *parent, uint64_t stream, rng *child)
{
    assert(parent != NULL && child != NULL);
    /* Two fresh parent outputs give 128 bits of key material; the stream is
     * folded into the second key through a bijective mix so that splits of one
     * parent state into different streams always get different keys. */
    uint64_t a = rng_u64(parent);
    uint64_t b = rng_u64(parent);
    uint64_t sx = stream;
    b ^= splitmix64(&sx);
    seed_from_keys(child, a, b);
}

/* ---- uniform ------------------------------------------------------------ */

uint64_t rng_u64(rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(rng *r)
{
    /* The top 53 bits are the best ones of xoshiro256** output; each value
     * k * 2^-53 is exactly representable. */
    return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

double rng_uniform_pos(rng *r)
{
    /* Rejecting 0 (probability 2^-53) keeps the full 53-bit grid. */
    double u;
    do
        u = rng_uniform(r);
    while (u == 0.0);
    return u;
}

/* Full 64x64 -> 128-bit product, portable (no __int128). */
static void mul_64x64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    const uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
    const uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
    const uint64_t ll = a_lo * b_lo;
    const uint64_t lh = a_lo * b_hi;
    const uint64_t hl = a_hi * b_lo;
    const uint64_t hh = a_hi * b_hi;
    const uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    *lo = (mid << 32) | (ll & 0xffffffffu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

uint64_t rng_below(rng *r, uint64_t n)
{
    assert(n > 0);
    /* Lemire: the high word of x * n is uniform on [0, n) once the low words
     * below 2^64 mod n are rejected; that threshold (a division) is only
     * computed on the rare path where rejection is possible. */
    uint64_t hi, lo;
    mul_64x64(rng_u64(r), n, &hi, &lo);
    if (lo < n) {
        const uint64_t threshold = (0 - n) % n;
        while (lo < threshold)
            mul_64x64(rng_u64(r), n, &hi, &lo);
    }
    return hi;
}

/* ---- continuous --------------------------------------------------------- */

double rng_normal(rng *r)
{
    if (r->has_cached) {
        r->has_cached = 0;
        return r->cached_normal;
    }
    double u, v, s;
    do {
        u = 2.0 * rng_uniform(r) - 1.0;
        v = 2.0 * rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = sqrt(-2.0 * log(s) / s);
    r->cached_normal = v * f;
    r->has_cached = 1;
    return u * f;
}

double rng_exponential(rng *r)
{
    return -log(rng_uniform_pos(r));
}

/* Marsaglia–Tsang for shape >= 1. */
static double gamma_mt(rng *r, double shape)
{
    const double d = shape - 1.0 / 3.0;
    const double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        const double u = rng_uniform_pos(r);
        const double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2) /* squeeze: avoids the logs */
            return d * v;
        if (log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
            return d * v;
    }
}

double rng_gamma(rng *r, double shape)
{
    assert(shape > 0.0 && isfinite(shape));
    if (shape >= 1.0)
        return gamma_mt(r, shape);
    /* Boost: G(a) = G(a+1) * U^(1/a).  For tiny a this underflows to 0, which
     * is the correctly rounded value most of the time. */
    return gamma_mt(r, shape + 1.0) * pow(rng_uniform_pos(r), 1.0 / shape);
}

/* log of a Gamma(shape) variate, finite even when the variate itself would
 * underflow (shape < 1 with a tiny U^(1/shape)). */
static double log_gamma_variate(rng *r, double shape)
{
    if (shape >= 1.0)
        return log(gamma_mt(r, shape));
    return log(gamma_mt(r, shape + 1.0)) + log(rng_uniform_pos(r)) / shape;
}

double rng_beta(rng *r, double a, double b)
{
    assert(a > 0.0 && b > 0.0 && isfinite(a) && isfinite(b));
    if (a >= 1.0 && b >= 1.0) {
        const double x = gamma_mt(r, a), y = gamma_mt(r, b);
        return x / (x + y);
    }
    /* With a small shape both gammas can underflow to 0 (0/0); the ratio
     * x/(x+y) = 1/(1+exp(ly-lx)) is well defined in log space. */
    const double lx = log_gamma_variate(r, a);
    const double ly = log_gamma_variate(r, b);
    const double diff = ly - lx;
    if (isnan(diff)) /* both -inf: only for denormal shapes; the limit of */
        return rng_uniform(r) < a / (a + b) ? 1.0 : 0.0; /* Beta is Bernoulli */
    return 1.0 / (1.0 + exp(diff));
}

/* ---- log-pmfs for the rejection steps (Loader 2000) ------------------- */

/* lgamma_r rather than lgamma: lgamma writes the global signgam, a data race
 * when several threads sample at once. */
static double log_gamma(double x)
{
    int sign;
    return lgamma_r(x, &sign);
}

/* stirlerr(n) = log(n!) - log(sqrt(2 pi n) (n/e)^n), n > 0. */
static double stirlerr(double n)
{
    const double s0 = 1.0 / 12, s1 = 1.0 / 360, s2 = 1.0 / 1260;
    const double s3 = 1.0 / 1680, s4 = 1.0 / 1188;
    if (n <= 15.0) /* small: the direct form loses only a few ulps */
        return log_gamma(n + 1.0) - (n + 0.5) * log(n) + n - LN_SQRT_2PI;
    const double nn = n * n;
    if (n > 500)
        return (s0 - s1 / nn) / n;
    if (n > 80)
        return (s0 - (s1 - s2 / nn) / nn) / n;
    if (n > 35)
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n;
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n;
}

/* bd0(x, np) = x log(x/np) + np - x, without cancellation when x ~ np. */
static double bd0(double x, double np)
{
    if (fabs(x - np) < 0.1 * (x + np)) {
        double v = (x - np) / (x + np);
        double s = (x - np) * v;
        double ej = 2.0 * x * v;
        v = v * v;
        for (int j = 1; j < 1000; j++) {
            ej *= v;
            const double s1 = s + ej / (2 * j + 1);
            if (s1 == s)
                return s1;
            s = s1;
        }
    }
    return x * log(x / np) + np - x;
}

/* log Poisson(k; lambda), lambda > 0, k a non-negative integer.  Accurate to
 * a few ulps even when k and lambda are ~1e15, where k log(lambda) -
 * lgamma(k+1) would cancel away most of the digits. */
static double poisson_log_pmf(double k, double lambda)
{
    if (k == 0.0)
        return -lambda;
    return -stirlerr(k) - bd0(k, lambda) - 0.5 * (LN_2PI + log(k));
}

/* log Binomial(k; n, p), q = 1 - p, 0 < p < 1, k integer in [0, n]. */
static double binomial_log_pmf(double k, double n, double p, double q)
{
    if (k == 0.0)
        return n * log1p(-p);
    if (k == n)
        return n * log(p);
    const double lc = stirlerr(n) - stirlerr(k) - stirlerr(n - k) -
                      bd0(k, n * p) - bd0(n - k, n * q);
    const double lf = LN_2PI + log(k) + log1p(-k / n);
    return lc - 0.5 * lf;
}

/* ---- Poisson ------------------------------------------------------------ */

/* Below this rate the multiplication method (about rate + 1 uniforms) is
 * cheaper than PTRS's setup, and PTRS is only valid from 10 up. */
#define POISSON_SMALL 10.0

static double poisson_mult(rng *r, double rate)
{
    /* Count uniforms until their product drops below exp(-rate): exact, and
     * exp(-10) is far from underflow. */
    const double limit = exp(-rate);
    double prod = rng_uniform(r);
    double k = 0.0;
    while (prod >= limit) {
        prod *= rng_uniform(r);
        k += 1.0;
    }
    return k;
}

static double poisson_ptrs(rng *r, double lambda)
{
    const double slam = sqrt(lambda);
    const double b = 0.931 + 2.53 * slam;
    const double a = -0.059 + 0.02483 * b;
    const double log_inv_alpha = log(1.1239 + 1.1328 / (b - 3.4));
    const double vr = 0.9277 - 3.6224 / (b - 2.0);
    for (;;) {
        const double u = rng_uniform(r) - 0.5;
        const double v = rng_uniform(r);
        const double us = 0.5 - fabs(u);
        const double k = floor((2.0 * a / us + b) * u + lambda + 0.43);
        if (us >= 0.07 && v <= vr) /* inside the squeeze box: accept */
            return k;
        if (k < 0.0 || (us < 0.013 && v > us))
            continue;
        /* v == 0 gives log(v) = -inf: always accepted, which is right. */
        if (log(v) + log_inv_alpha - log(a / (us * us) + b) <=
            poisson_log_pmf(k, lambda))
            return k;
    }
}

double rng_poisson(rng *r, double rate)
{
    assert(rate >= 0.0 && isfinite(rate));
    if (rate == 0.0)
        return 0.0;
    if (rate < POISSON_SMALL)
        return poisson_mult(r, rate);
    return poisson_ptrs(r, rate);
}

/* ---- binomial ----------------------------------------------------------- */

#define BINOMIAL_SMALL 10.0 /* n*p below this: inversion; BTRS needs n*p >= 10 */

/* Sequential-search inversion for p <= 1/2 and n p < 10. */
static double binomial_inversion(rng *r, double n, double p)
{
    const double q = 1.0 - p;
    const double ratio = p / q;
    const double p0 = exp(n * log1p(-p)); /* >= exp(-14): no underflow */
    /* Walk the pmf from 0.  If rounding leaves u above the total computed
     * mass (k passes n, or the tail underflows to 0), draw again: that
     * conditions on a ~1e-16-probability event instead of truncating. */
    for (;;) {
        double u = rng_uniform(r);
        double px = p0;
        double k = 0.0;
        for (;;) {
            if (u < px)
                return k;
            u -= px;
            k += 1.0;
            if (k > n)
                break;
            px *= ratio * (n - k + 1.0) / k;
            if (px == 0.0)
                break;
        }
    }
}

static double binomial_btrs(rng *r, double n, double p)
{
    const double q = 1.0 - p;
    const double spq = sqrt(n * p * q);
    const double b = 1.15 + 2.53 * spq;
    const double a = -0.0873 + 0.0248 * b + 0.01 * p;
    const double c = n * p + 0.5;
    const double alpha = (2.83 + 5.1 / b) * spq;
    const double vr = 0.92 - 4.2 / b;
    const double m = floor((n + 1.0) * p); /* the mode */
    const double log_fm = binomial_log_pmf(m, n, p, q);
    for (;;) {
        const double u = rng_uniform(r) - 0.5;
        double v = rng_uniform(r);
        const double us = 0.5 - fabs(u);
        const double k = floor((2.0 * a / us + b) * u + c);
        if (k < 0.0 || k > n)
            continue;
        if (us >= 0.07 && v <= vr)
            return k;
        v = log(v * alpha / (a / (us * us) + b));
        if (v <= binomial_log_pmf(k, n, p, q) - log_fm)
            return k;
    }
}

double rng_binomial(rng *r, double n, double p)
{
    assert(n >= 0.0 && n == floor(n) && isfinite(n));
    assert(p >= 0.0 && p <= 1.0);
    if (n == 0.0 || p == 0.0)
        return 0.0;
    if (p == 1.0)
        return n;
    if (p > 0.5) /* the samplers want p <= 1/2; X ~ n - Bin(n, 1-p) */
        return n - rng_binomial(r, n, 1.0 - p);
    if (n * p < BINOMIAL_SMALL)
        return binomial_inversion(r, n, p);
    return binomial_btrs(r, n, p);
}
