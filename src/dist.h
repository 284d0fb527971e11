/* dist.h — the 11 PPX distributions: validation, sampling, log-density,
 * moments and the gradient of the log-density with respect to each parameter.
 *
 * Ownership: a `dist` only borrows its parameter arrays; nothing here allocates.
 *
 * Shapes.  A distribution describes n independent elements (element-wise
 * tensors, flattened row-major):
 *   - two-parameter kinds: p0 and p1 each hold n values, or 1 value that is
 *     broadcast to all n elements (n0, n1 give their lengths);
 *   - one-parameter kinds (Poisson, Bernoulli, Exponential): only p0 is used;
 *   - Categorical: p0 holds probabilities of length n0 = n * k, one row of k
 *     (possibly unnormalised) weights per element; the value of an element is a
 *     category index 0..k-1 stored as a double.  k is set by the caller
 *     (normally the last dimension of the probs tensor, as the engine does).
 * Values are doubles; discrete values (Categorical, Poisson, Bernoulli,
 * Binomial) are integral doubles, as on the PPX wire.
 *
 * Parameterisations follow PPX / PyTorch:
 *   Normal(mean, stddev)         Uniform(low, high)          Categorical(probs)
 *   Poisson(rate)                Bernoulli(probs)            Beta(alpha=concentration1, beta=concentration0)
 *   Exponential(rate)            Gamma(concentration, rate)  LogNormal(loc, scale)
 *   Binomial(total_count, probs) Weibull(scale, concentration)
 *
 * The kind numbers equal the PPX wire union tags (protocol/ppx.h), so converting
 * between the two is a cast.
 */
#ifndef PPX_DIST_H
#define PPX_DIST_H

#include <stddef.h>
#include "rng.h"

typedef enum dist_kind {
    DIST_NONE = 0,
    DIST_NORMAL = 1,
    DIST_UNIFORM = 2,
    DIST_CATEGORICAL = 3,
    DIST_POISSON = 4,
    DIST_BERNOULLI = 5,
    DIST_BETA = 6,
    DIST_EXPONENTIAL = 7,
    DIST_GAMMA = 8,
    DIST_LOGNORMAL = 9,
    DIST_BINOMIAL = 10,
    DIST_WEIBULL = 11,
    DIST_KIND_COUNT = 12
} dist_kind;

typedef struct dist {
    dist_kind kind;
    size_t n;          /* number of elements (values drawn per sample) */
    size_t k;          /* Categorical: categories per element; otherwise 0 */
    const double *p0;  /* first parameter, n0 values */
    size_t n0;
    const double *p1;  /* second parameter, n1 values (NULL/0 for one-parameter kinds) */
    size_t n1;
} dist;

/* Number of parameters of a kind (1 or 2); 0 for DIST_NONE or out of range. */
int dist_nparams(dist_kind kind);
/* "Normal", "Uniform", ... ; "None" for out-of-range kinds. */
const char *dist_kind_name(dist_kind kind);
/* 1 for Categorical, Poisson, Bernoulli, Binomial. */
int dist_is_discrete(dist_kind kind);

/* Fill `d` for `kind` from parameter arrays.  For two-parameter kinds n is
 * max(n0, n1); for Categorical, k is the number of categories (the last
 * dimension of the probs tensor) and n = n0 / k.  Returns 0, or -1 with a
 * reason in why[0..why_len) when the lengths are inconsistent (a parameter of
 * length 0, lengths that neither match nor broadcast, k == 0, n0 % k != 0). */
int dist_init(dist *d, dist_kind kind, const double *p0, size_t n0,
              const double *p1, size_t n1, size_t k, char *why, size_t why_len);

/* Check the parameters' values: all finite; scales/rates/concentrations > 0
 * (Poisson rate >= 0); low < high; probs in [0, 1]; Categorical weights >= 0
 * with a positive finite sum per row; Binomial total_count a non-negative
 * integer.  Returns 0, or -1 with a human-readable reason naming the parameter,
 * the element index and the offending value. */
int dist_validate(const dist *d, char *why, size_t why_len);

/* Draw n values into out[0..n).  `d` must have passed dist_validate. */
void dist_sample(const dist *d, rng *r, double *out);

/* Sum over the n elements of log p(x_i).  -INFINITY when some x_i is outside
 * the support (e.g. non-integer count, index >= k, value outside [low, high))
 * or infinite; NaN when some x_i is NaN (so an upstream bug cannot pass for a
 * zero weight).  Boundaries: Beta includes 0 and 1, Gamma and Weibull include
 * 0, with the density's limit there (a sampler's underflowed 0 stays
 * possible).  Categorical uses the normalised probabilities. */
double dist_log_prob(const dist *d, const double *x);
/* Element-wise log-densities into out[0..n). */
void dist_log_prob_each(const dist *d, const double *x, double *out);

/* Mean and variance of each element into out[0..n).  Categorical: mean and
 * variance of the index under the normalised probabilities. */
void dist_mean(const dist *d, double *out);
void dist_variance(const dist *d, double *out);

/* Gradient of log p(x_i) with respect to each parameter, element-wise.
 * g0 receives n values (Categorical: n*k values, d/d w_ij of log(w_ix / sum_j w_ij),
 * i.e. with respect to the unnormalised weights); g1 receives n values for
 * two-parameter kinds and may be NULL for one-parameter kinds.  When a
 * parameter is broadcast, the caller sums the element gradients.
 * Discrete parameters (Binomial total_count) get 0.  Uniform: d/dlow, d/dhigh
 * of -log(high-low).  Outside the support the gradient is 0. */
void dist_grad_log_prob(const dist *d, const double *x, double *g0, double *g1);

#endif
