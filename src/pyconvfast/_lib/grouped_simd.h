/* The grouped kernel's inner loops (grouped_simd_impl.h), compiled for several x86 instruction
   sets and chosen at run time: the build has no -march flag, so the wheel runs on any x86-64 CPU
   (SSE2 at the baseline) and uses AVX2 + FMA or AVX-512F where the CPU has them.

   With GCC or Clang on x86 the register tiles are instantiated three times through function-level
   target attributes: baseline (16-byte vectors, 4 x 3 tile), AVX2 + FMA (32-byte, 4 x 3) and
   AVX-512F (64-byte, 4 x 6; 32 registers). pcf_gr_set_level picks one instantiation for the
   process (the best the CPU has, at import). Other compilers get the baseline loops only.

   The gather that lowers the input (pcf_gr_gather_*) is plain C at the baseline: it is copies:
   plain loops (short runs: a memcpy call would cost more than the copy). */
#ifndef PYCONVFAST_GROUPED_SIMD_H
#define PYCONVFAST_GROUPED_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Output channels per register tile; the weights are packed in blocks of this many. */
#define GR_MR 4

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define GR_X86_DISPATCH 1
#if defined(__clang__)
#define GR_TARGET_AVX512 __attribute__((target("avx512f,fma"), min_vector_width(512)))
#else
#define GR_TARGET_AVX512 __attribute__((target("avx512f,fma,prefer-vector-width=512")))
#endif
#define GR_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

#define GR_TARGET
#define GR_VBYTES 16
#define GR_NV 3
#define GR_T float
#define GR_NAME(base) pcf_gr_##base##_f32_base
#include "grouped_simd_impl.h"
#undef GR_T
#undef GR_NAME
#define GR_T double
#define GR_NAME(base) pcf_gr_##base##_f64_base
#include "grouped_simd_impl.h"
#undef GR_T
#undef GR_NAME
#undef GR_TARGET
#undef GR_VBYTES
#undef GR_NV

#ifdef GR_X86_DISPATCH
#define GR_TARGET GR_TARGET_AVX2
#define GR_VBYTES 32
#define GR_NV 3
#define GR_T float
#define GR_NAME(base) pcf_gr_##base##_f32_avx2
#include "grouped_simd_impl.h"
#undef GR_T
#undef GR_NAME
#define GR_T double
#define GR_NAME(base) pcf_gr_##base##_f64_avx2
#include "grouped_simd_impl.h"
#undef GR_T
#undef GR_NAME
#undef GR_TARGET
#undef GR_VBYTES
#undef GR_NV

#define GR_TARGET GR_TARGET_AVX512
#define GR_VBYTES 64
#define GR_NV 6
#define GR_T float
#define GR_NAME(base) pcf_gr_##base##_f32_avx512
#include "grouped_simd_impl.h"
#undef GR_T
#undef GR_NAME
#define GR_T double
#define GR_NAME(base) pcf_gr_##base##_f64_avx512
#include "grouped_simd_impl.h"
#undef GR_T
#undef GR_NAME
#undef GR_TARGET
#undef GR_VBYTES
#undef GR_NV
#endif

typedef void (*pcf_gr_gemm_f32_t)(const float*, Py_ssize_t, Py_ssize_t, const float* const*,
                                  Py_ssize_t, float*, Py_ssize_t);
typedef void (*pcf_gr_gemm_f64_t)(const double*, Py_ssize_t, Py_ssize_t, const double* const*,
                                  Py_ssize_t, double*, Py_ssize_t);
static pcf_gr_gemm_f32_t pcf_gr_gemm_f32_impl = pcf_gr_gemm_f32_base;
static pcf_gr_gemm_f64_t pcf_gr_gemm_f64_impl = pcf_gr_gemm_f64_base;
static int pcf_gr_level = 0;

/* 0: baseline, 1: AVX2 + FMA, 2: AVX-512F; the best this CPU (and OS) runs. */
static int pcf_gr_max_level(void)
{
#ifdef GR_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* Use `level` (clamped to what the CPU has) from now on; returns the level set. Not meant to be
   called while a convolution runs. */
static int pcf_gr_set_level(int level)
{
    int best = pcf_gr_max_level();
    if (level > best) level = best;
    if (level < 0) level = 0;
    pcf_gr_gemm_f32_impl = pcf_gr_gemm_f32_base;
    pcf_gr_gemm_f64_impl = pcf_gr_gemm_f64_base;
#ifdef GR_X86_DISPATCH
    if (level == 1) {
        pcf_gr_gemm_f32_impl = pcf_gr_gemm_f32_avx2;
        pcf_gr_gemm_f64_impl = pcf_gr_gemm_f64_avx2;
    } else if (level == 2) {
        pcf_gr_gemm_f32_impl = pcf_gr_gemm_f32_avx512;
        pcf_gr_gemm_f64_impl = pcf_gr_gemm_f64_avx512;
    }
#endif
    pcf_gr_level = level;
    return level;
}

static int pcf_gr_get_level(void) { return pcf_gr_level; }

static void pcf_gr_gemm_f32(const float* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                            const float* const* rows, Py_ssize_t n_pix, float* c, Py_ssize_t ldc)
{
    pcf_gr_gemm_f32_impl(w, k_blocks, depth, rows, n_pix, c, ldc);
}

static void pcf_gr_gemm_f64(const double* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                            const double* const* rows, Py_ssize_t n_pix, double* c,
                            Py_ssize_t ldc)
{
    pcf_gr_gemm_f64_impl(w, k_blocks, depth, rows, n_pix, c, ldc);
}

/* dst[j] = the input sample output column a + j reads at W tap kw, for j in [0, b - a): through
   the W tap table (taps[ow * kw_size + kw], -1 for a zero) at the border columns, and as a run
   of stride `step` elements from x_row + (ow * stride - pad + kw * dilation) * x_sw, without
   the table, for the interior columns [lo, hi) (every tap in range). */
#define GR_GATHER(T, S)                                                                           \
    static inline void pcf_gr_gather_##S(T* __restrict dst, const T* __restrict x_row, Py_ssize_t x_sw,  \
                                  const Py_ssize_t* taps, Py_ssize_t kw_size, Py_ssize_t kw,         \
                                  Py_ssize_t a, Py_ssize_t b, Py_ssize_t lo, Py_ssize_t hi,       \
                                  Py_ssize_t stride, Py_ssize_t offset)                           \
    {                                                                                             \
        Py_ssize_t ow, j, n, i_w, in_lo = a > lo ? a : lo, in_hi = b < hi ? b : hi;               \
        if (in_hi < in_lo) in_hi = in_lo;                                                         \
        for (ow = a; ow < b && ow < in_lo; ow++) {                                                \
            i_w = taps[ow * kw_size + kw];                                                        \
            dst[ow - a] = i_w >= 0 ? x_row[i_w * x_sw] : (T)0;                                    \
        }                                                                                         \
        n = in_hi - in_lo;                                                                        \
        if (n > 0) {                                                                              \
            const T* src = x_row + (in_lo * stride + offset) * x_sw;                              \
            T* out = dst + (in_lo - a);                                                           \
            Py_ssize_t step = stride * x_sw;                                                      \
            if (step == 1) for (j = 0; j < n; j++) out[j] = src[j];                               \
            else if (step == 2) for (j = 0; j < n; j++) out[j] = src[2 * j];                      \
            else for (j = 0; j < n; j++) out[j] = src[j * step];                                  \
        }                                                                                         \
        for (ow = in_hi > a ? in_hi : a; ow < b; ow++) {                                          \
            i_w = taps[ow * kw_size + kw];                                                        \
            dst[ow - a] = i_w >= 0 ? x_row[i_w * x_sw] : (T)0;                                    \
        }                                                                                         \
    }
GR_GATHER(float, f32)
GR_GATHER(double, f64)

#endif
