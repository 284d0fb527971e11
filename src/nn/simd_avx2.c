/* simd_avx2.c — the kernels of simd.h for AVX2 (8 floats per vector); simd.c
 * calls them only when the CPU has AVX2 and FMA.  FMA only where simd.h says
 * so (simd_linear_fm, whose baseline form uses fmaf): the results are those of
 * the baseline set, bit for bit. */
#include "nn/simd.h"

#if SIMD_X86_SETS
#include <immintrin.h>
#pragma GCC target("avx2,fma")
#define SIMD_FMA(a, b, c) ((vf)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define SIMD_SQRT(v) ((vf)_mm256_sqrt_ps((__m256)(v)))
#define SIMD_SQRT_D(v) ((vd)_mm256_sqrt_pd((__m256d)(v)))
#define SIMD_NAME "avx2"
#define SIMD_W 8
#define SIMD_TABLE simd_kernels_avx2
#include "nn/simd_impl.h"
#else
typedef int simd_avx2_unused; /* ISO C wants a declaration in every file */
#endif
