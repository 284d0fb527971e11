/* simd_base.c — the kernels of simd.h for the baseline instruction set: SSE2
 * on x86-64 (every x86-64 CPU has it), the target's 4-lane vectors elsewhere. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define SIMD_SQRT(v) ((vf)_mm_sqrt_ps((__m128)(v)))
#define SIMD_SQRT_D(v) ((vd)_mm_sqrt_pd((__m128d)(v)))
#define SIMD_NAME "sse2"
#else
#define SIMD_NAME "generic"
#endif
#define SIMD_W 4
#define SIMD_TABLE simd_kernels_base
#include "nn/simd_impl.h"
