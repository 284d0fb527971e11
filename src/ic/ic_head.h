/* ic_head.h — proposal heads of inference compilation: one family per PPX
 * prior type, evaluated element by element.
 *
 * A head turns a vector o of raw network outputs (float, width
 * ic_head_width(kind, K, k) per element) and the prior's parameters of that
 * element into a proposal distribution q over the prior's support.  Every
 * family is *relative to the prior*, so that o = 0 (up to the component
 * spread the initialisation puts in the biases) gives a proposal close to
 * the prior, and the network only learns the correction:
 *
 *   Normal(loc, scale)        mixture of K Normals:  o = [logit_k, m_k, s_k]
 *                             component N(loc + scale m_k, scale exp(s_k))
 *   Uniform(low, high), Beta  mixture of K Betas on the prior's interval
 *                             ([low, high], resp. [0, 1]):  o = [logit_k, a_k, b_k]
 *                             component Beta(alpha exp(a_k), beta exp(b_k)) of
 *                             u = (x - low)/(high - low), alpha = beta = 1 for
 *                             Uniform; log q includes -log(high - low)
 *   Exponential, Gamma,       mixture of K LogNormals on (0, inf):
 *   LogNormal, Weibull        o = [logit_k, m_k, s_k], component
 *                             LogNormal(m0 + m_k, s0 exp(s_k)) where (m0, s0)
 *                             are the prior's own (LogNormal) or the
 *                             moment-matched log-normal's
 *   Categorical(k), Bernoulli categorical over k (resp. 2) values with logits
 *                             log p_prior + o
 *   Poisson(rate)             mixture of K Poissons: o = [logit_k, r_k],
 *                             rate_k = rate exp(r_k): a proper pmf on N
 *   Binomial(n, p)            mixture of K Binomials with the prior's count n:
 *                             o = [logit_k, l_k], p_k = sigmoid(logit(p) + l_k):
 *                             a proper pmf on {0..n}
 * Exponents and logit offsets are clamped to [-IC_HEAD_CLAMP, IC_HEAD_CLAMP]
 * (zero gradient outside), so a diverging network cannot produce infinite
 * parameters.  Values outside the support get log q = -inf.
 *
 * Shapes: per element, o has ic_head_width floats; the prior of the element
 * is given as p0 (probs row of k values for Categorical, already normalised
 * or not) and p1 (ignored for one-parameter kinds).
 * Computation is in double; no allocation; K <= IC_HEAD_MAX_K. */
#ifndef PPX_IC_HEAD_H
#define PPX_IC_HEAD_H

#include "dist.h"
#include "rng.h"

#define IC_HEAD_MAX_K 16
#define IC_HEAD_CLAMP 12.0
/* Largest Categorical handled by a head (wider ones fall back to the prior). */
#define IC_HEAD_MAX_CATEGORIES 4096

/* Raw outputs per element for a prior kind with K mixture components (k:
 * Categorical categories).  0 for DIST_NONE / out of range. */
int ic_head_width(dist_kind kind, int K, int k);

/* log q(x) for one element.  If dout != NULL, dout[0..width) += scale *
 * d log q / d o (so a loss -sum log q uses scale = -1/B). */
double ic_head_logq(dist_kind kind, int K, int k, double p0, double p1, const double *probs,
                    const float *o, double x, float *dout, double scale);

/* Draw one element from q; *logq gets log q(x). */
double ic_head_sample(dist_kind kind, int K, int k, double p0, double p1, const double *probs,
                      const float *o, rng *r, double *logq);

/* Bias initialisation of one element's outputs: zero, except a spread of
 * the component locations (so mixture components start apart). */
void ic_head_init_bias(dist_kind kind, int K, int k, float *b);

#endif
