/* transform.h — elementwise bijections between a bounded or half-bounded
 * interval and the real line, which NPE trains and samples through so that
 * the flow models an unbounded density (as sbi's automatic transforms do).
 *
 * Kinds (v in the original units, y = T(v) on the flow's side):
 *   TF_NONE    y = v
 *   TF_LOG     y = log(v - lo)                          v in (lo, inf)
 *   TF_LOGIT   y = log(u / (1 - u)), u = (v - lo) / (hi - lo)   v in (lo, hi)
 *   TF_LOG1P   y = log(1 + v - lo)                      v in (lo - 1, inf)
 *              (for data with zeros: counts)
 * tf_forward gives NaN outside the open domain (and +-inf on its edge), so
 * callers can tell.  Densities: if y = T(v), p_v(v) = p_y(T(v)) |T'(v)|,
 * tf_log_jac gives log |T'(v)|.
 *
 * tf_for_prior picks, per prior dimension, the transform whose image of R is
 * exactly the prior's support: logit for Beta (0, 1) and (with uniform = 1)
 * Uniform(low, high), log for Exponential, Gamma, LogNormal and Weibull
 * (0, inf), none for Normal and multivariate normal dimensions.  Uniform
 * dimensions are left out unless asked for: a flat density on an interval
 * becomes a logistic one whose edges stretch to infinity, which measurably
 * slows NPE down and costs accuracy on sbibm's two_moons (README).
 * No ownership: plain values.
 */
#ifndef PPX_TRANSFORM_H
#define PPX_TRANSFORM_H

#include "prior.h"

typedef enum tf_kind { TF_NONE = 0, TF_LOG = 1, TF_LOGIT = 2, TF_LOG1P = 3, TF_KIND_COUNT } tf_kind;

typedef struct tf_dim {
    tf_kind kind;
    double lo, hi; /* TF_LOG/TF_LOG1P: lo (hi unused, 0); TF_LOGIT: lo < hi */
} tf_dim;

/* "none", "log", "logit", "log1p" / the kind of a name (-1 if unknown). */
const char *tf_kind_name(tf_kind k);
int tf_kind_from_name(const char *s);
/* 1 when t is a valid transform (known kind, finite bounds, lo < hi). */
int tf_valid(const tf_dim *t);

double tf_forward(const tf_dim *t, double v);
double tf_inverse(const tf_dim *t, double y);
double tf_log_jac(const tf_dim *t, double v);

/* out[dim]: the automatic transform of each dimension of p (uniform
 * dimensions: logit when uniform is 1, none when 0). */
void tf_for_prior(const prior *p, int uniform, tf_dim *out);
/* 1 when every dimension of p with a bounded support has a transform in t
 * whose image of R is that support (then every inverse-transformed point is
 * inside it, up to rounding at the edges). */
int tf_covers_support(const prior *p, const tf_dim *t);
/* 1 when some dimension of t[n] is not TF_NONE. */
int tf_any(const tf_dim *t, int n);

#endif
