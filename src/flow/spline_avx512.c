/* spline_avx512.c — spline.h's batch forms for AVX-512F (8 doubles per
 * vector); used when nn/simd.h's kernels use AVX-512F.  No FMA: the same
 * bits as the baseline set. */
#include "nn/simd.h"

#if SIMD_X86_SETS
#include <immintrin.h>
#pragma GCC target("avx512f")
#define SIMD_SQRT_D(v) ((vd)_mm512_sqrt_pd((__m512d)(v)))
#define SIMD_SQRT(v) ((vf)_mm512_sqrt_ps((__m512)(v)))
#define SIMD_W 16
#define SPLINE_TABLE spline_kernels_avx512
#include "flow/spline_impl.h"
#else
typedef int spline_avx512_unused; /* ISO C wants a declaration in every file */
#endif
