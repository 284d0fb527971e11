/* stats.h — weighted-sample statistics for importance sampling and MCMC.
 * Weights are given as log-weights (any constant offset); -inf means weight 0.
 * Ownership: callers own every array; nothing is retained. */
#ifndef PPX_STATS_H
#define PPX_STATS_H

#include <stddef.h>
#include "rng.h"

/* log(sum(exp(lw[i]))); -INFINITY for n == 0 or all -inf. */
double stats_logsumexp(const double *lw, size_t n);
/* Normalised weights w[i] = exp(lw[i] - logsumexp) into w (may alias lw). */
void stats_normalise(const double *lw, size_t n, double *w);
/* Effective sample size (sum w)^2 / sum w^2 of normalised weights. */
double stats_ess(const double *w, size_t n);
/* Weighted mean and standard deviation of x[i*stride] under normalised w;
 * NaN values of x are skipped (their weight renormalised away). */
void stats_weighted_moments(const double *x, size_t stride, const double *w, size_t n, double *mean, double *sd);
/* Weighted quantile q in [0,1] of x[i*stride] (inverse of the weighted
 * empirical CDF, no interpolation).  `scratch` holds 2n size_t values. */
double stats_weighted_quantile(const double *x, size_t stride, const double *w, size_t n, double q, size_t *scratch);
/* Systematic resampling: m indices into out from normalised weights w. */
void stats_resample_systematic(const double *w, size_t n, size_t m, rng *r, size_t *out);
/* Effective sample size of an MCMC chain x[0..n) by batch means (sqrt(n) batches). */
double stats_ess_batch_means(const double *x, size_t n);

#endif
