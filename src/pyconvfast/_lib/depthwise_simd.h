/* The depthwise kernel's inner loops, compiled for several x86 instruction sets and chosen at
   run time (the build has no -march flag, so the wheel runs on any x86-64 CPU).

   depthwise_simd_impl.h is instantiated for float and double, for the baseline of the build
   (SSE2 on x86-64, whatever the target is elsewhere) and, with GCC or Clang on x86, for AVX2
   and AVX-512F through function-level target attributes. With GCC or Clang the unit-stride
   loops use GNU vector extensions (16-byte vectors at the baseline, 32 and 64 bytes for AVX2 and
   AVX-512F); other compilers get the same loops on single elements. pcf_dw_set_level picks one
   instantiation for the process (the best the CPU has, at import); the calls below go through
   that table. Because the extension is built with -ffp-contract=off, every level computes the
   same operations in the same order: results are bitwise equal whatever the CPU. */
#ifndef PYCONVFAST_DEPTHWISE_SIMD_H
#define PYCONVFAST_DEPTHWISE_SIMD_H

#include <stddef.h>
#include <string.h>

/* Taps summed per pass over the accumulators by the strided-rows loop. */
#define DW_GROUP 8

#if defined(__GNUC__) || defined(__clang__)
#define DW_ALWAYS_INLINE __attribute__((always_inline))
#define DW_VECTORS 1
#else
#define DW_ALWAYS_INLINE
#define DW_VECTORS 0
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
#define DW_VBYTES 16
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
#undef DW_VBYTES

#ifdef DW_X86_DISPATCH
#define DW_TARGET DW_TARGET_AVX2
#define DW_VBYTES 32
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
#undef DW_VBYTES

#define DW_TARGET DW_TARGET_AVX512
#define DW_VBYTES 64
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
#undef DW_VBYTES
#endif

/* The kernels of one element type and level, called through this table. */
#define DW_TABLE(T, S)                                                                            \
    typedef struct {                                                                              \
        void (*rows)(T*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,              \
                     const T* const*, const T*, const T*);                                        \
        void (*rows_strided)(T*, Py_ssize_t, Py_ssize_t, const T* const*, const T*, Py_ssize_t,   \
                             Py_ssize_t);                                                         \
        void (*pixels)(T*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,            \
                       Py_ssize_t, Py_ssize_t, const T* const*, const T* const*, const T*);       \
    } pcf_dw_table_##S;                                                                           \
    static pcf_dw_table_##S pcf_dw_##S = {                                                        \
        pcf_dw_rows_##S##_base, pcf_dw_rows_strided_##S##_base, pcf_dw_pixels_##S##_base};
DW_TABLE(float, f32)
DW_TABLE(double, f64)

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

#define DW_SET(S, L)                                                                              \
    pcf_dw_##S.rows = pcf_dw_rows_##S##_##L;                                                      \
    pcf_dw_##S.rows_strided = pcf_dw_rows_strided_##S##_##L;                                      \
    pcf_dw_##S.pixels = pcf_dw_pixels_##S##_##L;

/* Use `level` (clamped to what the CPU has) from now on; returns the level set. Not meant to be
   called while a convolution runs. */
static int pcf_dw_set_level(int level)
{
    int best = pcf_dw_max_level();
    if (level > best) level = best;
    if (level < 0) level = 0;
    DW_SET(f32, base)
    DW_SET(f64, base)
#ifdef DW_X86_DISPATCH
    if (level == 1) {
        DW_SET(f32, avx2)
        DW_SET(f64, avx2)
    } else if (level == 2) {
        DW_SET(f32, avx512)
        DW_SET(f64, avx512)
    }
#endif
    pcf_dw_level = level;
    return level;
}

static int pcf_dw_get_level(void) { return pcf_dw_level; }

#define DW_ENTRY_POINTS(T, S)                                                                     \
    static void pcf_dw_rows_##S(T* acc, Py_ssize_t acc_row, Py_ssize_t n, Py_ssize_t n_rows,      \
                                Py_ssize_t x_row, Py_ssize_t n_taps, const T* const* xs,          \
                                const T* ws, const T* bias)                                       \
    {                                                                                             \
        pcf_dw_##S.rows(acc, acc_row, n, n_rows, x_row, n_taps, xs, ws, bias);                    \
    }                                                                                             \
    static void pcf_dw_rows_strided_##S(T* acc, Py_ssize_t n, Py_ssize_t n_taps,                  \
                                        const T* const* xs, const T* ws, Py_ssize_t offset,       \
                                        Py_ssize_t step)                                          \
    {                                                                                             \
        pcf_dw_##S.rows_strided(acc, n, n_taps, xs, ws, offset, step);                            \
    }                                                                                             \
    static void pcf_dw_pixels_##S(T* acc, Py_ssize_t acc_step, Py_ssize_t n_pixels,               \
                                  Py_ssize_t x_step, Py_ssize_t channels, Py_ssize_t multiplier,  \
                                  Py_ssize_t w_pitch, Py_ssize_t n_taps, const T* const* xs,      \
                                  const T* const* ws, const T* bias)                              \
    {                                                                                             \
        pcf_dw_##S.pixels(acc, acc_step, n_pixels, x_step, channels, multiplier, w_pitch, n_taps, \
                          xs, ws, bias);                                                          \
    }
DW_ENTRY_POINTS(float, f32)
DW_ENTRY_POINTS(double, f64)

#endif
