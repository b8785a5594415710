/* The packed GEMM of 1x1 convolutions (gemm_impl.h), compiled for each SIMD level of
   cpu/dispatch.h (cpu/instantiate.h), and its variant table. The loops use FMA where the level
   has it, explicitly through intrinsics: results are equal across thread counts and splits, not
   across levels. */
#ifndef PYCONVFAST_POINTWISE_GEMM_H
#define PYCONVFAST_POINTWISE_GEMM_H

#include <stddef.h>
#include <string.h>

#include "cpu/dispatch.h"

#ifdef PCF_X86_DISPATCH
#include <immintrin.h>
#define PW_FMA256_f32(a, b, c) _mm256_fmadd_ps(a, b, c)
#define PW_FMA256_f64(a, b, c) _mm256_fmadd_pd(a, b, c)
#define PW_FMA512_f32(a, b, c) _mm512_fmadd_ps(a, b, c)
#define PW_FMA512_f64(a, b, c) _mm512_fmadd_pd(a, b, c)
#define PW_SET1_256_f32(s) _mm256_set1_ps(s)
#define PW_SET1_256_f64(s) _mm256_set1_pd(s)
#define PW_SET1_512_f32(s) _mm512_set1_ps(s)
#define PW_SET1_512_f64(s) _mm512_set1_pd(s)
#endif

#define PW_TASK_ARGS(T)                                                                           \
    const T*, Py_ssize_t, Py_ssize_t, T*, Py_ssize_t, Py_ssize_t, const T*, const T*, Py_ssize_t, \
        Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int, T*, T*

/* One level's kernel for one element type: its tile shapes and its task loop. */
#define PW_SHAPE(T, S)                                                                            \
    typedef struct {                                                                              \
        Py_ssize_t chw_rows;   /* output channels of a "chw" tile */                              \
        Py_ssize_t chw_cols;   /* its pixels */                                                   \
        Py_ssize_t hwc_rows;   /* pixels of a "hwc" tile (its columns: one weight panel) */       \
        Py_ssize_t panel;      /* output channels of a packed weight panel */                     \
        void (*task)(PW_TASK_ARGS(T));                                                            \
    } pcf_pw_shape_##S;
PW_SHAPE(float, f32)
PW_SHAPE(double, f64)

/* Elements of the per-thread buffer a task needs with input-channel blocks of kb: the packed
   activation panel (at most kb x 48) and one tile (at most 512 elements). */
static inline Py_ssize_t pcf_pw_buffer_elements(Py_ssize_t kb) { return kb * 48 + 512; }

#define PCF_IMPL "pointwise/gemm_impl.h"
#include "cpu/instantiate.h"

typedef struct {
    const char* name;
    const pcf_pw_shape_f32* f32;
    const pcf_pw_shape_f64* f64;
} pcf_pw_variant;

/* The variant table, indexed by level (cpu/dispatch.h); named by the float32 tiles. */
static const pcf_pw_variant pcf_pw_variants[PCF_N_LEVELS] = {
    {"baseline_128bit_chw4x12_hwc2x16", &PCF_AT_BASELINE(pcf_pw_shape, f32),
     &PCF_AT_BASELINE(pcf_pw_shape, f64)},
    {"avx2_256bit_fma_chw4x24_hwc6x16", &PCF_AT_AVX2(pcf_pw_shape, f32),
     &PCF_AT_AVX2(pcf_pw_shape, f64)},
    {"avx512f_512bit_fma_chw8x48_hwc6x64_12x32", &PCF_AT_AVX512F(pcf_pw_shape, f32),
     &PCF_AT_AVX512F(pcf_pw_shape, f64)},
};

#endif
