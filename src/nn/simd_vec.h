/* simd_vec.h — vector types and vectorised elementary functions for the
 * per-instruction-set kernels: src/nn/simd_impl.h (simd.h's kernels) and
 * src/flow/spline_impl.h (the spline's).  Included once per set by a
 * translation unit that has selected its target and defined
 *   SIMD_W          floats per vector (4, 8 or 16);
 *   SIMD_FMA(a,b,c) (optional) the set's fused multiply-add of vfs;
 *   SIMD_SQRT(v)    (optional) correctly rounded square root of a vf,
 *   SIMD_SQRT_D(v)  (optional) of a vd; lane by lane with libm otherwise.
 * Everything here is static inline.
 *
 * Written with GCC vector extensions: +, -, *, / and comparisons act lane by
 * lane, a comparison gives an integer vector of -1 (true) / 0 (false) lanes,
 * and a scalar operand is broadcast.  Selections are bit masks, not branches.
 * Integer arithmetic on lanes is done unsigned (wraps; never undefined, even
 * on the garbage exponents of NaN lanes, whose result is NaN regardless).
 * No operation here depends on the vector width, so every set computes the
 * same bits lane by lane.
 */
#ifndef PPX_NN_SIMD_VEC_H
#define PPX_NN_SIMD_VEC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float vf __attribute__((vector_size(4 * SIMD_W)));
typedef int32_t vi __attribute__((vector_size(4 * SIMD_W)));
typedef uint32_t vu __attribute__((vector_size(4 * SIMD_W)));
typedef double vd __attribute__((vector_size(4 * SIMD_W)));
typedef int64_t vl __attribute__((vector_size(4 * SIMD_W)));
typedef uint64_t vul __attribute__((vector_size(4 * SIMD_W)));
typedef float vfh __attribute__((vector_size(2 * SIMD_W))); /* half a vf: converts to a vd */
#define SIMD_WD (SIMD_W / 2)                                 /* doubles per vector */

/* ---- loads, stores, selection ----------------------------------------------- */

static inline vf load(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(float *p, vf v)
{
    memcpy(p, &v, sizeof v);
}

/* The last k < SIMD_W elements of an array, zero-padded: the tail goes
 * through the same vector code as the rest, so every element gets the same
 * operations wherever it sits. */
static inline vf load_part(const float *p, size_t k)
{
    float t[SIMD_W] = {0};
    for (size_t i = 0; i < k; i++) /* a loop: a memcpy of variable length is a call */
        t[i] = p[i];
    vf v;
    memcpy(&v, t, sizeof v);
    return v;
}

static inline void store_part(float *p, vf v, size_t k)
{
    float t[SIMD_W];
    memcpy(t, &v, sizeof v);
    for (size_t i = 0; i < k; i++)
        p[i] = t[i];
}

static inline vd load_d(const double *p)
{
    vd v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline vd load_part_d(const double *p, size_t k)
{
    vd v = {0};
    memcpy(&v, p, k * sizeof *p);
    return v;
}

static inline vf splat(float c)
{
    return (vf){0} + c;
}

/* Every lane c, exactly (splat's (vf){0} + c turns -0 into +0 and costs
 * an add; this is a plain broadcast, from memory when c comes from there). */
static inline vf bcast(float c)
{
    vf v;
    for (int i = 0; i < SIMD_W; i++)
        v[i] = c;
    return v;
}

static inline vd splat_d(double c)
{
    return (vd){0} + c;
}

/* mask ? a : b, lane by lane (mask lanes all-ones or zero). */
static inline vf sel(vi mask, vf a, vf b)
{
    return (vf)((mask & (vi)a) | (~mask & (vi)b));
}

static inline vd sel_d(vl mask, vd a, vd b)
{
    return (vd)((mask & (vl)a) | (~mask & (vl)b));
}

#ifndef SIMD_SQRT
static inline vf sqrt_lanes(vf v)
{
    for (int i = 0; i < SIMD_W; i++)
        v[i] = sqrtf(v[i]);
    return v;
}
#define SIMD_SQRT(v) sqrt_lanes(v)
#endif

#ifndef SIMD_SQRT_D
static inline vd sqrt_lanes_d(vd v)
{
    for (int i = 0; i < SIMD_WD; i++)
        v[i] = sqrt(v[i]);
    return v;
}
#define SIMD_SQRT_D(v) sqrt_lanes_d(v)
#endif

/* Fused multiply-add a b + c, rounded once, lane by lane: the set's own
 * instruction where the file defined SIMD_FMA, libm's fmaf otherwise (exact
 * too, so every set gives the same bits). */
#ifndef SIMD_FMA
static inline vf fma_lanes(vf a, vf b, vf c)
{
    for (int i = 0; i < SIMD_W; i++)
        c[i] = fmaf(a[i], b[i], c[i]);
    return c;
}
#define SIMD_FMA(a, b, c) fma_lanes(a, b, c)
#endif

/* ---- float exp, expm1, tanh --------------------------------------------------- */

/* exp(y) = 2^n exp(r) with n = round(y / ln 2) and r = y - n ln 2 in
 * [-0.347, 0.347] (Cody-Waite: ln 2 = LN2_HI + LN2_LO, LN2_HI with 9
 * significant bits so n LN2_HI is exact).  Adding 1.5 * 2^23 rounds y / ln 2
 * to an integer in float's last mantissa bits, read back as n. */
#define EXP_MAGIC 12582912.0f      /* 1.5 * 2^23 */
#define EXP_MAGIC_BITS 0x4B400000u
#define LOG2E_F 1.44269504f
#define LN2_HI_F 0.693359375f
#define LN2_LO_F -2.12194440e-4f
/* expm1(r) = r + r^2 R(r) on |r| <= 0.347: near-minimax R of degree 4
 * (fitted with mpmath; |error of R| < 7e-8, i.e. < 0.3 ulp of expm1(r)). */
#define EXPM1_R0 0.5f
#define EXPM1_R1 0.16666576f
#define EXPM1_R2 0.041666374f
#define EXPM1_R3 0.0083631929f
#define EXPM1_R4 0.0013941140f

/* expm1(r) for the reduced argument of y, and *scale = 2^n, so that
 * exp(y) = scale (1 + em) and expm1(y) = scale em + (scale - 1).
 * Needs -126 <= n <= 127, i.e. y in about [-87.3, 88]: callers clamp. */
static inline vf expm1_reduced(vf y, vf *scale)
{
    const vf t = y * LOG2E_F + EXP_MAGIC;
    const vf nf = t - EXP_MAGIC;
    const vu n = (vu)t - EXP_MAGIC_BITS;
    const vf r = (y - nf * LN2_HI_F) - nf * LN2_LO_F;
    const vf p = EXPM1_R0 + r * (EXPM1_R1 + r * (EXPM1_R2 + r * (EXPM1_R3 + r * EXPM1_R4)));
    *scale = (vf)((n + 127u) << 23);
    return r + r * r * p;
}

/* exp(x) for x <= 88 (ELU's derivative only uses x <= 0); 0 below -87.3,
 * where exp(x) is subnormal (flushed); NaN -> NaN. */
static inline vf exp_v(vf x)
{
    const vi tiny = x < -87.3f;
    const vf y = sel(tiny, splat(-87.3f), sel(x > 88.0f, splat(88.0f), x));
    vf scale;
    const vf em = expm1_reduced(y, &scale);
    return sel(tiny, splat(0.0f), scale * (1.0f + em));
}

/* expm1(x) for x <= 88 (ELU only calls it for x <= 0).  Below -30 it is -1
 * in float: the clamp changes nothing.  2^n - 1 is exact for n >= -24, and
 * 2^n em is exact, so only the final addition rounds. */
static inline vf expm1_v(vf x)
{
    const vf y = sel(x < -30.0f, splat(-30.0f), x); /* NaN stays NaN */
    vf scale;
    const vf em = expm1_reduced(y, &scale);
    return scale * em + (scale - 1.0f);
}

/* tanh on |x| (a), the sign put back at the end, from e2 = expm1(2a):
 *     tanh(a) = e2 / (e2 + 2)         for a < 0.55,
 *     tanh(a) = 1 - 2 / (e2 + 2)      for a >= 0.55.
 * expm1 is accurate relative to its value also for tiny a (where tanh(a) ~
 * a); the second form, where tanh >= 0.5 and the subtraction does not
 * cancel, keeps the rounding of e2 + 2 (large for large e2) out of the last
 * bits of a result near 1.  Both forms share the one division (numerator 2
 * or e2).  a is clamped at 10, where the result rounds to exactly 1 (tanh
 * itself rounds to 1 from a = 9.0109).  NaN stays NaN through the clamp (a
 * failed comparison keeps a) and the arithmetic. */
#define TANH_SWITCH 0.55f
static inline vf tanh_v(vf x)
{
    const vi sign = (vi)x & INT32_MIN;
    const vf a = (vf)((vi)x & INT32_MAX);
    const vf ac = sel(a > 10.0f, splat(10.0f), a);
    vf scale;
    const vf em = expm1_reduced(ac + ac, &scale);
    const vf e2 = scale * em + (scale - 1.0f); /* expm1(2a): n >= 0, scale - 1 exact */
    const vi big = a >= TANH_SWITCH;
    const vf q = sel(big, splat(2.0f), e2) / (e2 + 2.0f);
    const vf t = sel(big, 1.0f - q, q);
    return (vf)((vi)t | sign);
}

/* ---- double exp ----------------------------------------------------------------------- */

/* As the float exp: n = round(x / ln 2), r = x - n ln 2 (fdlibm's split of
 * ln 2, LN2_HI_D with 21 trailing zero bits), exp(r) by its Taylor series to
 * r^13 (remainder < 5e-18 on |r| <= 0.347), 2^n applied as two factors
 * 2^n1 2^n2 so that results in the subnormal range round once, at the last
 * product.  Inputs clamped to [-746, 710]: beyond, exp is 0 or +inf anyway. */
#define EXPD_MAGIC 6755399441055744.0 /* 1.5 * 2^52 */
#define EXPD_MAGIC_BITS 0x4338000000000000ull
#define LOG2E_D 1.4426950408889634
#define LN2_HI_D 6.93147180369123816490e-01
#define LN2_LO_D 1.90821492927058770002e-10

static inline vd exp_vd(vd x)
{
    x = sel_d(x > 710.0, splat_d(710.0), x);
    x = sel_d(x < -746.0, splat_d(-746.0), x); /* NaN stays NaN */
    const vd t = x * LOG2E_D + EXPD_MAGIC;
    const vd nf = t - EXPD_MAGIC;
    const vd t1 = nf * 0.5 + EXPD_MAGIC; /* n1 = round(n / 2) */
    const vul n = (vul)t - EXPD_MAGIC_BITS;
    const vul n1 = (vul)t1 - EXPD_MAGIC_BITS;
    const vul n2 = n - n1;
    const vd r = (x - nf * LN2_HI_D) - nf * LN2_LO_D;
    /* exp(r) = 1 + (r + (r^2 (1/2 + r/6) + r^4 q(r))), q = sum_{k>=4} r^(k-4)/k!
     * by Estrin's scheme (pairs combined with r^2 and r^4): a dependency
     * chain of about seven operations instead of Horner's thirteen
     * multiply-adds (the splines evaluate thousands of these back to back),
     * with the big terms added last, smallest first, so that the result
     * still carries little more than the final rounding. */
    const vd r2 = r * r, r4 = r2 * r2;
    const vd q45 = 1.0 / 24.0 + r * (1.0 / 120.0);
    const vd q67 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    const vd q89 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    const vd q1011 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0);
    const vd q1213 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    const vd q = (q45 + r2 * q67) + r4 * ((q89 + r2 * q1011) + r4 * q1213);
    const vd p = 1.0 + (r + (r2 * (0.5 + r * (1.0 / 6.0)) + r4 * q));
    return p * (vd)((n1 + 1023u) << 52) * (vd)((n2 + 1023u) << 52);
}

/* log(x) in double: x = 2^e m with m in [sqrt(1/2), sqrt(2)), f = m - 1
 * (exact), s = f / (2 + f), z = s^2 and
 *     log(1 + f) = 2 atanh(s) = f - s (f - R(z)),  R(z) = sum_k 2 z^k / (2k + 1),
 * (f - 2s = s f); the series to z^9 (remainder < 5e-17 for z <= 0.0295),
 * then e ln 2 added in two parts.  Subnormal x scaled by 2^54 first; 0 ->
 * -inf, negative -> NaN, +inf -> +inf, NaN -> NaN. */
#define SQRT2_D 1.4142135623730951
static inline vd log_vd(vd x)
{
    const vl sub = x < 0x1p-1022;
    const vd xs = sel_d(sub, x * 0x1p54, x);
    const vul bits = (vul)xs;
    /* The exponent field as a double: its bits under those of 2^52. */
    vd e = (vd)((bits >> 52) | 0x4330000000000000ull) - (0x1p52 + 1023.0);
    e = e - (vd)(sub & (vl)splat_d(54.0));
    vd m = (vd)((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
    const vl big = m > SQRT2_D;
    m = sel_d(big, m * 0.5, m);
    e = e + (vd)(big & (vl)splat_d(1.0));
    const vd f = m - 1.0;
    const vd s = f / (2.0 + f);
    const vd z = s * s;
    vd r = splat_d(2.0 / 19.0);
    r = r * z + 2.0 / 17.0;
    r = r * z + 2.0 / 15.0;
    r = r * z + 2.0 / 13.0;
    r = r * z + 2.0 / 11.0;
    r = r * z + 2.0 / 9.0;
    r = r * z + 2.0 / 7.0;
    r = r * z + 2.0 / 5.0;
    r = r * z + 2.0 / 3.0;
    r = r * z;
    const vd lg = f - s * (f - r);
    vd y = e * LN2_HI_D + (lg + e * LN2_LO_D);
    y = sel_d(x == 0.0, splat_d(-INFINITY), y);
    y = sel_d(x < 0.0, splat_d(NAN), y);
    y = sel_d(x == (double)INFINITY, x, y);
    return sel_d(x != x, x, y);
}

/* log(1 + y) for y in [0, 1] (softplus): u = 1 + y rounds, and
 * y - (u - 1) (exact) is what the rounding lost: log1p(y) = log(u) +
 * (y - (u - 1)) / u to first order, which is all it needs. */
static inline vd log1p_vd(vd y)
{
    const vd u = 1.0 + y;
    return log_vd(u) + (y - (u - 1.0)) / u;
}

/* softplus(u) = max(u, 0) + log1p(exp(-|u|)) and sigmoid(u) from the one
 * exp, written for either sign so that nothing overflows. */
static inline vd softplus_vd(vd u, vd *sigmoid)
{
    const vd e = exp_vd(-(vd)((vl)u & INT64_MAX)); /* exp(-|u|), in (0, 1] */
    const vl pos = u >= 0.0;
    if (sigmoid)
        *sigmoid = sel_d(pos, 1.0 / (1.0 + e), e / (1.0 + e));
    return sel_d(u > 0.0, u, splat_d(0.0)) + log1p_vd(e);
}

#endif
