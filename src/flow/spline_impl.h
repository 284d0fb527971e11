/* spline_impl.h — the batch forms of spline.h for one instruction set.
 *
 * Included once by each of spline_base.c, spline_avx2.c and spline_avx512.c
 * after the file has selected its target and defined SIMD_W, SIMD_SQRT_D
 * (see nn/simd_vec.h) and SPLINE_TABLE, the name of the spline_kernels table
 * to define.  Everything but the table is static.
 *
 * Each double lane is one scalar's spline (structure of arrays): scalars are
 * taken SIMD_WD at a time, their parameters transposed so that parameter j of
 * every lane is one vector.  Every step is the same for all lanes: the bin is
 * found by comparing the point with every knot (a count, not a search), the
 * knots and derivatives of the bin are picked by masks, both roots of the
 * inverse's quadratic and both tails are computed and the right ones
 * selected.  So a lane's results depend on its own inputs only, and are the
 * same bits whatever the set and wherever the scalar sits in the batch.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "flow/spline.h"
#include "nn/simd_vec.h"

#define NP_MAX (3 * SPLINE_MAX_BINS - 1)

/* The parameters and points of scalars [i0, i0 + m) in lanes 0..m-1; the
 * other lanes repeat scalar i0 + m - 1, so that every lane computes on
 * sensible numbers (their results are dropped). */
static void load_group(vd *P, vd *v, const double *p, const double *x, int i0, int m, int np)
{
    const double *pl[SIMD_WD];
    double t[SIMD_WD];
    for (int l = 0; l < SIMD_WD; l++) {
        const int i = i0 + (l < m ? l : m - 1);
        pl[l] = p + (size_t)i * np;
        t[l] = x[i];
    }
    memcpy(v, t, sizeof t);
    for (int j = 0; j < np; j++) {
        for (int l = 0; l < SIMD_WD; l++)
            t[l] = pl[l][j];
        memcpy(&P[j], t, sizeof t);
    }
}

/* Lanes as load_group's, from a per-scalar array. */
static vd load_lanes(const double *a, int i0, int m)
{
    double t[SIMD_WD];
    for (int l = 0; l < SIMD_WD; l++)
        t[l] = a[i0 + (l < m ? l : m - 1)];
    vd v;
    memcpy(&v, t, sizeof t);
    return v;
}

static void store_lanes(double *dst, vd v, int m)
{
    for (int l = 0; l < m; l++)
        dst[l] = v[l];
}

static inline vd vmax(vd a, vd b)
{
    return sel_d(b > a, b, a);
}

/* What a group's splines need at their points: softmaxes, bin, knots and
 * knot derivatives of the bin (d and dd/du). */
typedef struct bins {
    vd aw[SPLINE_MAX_BINS], ah[SPLINE_MAX_BINS]; /* softmax of widths, heights */
    vd kf;                  /* the bin k, as a double */
    vd Xk, Xk1, Yk, Yk1;    /* its knots */
    vd dk, dk1;             /* derivatives at its knots */
    vd sk, sk1;             /* their derivatives with respect to their parameters */
} bins;

/* The bin holding v, by input (X, by_y = 0) or output (Y, by_y = 1) knots:
 * k = the number of interior knots at or below v. */
static void find_bins(bins *g, const vd *P, int K, double B, vd v, int by_y)
{
    vd mw = P[0], mh = P[K];
    for (int j = 1; j < K; j++) {
        mw = vmax(mw, P[j]);
        mh = vmax(mh, P[K + j]);
    }
    vd tw = splat_d(0.0), th = splat_d(0.0);
    for (int j = 0; j < K; j++) {
        g->aw[j] = exp_vd(P[j] - mw);
        g->ah[j] = exp_vd(P[K + j] - mh);
        tw += g->aw[j];
        th += g->ah[j];
    }
    const vd iw = 1.0 / tw, ih = 1.0 / th;
    for (int j = 0; j < K; j++) {
        g->aw[j] *= iw;
        g->ah[j] *= ih;
    }
    const double sw = 1.0 - SPLINE_MIN_BIN_WIDTH * K, sh = 1.0 - SPLINE_MIN_BIN_HEIGHT * K;
    vd cw = splat_d(0.0), ch = splat_d(0.0);
    vd Xk = splat_d(-B), Yk = splat_d(-B), Xk1 = splat_d(B), Yk1 = splat_d(B);
    vd kf = splat_d(0.0), uk = splat_d(0.0), uk1 = splat_d(0.0);
    vl above = (vl){0}; /* a knot above v seen */
    for (int j = 1; j < K; j++) {
        /* Knot j, as the cumulative sums of make_knots in spline.h's text. */
        cw += SPLINE_MIN_BIN_WIDTH + sw * g->aw[j - 1];
        ch += SPLINE_MIN_BIN_HEIGHT + sh * g->ah[j - 1];
        const vd X = -B + 2.0 * B * cw, Y = -B + 2.0 * B * ch;
        const vl le = (by_y ? Y : X) <= v;
        const vl first_above = ~le & ~above;
        const vd u = P[2 * K + j - 1];
        Xk = sel_d(le, X, Xk);
        Yk = sel_d(le, Y, Yk);
        kf = sel_d(le, splat_d((double)j), kf);
        uk = sel_d(le, u, uk);
        Xk1 = sel_d(first_above, X, Xk1);
        Yk1 = sel_d(first_above, Y, Yk1);
        uk1 = sel_d(first_above, u, uk1);
        above |= ~le;
    }
    g->kf = kf;
    g->Xk = Xk;
    g->Xk1 = Xk1;
    g->Yk = Yk;
    g->Yk1 = Yk1;
    /* Interior knots: SPLINE_MIN_DERIVATIVE + softplus(u); the two ends 1. */
    vd sk, sk1;
    const vd dk = SPLINE_MIN_DERIVATIVE + softplus_vd(uk, &sk);
    const vd dk1 = SPLINE_MIN_DERIVATIVE + softplus_vd(uk1, &sk1);
    const vl first = kf == 0.0;
    g->dk = sel_d(first, splat_d(1.0), dk);
    g->sk = sel_d(first, splat_d(0.0), sk);
    g->dk1 = sel_d(above, dk1, splat_d(1.0));
    g->sk1 = sel_d(above, sk1, splat_d(0.0));
}

/* log dy/dx in a bin at relative position xi: one log of (s / den)^2 Nd
 * rather than three.  s is in [1e-3, 1e3] (bins at least 1e-3 of the
 * range), den and Nd lie between min(s, d) and max(s, d) up to a factor 2,
 * so the product stays far inside double's range for any derivative d below
 * 1e100 (float network outputs are below 3.5e38). */
static inline vd bin_logdet(vd s, vd dk, vd dk1, vd xi)
{
    const vd q = xi * (1.0 - xi);
    const vd den = s + (dk + dk1 - 2.0 * s) * q;
    const vd nd = dk1 * xi * xi + 2.0 * s * q + dk * (1.0 - xi) * (1.0 - xi);
    const vd r = s / den;
    return log_vd(r * r * nd);
}

static inline vl inside(vd v, double B)
{
    return (v >= -B) & (v <= B); /* NaN: outside, passed through */
}

static void forward(int n, const double *x, const double *p, int K, double B, double *y,
                    double *logdet)
{
    const int np = 3 * K - 1;
    vd P[NP_MAX], v;
    bins g;
    for (int i0 = 0; i0 < n; i0 += SIMD_WD) {
        const int m = n - i0 < SIMD_WD ? n - i0 : SIMD_WD;
        load_group(P, &v, p, x, i0, m, np);
        find_bins(&g, P, K, B, v, 0);
        const vd W = g.Xk1 - g.Xk, H = g.Yk1 - g.Yk;
        const vd s = H / W, xi = (v - g.Xk) / W, q = xi * (1.0 - xi);
        const vd den = s + (g.dk + g.dk1 - 2.0 * s) * q;
        const vd yy = g.Yk + H * (s * xi * xi + g.dk * q) / den;
        const vd ld = bin_logdet(s, g.dk, g.dk1, xi);
        const vl in = inside(v, B);
        store_lanes(y + i0, sel_d(in, yy, v), m);
        store_lanes(logdet + i0, sel_d(in, ld, splat_d(0.0)), m);
    }
}

/* One group of inverse: lanes' parameters P and points v loaded, results
 * to x[i0, i0 + m) and logdet[i0, i0 + m). */
static inline void inverse_group(const vd *P, vd v, int K, double B, double *x, double *logdet,
                                 int i0, int m)
{
    bins g;
    find_bins(&g, P, K, B, v, 1);
    const vd W = g.Xk1 - g.Xk, H = g.Yk1 - g.Yk;
    const vd s = H / W, dk = g.dk, dk1 = g.dk1;
    /* y - Y_k = H (s xi^2 + d_k q) / den is a quadratic a xi^2 + b xi + c
     * = 0 in xi (c = -s (y - Y_k) <= 0), whose root in [0, 1] is
     * (-b + sqrt(disc)) / 2a = 2c / (-b - sqrt(disc)).  nflows always
     * uses the second form, which cancels catastrophically when b < 0
     * (steep bins with d_{k+1} > 2s near the top of the bin); take the
     * form without cancellation.  b < 0 with a root in [0, 1] implies
     * a > 0 (if a <= 0 both roots would be <= 0), so the first form never
     * divides by ~0.  (Both are computed; the other lanes' quotient may
     * be inf or NaN and is not selected.) */
    const vd dy = v - g.Yk, c1 = dk + dk1 - 2.0 * s;
    const vd a = dy * c1 + H * (s - dk);
    const vd b = H * dk - dy * c1;
    const vd c = -s * dy;
    vd disc = b * b - 4.0 * a * c;
    disc = sel_d(disc < 0.0, splat_d(0.0), disc); /* only ever rounding */
    const vd sq = SIMD_SQRT_D(disc);
    vd xi = sel_d(b >= 0.0, 2.0 * c / (-b - sq), (-b + sq) / (2.0 * a));
    xi = sel_d(xi >= 0.0, xi, splat_d(0.0)); /* also NaN -> 0 */
    xi = sel_d(xi > 1.0, splat_d(1.0), xi);
    const vd xx = g.Xk + xi * W;
    const vd ld = -bin_logdet(s, dk, dk1, xi);
    const vl in = inside(v, B);
    store_lanes(x + i0, sel_d(in, xx, v), m);
    store_lanes(logdet + i0, sel_d(in, ld, splat_d(0.0)), m);
}

static void inverse(int n, const double *y, const double *p, int K, double B, double *x,
                    double *logdet)
{
    const int np = 3 * K - 1;
    vd P[NP_MAX], v;
    for (int i0 = 0; i0 < n; i0 += SIMD_WD) {
        const int m = n - i0 < SIMD_WD ? n - i0 : SIMD_WD;
        load_group(P, &v, p, y, i0, m, np);
        inverse_group(P, v, K, B, x, logdet, i0, m);
    }
}

static void backward(int n, const double *x, const double *p, int K, double B, const double *gy,
                     const double *glogdet, double *gx, double *gp)
{
    const int np = 3 * K - 1;
    vd P[NP_MAX], v;
    bins g;
    for (int i0 = 0; i0 < n; i0 += SIMD_WD) {
        const int m = n - i0 < SIMD_WD ? n - i0 : SIMD_WD;
        load_group(P, &v, p, x, i0, m, np);
        const vd vgy = load_lanes(gy, i0, m), vgl = load_lanes(glogdet, i0, m);
        find_bins(&g, P, K, B, v, 0);
        const vl in = inside(v, B);
        const vd W = g.Xk1 - g.Xk, H = g.Yk1 - g.Yk;
        const vd s = H / W, xi = (v - g.Xk) / W, q = xi * (1.0 - xi);
        const vd dk = g.dk, dk1 = g.dk1;
        const vd c1 = dk + dk1 - 2.0 * s;
        const vd A = s * xi * xi + dk * q;
        const vd den = s + c1 * q, den2 = den * den;
        const vd nd = dk1 * xi * xi + 2.0 * s * q + dk * (1.0 - xi) * (1.0 - xi);
        const vd dq = 1.0 - 2.0 * xi; /* dq/dxi */

        /* Partials with s, xi, H, Y_k, d_k, d_{k+1} treated as independent. */
        const vd dy_dH = A / den;
        const vd dy_ds = H * (xi * xi * den - A * (1.0 - 2.0 * q)) / den2;
        const vd dy_dxi = H * ((2.0 * s * xi + dk * dq) * den - A * c1 * dq) / den2;
        const vd dy_ddk = H * q * (den - A) / den2;
        const vd dy_ddk1 = -H * A * q / den2;
        const vd dl_ds = 2.0 / s + 2.0 * q / nd - 2.0 * (1.0 - 2.0 * q) / den;
        const vd dl_dxi = (2.0 * dk1 * xi + 2.0 * s * dq - 2.0 * dk * (1.0 - xi)) / nd -
                          2.0 * c1 * dq / den;
        const vd dl_ddk = (1.0 - xi) * (1.0 - xi) / nd - 2.0 * q / den;
        const vd dl_ddk1 = xi * xi / nd - 2.0 * q / den;

        const vd g_s = vgy * dy_ds + vgl * dl_ds;
        const vd g_xi = vgy * dy_dxi + vgl * dl_dxi;
        /* s = H/W, xi = (x - X_k)/W. */
        const vd g_H = vgy * dy_dH + g_s / W;
        const vd g_W = -g_s * s / W - g_xi * xi / W;
        const vd g_X = -g_xi / W;
        const vd g_Y = vgy;
        if (gx) {
            /* Inside: through the bin; in the tails y = x. */
            const vd d = sel_d(in, g_xi / W, vgy);
            for (int l = 0; l < m; l++)
                gx[i0 + l] += d[l];
        }
        if (!gp)
            continue;

        /* W = 2B w'_k and X_k = -B + 2B sum_{j<k} w'_j with w' = mw + (1 - K
         * mw) softmax(u): d/dw'_j = 2B (g_W [j == k] + g_X [j < k]); then back
         * through the affine map and the softmax, g_u_i = a_i (g_a_i - sum_j
         * a_j g_a_j).  (For the last bin the code's W = B - X_{K-1} differs
         * from 2B w'_{K-1} only by the identity sum w' = 1, invisible to the
         * softmax gradient.)  Heights likewise with H, Y_k.  Lanes in the
         * tails get nothing: everything is selected, never multiplied, by
         * the masks (their values may be inf or NaN). */
        const double sw = 1.0 - SPLINE_MIN_BIN_WIDTH * K, sh = 1.0 - SPLINE_MIN_BIN_HEIGHT * K;
        const vd zero = splat_d(0.0);
        const vd gaw_x = 2.0 * B * sw * g_X, gaw_w = 2.0 * B * sw * g_W;
        const vd gah_y = 2.0 * B * sh * g_Y, gah_h = 2.0 * B * sh * g_H;
        vd dot_w = zero, dot_h = zero;
        for (int j = 0; j < K; j++) {
            const vl lt = g.kf > (double)j, eq = g.kf == (double)j;
            dot_w += g.aw[j] * sel_d(lt, gaw_x, sel_d(eq, gaw_w, zero));
            dot_h += g.ah[j] * sel_d(lt, gah_y, sel_d(eq, gah_h, zero));
        }
        vd G[NP_MAX];
        for (int j = 0; j < K; j++) {
            const vl lt = g.kf > (double)j, eq = g.kf == (double)j;
            const vd ga_w = sel_d(lt, gaw_x, sel_d(eq, gaw_w, zero));
            const vd ga_h = sel_d(lt, gah_y, sel_d(eq, gah_h, zero));
            G[j] = sel_d(in, g.aw[j] * (ga_w - dot_w), zero);
            G[K + j] = sel_d(in, g.ah[j] * (ga_h - dot_h), zero);
        }
        /* d_j = min + softplus(u_j) at the interior knots j = 1..K-1, whose
         * parameter is p[2K + j - 1]: knot k gets the d_k term, knot k + 1
         * the d_{k+1} term (their derivatives are 0 at the two ends). */
        const vd t_k = (vgy * dy_ddk + vgl * dl_ddk) * g.sk;
        const vd t_k1 = (vgy * dy_ddk1 + vgl * dl_ddk1) * g.sk1;
        for (int j = 1; j < K; j++) {
            const vd jj = splat_d((double)j);
            G[2 * K + j - 1] = sel_d(in & (g.kf == jj), t_k,
                                     sel_d(in & (g.kf + 1.0 == jj), t_k1, zero));
        }
        for (int l = 0; l < m; l++) {
            double *gpi = gp + (size_t)(i0 + l) * np;
            for (int j = 0; j < np; j++)
                gpi[j] += G[j][l];
        }
    }
}

/* ---- float inverse, for sampling ------------------------------------------------ */

/* The inverse in float, SIMD_W lanes (twice the doubles'): samples and log
 * densities are float32 anyway, and sampling inverts every spline of every
 * row.  Same steps as the double form, with float exp (nn/simd_vec.h) and
 * the log below. */

#ifndef SIMD_SQRT
#define SIMD_SQRT(v) sqrt_lanes(v)
#endif

/* log(x) for positive finite normal x: x = 2^e m with m in [sqrt(1/2),
 * sqrt(2)), log m = 2 atanh(s), s = (m - 1)/(m + 1), |s| <= 0.1716, by its
 * series to s^9 (next term < 1e-9 relative). */
static inline vf log_vf(vf x)
{
    const vu bits = (vu)x;
    vi e = (vi)(bits >> 23) - 127;
    vf m = (vf)((bits & 0x007FFFFFu) | 0x3F800000u);
    const vi big = m > 1.41421356f;
    m = sel(big, m * 0.5f, m);
    e = e - big; /* big lanes are -1 */
    const vf s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    const vf poly = s2 * (0.666666667f + s2 * (0.4f + s2 * (0.285714286f + s2 * 0.222222222f)));
    const vf ef = __builtin_convertvector(e, vf);
    return ef * LN2_HI_F + (ef * LN2_LO_F + (2.0f * s + s * poly));
}

/* softplus(u) = max(u, 0) + log1p(exp(-|u|)), log1p(y) ~ log(1 + y) +
 * (y - ((1 + y) - 1)) / (1 + y) (the rounding of 1 + y restored). */
static inline vf softplus_vf(vf u)
{
    const vf e = exp_v(-(vf)((vi)u & INT32_MAX));
    const vf w = 1.0f + e;
    return sel(u > 0.0f, u, splat(0.0f)) + (log_vf(w) + (e - (w - 1.0f)) / w);
}

static inline vf vmax_f(vf a, vf b)
{
    return sel(b > a, b, a);
}

static inline void inverse_group_ff(const vf *P, vf v, int K, float B, float *x, float *logdet,
                                    int i0, int m)
{
    vf aw[SPLINE_MAX_BINS], ah[SPLINE_MAX_BINS];
    vf mw = P[0], mh = P[K];
    for (int j = 1; j < K; j++) {
        mw = vmax_f(mw, P[j]);
        mh = vmax_f(mh, P[K + j]);
    }
    vf tw = splat(0.0f), th = splat(0.0f);
    for (int j = 0; j < K; j++) {
        aw[j] = exp_v(P[j] - mw);
        ah[j] = exp_v(P[K + j] - mh);
        tw += aw[j];
        th += ah[j];
    }
    const vf iw = 1.0f / tw, ih = 1.0f / th;
    const float sw = 1.0f - (float)SPLINE_MIN_BIN_WIDTH * K,
                sh = 1.0f - (float)SPLINE_MIN_BIN_HEIGHT * K;
    vf cw = splat(0.0f), ch = splat(0.0f);
    vf Xk = splat(-B), Yk = splat(-B), Xk1 = splat(B), Yk1 = splat(B);
    vf kf = splat(0.0f), uk = splat(0.0f), uk1 = splat(0.0f);
    vi above = (vi){0};
    for (int j = 1; j < K; j++) {
        cw += (float)SPLINE_MIN_BIN_WIDTH + sw * (aw[j - 1] * iw);
        ch += (float)SPLINE_MIN_BIN_HEIGHT + sh * (ah[j - 1] * ih);
        const vf X = -B + 2.0f * B * cw, Y = -B + 2.0f * B * ch;
        const vi le = Y <= v;
        const vi first_above = ~le & ~above;
        const vf u = P[2 * K + j - 1];
        Xk = sel(le, X, Xk);
        Yk = sel(le, Y, Yk);
        kf = sel(le, splat((float)j), kf);
        uk = sel(le, u, uk);
        Xk1 = sel(first_above, X, Xk1);
        Yk1 = sel(first_above, Y, Yk1);
        uk1 = sel(first_above, u, uk1);
        above |= ~le;
    }
    const vf dk = sel(kf == 0.0f, splat(1.0f), (float)SPLINE_MIN_DERIVATIVE + softplus_vf(uk));
    const vf dk1 = sel(above, (float)SPLINE_MIN_DERIVATIVE + softplus_vf(uk1), splat(1.0f));
    const vf W = Xk1 - Xk, H = Yk1 - Yk;
    const vf s = H / W;
    /* The root without cancellation, as inverse_group. */
    const vf dy = v - Yk, c1 = dk + dk1 - 2.0f * s;
    const vf a = dy * c1 + H * (s - dk);
    const vf b = H * dk - dy * c1;
    const vf c = -s * dy;
    vf disc = b * b - 4.0f * a * c;
    disc = sel(disc < 0.0f, splat(0.0f), disc);
    const vf sq = SIMD_SQRT(disc);
    vf xi = sel(b >= 0.0f, 2.0f * c / (-b - sq), (-b + sq) / (2.0f * a));
    xi = sel(xi >= 0.0f, xi, splat(0.0f));
    xi = sel(xi > 1.0f, splat(1.0f), xi);
    const vf xx = Xk + xi * W;
    const vf q = xi * (1.0f - xi);
    const vf den = s + (dk + dk1 - 2.0f * s) * q;
    const vf nd = dk1 * xi * xi + 2.0f * s * q + dk * (1.0f - xi) * (1.0f - xi);
    const vf r = s / den;
    const vf ld = -log_vf(r * r * nd);
    const vi in = (v >= -B) & (v <= B);
    const vf xo = sel(in, xx, v), lo = sel(in, ld, splat(0.0f));
    for (int l = 0; l < m; l++) {
        x[i0 + l] = xo[l];
        logdet[i0 + l] = lo[l];
    }
}

/* inverse in float: scalar i's point y[i], parameters at p + i * stride
 * (the first 2K times wh), results x[i], logdet[i]. */
static void inverse_ff(int n, const float *y, const float *p, size_t stride, float wh, int K,
                       float B, float *x, float *logdet)
{
    const int np = 3 * K - 1;
    vf P[NP_MAX], v;
    for (int i0 = 0; i0 < n; i0 += SIMD_W) {
        const int m = n - i0 < SIMD_W ? n - i0 : SIMD_W;
        const float *pl[SIMD_W];
        float t[SIMD_W];
        for (int l = 0; l < SIMD_W; l++) {
            const int i = i0 + (l < m ? l : m - 1);
            pl[l] = p + (size_t)i * stride;
            t[l] = y[i];
        }
        memcpy(&v, t, sizeof t);
        for (int j = 0; j < 2 * K; j++) {
            for (int l = 0; l < SIMD_W; l++)
                t[l] = pl[l][j] * wh;
            memcpy(&P[j], t, sizeof t);
        }
        for (int j = 2 * K; j < np; j++) {
            for (int l = 0; l < SIMD_W; l++)
                t[l] = pl[l][j];
            memcpy(&P[j], t, sizeof t);
        }
        inverse_group_ff(P, v, K, B, x, logdet, i0, m);
    }
}

/* inverse_ff on feature-major parameters (parameter j of scalar i at
 * p[j * ld + i]): whole-vector loads, no transposition. */
static void inverse_ff_fm(int n, const float *y, const float *p, size_t ld, float wh, int K,
                          float B, float *x, float *logdet)
{
    const int np = 3 * K - 1;
    vf P[NP_MAX];
    for (int i0 = 0; i0 < n; i0 += SIMD_W) {
        const int m = n - i0 < SIMD_W ? n - i0 : SIMD_W;
        const float *pi = p + i0;
        for (int j = 0; j < 2 * K; j++)
            P[j] = load(pi + (size_t)j * ld) * wh;
        for (int j = 2 * K; j < np; j++)
            P[j] = load(pi + (size_t)j * ld);
        inverse_group_ff(P, load(y + i0), K, B, x, logdet, i0, m);
    }
}

const spline_kernels SPLINE_TABLE = {
    .forward = forward,
    .inverse = inverse,
    .inverse_ff = inverse_ff,
    .inverse_ff_fm = inverse_ff_fm,
    .backward = backward,
};
