/* spline.c — rational-quadratic spline with linear tails (see spline.h).
 *
 * Inside bin k (knots X_k < X_{k+1} in, Y_k < Y_{k+1} out, derivatives d_k,
 * d_{k+1} at the knots), with W = X_{k+1} - X_k, H = Y_{k+1} - Y_k, s = H/W,
 * xi = (x - X_k)/W and q = xi (1 - xi):
 *     y      = Y_k + H (s xi^2 + d_k q) / den,   den = s + (d_k + d_{k+1} - 2s) q
 *     dy/dx  = s^2 Nd / den^2,                   Nd  = d_{k+1} xi^2 + 2 s q + d_k (1-xi)^2
 * (Durkan et al. 2019, eqs. 4 and 5).  den >= s (1 - 2q) + (d_k + d_{k+1}) q > 0
 * since q <= 1/4, so nothing here divides by zero for finite parameters.
 */
#include "flow/spline.h"

#include <assert.h>
#include <math.h>

/* Knots of one spline; arrays sized for the largest K. */
typedef struct knots {
    double X[SPLINE_MAX_BINS + 1];  /* input knots, X[0] = -B, X[K] = B */
    double Y[SPLINE_MAX_BINS + 1];  /* output knots */
    double d[SPLINE_MAX_BINS + 1];  /* derivatives; d[0] = d[K] = 1 */
    double aw[SPLINE_MAX_BINS];     /* softmax of the unnormalised widths */
    double ah[SPLINE_MAX_BINS];     /* softmax of the unnormalised heights */
} knots;

int spline_n_params(int K)
{
    return 3 * K - 1;
}

static double softplus(double u)
{
    return fmax(u, 0.0) + log1p(exp(-fabs(u)));
}

/* Written for either sign so exp never overflows. */
static double sigmoid(double u)
{
    if (u >= 0.0)
        return 1.0 / (1.0 + exp(-u));
    const double e = exp(u);
    return e / (1.0 + e);
}

static void softmax(double *a, const double *u, int K)
{
    double m = u[0];
    for (int i = 1; i < K; i++)
        m = fmax(m, u[i]);
    double sum = 0.0;
    for (int i = 0; i < K; i++) {
        a[i] = exp(u[i] - m);
        sum += a[i];
    }
    for (int i = 0; i < K; i++)
        a[i] /= sum;
}

static void make_knots(knots *kn, const double *p, int K, double B)
{
    assert(K >= 1 && K <= SPLINE_MAX_BINS && B > 0.0);
    softmax(kn->aw, p, K);
    softmax(kn->ah, p + K, K);
    const double sw = 1.0 - SPLINE_MIN_BIN_WIDTH * K, sh = 1.0 - SPLINE_MIN_BIN_HEIGHT * K;
    double cw = 0.0, ch = 0.0;
    kn->X[0] = -B;
    kn->Y[0] = -B;
    for (int k = 0; k < K - 1; k++) {
        cw += SPLINE_MIN_BIN_WIDTH + sw * kn->aw[k];
        ch += SPLINE_MIN_BIN_HEIGHT + sh * kn->ah[k];
        kn->X[k + 1] = -B + 2.0 * B * cw;
        kn->Y[k + 1] = -B + 2.0 * B * ch;
    }
    /* The last knots pinned (as nflows) so that rounding in the cumulative
     * sums never leaves a gap before the tail. */
    kn->X[K] = B;
    kn->Y[K] = B;
    kn->d[0] = 1.0;
    kn->d[K] = 1.0;
    for (int k = 1; k < K; k++)
        kn->d[k] = SPLINE_MIN_DERIVATIVE + softplus(p[2 * K + k - 1]);
}

/* The bin k in [0, K) with loc[k] <= v (the last such; v >= loc[0] given). */
static int find_bin(const double *loc, int K, double v)
{
    int k = 0;
    while (k < K - 1 && loc[k + 1] <= v)
        k++;
    return k;
}

/* log dy/dx in a bin at relative position xi. */
static double bin_logdet(double s, double dk, double dk1, double xi)
{
    const double q = xi * (1.0 - xi);
    const double den = s + (dk + dk1 - 2.0 * s) * q;
    const double nd = dk1 * xi * xi + 2.0 * s * q + dk * (1.0 - xi) * (1.0 - xi);
    return 2.0 * log(s) + log(nd) - 2.0 * log(den);
}

void spline_forward(double x, const double *p, int K, double B, double *y, double *logdet)
{
    if (!(x >= -B && x <= B)) {
        *y = x;
        *logdet = 0.0;
        return;
    }
    knots kn;
    make_knots(&kn, p, K, B);
    const int k = find_bin(kn.X, K, x);
    const double W = kn.X[k + 1] - kn.X[k], H = kn.Y[k + 1] - kn.Y[k];
    const double s = H / W, xi = (x - kn.X[k]) / W, q = xi * (1.0 - xi);
    const double dk = kn.d[k], dk1 = kn.d[k + 1];
    const double den = s + (dk + dk1 - 2.0 * s) * q;
    *y = kn.Y[k] + H * (s * xi * xi + dk * q) / den;
    *logdet = bin_logdet(s, dk, dk1, xi);
}

void spline_inverse(double y, const double *p, int K, double B, double *x, double *logdet)
{
    if (!(y >= -B && y <= B)) {
        *x = y;
        *logdet = 0.0;
        return;
    }
    knots kn;
    make_knots(&kn, p, K, B);
    const int k = find_bin(kn.Y, K, y);
    const double W = kn.X[k + 1] - kn.X[k], H = kn.Y[k + 1] - kn.Y[k];
    const double s = H / W, dk = kn.d[k], dk1 = kn.d[k + 1];
    /* y - Y_k = H (s xi^2 + d_k q) / den is a quadratic a xi^2 + b xi + c = 0
     * in xi (c = -s (y - Y_k) <= 0), whose root in [0, 1] is
     * (-b + sqrt(disc)) / 2a = 2c / (-b - sqrt(disc)).  nflows always uses the
     * second form, which cancels catastrophically when b < 0 (steep bins with
     * d_{k+1} > 2s near the top of the bin); pick the form without
     * cancellation.  b < 0 with a root in [0, 1] implies a > 0 (if a <= 0 both
     * roots would be <= 0), so the first form never divides by ~0. */
    const double dy = y - kn.Y[k], c1 = dk + dk1 - 2.0 * s;
    const double a = dy * c1 + H * (s - dk);
    const double b = H * dk - dy * c1;
    const double c = -s * dy;
    double disc = b * b - 4.0 * a * c;
    if (disc < 0.0)
        disc = 0.0; /* only ever rounding: the true discriminant is >= 0 */
    double xi = b >= 0.0 ? 2.0 * c / (-b - sqrt(disc)) : (-b + sqrt(disc)) / (2.0 * a);
    if (!(xi >= 0.0))
        xi = 0.0;
    if (xi > 1.0)
        xi = 1.0;
    *x = kn.X[k] + xi * W;
    *logdet = -bin_logdet(s, dk, dk1, xi);
}

void spline_backward(double x, const double *p, int K, double B, double gy, double glogdet,
                     double *gx, double *gp)
{
    if (!(x >= -B && x <= B)) {
        if (gx)
            *gx += gy;
        return;
    }
    knots kn;
    make_knots(&kn, p, K, B);
    const int k = find_bin(kn.X, K, x);
    const double W = kn.X[k + 1] - kn.X[k], H = kn.Y[k + 1] - kn.Y[k];
    const double s = H / W, xi = (x - kn.X[k]) / W, q = xi * (1.0 - xi);
    const double dk = kn.d[k], dk1 = kn.d[k + 1];
    const double c1 = dk + dk1 - 2.0 * s;
    const double A = s * xi * xi + dk * q;
    const double den = s + c1 * q, den2 = den * den;
    const double nd = dk1 * xi * xi + 2.0 * s * q + dk * (1.0 - xi) * (1.0 - xi);
    const double dq = 1.0 - 2.0 * xi; /* dq/dxi */

    /* Partials with s, xi, H, Y_k, d_k, d_{k+1} treated as independent. */
    const double dy_dH = A / den;
    const double dy_ds = H * (xi * xi * den - A * (1.0 - 2.0 * q)) / den2;
    const double dy_dxi = H * ((2.0 * s * xi + dk * dq) * den - A * c1 * dq) / den2;
    const double dy_ddk = H * q * (den - A) / den2;
    const double dy_ddk1 = -H * A * q / den2;
    const double dl_ds = 2.0 / s + 2.0 * q / nd - 2.0 * (1.0 - 2.0 * q) / den;
    const double dl_dxi = (2.0 * dk1 * xi + 2.0 * s * dq - 2.0 * dk * (1.0 - xi)) / nd -
                          2.0 * c1 * dq / den;
    const double dl_ddk = (1.0 - xi) * (1.0 - xi) / nd - 2.0 * q / den;
    const double dl_ddk1 = xi * xi / nd - 2.0 * q / den;

    const double g_s = gy * dy_ds + glogdet * dl_ds;
    const double g_xi = gy * dy_dxi + glogdet * dl_dxi;
    /* s = H/W, xi = (x - X_k)/W. */
    const double g_H = gy * dy_dH + g_s / W;
    const double g_W = -g_s * s / W - g_xi * xi / W;
    const double g_X = -g_xi / W;
    const double g_Y = gy;
    if (gx)
        *gx += g_xi / W;
    if (!gp)
        return;

    /* W = 2B w'_k and X_k = -B + 2B sum_{j<k} w'_j with w' = mw + (1 - K mw)
     * softmax(u): d/dw'_j = 2B (g_W [j == k] + g_X [j < k]); then back through
     * the affine map and the softmax, g_u_i = a_i (g_a_i - sum_j a_j g_a_j).
     * (For the last bin the code's W = B - X_{K-1} differs from 2B w'_{K-1}
     * only by the identity sum w' = 1, invisible to the softmax gradient.)
     * Heights likewise with H, Y_k. */
    const double sw = 1.0 - SPLINE_MIN_BIN_WIDTH * K, sh = 1.0 - SPLINE_MIN_BIN_HEIGHT * K;
    double dot_w = 0.0, dot_h = 0.0;
    for (int j = 0; j <= k; j++) {
        const double ga_w = 2.0 * B * sw * (j == k ? g_W : g_X);
        const double ga_h = 2.0 * B * sh * (j == k ? g_H : g_Y);
        dot_w += kn.aw[j] * ga_w;
        dot_h += kn.ah[j] * ga_h;
    }
    for (int j = 0; j < K; j++) {
        const double ga_w = j < k ? 2.0 * B * sw * g_X : (j == k ? 2.0 * B * sw * g_W : 0.0);
        const double ga_h = j < k ? 2.0 * B * sh * g_Y : (j == k ? 2.0 * B * sh * g_H : 0.0);
        gp[j] += kn.aw[j] * (ga_w - dot_w);
        gp[K + j] += kn.ah[j] * (ga_h - dot_h);
    }
    /* d_j = min + softplus(u), interior knots j in [1, K) only. */
    if (k >= 1)
        gp[2 * K + k - 1] += (gy * dy_ddk + glogdet * dl_ddk) * sigmoid(p[2 * K + k - 1]);
    if (k + 1 <= K - 1)
        gp[2 * K + k] += (gy * dy_ddk1 + glogdet * dl_ddk1) * sigmoid(p[2 * K + k]);
}
