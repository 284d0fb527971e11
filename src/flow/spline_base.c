/* spline_base.c — spline.h's batch forms for the baseline instruction set:
 * SSE2 on x86-64, the target's vectors elsewhere (see nn/simd.h). */
#if defined(__SSE2__)
#include <emmintrin.h>
#define SIMD_SQRT_D(v) ((vd)_mm_sqrt_pd((__m128d)(v)))
#define SIMD_SQRT(v) ((vf)_mm_sqrt_ps((__m128)(v)))
#endif
#define SIMD_W 4
#define SPLINE_TABLE spline_kernels_base
#include "flow/spline_impl.h"
