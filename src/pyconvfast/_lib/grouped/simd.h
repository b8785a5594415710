/* The grouped kernel's inner loops (simd_impl.h), compiled for each SIMD level of
   cpu/dispatch.h, the variant table that names them, and the entry points that call the variant
   of the level in use. The build has no -march flag, so the wheel runs on any x86-64 CPU (SSE2
   at the baseline) and uses AVX2 + FMA or AVX-512F where the CPU has them.

   With GCC or Clang on x86 the register tiles are instantiated for every level through
   function-level target attributes (cpu/instantiate.h): baseline (16-byte vectors, 4 x 3 tile),
   AVX2 + FMA (32-byte, 4 x 3) and AVX-512F (64-byte, 4 x 6; 32 registers). Other compilers get
   the baseline loops only.

   The gather that lowers the input (pcf_gr_gather_*) is plain C at the baseline: it is copies:
   plain loops (short runs: a memcpy call would cost more than the copy). */
#ifndef PYCONVFAST_GROUPED_SIMD_H
#define PYCONVFAST_GROUPED_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu/dispatch.h"

/* Output channels per register tile; the weights are packed in blocks of this many. */
#define GR_MR 4

/* What simd_impl.h sees of each instantiation. */
#define GR_T PCF_T
#define GR_NAME(base) PCF_VARIANT(pcf_gr_##base)
#define GR_TARGET PCF_TARGET
#define GR_VBYTES PCF_VBYTES
#define GR_NV PCF_BY_LEVEL(3, 3, 6)
#define PCF_IMPL "grouped/simd_impl.h"
#include "cpu/instantiate.h"
#undef GR_T
#undef GR_NAME
#undef GR_TARGET
#undef GR_VBYTES
#undef GR_NV

typedef void (*pcf_gr_gemm_f32_fn)(const float*, Py_ssize_t, Py_ssize_t, const float* const*,
                                   Py_ssize_t, float*, Py_ssize_t);
typedef void (*pcf_gr_gemm_f64_fn)(const double*, Py_ssize_t, Py_ssize_t, const double* const*,
                                   Py_ssize_t, double*, Py_ssize_t);

/* One variant: the register tile of one level. */
typedef struct {
    const char* name;
    pcf_gr_gemm_f32_fn gemm_f32;
    pcf_gr_gemm_f64_fn gemm_f64;
} pcf_gr_variant;

#define GR_VARIANT(NAME, AT) {NAME, AT(pcf_gr_gemm, f32), AT(pcf_gr_gemm, f64)}

/* The variant table, indexed by level (cpu/dispatch.h); named <level>_<channels>x<vectors>. */
static const pcf_gr_variant pcf_gr_variants[PCF_N_LEVELS] = {
    GR_VARIANT("baseline_4x3", PCF_AT_BASELINE),
    GR_VARIANT("avx2_4x3", PCF_AT_AVX2),
    GR_VARIANT("avx512f_4x6", PCF_AT_AVX512F),
};

static void pcf_gr_gemm_f32(const float* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                            const float* const* rows, Py_ssize_t n_pix, float* c, Py_ssize_t ldc)
{
    pcf_gr_variants[pcf_cpu_level()].gemm_f32(w, k_blocks, depth, rows, n_pix, c, ldc);
}

static void pcf_gr_gemm_f64(const double* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                            const double* const* rows, Py_ssize_t n_pix, double* c,
                            Py_ssize_t ldc)
{
    pcf_gr_variants[pcf_cpu_level()].gemm_f64(w, k_blocks, depth, rows, n_pix, c, ldc);
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
