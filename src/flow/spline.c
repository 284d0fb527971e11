/* spline.c — rational-quadratic spline with linear tails (see spline.h).
 *
 * Inside bin k (knots X_k < X_{k+1} in, Y_k < Y_{k+1} out, derivatives d_k,
 * d_{k+1} at the knots), with W = X_{k+1} - X_k, H = Y_{k+1} - Y_k, s = H/W,
 * xi = (x - X_k)/W and q = xi (1 - xi):
 *     y      = Y_k + H (s xi^2 + d_k q) / den,   den = s + (d_k + d_{k+1} - 2s) q
 *     dy/dx  = s^2 Nd / den^2,                   Nd  = d_{k+1} xi^2 + 2 s q + d_k (1-xi)^2
 * (Durkan et al. 2019, eqs. 4 and 5).  den >= s (1 - 2q) + (d_k + d_{k+1}) q > 0
 * since q <= 1/4, so nothing here divides by zero for finite parameters.
 *
 * Knots: the widths' softmax w, then X_0 = -B, X_j = -B + 2B sum_{i<j}
 * (SPLINE_MIN_BIN_WIDTH + (1 - K SPLINE_MIN_BIN_WIDTH) w_i) for 0 < j < K,
 * and X_K = B pinned (as nflows) so that rounding in the cumulative sums
 * never leaves a gap before the tail; heights likewise.
 *
 * The computation is spline_impl.h's, vectorised across scalars and compiled
 * for each instruction set of nn/simd.h; this file picks the set nn/simd.h
 * uses and provides the single-scalar forms.
 */
#include "flow/spline.h"

#include <assert.h>

#include "nn/simd.h"

extern const spline_kernels spline_kernels_base;
#if SIMD_X86_SETS
extern const spline_kernels spline_kernels_avx2;
extern const spline_kernels spline_kernels_avx512;
#endif

int spline_n_params(int K)
{
    return 3 * K - 1;
}

static const spline_kernels *kernels(int n, int K, double B)
{
    assert(n >= 0 && K >= 1 && K <= SPLINE_MAX_BINS && B > 0.0);
    (void)n;
    (void)K;
    (void)B;
    switch (simd_isa_active()) {
#if SIMD_X86_SETS
    case SIMD_AVX512: return &spline_kernels_avx512;
    case SIMD_AVX2: return &spline_kernels_avx2;
#endif
    default: return &spline_kernels_base;
    }
}

void spline_forward_n(int n, const double *x, const double *p, int K, double B, double *y,
                      double *logdet)
{
    kernels(n, K, B)->forward(n, x, p, K, B, y, logdet);
}

void spline_inverse_n(int n, const double *y, const double *p, int K, double B, double *x,
                      double *logdet)
{
    kernels(n, K, B)->inverse(n, y, p, K, B, x, logdet);
}

void spline_inverse_ff(int n, const float *y, const float *p, size_t p_stride, float wh, int K,
                       float B, float *x, float *logdet)
{
    kernels(n, K, (double)B)->inverse_ff(n, y, p, p_stride, wh, K, B, x, logdet);
}

void spline_inverse_ff_fm(int n, const float *y, const float *p, size_t ld, float wh, int K,
                          float B, float *x, float *logdet)
{
    kernels(n, K, (double)B)->inverse_ff_fm(n, y, p, ld, wh, K, B, x, logdet);
}

void spline_backward_n(int n, const double *x, const double *p, int K, double B, const double *gy,
                       const double *glogdet, double *gx, double *gp)
{
    kernels(n, K, B)->backward(n, x, p, K, B, gy, glogdet, gx, gp);
}

void spline_forward(double x, const double *p, int K, double B, double *y, double *logdet)
{
    spline_forward_n(1, &x, p, K, B, y, logdet);
}

void spline_inverse(double y, const double *p, int K, double B, double *x, double *logdet)
{
    spline_inverse_n(1, &y, p, K, B, x, logdet);
}

void spline_backward(double x, const double *p, int K, double B, double gy, double glogdet,
                     double *gx, double *gp)
{
    spline_backward_n(1, &x, p, K, B, &gy, &glogdet, gx, gp);
}
