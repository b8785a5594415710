/* The depthwise kernel's inner loops (simd_impl.h), compiled for each SIMD level of
   cpu/dispatch.h, the variant table that names them, and the entry points that call the variant
   of the level in use.

   simd_impl.h is instantiated for float and double at the baseline of the build (SSE2 on x86-64,
   whatever the target is elsewhere) and, with GCC or Clang on x86, for AVX2 and AVX-512F through
   function-level target attributes (cpu/instantiate.h). With GCC or Clang the unit-stride loops
   use GNU vector extensions (16-byte vectors at the baseline, 32 and 64 bytes for AVX2 and
   AVX-512F); other compilers get the same loops on single elements. Because the extensions that
   include this header (depthwise, separable) are built with -ffp-contract=off, every level
   computes the same operations in the same order: results are bitwise equal whatever the CPU. */
#ifndef PYCONVFAST_DEPTHWISE_SIMD_H
#define PYCONVFAST_DEPTHWISE_SIMD_H

#include <stddef.h>
#include <string.h>

#include "cpu/dispatch.h"

/* Taps summed per pass over the accumulators by the strided-rows loop. */
#define DW_GROUP 8

/* What simd_impl.h sees of each instantiation. */
#define DW_ALWAYS_INLINE PCF_ALWAYS_INLINE
#define DW_VECTORS PCF_GNU_VECTORS
#define DW_T PCF_T
#define DW_NAME(base) PCF_VARIANT(pcf_dw_##base)
#define DW_TARGET PCF_TARGET
#define DW_VBYTES PCF_VBYTES
#define PCF_IMPL "depthwise/simd_impl.h"
#include "cpu/instantiate.h"
#undef DW_T
#undef DW_NAME
#undef DW_TARGET
#undef DW_VBYTES

/* One variant: the loops of one level for one element type. */
#define DW_VARIANT_TYPE(T, S)                                                                     \
    typedef struct {                                                                              \
        void (*rows)(T*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,              \
                     const T* const*, const T*, const T*);                                        \
        void (*rows_strided)(T*, Py_ssize_t, Py_ssize_t, const T* const*, const T*, Py_ssize_t,   \
                             Py_ssize_t);                                                         \
        void (*pixels)(T*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,            \
                       Py_ssize_t, Py_ssize_t, const T* const*, const T* const*, const T*);       \
    } pcf_dw_loops_##S;
DW_VARIANT_TYPE(float, f32)
DW_VARIANT_TYPE(double, f64)

typedef struct {
    const char* name;
    int vector_bytes;
    pcf_dw_loops_f32 f32;
    pcf_dw_loops_f64 f64;
} pcf_dw_variant;

#define DW_LOOPS(AT, S)                                                                           \
    {AT(pcf_dw_rows, S), AT(pcf_dw_rows_strided, S), AT(pcf_dw_pixels, S)}

/* The variant table, indexed by level (cpu/dispatch.h). */
static const pcf_dw_variant pcf_dw_variants[PCF_N_LEVELS] = {
    {"baseline_128bit", 16, DW_LOOPS(PCF_AT_BASELINE, f32), DW_LOOPS(PCF_AT_BASELINE, f64)},
    {"avx2_256bit", 32, DW_LOOPS(PCF_AT_AVX2, f32), DW_LOOPS(PCF_AT_AVX2, f64)},
    {"avx512f_512bit", 64, DW_LOOPS(PCF_AT_AVX512F, f32), DW_LOOPS(PCF_AT_AVX512F, f64)},
};

/* The entry points: the loops of the level in use (a table lookup per call of a row or a run of
   pixels, not per element). */
#define DW_ENTRY_POINTS(T, S)                                                                     \
    static void pcf_dw_rows_##S(T* acc, Py_ssize_t acc_row, Py_ssize_t n, Py_ssize_t n_rows,      \
                                Py_ssize_t x_row, Py_ssize_t n_taps, const T* const* xs,          \
                                const T* ws, const T* bias)                                       \
    {                                                                                             \
        pcf_dw_variants[pcf_cpu_level()].S.rows(acc, acc_row, n, n_rows, x_row, n_taps, xs, ws,   \
                                                bias);                                            \
    }                                                                                             \
    static void pcf_dw_rows_strided_##S(T* acc, Py_ssize_t n, Py_ssize_t n_taps,                  \
                                        const T* const* xs, const T* ws, Py_ssize_t offset,       \
                                        Py_ssize_t step)                                          \
    {                                                                                             \
        pcf_dw_variants[pcf_cpu_level()].S.rows_strided(acc, n, n_taps, xs, ws, offset, step);    \
    }                                                                                             \
    static void pcf_dw_pixels_##S(T* acc, Py_ssize_t acc_step, Py_ssize_t n_pixels,               \
                                  Py_ssize_t x_step, Py_ssize_t channels, Py_ssize_t multiplier,  \
                                  Py_ssize_t w_pitch, Py_ssize_t n_taps, const T* const* xs,      \
                                  const T* const* ws, const T* bias)                              \
    {                                                                                             \
        pcf_dw_variants[pcf_cpu_level()].S.pixels(acc, acc_step, n_pixels, x_step, channels,      \
                                                  multiplier, w_pitch, n_taps, xs, ws, bias);     \
    }
DW_ENTRY_POINTS(float, f32)
DW_ENTRY_POINTS(double, f64)

#endif
