/* simd_avx512.c — the kernels of simd.h for AVX-512F (16 floats per vector);
 * simd.c calls them only when the CPU has AVX-512F.  FMA only where simd.h
 * says so (simd_linear_fm, whose baseline form uses fmaf): the results are
 * those of the baseline set, bit for bit. */
#include "nn/simd.h"

#if SIMD_X86_SETS
#include <immintrin.h>
#pragma GCC target("avx512f")
#define SIMD_FMA(a, b, c) ((vf)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define SIMD_SQRT(v) ((vf)_mm512_sqrt_ps((__m512)(v)))
#define SIMD_SQRT_D(v) ((vd)_mm512_sqrt_pd((__m512d)(v)))
#define SIMD_NAME "avx512f"
#define SIMD_W 16
#define SIMD_TABLE simd_kernels_avx512
#include "nn/simd_impl.h"
#else
typedef int simd_avx512_unused; /* ISO C wants a declaration in every file */
#endif
