/* Tests for src/rng.c: known answers, reproducibility of seeds, streams and
 * splits, and the distribution of every sampler.
 *
 * Statistical checks use fixed seeds and bounds derived from the sampling
 * distribution of the statistic: a sample mean must lie within Z standard
 * errors sqrt(var/N) of the true mean, a sample variance within Z standard
 * errors sqrt((mu4 - var^2 (N-3)/(N-1))/N) (mu4 the fourth central moment),
 * a frequency within Z sqrt(p(1-p)/N) of its probability, and a chi-square
 * statistic below its Wilson–Hilferty quantile for Z.  With Z = 4.5 a correct
 * sampler fails a check with probability ~7e-6; a sampler biased by more than
 * ~4.5 standard errors at the N used fails it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define Z 4.5

/* ---- statistics helpers -------------------------------------------------- */

typedef struct stats {
    double mean, var; /* var: unbiased */
} stats;

static stats stats_of(const double *x, size_t n)
{
    stats s;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    s.mean = sum / (double)n;
    double m2 = 0.0;
    for (size_t i = 0; i < n; i++)
        m2 += (x[i] - s.mean) * (x[i] - s.mean);
    s.var = m2 / (double)(n - 1);
    return s;
}

/* Sample mean and variance against the true mean, variance and fourth
 * central moment mu4.  Var(s^2) = (mu4 - var^2 (N-3)/(N-1)) / N exactly; the
 * true mu4 is used because a plug-in estimate collapses for a fair coin,
 * where mu4 = var^2 and s^2 only varies at second order. */
static void check_moments(const char *what, const double *x, size_t n,
                          double mean, double var, double mu4)
{
    const stats s = stats_of(x, n);
    const double nn = (double)n;
    const double se_mean = sqrt(var / nn);
    cr_assert(fabs(s.mean - mean) <= Z * se_mean,
              "%s: sample mean %.10g, expected %.10g (|diff| = %.3g > %.1f SE = %.3g)",
              what, s.mean, mean, fabs(s.mean - mean), Z, Z * se_mean);
    const double se_var = sqrt((mu4 - var * var * (nn - 3) / (nn - 1)) / nn);
    cr_assert(fabs(s.var - var) <= Z * se_var,
              "%s: sample variance %.10g, expected %.10g (|diff| = %.3g > %.1f SE = %.3g)",
              what, s.var, var, fabs(s.var - var), Z, Z * se_var);
}

/* An observed frequency (count out of n) against probability p. */
static void check_freq(const char *what, size_t count, size_t n, double p)
{
    const double f = (double)count / (double)n;
    const double se = sqrt(p * (1.0 - p) / (double)n);
    cr_assert(fabs(f - p) <= Z * se + 1e-300,
              "%s: frequency %.8g, probability %.8g (|diff| = %.3g > %.1f SE = %.3g)",
              what, f, p, fabs(f - p), Z, Z * se);
}

/* Upper quantile of chi-square(df) at the normal quantile z (Wilson–Hilferty,
 * accurate to a few percent for df >= 3). */
static double chi2_bound(double df, double z)
{
    const double c = 2.0 / (9.0 * df);
    const double t = 1.0 - c + z * sqrt(c);
    return df * t * t * t;
}

static double log_poisson_pmf(double k, double rate)
{
    return k * log(rate) - rate - lgamma(k + 1.0);
}

static double log_binomial_pmf(double k, double n, double p)
{
    return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0) +
           k * log(p) + (n - k) * log1p(-p);
}

typedef double (*log_pmf_fn)(double k, const double *params);

static double pmf_poisson_cb(double k, const double *pr)
{
    return log_poisson_pmf(k, pr[0]);
}

static double pmf_binomial_cb(double k, const double *pr)
{
    return log_binomial_pmf(k, pr[0], pr[1]);
}

/* Chi-square goodness of fit of a histogram to a pmf on the integers
 * [lo, lo + m): obs[j] counts the draws equal to lo + j, except that draws
 * below lo are counted in obs[0] and draws above in obs[m-1]; the pmf's mass
 * outside the range goes to those end bins too.  Neighbouring values are
 * merged until each bin expects >= 20 draws. */
static void fit_histogram(const char *what, const double *obs, double lo, size_t m,
                          size_t n, log_pmf_fn f, const double *pr)
{
    double *expct = calloc(m, sizeof *expct);
    cr_assert(expct != NULL);
    double inner = 0.0;
    for (size_t j = 0; j < m; j++) {
        expct[j] = exp(f(lo + (double)j, pr));
        inner += expct[j];
    }
    double below = 0.0;
    for (double k = lo - 1.0; k >= 0.0; k -= 1.0) {
        const double p = exp(f(k, pr));
        below += p;
        if (p < 1e-30 * below || p == 0.0)
            break;
    }
    expct[0] += below;
    expct[m - 1] += fmax(1.0 - inner - below, 0.0);
    double chi2 = 0.0, o = 0.0, e = 0.0, last_o = 0.0, last_e = 0.0;
    int bins = 0;
    for (size_t j = 0; j < m; j++) {
        o += obs[j];
        e += expct[j] * (double)n;
        if (e >= 20.0) {
            if (bins > 0)
                chi2 += (last_o - last_e) * (last_o - last_e) / last_e;
            last_o = o, last_e = e;
            bins++;
            o = e = 0.0;
        }
    }
    /* a leftover tail merges into the last bin */
    last_o += o, last_e += e;
    chi2 += (last_o - last_e) * (last_o - last_e) / last_e;
    cr_assert(bins >= 2, "%s: only %d bins", what, bins);
    const double bound = chi2_bound(bins - 1, Z);
    cr_assert(chi2 <= bound, "%s: chi-square %.2f over %d bins exceeds %.2f",
              what, chi2, bins, bound);
    free(expct);
}

/* Histogram of integer samples x[0..n) on [lo, hi] (tails lumped), fitted. */
static void check_pmf_fit(const char *what, const double *x, size_t n,
                          double lo, double hi, log_pmf_fn f, const double *pr)
{
    const size_t m = (size_t)(hi - lo) + 1;
    double *obs = calloc(m, sizeof *obs);
    cr_assert(obs != NULL);
    for (size_t i = 0; i < n; i++) {
        cr_assert(x[i] == floor(x[i]), "%s: non-integer value %g", what, x[i]);
        const double v = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        obs[(size_t)(v - lo)] += 1.0;
    }
    fit_histogram(what, obs, lo, m, n, f, pr);
    free(obs);
}

static double *draw(size_t n, double (*f)(rng *, const double *), const double *pr,
                    uint64_t seed)
{
    rng r;
    rng_seed(&r, seed, 0);
    double *x = malloc(n * sizeof *x);
    cr_assert(x != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = f(&r, pr);
    return x;
}

static double normal_cb(rng *r, const double *pr) { (void)pr; return rng_normal(r); }
static double exponential_cb(rng *r, const double *pr) { (void)pr; return rng_exponential(r); }
static double gamma_cb(rng *r, const double *pr) { return rng_gamma(r, pr[0]); }
static double beta_cb(rng *r, const double *pr) { return rng_beta(r, pr[0], pr[1]); }
static double poisson_cb(rng *r, const double *pr) { return rng_poisson(r, pr[0]); }
static double binomial_cb(rng *r, const double *pr) { return rng_binomial(r, pr[0], pr[1]); }
static double uniform_cb(rng *r, const double *pr) { (void)pr; return rng_uniform(r); }

static size_t count_le(const double *x, size_t n, double t)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += x[i] <= t;
    return c;
}

static size_t count_eq(const double *x, size_t n, double t)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += x[i] == t;
    return c;
}

/* ---- known answers and reproducibility ---------------------------------- */

Test(rng, xoshiro_known_answer)
{
    /* Reference outputs of xoshiro256** from state {1, 2, 3, 4}. */
    rng r = {.s = {1, 2, 3, 4}};
    const uint64_t want[] = {11520u, 0u, 1509978240u, 1215971899390074240u,
                             1216172134540287360u, 607988272756665600u};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const uint64_t got = rng_u64(&r);
        cr_assert_eq(got, want[i], "output %zu: %llu, want %llu", i,
                     (unsigned long long)got, (unsigned long long)want[i]);
    }
}

Test(rng, seed_known_answer)
{
    /* Pins the seeding scheme (computed by an independent implementation):
     * changing it would silently change every recorded run. */
    rng r;
    rng_seed(&r, 42, 7);
    const uint64_t want[] = {6860588316964022888u, 12884547876374337162u,
                             15528829588930702864u};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(rng_u64(&r), want[i], "output %zu", i);
    cr_assert_eq(r.has_cached, 0);
}

Test(rng, same_seed_same_sequence)
{
    rng a, b;
    rng_seed(&a, 12345, 3);
    rng_seed(&b, 12345, 3);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(rng_u64(&a), rng_u64(&b));
        cr_assert_eq(rng_normal(&a), rng_normal(&b));
        cr_assert_eq(rng_gamma(&a, 0.7), rng_gamma(&b, 0.7));
        cr_assert_eq(rng_poisson(&a, 50.0), rng_poisson(&b, 50.0));
    }
}

Test(rng, seed_clears_normal_cache)
{
    rng a, b;
    rng_seed(&a, 9, 0);
    (void)rng_normal(&a); /* leaves a cached value */
    cr_assert_eq(a.has_cached, 1);
    rng_seed(&a, 5, 1);
    rng_seed(&b, 5, 1);
    cr_assert_eq(a.has_cached, 0);
    cr_assert_eq(rng_normal(&a), rng_normal(&b));
}

Test(rng, streams_and_seeds_give_distinct_sequences)
{
    /* First outputs of (seed, stream) for small seeds and streams, including
     * the pairs that a naive seed ^ stream or seed + stream would merge. */
    enum { NS = 16, NT = 16 };
    uint64_t first[NS * NT];
    for (uint64_t s = 0; s < NS; s++)
        for (uint64_t t = 0; t < NT; t++) {
            rng r;
            rng_seed(&r, s, t);
            first[s * NT + t] = rng_u64(&r);
        }
    for (size_t i = 0; i < NS * NT; i++)
        for (size_t j = i + 1; j < NS * NT; j++)
            cr_assert_neq(first[i], first[j], "pairs %zu and %zu start alike", i, j);
    /* seed == stream must not cancel out */
    rng a, b;
    rng_seed(&a, 77, 77);
    rng_seed(&b, 0, 0);
    cr_assert_neq(rng_u64(&a), rng_u64(&b));
}

Test(rng, seeding_has_no_linear_structure)
{
    /* xoshiro is GF(2)-linear: if the states of (s, t) and (s', t) differed by
     * the same XOR mask for every stream t, all later states would too. */
    for (uint64_t s = 0; s < 4; s++)
        for (uint64_t t = 1; t < 4; t++) {
            rng a1, b1, a2, b2;
            rng_seed(&a1, s, 0);
            rng_seed(&b1, s + 100, 0);
            rng_seed(&a2, s, t);
            rng_seed(&b2, s + 100, t);
            int same = 1;
            for (int i = 0; i < 4; i++)
                same &= (a1.s[i] ^ b1.s[i]) == (a2.s[i] ^ b2.s[i]);
            cr_assert(!same, "seeds %llu/%llu: streams 0 and %llu share a mask",
                      (unsigned long long)s, (unsigned long long)s + 100,
                      (unsigned long long)t);
        }
}

static int cmp_u64(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

Test(rng, streams_do_not_overlap_or_correlate)
{
    enum { N = 200000 };
    rng a, b, c;
    rng_seed(&a, 2024, 0);
    rng_seed(&b, 2024, 1);
    rng_seed(&c, 2025, 0);
    uint64_t *xa = malloc(N * sizeof *xa), *xb = malloc(N * sizeof *xb);
    cr_assert(xa != NULL && xb != NULL);
    double sab = 0.0, sac = 0.0;
    for (size_t i = 0; i < N; i++) {
        xa[i] = rng_u64(&a);
        xb[i] = rng_u64(&b);
        const double ua = (double)(xa[i] >> 11) * 0x1.0p-53 - 0.5;
        const double ub = (double)(xb[i] >> 11) * 0x1.0p-53 - 0.5;
        const double uc = rng_uniform(&c) - 0.5;
        sab += ua * ub;
        sac += ua * uc;
    }
    /* E[(Ua-1/2)(Ub-1/2)] = 0 with sd 1/12 per term */
    const double se = (1.0 / 12.0) / sqrt((double)N);
    cr_assert(fabs(sab / N) <= Z * se, "streams 0 and 1 correlate: %g", sab / N);
    cr_assert(fabs(sac / N) <= Z * se, "seeds 2024 and 2025 correlate: %g", sac / N);
    /* overlap: a shared 64-bit output among 2e5 x 2e5 pairs has probability
     * 2e-9 for independent streams, but is certain if one stream is a shifted
     * copy of the other within this window */
    qsort(xa, N, sizeof *xa, cmp_u64);
    size_t shared = 0;
    for (size_t i = 0; i < N; i++)
        shared += bsearch(&xb[i], xa, N, sizeof *xa, cmp_u64) != NULL;
    cr_assert_eq(shared, 0, "%zu outputs of stream 1 appear in stream 0", shared);
    free(xa);
    free(xb);
}

Test(rng, split_is_reproducible_and_distinct)
{
    rng p1, p2;
    rng_seed(&p1, 31337, 0);
    p2 = p1;
    rng c1, c2, c3;
    rng_split(&p1, 5, &c1);
    rng_split(&p2, 5, &c2);
    /* same parent state and stream: same child, parents advanced alike */
    cr_assert(memcmp(c1.s, c2.s, sizeof c1.s) == 0);
    cr_assert(memcmp(p1.s, p2.s, sizeof p1.s) == 0);
    cr_assert_eq(c1.has_cached, 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(rng_u64(&c1), rng_u64(&c2));

    /* the split advanced the parent */
    rng fresh;
    rng_seed(&fresh, 31337, 0);
    cr_assert(memcmp(fresh.s, p1.s, sizeof p1.s) != 0);

    /* another stream from the same parent state: another child */
    rng_seed(&p1, 31337, 0);
    rng_split(&p1, 6, &c3);
    rng_seed(&p2, 31337, 0);
    rng_split(&p2, 5, &c2);
    cr_assert(memcmp(c2.s, c3.s, sizeof c2.s) != 0);
    /* the child is not the parent's continuation */
    rng_seed(&p1, 31337, 0);
    rng_split(&p1, 5, &c1);
    const uint64_t child0 = rng_u64(&c1);
    cr_assert_neq(child0, rng_u64(&p1));
    /* successive splits with the same stream differ (the parent moved on) */
    rng_split(&p1, 5, &c2);
    cr_assert_neq(rng_u64(&c2), child0);
}

/* ---- uniform ------------------------------------------------------------- */

Test(rng, uniform_has_53_bits_and_right_moments)
{
    enum { N = 1000000 };
    double *x = draw(N, uniform_cb, NULL, 1);
    size_t odd = 0, low_half = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert(x[i] >= 0.0 && x[i] < 1.0);
        const double m = x[i] * 0x1.0p53;
        cr_assert_eq(m, floor(m), "not on the 2^-53 grid: %a", x[i]);
        odd += fmod(m, 2.0) == 1.0; /* lowest of the 53 bits */
        low_half += x[i] < 0.5;
    }
    check_freq("lowest bit set", odd, N, 0.5);
    check_freq("x < 1/2", low_half, N, 0.5);
    check_moments("uniform", x, N, 0.5, 1.0 / 12.0, 1.0 / 80.0);
    free(x);
}

Test(rng, uniform_pos_is_never_zero)
{
    /* A state whose next output is 0 (xoshiro256** outputs 0 from {1,2,3,4}
     * on its second call): rng_uniform gives exactly 0 there, uniform_pos
     * must not. */
    rng r = {.s = {1, 2, 3, 4}};
    (void)rng_u64(&r);
    rng r2 = r;
    cr_assert_eq(rng_uniform(&r2), 0.0);
    const double u = rng_uniform_pos(&r);
    cr_assert(u > 0.0 && u < 1.0, "%a", u);
    rng_seed(&r, 8, 8);
    for (int i = 0; i < 100000; i++) {
        const double v = rng_uniform_pos(&r);
        cr_assert(v > 0.0 && v < 1.0);
    }
}

Test(rng, below_is_uniform)
{
    enum { K = 100, N = 1000000 };
    rng r;
    rng_seed(&r, 77, 0);
    double counts[K] = {0};
    for (size_t i = 0; i < N; i++) {
        const uint64_t v = rng_below(&r, K);
        cr_assert(v < K);
        counts[v] += 1.0;
    }
    const double e = (double)N / K;
    double chi2 = 0.0;
    for (size_t j = 0; j < K; j++)
        chi2 += (counts[j] - e) * (counts[j] - e) / e;
    const double bound = chi2_bound(K - 1, Z);
    cr_assert(chi2 <= bound, "chi-square %.2f > %.2f", chi2, bound);

    for (int i = 0; i < 1000; i++)
        cr_assert_eq(rng_below(&r, 1), 0u);
}

#ifdef __SIZEOF_INT128__
Test(rng, below_is_the_high_word_of_the_product)
{
    /* Lemire's method returns the high 64 bits of x * n, drawing again while
     * the low word is below 2^64 mod n; check that against the compiler's
     * 128-bit arithmetic, which also checks the portable multiply. */
    /* the last ones have 2^64 mod n near n, so about half the draws of x are
     * rejected and a wrong threshold shows */
    const uint64_t ns[] = {1, 2, 3, 10, 1000003, 1ull << 32, (1ull << 32) + 15,
                           0x123456789abcdefull, 3ull << 62, UINT64_MAX,
                           (1ull << 63) + 1, 0x5555555555555556ull,
                           0xaaaaaaaaaaaaaaabull};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        const uint64_t n = ns[c];
        rng r, shadow;
        rng_seed(&r, 5150, c);
        shadow = r;
        for (int i = 0; i < 20000; i++) {
            const uint64_t threshold = (0 - n) % n;
            unsigned __int128 m;
            do
                m = (unsigned __int128)rng_u64(&shadow) * n;
            while ((uint64_t)m < threshold);
            const uint64_t want = (uint64_t)(m >> 64);
            const uint64_t got = rng_below(&r, n);
            if (got != want)
                cr_assert_fail("n = %llu, draw %d: %llu, want %llu", (unsigned long long)n,
                               i, (unsigned long long)got, (unsigned long long)want);
        }
        /* both consumed the same number of outputs */
        cr_assert(memcmp(r.s, shadow.s, sizeof r.s) == 0);
    }
}
#endif

Test(rng, below_is_unbiased_for_huge_n)
{
    /* n = 3 * 2^62: x mod n would put half the mass below 2^62 instead of a
     * third, and a 53-bit float trick would miss most values. */
    enum { N = 300000 };
    const uint64_t n = 3ull << 62;
    rng r;
    rng_seed(&r, 4242, 9);
    size_t below = 0, odd = 0;
    for (size_t i = 0; i < N; i++) {
        const uint64_t v = rng_below(&r, n);
        cr_assert(v < n);
        below += v < (1ull << 62);
        odd += v & 1u;
    }
    check_freq("v < 2^62 of 3*2^62", below, N, 1.0 / 3.0);
    check_freq("v odd", odd, N, 0.5);

    /* n = 2^64 - 1: every value but the top one */
    size_t top_half = 0;
    for (size_t i = 0; i < N; i++) {
        const uint64_t v = rng_below(&r, UINT64_MAX);
        cr_assert(v < UINT64_MAX);
        top_half += v >> 63;
    }
    check_freq("top bit of below(2^64-1)", top_half, N, 0.5);

    /* n = 2^63 + 1: x mod n would give each v < 2^63 - 1 twice the weight */
    size_t low = 0;
    const uint64_t n2 = (1ull << 63) + 1;
    for (size_t i = 0; i < N; i++)
        low += rng_below(&r, n2) < (1ull << 63) - 1;
    check_freq("v < 2^63 - 1 of 2^63 + 1", low, N, ((double)(1ull << 63) - 1) / (double)n2);
}

/* ---- continuous samplers ------------------------------------------------- */

Test(rng, normal_moments_and_cdf)
{
    enum { N = 1000000 };
    double *x = draw(N, normal_cb, NULL, 2);
    check_moments("normal", x, N, 0.0, 1.0, 3.0);
    const double ts[] = {-2.5, -1.0, 0.0, 0.3, 1.5, 3.0};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        check_freq("normal cdf", count_le(x, N, ts[i]), N, 0.5 * erfc(-ts[i] / sqrt(2.0)));
    /* the pairs of the polar method must be independent: lag-1 correlation */
    double c = 0.0;
    for (size_t i = 0; i + 1 < N; i += 2)
        c += x[i] * x[i + 1];
    c /= N / 2;
    cr_assert(fabs(c) <= Z / sqrt(N / 2.0), "pair correlation %g", c);
    free(x);
}

Test(rng, normal_uses_cached_value)
{
    rng r;
    rng_seed(&r, 3, 0);
    (void)rng_normal(&r);
    cr_assert_eq(r.has_cached, 1);
    const double cached = r.cached_normal;
    const uint64_t before[4] = {r.s[0], r.s[1], r.s[2], r.s[3]};
    cr_assert_eq(rng_normal(&r), cached);
    cr_assert_eq(r.has_cached, 0);
    /* the cached value costs no generator output */
    cr_assert(memcmp(before, r.s, sizeof before) == 0);
}

Test(rng, exponential_moments_and_cdf)
{
    enum { N = 1000000 };
    double *x = draw(N, exponential_cb, NULL, 3);
    check_moments("exponential", x, N, 1.0, 1.0, 9.0);
    const double ts[] = {0.01, 0.5, 1.0, 3.0};
    for (size_t i = 0; i < 4; i++)
        check_freq("exponential cdf", count_le(x, N, ts[i]), N, -expm1(-ts[i]));
    free(x);
}

Test(rng, gamma_moments)
{
    enum { N = 400000 };
    const double shapes[] = {0.05, 0.3, 0.999, 1.0, 2.5, 30.0, 1e4};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double *x = draw(N, gamma_cb, &shapes[i], 100 + i);
        for (size_t j = 0; j < N; j++)
            cr_assert(x[j] >= 0.0 && isfinite(x[j]));
        char what[64];
        snprintf(what, sizeof what, "gamma(%g)", shapes[i]);
        check_moments(what, x, N, shapes[i], shapes[i],
                      3 * shapes[i] * shapes[i] + 6 * shapes[i]);
        free(x);
    }
}

Test(rng, gamma_cdf)
{
    enum { N = 400000 };
    /* shape 1/2: X = Z^2/2, P(X <= t) = erf(sqrt t) — exercises the boost */
    const double half = 0.5;
    double *x = draw(N, gamma_cb, &half, 11);
    const double ts[] = {1e-6, 0.01, 0.2, 1.0, 3.0};
    for (size_t i = 0; i < 5; i++)
        check_freq("gamma(0.5) cdf", count_le(x, N, ts[i]), N, erf(sqrt(ts[i])));
    free(x);
    /* shape 2: P(X <= t) = 1 - e^-t (1 + t) */
    const double two = 2.0;
    x = draw(N, gamma_cb, &two, 12);
    const double us[] = {0.1, 1.0, 2.0, 5.0};
    for (size_t i = 0; i < 4; i++)
        check_freq("gamma(2) cdf", count_le(x, N, us[i]), N, 1.0 - exp(-us[i]) * (1.0 + us[i]));
    free(x);
}

Test(rng, beta_moments_and_cdf)
{
    enum { N = 400000 };
    const double ab[][2] = {{2.0, 3.0}, {0.5, 0.5}, {1.0, 1.0}, {0.1, 0.2},
                            {50.0, 7.0}, {0.7, 4.0}};
    for (size_t i = 0; i < sizeof ab / sizeof ab[0]; i++) {
        const double a = ab[i][0], b = ab[i][1], s = a + b;
        double *x = draw(N, beta_cb, ab[i], 200 + i);
        for (size_t j = 0; j < N; j++)
            cr_assert(x[j] >= 0.0 && x[j] <= 1.0, "beta value %g", x[j]);
        char what[64];
        snprintf(what, sizeof what, "beta(%g, %g)", a, b);
        const double var = a * b / (s * s * (s + 1.0));
        const double ex_kurt = 6 * ((a - b) * (a - b) * (s + 1) - a * b * (s + 2)) /
                               (a * b * (s + 2) * (s + 3));
        check_moments(what, x, N, a / s, var, var * var * (3 + ex_kurt));
        if (a == 0.5 && b == 0.5) /* arcsine law */
            for (double t = 0.05; t < 1.0; t += 0.3)
                check_freq("beta(1/2,1/2) cdf", count_le(x, N, t), N,
                           2.0 / M_PI * asin(sqrt(t)));
        free(x);
    }
}

Test(rng, beta_with_tiny_shapes)
{
    /* Beta(a, 1) has P(X <= t) = t^a.  With a = 0.001 most draws are far
     * below the smallest double, so this tests the log-space path. */
    enum { N = 200000 };
    const double ab[2] = {0.001, 1.0};
    double *x = draw(N, beta_cb, ab, 300);
    for (size_t j = 0; j < N; j++)
        cr_assert(x[j] >= 0.0 && x[j] <= 1.0);
    check_freq("beta(0.001, 1) P(X <= 1e-100)", count_le(x, N, 1e-100), N, pow(1e-100, 0.001));
    check_freq("beta(0.001, 1) P(X <= 0.5)", count_le(x, N, 0.5), N, pow(0.5, 0.001));
    free(x);
    /* Beta(a, a) is symmetric about 1/2 for any a */
    const double aa[2] = {0.002, 0.002};
    x = draw(N, beta_cb, aa, 301);
    check_freq("beta(0.002, 0.002) P(X <= 1/2)", count_le(x, N, 0.5), N, 0.5);
    free(x);
}

/* ---- Poisson ------------------------------------------------------------- */

Test(rng, poisson_zero_rate)
{
    rng r;
    rng_seed(&r, 1, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(rng_poisson(&r, 0.0), 0.0);
}

Test(rng, poisson_moments_and_pmf)
{
    enum { N = 400000 };
    /* 3 and 9.99: multiplication method; 10, 15, 1000, 1e6, 1e12: PTRS */
    const double rates[] = {0.01, 3.0, 9.99, 10.0, 15.0, 1000.0, 1e6, 1e12};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        const double rate = rates[i];
        double *x = draw(N, poisson_cb, &rate, 400 + i);
        for (size_t j = 0; j < N; j++)
            cr_assert(x[j] >= 0.0 && x[j] == floor(x[j]), "poisson value %g", x[j]);
        char what[64];
        snprintf(what, sizeof what, "poisson(%g)", rate);
        check_moments(what, x, N, rate, rate, rate * (1 + 3 * rate));
        /* point probabilities at the mode and at about +-1 and +2 sd */
        const double sd = sqrt(rate);
        const double ks[] = {floor(rate), floor(rate - sd), floor(rate + sd),
                             floor(rate + 2 * sd)};
        for (size_t j = 0; j < 4; j++) {
            if (ks[j] < 0.0)
                continue;
            snprintf(what, sizeof what, "poisson(%g) P(%g)", rate, ks[j]);
            check_freq(what, count_eq(x, N, ks[j]), N, exp(log_poisson_pmf(ks[j], rate)));
        }
        if (rate <= 1e6) {
            snprintf(what, sizeof what, "poisson(%g) fit", rate);
            const double lo = fmax(0.0, floor(rate - 6 * sd - 2));
            check_pmf_fit(what, x, N, lo, ceil(rate + 7 * sd + 5), pmf_poisson_cb, &rate);
        }
        free(x);
    }
}

/* ---- binomial ------------------------------------------------------------ */

Test(rng, binomial_edges)
{
    rng r;
    rng_seed(&r, 1, 0);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(rng_binomial(&r, 0.0, 0.3), 0.0);
        cr_assert_eq(rng_binomial(&r, 17.0, 0.0), 0.0);
        cr_assert_eq(rng_binomial(&r, 17.0, 1.0), 17.0);
        cr_assert_eq(rng_binomial(&r, 1e12, 1.0), 1e12);
        const double v = rng_binomial(&r, 1.0, 0.5);
        cr_assert(v == 0.0 || v == 1.0);
    }
}

Test(rng, binomial_moments_and_pmf)
{
    enum { N = 400000 };
    /* inversion: 20*0.3, 20*0.8 (mirrored), 1e6*5e-6, 1*0.5; BTRS: the rest */
    const double np[][2] = {{20, 0.3}, {20, 0.8}, {1e6, 5e-6}, {1, 0.5},
                            {40, 0.5}, {1000, 0.4}, {1000, 0.97}, {100000, 0.01},
                            {1e9, 0.5}, {1e13, 0.25}};
    for (size_t i = 0; i < sizeof np / sizeof np[0]; i++) {
        const double n = np[i][0], p = np[i][1];
        double *x = draw(N, binomial_cb, np[i], 500 + i);
        for (size_t j = 0; j < N; j++)
            cr_assert(x[j] >= 0.0 && x[j] <= n && x[j] == floor(x[j]),
                      "binomial(%g, %g) value %g", n, p, x[j]);
        char what[80];
        snprintf(what, sizeof what, "binomial(%g, %g)", n, p);
        const double npq = n * p * (1.0 - p);
        check_moments(what, x, N, n * p, npq, npq * (1 + 3 * (n - 2) * p * (1 - p)));
        const double mean = n * p, sd = sqrt(n * p * (1.0 - p));
        const double ks[] = {floor(mean), floor(mean - sd), floor(mean + sd),
                             floor(mean + 2 * sd)};
        for (size_t j = 0; j < 4; j++) {
            if (ks[j] < 0.0 || ks[j] > n)
                continue;
            snprintf(what, sizeof what, "binomial(%g, %g) P(%g)", n, p, ks[j]);
            check_freq(what, count_eq(x, N, ks[j]), N, exp(log_binomial_pmf(ks[j], n, p)));
        }
        if (n <= 1e6 && n > 1) {
            snprintf(what, sizeof what, "binomial(%g, %g) fit", n, p);
            check_pmf_fit(what, x, N, fmax(0.0, floor(mean - 6 * sd - 2)),
                          fmin(n, ceil(mean + 6 * sd + 5)), pmf_binomial_cb, np[i]);
        }
        free(x);
    }
}

/* The transformed-rejection samplers (PTRS, BTRS) can go subtly wrong: a hat
 * that is shifted, or a log-pmf that is off by 1e-3, biases them by far less
 * than the N = 4e5 tests above can see.  Here N = 1e7 draws per case, kept as
 * a histogram, resolve a density error of ~0.3% per bin. */
Test(rng, transformed_rejection_high_power, .timeout = 120)
{
    enum { N = 10000000 };
    const struct {
        int poisson;
        double a, b;
    } cases[] = {{1, 15.0, 0}, {1, 1000.0, 0}, {0, 40.0, 0.5}, {0, 1000.0, 0.4}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const double a = cases[c].a, b = cases[c].b;
        const double mean = cases[c].poisson ? a : a * b;
        const double var = cases[c].poisson ? a : a * b * (1.0 - b);
        const double sd = sqrt(var);
        const double lo = fmax(0.0, floor(mean - 7 * sd));
        double hi = ceil(mean + 7 * sd);
        if (!cases[c].poisson)
            hi = fmin(hi, a);
        const size_t m = (size_t)(hi - lo) + 1;
        double *obs = calloc(m, sizeof *obs);
        cr_assert(obs != NULL);
        rng r;
        rng_seed(&r, 600 + c, 0);
        double sum = 0.0;
        for (size_t i = 0; i < N; i++) {
            const double k = cases[c].poisson ? rng_poisson(&r, a) : rng_binomial(&r, a, b);
            sum += k;
            const double v = k < lo ? lo : k > hi ? hi : k;
            obs[(size_t)(v - lo)] += 1.0;
        }
        char what[64];
        if (cases[c].poisson)
            snprintf(what, sizeof what, "poisson(%g), N = 1e7", a);
        else
            snprintf(what, sizeof what, "binomial(%g, %g), N = 1e7", a, b);
        const double m1 = sum / N, se = sqrt(var / N);
        cr_assert(fabs(m1 - mean) <= Z * se, "%s: mean %.8g vs %.8g (%.2f SE)", what, m1,
                  mean, fabs(m1 - mean) / se);
        const double pr[2] = {a, b};
        fit_histogram(what, obs, lo, m, N,
                      cases[c].poisson ? pmf_poisson_cb : pmf_binomial_cb, pr);
        free(obs);
    }
}
