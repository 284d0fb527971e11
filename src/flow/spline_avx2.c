/* spline_avx2.c — spline.h's batch forms for AVX2 (4 doubles per vector);
 * used when nn/simd.h's kernels use AVX2.  No FMA: the same bits as the
 * baseline set. */
#include "nn/simd.h"

#if SIMD_X86_SETS
#include <immintrin.h>
#pragma GCC target("avx2")
#define SIMD_SQRT_D(v) ((vd)_mm256_sqrt_pd((__m256d)(v)))
#define SIMD_SQRT(v) ((vf)_mm256_sqrt_ps((__m256)(v)))
#define SIMD_W 8
#define SPLINE_TABLE spline_kernels_avx2
#include "flow/spline_impl.h"
#else
typedef int spline_avx2_unused; /* ISO C wants a declaration in every file */
#endif
