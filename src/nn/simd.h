/* simd.h — the elementwise kernels under nn.h and flow.h (activations and
 * their derivatives, bias passes, Adam, sums of squares, exp/log/softplus in
 * double), vectorised for the widest vector unit of the CPU that runs them.
 *
 * One C implementation (simd_impl.h on simd_vec.h, written with GCC vector
 * extensions) is compiled three times on x86-64: for the baseline SSE2 (4
 * floats per vector), AVX2 (8) and AVX-512F (16); elsewhere only the
 * baseline, with the target's own 4-lane vectors (or scalar code where it
 * has none).  The first call picks the widest set the CPU supports; the
 * binary runs on any x86-64 (no global -march).
 *
 * Determinism: every lane does the same IEEE operations in the same order
 * whatever the set (no FMA but simd_linear_fm's, whose baseline form calls
 * the exact fmaf: -std=c11 implies -ffp-contract=off, and nothing
 * here uses approximate reciprocals; division and sqrt are correctly
 * rounded), and the tail of an array goes through the same vector code,
 * zero-padded (or, for kernels of single IEEE operations per element,
 * through the same operation in scalar code).  So an element's result
 * depends only on its inputs, not on the instruction set, the array length
 * or its position, and simd_sum_squares uses 16 partial sums (element i into
 * sum i mod 16) whatever the width.  Same binary, any CPU: same bits from
 * these kernels (OpenBLAS's sgemm may still differ between CPUs).
 *
 * Approximations (ppxd's own; maximum errors measured by tests/test_nn.c and,
 * for the float ones, over every float input during development):
 *   tanh     <= 3 ulp (2.52 measured); exactly +-1 from |x| >= 9.0109 (where
 *            tanhf becomes +-1), tanh(+-0) = +-0, tanh(+-inf) = +-1, NaN ->
 *            NaN;
 *   expm1    (ELU, x <= 0) <= 2 ulp (1.16), and exp (ELU's derivative)
 *            <= 2 ulp (1.05), 0 below -87.3 where exp is subnormal;
 *   double:  exp <= 2 ulp (1.0), log <= 1 ulp, softplus <= 3 ulp, sigmoid
 *            <= 2 ulp, against libm.
 * ReLU is exact and keeps the semantics of x > 0 ? x : 0 (NaN -> +0,
 * -0 -> +0); Adam does exactly the float operations of nn_adam_step's
 * documented formula.
 *
 * Internal to src/nn, src/flow and src/ic; nn.h is the public interface.  Every
 * array is n elements; out may alias in for the one-input kernels; the
 * _grad kernels ACCUMULATE into dinp (nn.h's backward convention), which
 * must not alias the other arrays.
 */
#ifndef PPX_NN_SIMD_H
#define PPX_NN_SIMD_H

#include <stddef.h>

#include "nn/nn.h"

typedef enum simd_isa {
    SIMD_BASE = 0,   /* SSE2 on x86-64; the target's 4-lane vectors elsewhere */
    SIMD_AVX2 = 1,
    SIMD_AVX512 = 2  /* AVX-512F */
} simd_isa;
#define SIMD_ISA_COUNT 3

/* The set in use (chosen at the first kernel call). */
simd_isa simd_isa_active(void);
const char *simd_isa_name(simd_isa isa);
/* 1 when this binary has code for isa and the CPU can run it. */
int simd_isa_supported(simd_isa isa);
/* Use isa from now on, process-wide (tests and benchmarks compare the sets).
 * 0, or -1 (nothing changed) when !simd_isa_supported(isa). */
int simd_isa_force(simd_isa isa);

/* out = in > 0 ? in : +0. */
void simd_relu(float *out, const float *in, size_t n);
/* dinp += in > 0 ? dout : +0. */
void simd_relu_grad(float *dinp, const float *in, const float *dout, size_t n);
/* out = tanh(in). */
void simd_tanh(float *out, const float *in, size_t n);
/* dinp += (1 - tanh(in)^2) dout, as (1 - t)(1 + t) (no cancellation near |t| = 1). */
void simd_tanh_grad(float *dinp, const float *in, const float *dout, size_t n);
/* ELU (alpha 1): out = in > 0 ? in : expm1(in). */
void simd_elu(float *out, const float *in, size_t n);
/* dinp += (in > 0 ? 1 : exp(in)) dout. */
void simd_elu_grad(float *dinp, const float *in, const float *dout, size_t n);
/* GELU, tanh form (nn.h). */
void simd_gelu(float *out, const float *in, size_t n);
void simd_gelu_grad(float *dinp, const float *in, const float *dout, size_t n);

/* y += x. */
void simd_add(float *y, const float *x, size_t n);
/* y[c] += sum over r of x[r * cols + c] (x [rows, cols]), rows added in order. */
void simd_col_sums_add(float *y, const float *x, size_t rows, size_t cols);
/* y[r * cols + c] = b[c] for every row r < rows. */
void simd_fill_rows(float *y, const float *b, size_t rows, size_t cols);
/* For [rows, cols] arrays after an sgemm without bias: pre[r, c] += b[c],
 * then post[r, c] = act(pre[r, c]) (act an nn_act; post may be pre). */
void simd_bias_act(float *pre, float *post, const float *b, size_t rows, size_t cols, nn_act act);
/* out[r, c] = (out[r, c] + b[c]) + inp[r, c]. */
void simd_bias_add(float *out, const float *inp, const float *b, size_t rows, size_t cols);
/* A linear layer on feature-major activations (feature i of row r at
 * a[i * ld + r]; sampling's networks, whose rows share nothing):
 *     pre[u, r] = res[u, r] + (b[u] + w[u, 0] in[0, r] + ... + w[u, fi-1] in[fi-1, r])
 * for u < fo, the sum a chain of fused multiply-adds in that order (each
 * term rounded once; res[u, r] + only when res != NULL), and, when post !=
 * NULL, post[u, r] = act(pre[u, r]); pre may be NULL when only post is
 * wanted.  w [fo, ldw] row-major (ldw >= fi).  Rows r < n are computed in
 * whole groups of 16: every array is read or written at columns up to
 * round_up(n, 16) - 1, which must be < ld, and the extra columns' results
 * are whatever their inputs make them (no trap: float arithmetic).  res
 * may be pre (in place); in and post alias nothing else.  With every
 * operation fused or exact, each set gives the same bits. */
void simd_linear_fm(float *pre, float *post, const float *res, const float *in, const float *w,
                    size_t ldw, const float *b, size_t fo, size_t fi, size_t n, size_t ld,
                    nn_act act);
#define SIMD_FM_PAD 16
/* y *= s. */
void simd_scale(float *y, float s, size_t n);
/* sum x[i]^2 in double: 16 partial sums (i mod 16), added in order at the end. */
double simd_sum_squares(const float *x, size_t n);

/* One Adam step with the step's constants precomputed (see nn_adam_step):
 *     g = grad + l2 p;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
 *     p = p decay - step_size m / (sqrt(v) inv_sqrt_bc2 + eps). */
typedef struct simd_adam_coef {
    float beta1, beta2, eps, l2, decay, step_size, inv_sqrt_bc2;
} simd_adam_coef;
void simd_adam(float *params, const float *grads, float *m, float *v, size_t n,
               const simd_adam_coef *c);

/* out = exp(in), double: inputs above ~709.78 give +inf, below ~-745.1 give
 * 0 (subnormal results rounded once), NaN gives NaN. */
void simd_exp_d(double *out, const double *in, size_t n);
/* out = log(in), double, subnormal inputs included: 0 -> -inf, negative ->
 * NaN, +inf -> +inf. */
void simd_log_d(double *out, const double *in, size_t n);
/* out = softplus(in) = log(1 + exp(in)) and, when sigmoid != NULL, sigmoid =
 * 1 / (1 + exp(-in)) (softplus's derivative), double, without overflow for
 * any input.  out may alias in. */
void simd_softplus_d(double *out, double *sigmoid, const double *in, size_t n);

/* ---- for simd*.c only ----------------------------------------------------- */

/* AVX2 and AVX-512 code needs GCC's #pragma GCC target on x86-64. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIMD_X86_SETS 1
#else
#define SIMD_X86_SETS 0
#endif

/* The kernels of one instruction set (simd_impl.h fills one per set). */
typedef struct simd_kernels {
    const char *name;
    void (*relu)(float *, const float *, size_t);
    void (*relu_grad)(float *, const float *, const float *, size_t);
    void (*tanh)(float *, const float *, size_t);
    void (*tanh_grad)(float *, const float *, const float *, size_t);
    void (*elu)(float *, const float *, size_t);
    void (*elu_grad)(float *, const float *, const float *, size_t);
    void (*gelu)(float *, const float *, size_t);
    void (*gelu_grad)(float *, const float *, const float *, size_t);
    void (*add)(float *, const float *, size_t);
    void (*col_sums_add)(float *, const float *, size_t, size_t);
    void (*fill_rows)(float *, const float *, size_t, size_t);
    void (*bias_act)(float *, float *, const float *, size_t, size_t, int);
    void (*bias_add)(float *, const float *, const float *, size_t, size_t);
    void (*linear_fm)(float *, float *, const float *, const float *, const float *, size_t,
                      const float *, size_t, size_t, size_t, size_t, int);
    void (*scale)(float *, float, size_t);
    double (*sum_squares)(const float *, size_t);
    void (*adam)(float *, const float *, float *, float *, size_t, const simd_adam_coef *);
    void (*exp_d)(double *, const double *, size_t);
    void (*log_d)(double *, const double *, size_t);
    void (*softplus_d)(double *, double *, const double *, size_t);
} simd_kernels;

#endif
