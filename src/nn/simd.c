/* simd.c — picks the instruction set of the simd.h kernels and forwards each
 * call to its table (simd_base.c, simd_avx2.c, simd_avx512.c). */
#include "nn/simd.h"

#include <stdatomic.h>

extern const simd_kernels simd_kernels_base;
#if SIMD_X86_SETS
extern const simd_kernels simd_kernels_avx2;
extern const simd_kernels simd_kernels_avx512;
#endif

/* The table in use; NULL until the first call.  Atomic because training and
 * serving threads may make that first call together (they all store the same
 * table, so whoever wins is right). */
static _Atomic(const simd_kernels *) g_active;

static const simd_kernels *table_of(simd_isa isa)
{
    switch (isa) {
#if SIMD_X86_SETS
    case SIMD_AVX512: return &simd_kernels_avx512;
    case SIMD_AVX2: return &simd_kernels_avx2;
#endif
    case SIMD_BASE: return &simd_kernels_base;
    default: return NULL;
    }
}

int simd_isa_supported(simd_isa isa)
{
    switch (isa) {
    case SIMD_BASE: return 1;
#if SIMD_X86_SETS
    /* libgcc's CPU model also checks that the OS saves the wide registers. */
    case SIMD_AVX2: /* simd_linear_fm needs FMA too (every AVX2 CPU has it) */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SIMD_AVX512: __builtin_cpu_init(); return __builtin_cpu_supports("avx512f") != 0;
#endif
    default: return 0;
    }
}

static const simd_kernels *kernels(void)
{
    const simd_kernels *k = atomic_load_explicit(&g_active, memory_order_acquire);
    if (k)
        return k;
    simd_isa best = SIMD_BASE;
    for (int i = SIMD_ISA_COUNT - 1; i > SIMD_BASE; i--)
        if (simd_isa_supported((simd_isa)i)) {
            best = (simd_isa)i;
            break;
        }
    k = table_of(best);
    atomic_store_explicit(&g_active, k, memory_order_release);
    return k;
}

simd_isa simd_isa_active(void)
{
    const simd_kernels *k = kernels();
    for (int i = 0; i < SIMD_ISA_COUNT; i++)
        if (table_of((simd_isa)i) == k)
            return (simd_isa)i;
    return SIMD_BASE;
}

const char *simd_isa_name(simd_isa isa)
{
    const simd_kernels *k = table_of(isa);
    return k ? k->name : "?";
}

int simd_isa_force(simd_isa isa)
{
    if (!simd_isa_supported(isa))
        return -1;
    atomic_store_explicit(&g_active, table_of(isa), memory_order_release);
    return 0;
}

void simd_relu(float *out, const float *in, size_t n) { kernels()->relu(out, in, n); }
void simd_relu_grad(float *dinp, const float *in, const float *dout, size_t n) { kernels()->relu_grad(dinp, in, dout, n); }
void simd_tanh(float *out, const float *in, size_t n) { kernels()->tanh(out, in, n); }
void simd_tanh_grad(float *dinp, const float *in, const float *dout, size_t n) { kernels()->tanh_grad(dinp, in, dout, n); }
void simd_elu(float *out, const float *in, size_t n) { kernels()->elu(out, in, n); }
void simd_elu_grad(float *dinp, const float *in, const float *dout, size_t n) { kernels()->elu_grad(dinp, in, dout, n); }
void simd_gelu(float *out, const float *in, size_t n) { kernels()->gelu(out, in, n); }
void simd_gelu_grad(float *dinp, const float *in, const float *dout, size_t n) { kernels()->gelu_grad(dinp, in, dout, n); }
void simd_add(float *y, const float *x, size_t n) { kernels()->add(y, x, n); }
void simd_col_sums_add(float *y, const float *x, size_t rows, size_t cols) { kernels()->col_sums_add(y, x, rows, cols); }
void simd_fill_rows(float *y, const float *b, size_t rows, size_t cols) { kernels()->fill_rows(y, b, rows, cols); }
void simd_bias_act(float *pre, float *post, const float *b, size_t rows, size_t cols, nn_act act) { kernels()->bias_act(pre, post, b, rows, cols, (int)act); }
void simd_bias_add(float *out, const float *inp, const float *b, size_t rows, size_t cols) { kernels()->bias_add(out, inp, b, rows, cols); }
void simd_linear_fm(float *pre, float *post, const float *res, const float *in, const float *w, size_t ldw, const float *b, size_t fo, size_t fi, size_t n, size_t ld, nn_act act) { kernels()->linear_fm(pre, post, res, in, w, ldw, b, fo, fi, n, ld, (int)act); }
void simd_scale(float *y, float s, size_t n) { kernels()->scale(y, s, n); }
double simd_sum_squares(const float *x, size_t n) { return kernels()->sum_squares(x, n); }
void simd_exp_d(double *out, const double *in, size_t n) { kernels()->exp_d(out, in, n); }
void simd_log_d(double *out, const double *in, size_t n) { kernels()->log_d(out, in, n); }
void simd_softplus_d(double *out, double *sigmoid, const double *in, size_t n) { kernels()->softplus_d(out, sigmoid, in, n); }

void simd_adam(float *params, const float *grads, float *m, float *v, size_t n,
               const simd_adam_coef *c)
{
    kernels()->adam(params, grads, m, v, n, c);
}
