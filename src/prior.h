/* prior.h — the prior of simulation-based inference: a product of
 * independent 1-D PPX distributions, one per theta dimension.
 *
 * Dimension j has a continuous kind (Normal, Uniform, Beta, Exponential,
 * Gamma, LogNormal, Weibull) and one or two scalar parameters in the PPX
 * parameterisation of dist.h (Normal(mean, stddev), Uniform(low, high),
 * Beta(alpha, beta), Exponential(rate), Gamma(concentration, rate),
 * LogNormal(loc, scale), Weibull(scale, concentration)).  Discrete kinds
 * (Categorical, Poisson, Bernoulli, Binomial) are refused: the posterior
 * estimators model a density over R^D.
 *
 * Support: theta is in the support when its log density is > -inf (so
 * Uniform is [low, high), LogNormal (0, inf), Gamma/Weibull/Exponential
 * [0, inf), Beta [0, 1]).
 *
 * Text form (command line, `ppxd posterior info`): KIND:P0[:P1][xN], e.g.
 * "uniform:-1:1x2" (two dimensions U(-1, 1)), "normal:0:0.316" (mean 0,
 * standard deviation 0.316), "exponential:2"; several specs may be joined
 * with commas.  Kind names are case-insensitive; "gaussian" = normal.
 *
 * Ownership: a prior owns its array of dimensions; prior_new/prior_parse/
 * prior_copy return objects freed with prior_destroy.  Shapes: theta rows are
 * [dim] doubles, batches [n, dim] row-major.
 */
#ifndef PPX_PRIOR_H
#define PPX_PRIOR_H

#include <stddef.h>
#include "dist.h"
#include "rng.h"

typedef struct prior_dim {
    dist_kind kind;
    double p0, p1; /* p1 unused (0) for one-parameter kinds */
} prior_dim;

typedef struct prior {
    int dim;
    prior_dim *d; /* [dim] */
} prior;

/* A prior of dim dimensions, each N(0, 1) until set.  NULL if dim < 1 or out
 * of memory. */
prior *prior_new(int dim);
void prior_destroy(prior **p);
prior *prior_copy(const prior *p);

/* Set dimension j to kind(p0, p1) after checking that the kind is continuous
 * and the parameters valid (dist_validate).  0, or -1 with a reason. */
int prior_set(prior *p, int j, dist_kind kind, double p0, double p1, char *err, size_t err_len);

/* Parse n_specs text specs (format above), appending dimensions in order.
 * NULL with a reason in err on any syntax or parameter error. */
prior *prior_parse(const char *const *specs, size_t n_specs, char *err, size_t err_len);
/* The text form of dimension j ("uniform:-1:1") / of the whole prior with
 * runs of equal dimensions folded ("uniform:-1:1x2,normal:0:1").  Returns
 * the length snprintf would have written. */
int prior_format_dim(const prior *p, int j, char *buf, size_t len);
int prior_format(const prior *p, char *buf, size_t len);

/* 1 when kind is one the prior accepts. */
int prior_kind_ok(dist_kind kind);
/* Same dimensions, kinds and (bitwise equal) parameters. */
int prior_equal(const prior *a, const prior *b);

/* log p(theta) for one row [dim]; -INFINITY outside the support. */
double prior_log_prob(const prior *p, const double *theta);
/* For n rows theta [n, dim] into out [n]. */
void prior_log_prob_batch(const prior *p, const double *theta, size_t n, double *out);
/* 1 when theta [dim] is inside the support. */
int prior_in_support(const prior *p, const double *theta);
/* 1 when some dimension has a bounded support (rejection may be needed). */
int prior_is_bounded(const prior *p);
/* Support of dimension j: [*lo, *hi] (infinite ends as +-INFINITY). */
void prior_support(const prior *p, int j, double *lo, double *hi);
/* n draws into out [n, dim], row by row, dimension by dimension. */
void prior_sample(const prior *p, rng *r, size_t n, double *out);
/* Mean and standard deviation of dimension j. */
void prior_moments(const prior *p, int j, double *mean, double *sd);

#endif
