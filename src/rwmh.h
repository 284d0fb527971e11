/* rwmh.h — random-walk proposal kernels for Metropolis–Hastings, one per
 * distribution family (RMH: `ppxd infer --method rmh`, pyprob's
 * RANDOM_WALK_METROPOLIS_HASTINGS).
 *
 * Where LMH redraws a site from its prior, RMH moves it near its current
 * value, so that a site the data pins down keeps mixing.  Per element, with
 * the element's own prior parameters:
 *   Normal                 x + sd * z                         (symmetric)
 *   Uniform, Beta          x + w * z reflected into the support, w = 0.1 of
 *                          the Uniform's width, the Beta's sd  (symmetric)
 *   Exponential, Gamma,    exp(log x + s * z), s = the prior's coefficient of
 *   LogNormal, Weibull     variation clamped to [0.05, 1] (LogNormal: its
 *                          scale, clamped likewise); q ratio x'/x
 *   Poisson, Binomial      x + d, d uniform on {-w..-1, 1..w}, w = max(1,
 *                          round(sd / 2))   (symmetric; a step outside the
 *                          support has prior density 0 and is rejected)
 *   Bernoulli              1 - x                               (symmetric)
 *   Categorical            uniform over the other k - 1 categories (symmetric)
 * z ~ N(0, 1).  Step sizes depend on the prior's parameters only, never on
 * x, so the symmetric kernels are exactly symmetric.
 */
#ifndef PPX_RWMH_H
#define PPX_RWMH_H

#include "dist.h"
#include "rng.h"

/* Propose out[0..n) from x[0..n) under d's kernel (d validated).  Returns
 * log q(x | out) - log q(out | x), the proposal's term in the acceptance
 * ratio (0 for the symmetric kernels). */
double rwmh_propose(const dist *d, const double *x, rng *r, double *out);

#endif
