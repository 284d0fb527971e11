/* spline.h — the monotone rational-quadratic spline of neural spline flows
 * (Durkan et al. 2019), as nflows' unconstrained_rational_quadratic_spline
 * with linear tails, on one scalar at a time, in double precision.
 *
 * Parameters of one scalar transform: p [3K-1] unnormalised values, laid out
 * as nflows does
 *     p[0 .. K)        widths   -> softmax -> min width + (1 - K min) * w
 *     p[K .. 2K)       heights  -> softmax -> min height + (1 - K min) * h
 *     p[2K .. 3K-1)    derivatives at the K-1 interior knots
 *                               -> SPLINE_MIN_DERIVATIVE + softplus(.)
 * The knots span [-B, B] in both input and output (B = tail bound); the
 * derivatives at the two end knots are fixed to 1, so the spline joins the
 * identity tails outside [-B, B] with a continuous first derivative (the
 * density is continuous).  Inside, y is strictly increasing; outside, y = x
 * with log|dy/dx| = 0.
 *
 * Double precision throughout: the callers (flow.c) pass float network
 * outputs, and the work per scalar is O(K), negligible next to the networks;
 * double keeps the quadratic solve of the inverse and the gradient exact to
 * well below float resolution.
 */
#ifndef PPX_FLOW_SPLINE_H
#define PPX_FLOW_SPLINE_H

#define SPLINE_MAX_BINS 128
#define SPLINE_MIN_BIN_WIDTH 1e-3
#define SPLINE_MIN_BIN_HEIGHT 1e-3
#define SPLINE_MIN_DERIVATIVE 1e-3

/* Unnormalised parameters per scalar for K bins: 3K - 1. */
int spline_n_params(int K);

/* y = s(x) and logdet = log s'(x).  K in [1, SPLINE_MAX_BINS], B > 0. */
void spline_forward(double x, const double *p, int K, double B, double *y, double *logdet);

/* x = s^{-1}(y) and logdet = log |d s^{-1}/dy| = -log s'(x). */
void spline_inverse(double y, const double *p, int K, double B, double *x, double *logdet);

/* Vector-Jacobian product of (y, logdet) = spline_forward(x, p):
 *     *gx  += gy dy/dx  + glogdet dlogdet/dx
 *     gp[j] += gy dy/dp_j + glogdet dlogdet/dp_j      (gp [3K-1])
 * gx or gp may be NULL (not wanted). */
void spline_backward(double x, const double *p, int K, double B, double gy, double glogdet,
                     double *gx, double *gp);

#endif
