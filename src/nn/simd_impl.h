/* simd_impl.h — the kernels of simd.h for one instruction set.
 *
 * Included once by each of simd_base.c, simd_avx2.c and simd_avx512.c, after
 * the file has selected its target and defined
 *   SIMD_W        floats per vector (4, 8 or 16);
 *   SIMD_TABLE    the name of the simd_kernels table to define;
 *   SIMD_NAME     the set's name (a string);
 *   SIMD_SQRT(v), SIMD_SQRT_D(v)  (optional) see simd_vec.h.
 * Everything but the table is static, so each inclusion is independent.
 * Vector types and elementary functions: simd_vec.h.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/simd.h"
#include "nn/simd_vec.h"

/* Loops over whole vectors, then the zero-padded tail.
 *   MAP1:  out[i] = F(in[i])
 *   GRAD:  dinp[i] += F(in[i], dout[i]) */
#define MAP1(out, in, n, F)                                                      \
    do {                                                                         \
        size_t i_ = 0;                                                           \
        for (; i_ + SIMD_W <= (n); i_ += SIMD_W)                                 \
            store((out) + i_, F(load((in) + i_)));                               \
        if (i_ < (n))                                                            \
            store_part((out) + i_, F(load_part((in) + i_, (n) - i_)), (n) - i_); \
    } while (0)

#define GRAD(dinp, in, dout, n, F)                                                \
    do {                                                                          \
        size_t i_ = 0;                                                            \
        for (; i_ + SIMD_W <= (n); i_ += SIMD_W)                                  \
            store((dinp) + i_, load((dinp) + i_) +                                \
                                   F(load((in) + i_), load((dout) + i_)));        \
        if (i_ < (n)) {                                                           \
            const size_t k_ = (n) - i_;                                           \
            store_part((dinp) + i_, load_part((dinp) + i_, k_) +                  \
                                        F(load_part((in) + i_, k_),               \
                                          load_part((dout) + i_, k_)), k_);       \
        }                                                                         \
    } while (0)

/* ---- activations ------------------------------------------------------------------ */

/* x > 0 ? x : +0 as a mask: NaN and -0 fail the comparison and give +0. */
static inline vf relu_v(vf x)
{
    return (vf)((vi)x & (x > 0.0f));
}

static inline vf relu_grad_v(vf x, vf dout)
{
    return (vf)((vi)dout & (x > 0.0f));
}

static inline vf tanh_grad_v(vf x, vf dout)
{
    const vf t = tanh_v(x);
    return (1.0f - t) * (1.0f + t) * dout;
}

/* expm1 of the non-positive lanes; x's sign bit ORed in so that -0 -> -0
 * (expm1's own sign for x < 0 is already set). */
static inline vf elu_v(vf x)
{
    const vf neg = (vf)((vi)expm1_v(x) | ((vi)x & INT32_MIN));
    return sel(x > 0.0f, x, neg);
}

static inline vf elu_grad_v(vf x, vf dout)
{
    return sel(x > 0.0f, splat(1.0f), exp_v(x)) * dout;
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBE 0.044715f

static inline vf gelu_v(vf x)
{
    const vf u = GELU_SCALE * (x + GELU_CUBE * x * x * x);
    return 0.5f * x * (1.0f + tanh_v(u));
}

static inline vf gelu_grad_v(vf x, vf dout)
{
    const vf u = GELU_SCALE * (x + GELU_CUBE * x * x * x);
    const vf t = tanh_v(u);
    /* sech^2 from tanh: cosh overflows for |u| > 89. */
    const vf sech2 = (1.0f - t) * (1.0f + t);
    const vf g = 0.5f * (1.0f + t) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
    return g * dout;
}

/* ReLU, sums, scaling and Adam are single IEEE operations per element, so a
 * scalar tail gives the same bits as a lane would, without padding a vector
 * (which costs more than the work for short rows). */
static void relu(float *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + SIMD_W <= n; i += SIMD_W)
        store(out + i, relu_v(load(in + i)));
    for (; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

static void relu_grad(float *dinp, const float *in, const float *dout, size_t n)
{
    size_t i = 0;
    for (; i + SIMD_W <= n; i += SIMD_W)
        store(dinp + i, load(dinp + i) + relu_grad_v(load(in + i), load(dout + i)));
    for (; i < n; i++)
        dinp[i] += in[i] > 0.0f ? dout[i] : 0.0f;
}

static void tanh_k(float *out, const float *in, size_t n)
{
    MAP1(out, in, n, tanh_v);
}

static void tanh_grad(float *dinp, const float *in, const float *dout, size_t n)
{
    GRAD(dinp, in, dout, n, tanh_grad_v);
}

static void elu(float *out, const float *in, size_t n)
{
    MAP1(out, in, n, elu_v);
}

static void elu_grad(float *dinp, const float *in, const float *dout, size_t n)
{
    GRAD(dinp, in, dout, n, elu_grad_v);
}

static void gelu(float *out, const float *in, size_t n)
{
    MAP1(out, in, n, gelu_v);
}

static void gelu_grad(float *dinp, const float *in, const float *dout, size_t n)
{
    GRAD(dinp, in, dout, n, gelu_grad_v);
}

/* ---- bias and activation after an sgemm ---------------------------------------------- */

/* Over [rows, cols]: pre += b (the bias the sgemm left out) and post =
 * act(pre), one pass instead of a bias fill before the sgemm and an
 * activation pass after it.  The array is walked flat, in whole vectors
 * (rows are often narrower than a few vectors: per-row tails would cost
 * more than the work), with the bias vector for a position read from bext,
 * the bias repeated to cols + SIMD_W, at the position's column.  F is one of
 * the activations above. */
#define BIAS_EXT_MAX 4096
#define BIAS_ACT(pre, post, bext, rows, cols, F)                                  \
    do {                                                                          \
        const size_t n_ = (rows) * (cols);                                        \
        size_t i_ = 0, c_ = 0;                                                    \
        for (; i_ + SIMD_W <= n_; i_ += SIMD_W) {                                 \
            const vf v_ = load((pre) + i_) + load((bext) + c_);                   \
            store((pre) + i_, v_);                                                \
            store((post) + i_, F(v_));                                            \
            c_ += SIMD_W;                                                         \
            if (c_ >= (cols))                                                     \
                c_ = (cols) >= SIMD_W ? c_ - (cols) : c_ % (cols);                \
        }                                                                         \
        if (i_ < n_) {                                                            \
            const size_t k_ = n_ - i_;                                            \
            const vf v_ = load_part((pre) + i_, k_) + load_part((bext) + c_, k_); \
            store_part((pre) + i_, v_, k_);                                       \
            store_part((post) + i_, F(v_), k_);                                   \
        }                                                                         \
    } while (0)

static inline vf identity_v(vf x)
{
    return x;
}

static void act_k(float *out, const float *in, size_t n, int act)
{
    switch (act) {
    case NN_ACT_RELU: relu(out, in, n); break;
    case NN_ACT_TANH: MAP1(out, in, n, tanh_v); break;
    case NN_ACT_ELU: MAP1(out, in, n, elu_v); break;
    case NN_ACT_GELU: MAP1(out, in, n, gelu_v); break;
    default:
        if (out != in)
            memmove(out, in, n * sizeof *out);
        break;
    }
}

static void bias_act(float *pre, float *post, const float *b, size_t rows, size_t cols, int act)
{
    if (rows == 0 || cols == 0)
        return;
    if (cols + SIMD_W > BIAS_EXT_MAX) {
        /* Wide rows: the bias row by row, then the activation. */
        for (size_t r = 0; r < rows; r++) {
            float *pr = pre + r * cols;
            size_t c = 0;
            for (; c + SIMD_W <= cols; c += SIMD_W)
                store(pr + c, load(pr + c) + load(b + c));
            for (; c < cols; c++)
                pr[c] += b[c];
        }
        act_k(post, pre, rows * cols, act);
        return;
    }
    float bext[BIAS_EXT_MAX];
    for (size_t j = 0; j < cols + SIMD_W; j++)
        bext[j] = b[j % cols];
    switch (act) {
    case NN_ACT_RELU: BIAS_ACT(pre, post, bext, rows, cols, relu_v); break;
    case NN_ACT_TANH: BIAS_ACT(pre, post, bext, rows, cols, tanh_v); break;
    case NN_ACT_ELU: BIAS_ACT(pre, post, bext, rows, cols, elu_v); break;
    case NN_ACT_GELU: BIAS_ACT(pre, post, bext, rows, cols, gelu_v); break;
    default: BIAS_ACT(pre, post, bext, rows, cols, identity_v); break;
    }
}

/* out = (out + b) + inp row by row: a residual block's output after its
 * last sgemm, in the order of a bias fill, the sgemm and the residual add. */
static void bias_add(float *out, const float *inp, const float *b, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        float *o = out + r * cols;
        const float *x = inp + r * cols;
        size_t c = 0;
        for (; c + SIMD_W <= cols; c += SIMD_W)
            store(o + c, (load(o + c) + load(b + c)) + load(x + c));
        for (; c < cols; c++)
            o[c] = (o[c] + b[c]) + x[c];
    }
}

/* ---- feature-major linear layer (simd_linear_fm) ----------------------------------- */

/* Register blocking: FM_R output features by FM_C vectors of rows, all
 * accumulators in registers (AVX-512's 32: 20 accumulators, 4 inputs and a
 * broadcast; AVX2's and SSE2's 16: 10, 2 and 1).  Each k loads FM_C input
 * vectors and FM_R weights for FM_R * FM_C multiply-adds. */
#define FM_R 5
#if SIMD_W >= 16
#define FM_C 4
#else
#define FM_C 2
#endif


/* Features [u, u + R) of rows [c0, c0 + C SIMD_W): the sums into pre (or
 * post), then the activation: ReLU (the flows' default) in registers, the
 * others over the block while it is in L1.  R, C and relu are constants
 * where this is inlined, so the loops unroll and acc stays in registers. */
static inline __attribute__((always_inline)) void fm_block(
    int R, int C, int relu, float *pre, float *post, const float *res, const float *in,
    const float *w, size_t ldw, const float *b, size_t fi, size_t ld, size_t u, size_t c0,
    int act)
{
    vf acc[FM_R][FM_C];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            acc[r][c] = bcast(b[u + r]);
    for (size_t k = 0; k < fi; k++) {
        vf x[FM_C];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            x[c] = load(in + k * ld + c0 + (size_t)c * SIMD_W);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const vf wk = bcast(w[(u + r) * ldw + k]);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                acc[r][c] = SIMD_FMA(wk, x[c], acc[r][c]);
        }
    }
    float *dst = pre ? pre : post;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const size_t o = (u + r) * ld + c0 + (size_t)c * SIMD_W;
            vf v = acc[r][c];
            if (res)
                v = load(res + o) + v;
            if (pre)
                store(pre + o, v);
            if (relu && post)
                store(post + o, relu_v(v));
            else if (!pre)
                store(post + o, v);
        }
    if (post && !relu)
        for (int r = 0; r < R; r++) {
            const size_t o = (u + r) * ld + c0;
            act_k(post + o, dst + o, (size_t)C * SIMD_W, act);
        }
}

/* The features of rows [c0, c0 + C SIMD_W) (C a constant where inlined):
 * FM_R at a time, then the last fo mod FM_R in one block. */
static inline __attribute__((always_inline)) void fm_panel(
    int C, int relu, float *pre, float *post, const float *res, const float *in, const float *w,
    size_t ldw, const float *b, size_t fo, size_t fi, size_t ld, size_t c0, int act)
{
    size_t u = 0;
    for (; u + FM_R <= fo; u += FM_R)
        fm_block(FM_R, C, relu, pre, post, res, in, w, ldw, b, fi, ld, u, c0, act);
    switch (fo - u) {
    case 4: fm_block(4, C, relu, pre, post, res, in, w, ldw, b, fi, ld, u, c0, act); break;
    case 3: fm_block(3, C, relu, pre, post, res, in, w, ldw, b, fi, ld, u, c0, act); break;
    case 2: fm_block(2, C, relu, pre, post, res, in, w, ldw, b, fi, ld, u, c0, act); break;
    case 1: fm_block(1, C, relu, pre, post, res, in, w, ldw, b, fi, ld, u, c0, act); break;
    default: break;
    }
}

static void linear_fm(float *pre, float *post, const float *res, const float *in,
                      const float *w, size_t ldw, const float *b, size_t fo, size_t fi,
                      size_t n, size_t ld, int act)
{
    const size_t n_pad = (n + SIMD_FM_PAD - 1) / SIMD_FM_PAD * SIMD_FM_PAD, panel = (size_t)FM_C * SIMD_W;
    size_t c0 = 0;
    if (act == NN_ACT_RELU) {
        for (; c0 + panel <= n_pad; c0 += panel)
            fm_panel(FM_C, 1, pre, post, res, in, w, ldw, b, fo, fi, ld, c0, act);
        for (; c0 < n_pad; c0 += SIMD_W)
            fm_panel(1, 1, pre, post, res, in, w, ldw, b, fo, fi, ld, c0, act);
        return;
    }
    for (; c0 + panel <= n_pad; c0 += panel)
        fm_panel(FM_C, 0, pre, post, res, in, w, ldw, b, fo, fi, ld, c0, act);
    for (; c0 < n_pad; c0 += SIMD_W)
        fm_panel(1, 0, pre, post, res, in, w, ldw, b, fo, fi, ld, c0, act);
}

/* ---- sums and updates -------------------------------------------------------------- */

static void add(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + SIMD_W <= n; i += SIMD_W)
        store(y + i, load(y + i) + load(x + i));
    for (; i < n; i++)
        y[i] += x[i];
}

/* y[c] += sum_r x[r, c] over rows r = 0, 1, ... in order (a bias gradient):
 * a vector of columns stays in registers while the rows stream past. */
static void col_sums_add(float *y, const float *x, size_t rows, size_t cols)
{
    size_t c = 0;
    for (; c + SIMD_W <= cols; c += SIMD_W) {
        vf acc = load(y + c);
        for (size_t r = 0; r < rows; r++)
            acc += load(x + r * cols + c);
        store(y + c, acc);
    }
    for (; c < cols; c++) {
        float acc = y[c];
        for (size_t r = 0; r < rows; r++)
            acc += x[r * cols + c];
        y[c] = acc;
    }
}

/* Every row of y [rows, cols] set to b [cols] (a bias before an sgemm adds
 * onto it): the first row, then the filled part copied onto the rest in
 * doubling blocks, so that even narrow rows cost long copies, not a call or
 * a short loop per row. */
static void fill_rows(float *y, const float *b, size_t rows, size_t cols)
{
    if (rows == 0 || cols == 0)
        return;
    memcpy(y, b, cols * sizeof *y);
    for (size_t done = 1; done < rows;) {
        const size_t k = done < rows - done ? done : rows - done;
        memcpy(y + done * cols, y, k * cols * sizeof *y);
        done += k;
    }
}

static void scale_k(float *y, float s, size_t n)
{
    size_t i = 0;
    for (; i + SIMD_W <= n; i += SIMD_W)
        store(y + i, load(y + i) * s);
    for (; i < n; i++)
        y[i] *= s;
}

/* 16 consecutive floats squared into the 16 double partial sums (element j of
 * the block into lane j of acc seen as one array). */
static inline void sumsq_block(vd *acc, const float *p)
{
    for (int k = 0; k < 16 / SIMD_WD; k++) {
        vfh h;
        memcpy(&h, p + k * SIMD_WD, sizeof h);
        const vd d = __builtin_convertvector(h, vd);
        acc[k] += d * d;
    }
}

static double sum_squares(const float *x, size_t n)
{
    vd acc[16 / SIMD_WD];
    for (int k = 0; k < 16 / SIMD_WD; k++)
        acc[k] = splat_d(0.0);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        sumsq_block(acc, x + i);
    if (i < n) {
        float blk[16] = {0};
        memcpy(blk, x + i, (n - i) * sizeof *x);
        sumsq_block(acc, blk);
    }
    double lanes[16];
    memcpy(lanes, acc, sizeof lanes);
    double s = 0.0;
    for (int j = 0; j < 16; j++)
        s += lanes[j];
    return s;
}

/* The operations and their order are those of the scalar formula in
 * simd_adam_coef's comment, so every set gives the same bits. */
static inline void adam_v(vf *p, vf g0, vf *m, vf *v, const simd_adam_coef *c)
{
    const vf g = g0 + c->l2 * *p;
    *m = c->beta1 * *m + (1.0f - c->beta1) * g;
    *v = c->beta2 * *v + (1.0f - c->beta2) * g * g;
    const vf denom = SIMD_SQRT(*v) * c->inv_sqrt_bc2 + c->eps;
    *p = *p * c->decay - c->step_size * *m / denom;
}

static void adam(float *params, const float *grads, float *m, float *v, size_t n,
                 const simd_adam_coef *c)
{
    size_t i = 0;
    for (; i + SIMD_W <= n; i += SIMD_W) {
        vf P = load(params + i), M = load(m + i), V = load(v + i);
        adam_v(&P, load(grads + i), &M, &V, c);
        store(params + i, P);
        store(m + i, M);
        store(v + i, V);
    }
    for (; i < n; i++) {
        const float g = grads[i] + c->l2 * params[i];
        m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * g;
        v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * g * g;
        const float denom = sqrtf(v[i]) * c->inv_sqrt_bc2 + c->eps;
        params[i] = params[i] * c->decay - c->step_size * m[i] / denom;
    }
}

static void exp_d(double *out, const double *in, size_t n)
{
    size_t i = 0;
    for (; i + SIMD_WD <= n; i += SIMD_WD) {
        const vd y = exp_vd(load_d(in + i));
        memcpy(out + i, &y, sizeof y);
    }
    if (i < n) {
        const vd y = exp_vd(load_part_d(in + i, n - i));
        memcpy(out + i, &y, (n - i) * sizeof *out);
    }
}

static void log_d(double *out, const double *in, size_t n)
{
    size_t i = 0;
    for (; i + SIMD_WD <= n; i += SIMD_WD) {
        const vd y = log_vd(load_d(in + i));
        memcpy(out + i, &y, sizeof y);
    }
    if (i < n) {
        /* Padding with 1 (log 1 = 0), not 0 (-inf): nothing odd in the unused lanes. */
        double t[SIMD_WD];
        for (size_t l = 0; l < SIMD_WD; l++)
            t[l] = i + l < n ? in[i + l] : 1.0;
        vd v;
        memcpy(&v, t, sizeof v);
        const vd y = log_vd(v);
        memcpy(t, &y, sizeof y);
        for (size_t l = 0; i + l < n; l++)
            out[i + l] = t[l];
    }
}

static void softplus_d(double *out, double *sigmoid, const double *in, size_t n)
{
    for (size_t i = 0; i < n; i += SIMD_WD) {
        const size_t k = n - i < SIMD_WD ? n - i : SIMD_WD;
        double t[SIMD_WD] = {0};
        for (size_t l = 0; l < k; l++)
            t[l] = in[i + l];
        vd v, sg;
        memcpy(&v, t, sizeof v);
        const vd y = softplus_vd(v, &sg);
        memcpy(t, &y, sizeof y);
        for (size_t l = 0; l < k; l++)
            out[i + l] = t[l];
        if (sigmoid) {
            memcpy(t, &sg, sizeof sg);
            for (size_t l = 0; l < k; l++)
                sigmoid[i + l] = t[l];
        }
    }
}

const simd_kernels SIMD_TABLE = {
    .name = SIMD_NAME,
    .relu = relu,
    .relu_grad = relu_grad,
    .tanh = tanh_k,
    .tanh_grad = tanh_grad,
    .elu = elu,
    .elu_grad = elu_grad,
    .gelu = gelu,
    .gelu_grad = gelu_grad,
    .add = add,
    .col_sums_add = col_sums_add,
    .fill_rows = fill_rows,
    .bias_act = bias_act,
    .bias_add = bias_add,
    .linear_fm = linear_fm,
    .scale = scale_k,
    .sum_squares = sum_squares,
    .adam = adam,
    .exp_d = exp_d,
    .log_d = log_d,
    .softplus_d = softplus_d,
};
