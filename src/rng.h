/* rng.h — seedable pseudo-random numbers with explicit state.
 *
 * Generator: xoshiro256** (period 2^256 - 1), state seeded through splitmix64 so
 * that any 64-bit seed (including 0) gives a well-mixed state.  No globals: every
 * caller owns an `rng` value.  Streams: rng_seed(r, seed, stream) gives
 * statistically independent sequences for different `stream` numbers under the
 * same `seed`, so a job can hand stream i to simulator/worker i and get the same
 * numbers whatever the scheduling.  rng_split() derives a child from a parent's
 * current state (advancing the parent), for nested reproducible splitting.
 */
#ifndef PPX_RNG_H
#define PPX_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
    double cached_normal; /* second value of the last polar-method pair */
    int has_cached;       /* 1 when cached_normal is valid */
} rng;

/* Seed `r` for stream `stream` of `seed`. */
void rng_seed(rng *r, uint64_t seed, uint64_t stream);
/* Child generator for `stream`, derived from (and advancing) `parent`. */
void rng_split(rng *parent, uint64_t stream, rng *child);

uint64_t rng_u64(rng *r);
/* Uniform on [0, 1) with 53 random bits. */
double rng_uniform(rng *r);
/* Uniform on (0, 1): never returns 0, safe for log(). */
double rng_uniform_pos(rng *r);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint64_t rng_below(rng *r, uint64_t n);

double rng_normal(rng *r);                    /* N(0, 1) */
double rng_exponential(rng *r);               /* Exp(1) */
double rng_gamma(rng *r, double shape);       /* Gamma(shape, rate 1), shape > 0 */
double rng_beta(rng *r, double a, double b);  /* Beta(a, b), a, b > 0 */
double rng_poisson(rng *r, double rate);      /* Poisson(rate), rate >= 0; exact for any rate */
double rng_binomial(rng *r, double n, double p); /* Binomial(n, p), n a non-negative integer */

#endif
