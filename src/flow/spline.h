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
 * outputs, and the work per scalar is O(K); double keeps the quadratic solve
 * of the inverse and the gradient exact to well below float resolution.
 * Vectorised across scalars (one spline per double lane, spline_impl.h), with
 * ppxd's own exp and log (nn/simd_vec.h, within 2 ulp); the batch forms below
 * fill the vectors, the single-scalar forms use one lane.
 */
#ifndef PPX_FLOW_SPLINE_H
#define PPX_FLOW_SPLINE_H

#include <stddef.h>

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

/* The same three for n >= 0 scalars at once: scalar i has its value at x[i]
 * (y[i]) and its parameters at p + i (3K-1), its results at y[i] and
 * logdet[i] (x[i]), its gradients at gx[i] and gp + i (3K-1), upstream
 * gradients gy[i] and glogdet[i].  Bit for bit the results of n calls of the
 * forms above (which are these with n = 1): they exist because the 2K
 * exponentials of a spline's softmaxes are cheap only when many splines'
 * go through the vector unit together. */
void spline_forward_n(int n, const double *x, const double *p, int K, double B, double *y,
                      double *logdet);
void spline_inverse_n(int n, const double *y, const double *p, int K, double B, double *x,
                      double *logdet);
void spline_backward_n(int n, const double *x, const double *p, int K, double B, const double *gy,
                       const double *glogdet, double *gx, double *gp);
/* spline_inverse_n in float throughout (points, parameters, results and
 * every step), for sampling, whose samples and log densities are float32:
 * twice the lanes of the double form.  Scalar i's parameters are read from
 * floats at p + i * p_stride (stride 0: all share one set), the first 2K
 * (widths, heights) multiplied by wh as they load.  Against the double form
 * (tests/test_flow.c, parameters as the flow feeds them): |dx| <= 7e-6 and
 * log|det| within 2e-4 relative, the knots' float rounding in the narrowest
 * bins being the limit; the same bits on every instruction set. */
void spline_inverse_ff(int n, const float *y, const float *p, size_t p_stride, float wh, int K,
                       float B, float *x, float *logdet);
/* spline_inverse_ff with the parameters feature-major (a network's output
 * from nn/simd.h's simd_linear_fm): parameter j of scalar i at p[j * ld + i].
 * y and p's rows are read in whole vectors, up to index round_up(n, 16) - 1
 * (which must be < ld; the extra lanes' results are dropped, so those
 * entries need only be finite); x and logdet get exactly n.  The same bits
 * as spline_inverse_ff. */
void spline_inverse_ff_fm(int n, const float *y, const float *p, size_t ld, float wh, int K,
                          float B, float *x, float *logdet);

/* For spline*.c only: the batch forms of one instruction set (spline_impl.h). */
typedef struct spline_kernels {
    void (*forward)(int, const double *, const double *, int, double, double *, double *);
    void (*inverse)(int, const double *, const double *, int, double, double *, double *);
    void (*inverse_ff)(int, const float *, const float *, size_t, float, int, float, float *,
                       float *);
    void (*inverse_ff_fm)(int, const float *, const float *, size_t, float, int, float, float *,
                          float *);
    void (*backward)(int, const double *, const double *, int, double, const double *,
                     const double *, double *, double *);
} spline_kernels;

#endif
