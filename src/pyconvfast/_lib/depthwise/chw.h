/* The channels-first ("chw") depthwise loops of chw_impl.h, compiled for each SIMD level of
   cpu/dispatch.h (cpu/instantiate.h), their variant table and the entry points that call the
   variant of the level in use. Unlike depthwise/simd.h these loops use FMA where the level has
   it (explicitly, through intrinsics, so the -ffp-contract=off of the depthwise extension does
   not matter): they promise equal results across thread counts, not across levels. */
#ifndef PYCONVFAST_DEPTHWISE_CHW_H
#define PYCONVFAST_DEPTHWISE_CHW_H

#include <stddef.h>
#include <string.h>

#include "cpu/dispatch.h"

#ifdef PCF_X86_DISPATCH
#include <immintrin.h>
#define CW_FMA256_f32(a, b, c) _mm256_fmadd_ps(a, b, c)
#define CW_FMA256_f64(a, b, c) _mm256_fmadd_pd(a, b, c)
#define CW_FMA512_f32(a, b, c) _mm512_fmadd_ps(a, b, c)
#define CW_FMA512_f64(a, b, c) _mm512_fmadd_pd(a, b, c)
/* Masked loads (zero in the lanes off the mask, which are not read) and stores, per type and
   level: AVX-512 takes a bit mask, AVX2 a vector of all-ones lanes (CW_INT_ its element). */
#define CW_MASKZ_LOAD_f32_2(m, p) _mm512_maskz_loadu_ps((__mmask16)(m), p)
#define CW_MASKZ_LOAD_f64_2(m, p) _mm512_maskz_loadu_pd((__mmask8)(m), p)
#define CW_MASK_STORE_f32_2(p, m, v) _mm512_mask_storeu_ps(p, (__mmask16)(m), v)
#define CW_MASK_STORE_f64_2(p, m, v) _mm512_mask_storeu_pd(p, (__mmask8)(m), v)
#define CW_INT_f32 int
#define CW_INT_f64 long long
#define CW_MASKZ_LOAD_f32_1(m, p) _mm256_maskload_ps(p, (__m256i)(m))
#define CW_MASKZ_LOAD_f64_1(m, p) _mm256_maskload_pd(p, (__m256i)(m))
#define CW_MASK_STORE_f32_1(p, m, v) _mm256_maskstore_ps(p, (__m256i)(m), v)
#define CW_MASK_STORE_f64_1(p, m, v) _mm256_maskstore_pd(p, (__m256i)(m), v)
#endif

/* Lanes per vector of each level, and the even and odd lanes of two vectors (a, b). */
#define CW_LANES_f32_0 4
#define CW_LANES_f32_1 8
#define CW_LANES_f32_2 16
#define CW_LANES_f64_0 2
#define CW_LANES_f64_1 4
#define CW_LANES_f64_2 8
/* Token pasting of its own: PCF_CAT cannot expand inside a PCF_CAT. */
#define CW_CAT_(a, b) a##b
#define CW_CAT(a, b) CW_CAT_(a, b)
#define CW_CAT4_(a, b, c, d) a##b##c##d
#define CW_CAT4(a, b, c, d) CW_CAT4_(a, b, c, d)
#define CW_EVENS_2(a, b) __builtin_shufflevector(a, b, 0, 2)
#define CW_ODDS_2(a, b) __builtin_shufflevector(a, b, 1, 3)
#define CW_EVENS_4(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6)
#define CW_ODDS_4(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7)
#define CW_EVENS_8(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define CW_ODDS_8(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#define CW_EVENS_16(a, b) \
    __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define CW_ODDS_16(a, b) \
    __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)

/* Lanes s .. s + V - 1 of the concatenation (a, b): the vector s elements after a, for the
   AVX-512 rows (8 double or 16 float lanes), s = 1 .. 4. */
#define CW_SHIFT1_8(a, b) __builtin_shufflevector(a, b, 1, 2, 3, 4, 5, 6, 7, 8)
#define CW_SHIFT2_8(a, b) __builtin_shufflevector(a, b, 2, 3, 4, 5, 6, 7, 8, 9)
#define CW_SHIFT3_8(a, b) __builtin_shufflevector(a, b, 3, 4, 5, 6, 7, 8, 9, 10)
#define CW_SHIFT4_8(a, b) __builtin_shufflevector(a, b, 4, 5, 6, 7, 8, 9, 10, 11)
#define CW_SHIFT1_16(a, b) \
    __builtin_shufflevector(a, b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
#define CW_SHIFT2_16(a, b) \
    __builtin_shufflevector(a, b, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)
#define CW_SHIFT3_16(a, b) \
    __builtin_shufflevector(a, b, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
#define CW_SHIFT4_16(a, b) \
    __builtin_shufflevector(a, b, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)

/* Input rows of a pass at most: 4 output rows, stride 2, 5 taps. */
#define CW_MAX_ROWS ((4 - 1) * 2 + 5)

#define PCF_IMPL "depthwise/chw_impl.h"
#include "cpu/instantiate.h"

#define DW_CHW_ARGS(T)                                                                            \
    const T*, Py_ssize_t, Py_ssize_t, Py_ssize_t, T*, Py_ssize_t, Py_ssize_t, Py_ssize_t,         \
        Py_ssize_t, const T*, const T*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, const T*

typedef struct {
    const char* name;
    void (*f32)(DW_CHW_ARGS(float));
    void (*f64)(DW_CHW_ARGS(double));
} pcf_dw_chw_variant;

/* The variant table, indexed by level (cpu/dispatch.h). */
static const pcf_dw_chw_variant pcf_dw_chw_variants[PCF_N_LEVELS] = {
    {"baseline_128bit", PCF_AT_BASELINE(pcf_dwchw_rows, f32), PCF_AT_BASELINE(pcf_dwchw_rows, f64)},
    {"avx2_256bit_fma", PCF_AT_AVX2(pcf_dwchw_rows, f32), PCF_AT_AVX2(pcf_dwchw_rows, f64)},
    {"avx512f_512bit_fma", PCF_AT_AVX512F(pcf_dwchw_rows, f32),
     PCF_AT_AVX512F(pcf_dwchw_rows, f64)},
};

#define DW_CHW_ENTRY(T, S)                                                                        \
    static void pcf_dw_chw_rows_##S(const T* x, Py_ssize_t x_sh, Py_ssize_t h_in, Py_ssize_t w_in, \
                                    T* out, Py_ssize_t o_sh, Py_ssize_t oh0, Py_ssize_t oh1,      \
                                    Py_ssize_t w_out, const T* w, const T* bias, Py_ssize_t k,    \
                                    Py_ssize_t s, Py_ssize_t pad_h, Py_ssize_t pad_w,             \
                                    const T* zero_row)                                            \
    {                                                                                             \
        int level = pcf_cpu_level();                                                              \
        /* Rows of at most 32 bytes fill an AVX2 vector; half an AVX-512 one would be wasted (the \
           same fused multiply-adds in the same order: the same bits). */                         \
        if (level == PCF_LEVEL_AVX512F && w_out * (Py_ssize_t)sizeof(T) <= 32)                    \
            level = PCF_LEVEL_AVX2;                                                               \
        pcf_dw_chw_variants[level].S(x, x_sh, h_in, w_in, out, o_sh, oh0, oh1, w_out, w, bias, k, \
                                     s, pad_h, pad_w, zero_row);                                  \
    }
DW_CHW_ENTRY(float, f32)
DW_CHW_ENTRY(double, f64)

#endif
