/* prior.h — the prior of simulation-based inference: a product of
 * independent 1-D PPX distributions, one per theta dimension, and of
 * multivariate normal blocks over runs of consecutive dimensions.
 *
 * Dimension j has a continuous kind (Normal, Uniform, Beta, Exponential,
 * Gamma, LogNormal, Weibull) and one or two scalar parameters in the PPX
 * parameterisation of dist.h (Normal(mean, stddev), Uniform(low, high),
 * Beta(alpha, beta), Exponential(rate), Gamma(concentration, rate),
 * LogNormal(loc, scale), Weibull(scale, concentration)).  Discrete kinds
 * (Categorical, Poisson, Bernoulli, Binomial) are refused: the posterior
 * estimators model a density over R^D.
 *
 * A multivariate normal block N(mean, cov) covers dimensions j0 .. j0+k-1
 * (k >= 1); those dimensions read as Normal(mean_j, sqrt(cov_jj)) (their
 * exact marginals) in d[], with d[j].block = index + 1, while the log
 * density and the draws are the joint ones.  Sampling uses the Cholesky
 * factor L (L L^T = cov): theta = mean + L z, z ~ N(0, I_k).
 *
 * Support: theta is in the support when its log density is > -inf (so
 * Uniform is [low, high), LogNormal (0, inf), Gamma/Weibull/Exponential
 * [0, inf), Beta [0, 1], Normal and multivariate normal all of R).
 *
 * Text form (command line, `ppxd posterior info`), several specs joined by
 * commas (commas inside [...] do not separate specs):
 *   KIND:P0[:P1][xN]   N (default 1) independent dimensions, e.g.
 *                      "uniform:-1:1x2", "normal:0:0.316", "exponential:2";
 *                      kind names are case-insensitive, "gaussian" = normal;
 *   mvn:MEAN:COV       a k-dimensional normal with mean MEAN and covariance
 *                      COV, each inline ("[0,1]", "[[1,0.5],[0.5,2]]") or a
 *                      .npy file (MEAN k values, COV k x k);
 *   mvnprec:MEAN:PREC  the same given the precision matrix (the inverse
 *                      covariance; stored as its inverse, the covariance).
 * The covariance must be symmetric (to 1e-9 relative) and positive definite.
 * prior_format writes a block inline, each number with the fewest digits that
 * read back to the same double, so the text form
 * parses back to an equal prior.
 *
 * Ownership: a prior owns its arrays; prior_new/prior_parse/prior_copy return
 * objects freed with prior_destroy.  Shapes: theta rows are [dim] doubles,
 * batches [n, dim] row-major; matrices [k, k] row-major.
 */
#ifndef PPX_PRIOR_H
#define PPX_PRIOR_H

#include <stddef.h>
#include "dist.h"
#include "rng.h"

typedef struct prior_dim {
    dist_kind kind;
    double p0, p1; /* p1 unused (0) for one-parameter kinds */
    int block;     /* 0: independent; b > 0: a dimension of mvn[b - 1] */
} prior_dim;

/* A multivariate normal over dimensions j0 .. j0+k-1. */
typedef struct prior_mvn {
    int j0, k;
    double *mean;     /* [k] */
    double *cov;      /* [k, k] symmetric positive definite */
    double *chol;     /* [k, k] its lower Cholesky factor L (upper part 0) */
    double log_norm;  /* -k/2 log(2 pi) - sum_i log L_ii */
} prior_mvn;

/* Largest k of a multivariate normal block (its matrices are k^2 doubles). */
#define PRIOR_MAX_MVN 2048

typedef struct prior {
    int dim;
    prior_dim *d;   /* [dim] */
    int n_mvn;
    prior_mvn *mvn; /* [n_mvn] (owned), in order of j0 */
} prior;

/* A prior of dim dimensions, each N(0, 1) until set.  NULL if dim < 1 or out
 * of memory. */
prior *prior_new(int dim);
void prior_destroy(prior **p);
prior *prior_copy(const prior *p);

/* Set dimension j to kind(p0, p1) after checking that the kind is continuous
 * and the parameters valid (dist_validate), and that j is in no
 * multivariate normal block.  0, or -1 with a reason. */
int prior_set(prior *p, int j, dist_kind kind, double p0, double p1, char *err, size_t err_len);

/* Make dimensions j0 .. j0+k-1 one multivariate normal N(mean, cov) (copied;
 * cov [k, k] is symmetrised), after checking it (finite, symmetric, positive
 * definite) and that none of the dimensions is already in a block.  0, or -1
 * with a reason. */
int prior_set_mvn(prior *p, int j0, int k, const double *mean, const double *cov, char *err, size_t err_len);
/* The covariance of precision prec [k, k] into cov [k, k].  0, or -1 when prec
 * is not symmetric positive definite. */
int prior_precision_to_cov(const double *prec, int k, double *cov);

/* Parse n_specs text specs (format above), appending dimensions in order.
 * NULL with a reason in err on any syntax or parameter error. */
prior *prior_parse(const char *const *specs, size_t n_specs, char *err, size_t err_len);
/* The text form of dimension j ("uniform:-1:1"; a dimension of a block gives
 * its marginal) / of the whole prior with runs of equal dimensions folded
 * ("uniform:-1:1x2,normal:0:1,mvn:[0,0]:[[1,0.5],[0.5,1]]").  Returns the
 * length snprintf would have written. */
int prior_format_dim(const prior *p, int j, char *buf, size_t len);
int prior_format(const prior *p, char *buf, size_t len);

/* 1 when kind is one the prior accepts. */
int prior_kind_ok(dist_kind kind);
/* Same dimensions, kinds, blocks and (bitwise equal) parameters. */
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
/* Mean and standard deviation of dimension j (the marginal's, in a block). */
void prior_moments(const prior *p, int j, double *mean, double *sd);

#endif
