/* The depthwise kernel's inner loops, compiled for several x86 instruction sets and chosen at
   run time (the build has no -march flag, so the wheel runs on any x86-64 CPU).

   depthwise_simd_impl.h is instantiated for float and double, for the baseline of the build
   (SSE2 on x86-64, whatever the target is elsewhere) and, with GCC or Clang on x86, for AVX2
   and AVX-512F through function-level target attributes. pcf_dw_set_level picks one
   instantiation for the process (the best the CPU has, at import); the calls below go through
   that table. Because the extension is built with -ffp-contract=off, every level computes the
   same operations in the same order: results are bitwise equal whatever the CPU. */
#ifndef PYCONVFAST_DEPTHWISE_SIMD_H
#define PYCONVFAST_DEPTHWISE_SIMD_H

#include <stddef.h>

/* Taps summed per pass over the accumulators (registers hold 8 inputs and 8 weights). */
#define DW_GROUP 8

#if defined(__GNUC__) || defined(__clang__)
#define DW_ALWAYS_INLINE __attribute__((always_inline))
#else
#define DW_ALWAYS_INLINE
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define DW_X86_DISPATCH 1
#if defined(__clang__)
#define DW_TARGET_AVX512 __attribute__((target("avx512f"), min_vector_width(512)))
#else
#define DW_TARGET_AVX512 __attribute__((target("avx512f,prefer-vector-width=512")))
#endif
#define DW_TARGET_AVX2 __attribute__((target("avx2")))
#endif

#define DW_TARGET
#define DW_T float
#define DW_NAME(base) pcf_dw_##base##_f32_base
#include "depthwise_simd_impl.h"
#undef DW_T
#undef DW_NAME
#define DW_T double
#define DW_NAME(base) pcf_dw_##base##_f64_base
#include "depthwise_simd_impl.h"
#undef DW_T
#undef DW_NAME
#undef DW_TARGET

#ifdef DW_X86_DISPATCH
#define DW_TARGET DW_TARGET_AVX2
#define DW_T float
#define DW_NAME(base) pcf_dw_##base##_f32_avx2
#include "depthwise_simd_impl.h"
#undef DW_T
#undef DW_NAME
#define DW_T double
#define DW_NAME(base) pcf_dw_##base##_f64_avx2
#include "depthwise_simd_impl.h"
#undef DW_T
#undef DW_NAME
#undef DW_TARGET

#define DW_TARGET DW_TARGET_AVX512
#define DW_T float
#define DW_NAME(base) pcf_dw_##base##_f32_avx512
#include "depthwise_simd_impl.h"
#undef DW_T
#undef DW_NAME
#define DW_T double
#define DW_NAME(base) pcf_dw_##base##_f64_avx512
#include "depthwise_simd_impl.h"
#undef DW_T
#undef DW_NAME
#undef DW_TARGET
#endif

typedef void (*pcf_dw_rows_f32_fn)(float*, Py_ssize_t, Py_ssize_t, const float* const*,
                                   const float*, Py_ssize_t, Py_ssize_t);
typedef void (*pcf_dw_rows_f64_fn)(double*, Py_ssize_t, Py_ssize_t, const double* const*,
                                   const double*, Py_ssize_t, Py_ssize_t);
typedef void (*pcf_dw_pixels_f32_fn)(float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                     Py_ssize_t, Py_ssize_t, Py_ssize_t, const float* const*,
                                     const float* const*);
typedef void (*pcf_dw_pixels_f64_fn)(double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                     Py_ssize_t, Py_ssize_t, Py_ssize_t, const double* const*,
                                     const double* const*);

static pcf_dw_rows_f32_fn pcf_dw_rows_f32_impl = pcf_dw_rows_f32_base;
static pcf_dw_rows_f64_fn pcf_dw_rows_f64_impl = pcf_dw_rows_f64_base;
static pcf_dw_pixels_f32_fn pcf_dw_pixels_f32_impl = pcf_dw_pixels_f32_base;
static pcf_dw_pixels_f64_fn pcf_dw_pixels_f64_impl = pcf_dw_pixels_f64_base;
static int pcf_dw_level = 0;

/* 0: baseline, 1: AVX2, 2: AVX-512F; the best this CPU (and OS) runs. */
static int pcf_dw_max_level(void)
{
#ifdef DW_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

/* Use `level` (clamped to what the CPU has) from now on; returns the level set. Not meant to be
   called while a convolution runs. */
static int pcf_dw_set_level(int level)
{
    int best = pcf_dw_max_level();
    if (level > best) level = best;
    if (level < 0) level = 0;
    pcf_dw_rows_f32_impl = pcf_dw_rows_f32_base;
    pcf_dw_rows_f64_impl = pcf_dw_rows_f64_base;
    pcf_dw_pixels_f32_impl = pcf_dw_pixels_f32_base;
    pcf_dw_pixels_f64_impl = pcf_dw_pixels_f64_base;
#ifdef DW_X86_DISPATCH
    if (level == 1) {
        pcf_dw_rows_f32_impl = pcf_dw_rows_f32_avx2;
        pcf_dw_rows_f64_impl = pcf_dw_rows_f64_avx2;
        pcf_dw_pixels_f32_impl = pcf_dw_pixels_f32_avx2;
        pcf_dw_pixels_f64_impl = pcf_dw_pixels_f64_avx2;
    } else if (level == 2) {
        pcf_dw_rows_f32_impl = pcf_dw_rows_f32_avx512;
        pcf_dw_rows_f64_impl = pcf_dw_rows_f64_avx512;
        pcf_dw_pixels_f32_impl = pcf_dw_pixels_f32_avx512;
        pcf_dw_pixels_f64_impl = pcf_dw_pixels_f64_avx512;
    }
#endif
    pcf_dw_level = level;
    return level;
}

static int pcf_dw_get_level(void) { return pcf_dw_level; }

static void pcf_dw_rows_f32(float* acc, Py_ssize_t n, Py_ssize_t n_taps, const float* const* xs,
                            const float* ws, Py_ssize_t offset, Py_ssize_t step)
{
    pcf_dw_rows_f32_impl(acc, n, n_taps, xs, ws, offset, step);
}

static void pcf_dw_rows_f64(double* acc, Py_ssize_t n, Py_ssize_t n_taps, const double* const* xs,
                            const double* ws, Py_ssize_t offset, Py_ssize_t step)
{
    pcf_dw_rows_f64_impl(acc, n, n_taps, xs, ws, offset, step);
}

static void pcf_dw_pixels_f32(float* acc, Py_ssize_t n_pixels, Py_ssize_t acc_step,
                              Py_ssize_t offset, Py_ssize_t pixel_step, Py_ssize_t channels,
                              Py_ssize_t multiplier, Py_ssize_t n_taps, const float* const* xs,
                              const float* const* ws)
{
    pcf_dw_pixels_f32_impl(acc, n_pixels, acc_step, offset, pixel_step, channels, multiplier,
                           n_taps, xs, ws);
}

static void pcf_dw_pixels_f64(double* acc, Py_ssize_t n_pixels, Py_ssize_t acc_step,
                              Py_ssize_t offset, Py_ssize_t pixel_step, Py_ssize_t channels,
                              Py_ssize_t multiplier, Py_ssize_t n_taps, const double* const* xs,
                              const double* const* ws)
{
    pcf_dw_pixels_f64_impl(acc, n_pixels, acc_step, offset, pixel_step, channels, multiplier,
                           n_taps, xs, ws);
}

#endif
