/* The blocked direct kernel: register tiles (blocked_impl.h) compiled for each SIMD level of
   cpu/dispatch.h, the variant table that names them, and the task driver that walks one task's
   output rows and calls the variant of the level in use.

   Weights are packed once per weight (pyconvfast._lib.direct.blocked.pack_weights) as
   [group][channel block][input channel][tap][DB_KB], a channel block being 64 bytes of output
   channels (16 float32 or 8 float64), zero-filled past the group's last output channel. The
   input is read in place through its strides (no packing, no padded copy): a tile broadcasts
   input values and multiplies them by vectors of output channels.

   Register tiles per level (accumulators in vector registers), the rows of pcf_db_variants:
     baseline (SSE2, 16 registers):       1 block  (4 xmm) x  2 pixels =  8
     AVX2 + FMA (16 registers):           1 block  (2 ymm) x  6 pixels = 12
     AVX-512F (32 registers):             2 blocks (2 zmm) x 12 pixels = 24
   A task is one (sample, group, tile of output channels, block of output rows); inside it the
   interior columns of a row (every W tap in range, no table) go in tiles of up to DB_P pixels,
   the border columns in tiles of up to DB_P pixels that read the W tap table. */
#ifndef PYCONVFAST_DIRECT_BLOCKED_SIMD_H
#define PYCONVFAST_DIRECT_BLOCKED_SIMD_H

#include <stddef.h>
#include <stdlib.h>

#include "cpu/dispatch.h"
#ifdef PCF_X86_DISPATCH
#include <immintrin.h>
#endif

#if !PCF_GNU_VECTORS
#error "the blocked direct kernel needs GNU C vector extensions (GCC or Clang)"
#endif

/* Largest tile scratch: DB_P * DB_MB * 64 bytes over all levels. */
#define DB_TMP_BYTES (12 * 2 * 64)

/* What blocked_impl.h sees of each instantiation: the tile of its level. */
#define DB_T PCF_T
#define DB_NAME(base) PCF_VARIANT(pcf_db_##base)
#define DB_TARGET PCF_TARGET
#define DB_VBYTES PCF_VBYTES
#define DB_ALWAYS_INLINE PCF_ALWAYS_INLINE
#define DB_MB PCF_BY_LEVEL(1, 1, 2)
#define DB_P PCF_BY_LEVEL(2, 6, 12)
#define PCF_IMPL "direct/blocked_impl.h"
#include "cpu/instantiate.h"
#undef DB_T
#undef DB_NAME
#undef DB_TARGET
#undef DB_VBYTES
#undef DB_MB
#undef DB_P

/* The tile functions of one element type. */
#define DB_FN_TYPES(T, S)                                                                         \
    typedef void (*pcf_db_tile_##S##_fn)(const T*, Py_ssize_t, Py_ssize_t, const Py_ssize_t*,    \
                                         const Py_ssize_t*, Py_ssize_t, Py_ssize_t, Py_ssize_t,   \
                                         Py_ssize_t, const T*, Py_ssize_t, Py_ssize_t, T*, int,   \
                                         int);                                                    \
    typedef void (*pcf_db_table_##S##_fn)(const T*, Py_ssize_t, Py_ssize_t, const Py_ssize_t*,   \
                                          const Py_ssize_t*, Py_ssize_t, Py_ssize_t,              \
                                          const Py_ssize_t*, Py_ssize_t, const T*, Py_ssize_t,    \
                                          Py_ssize_t, T*, int, int);                              \
    typedef void (*pcf_db_full_##S##_fn)(const T*, Py_ssize_t, Py_ssize_t, Py_ssize_t,           \
                                         const Py_ssize_t*, const Py_ssize_t*, Py_ssize_t,        \
                                         Py_ssize_t, Py_ssize_t, Py_ssize_t, const unsigned*,     \
                                         const T*, Py_ssize_t, Py_ssize_t, T*, int, int);         \
    typedef T (*pcf_db_fma_loop_##S##_fn)(long, T);
DB_FN_TYPES(float, f32)
DB_FN_TYPES(double, f64)

/* One variant: the register tile of one level and its functions per element type. */
typedef struct {
    const char* name;
    int mb, p;                    /* channel blocks and pixels per register tile */
    int vector_bytes;
    pcf_db_tile_f32_fn tile_f32;
    pcf_db_table_f32_fn table_f32;
    pcf_db_full_f32_fn full_f32;
    pcf_db_fma_loop_f32_fn fma_loop_f32;
    pcf_db_tile_f64_fn tile_f64;
    pcf_db_table_f64_fn table_f64;
    pcf_db_full_f64_fn full_f64;
    pcf_db_fma_loop_f64_fn fma_loop_f64;
} pcf_db_variant;

#define DB_VARIANT(NAME, MB, P, VBYTES, AT)                                                       \
    {NAME, MB, P, VBYTES,                                                                         \
     AT(pcf_db_tile_any, f32), AT(pcf_db_table_any, f32), AT(pcf_db_full_any, f32),              \
     AT(pcf_db_fma_loop, f32),                                                                    \
     AT(pcf_db_tile_any, f64), AT(pcf_db_table_any, f64), AT(pcf_db_full_any, f64),              \
     AT(pcf_db_fma_loop, f64)}

/* The variant table, indexed by level (cpu/dispatch.h). */
static const pcf_db_variant pcf_db_variants[PCF_N_LEVELS] = {
    DB_VARIANT("baseline_1x2", 1, 2, 16, PCF_AT_BASELINE),
    DB_VARIANT("avx2_1x6", 1, 6, 32, PCF_AT_AVX2),
    DB_VARIANT("avx512f_2x12", 2, 12, 64, PCF_AT_AVX512F),
};

/* The variant of the level in use. */
static inline const pcf_db_variant* pcf_db_variant_now(void)
{
    return &pcf_db_variants[pcf_cpu_level()];
}

/* Output channel blocks per register tile at the current level. */
static int pcf_db_tile_blocks(void) { return pcf_db_variant_now()->mb; }

/* What a task needs to know of one convolution (pointers to float or double). */
typedef struct {
    const void* x;                   /* the input at (0, 0, 0, 0, 0) */
    Py_ssize_t x_sn, x_sc, x_sd, x_sh, x_sw;  /* its strides in elements, any sign */
    const void* wp;                  /* packed weights, C-contiguous */
    Py_ssize_t c_g, k_g, n_blk;   /* input and output channels per group, blocks per group */
    Py_ssize_t kd_n, kh_n, kw_n;  /* kernel size */
    const Py_ssize_t* taps_d;     /* tap tables, (out, kernel) C-contiguous, -1 for a zero */
    const Py_ssize_t* taps_h;
    const Py_ssize_t* taps_w;
    Py_ssize_t h_out, w_out;
    Py_ssize_t stride_w, dilation_w, pad_w;
    Py_ssize_t w_lo, w_hi;        /* interior columns: every W tap o*s - pad + t*d in range */
    int full;                     /* 1: full-width tiles (the W taps are zero padding or
                                     o*s - pad + t*d); 0: interior tiles and table tiles */
    void* out;                     /* the output at (0, 0, 0, 0, 0) */
    Py_ssize_t o_sn, o_sk, o_sd, o_sh, o_sw;
    const void* bias;                /* NULL: none */
} pcf_db_args;

/* The task driver of one element type T (suffix S). */
#define DB_DRIVER(T, S)                                                                           \
                                                                                                  \
    /* Output rows [row0, row1) (row = od * h_out + oh) of sample n, group g and tile k_tile of   \
       the group's output channels. Returns 0, or -1 if out of memory. */                         \
    static int pcf_db_task_##S(const pcf_db_args* a, Py_ssize_t n, Py_ssize_t g,             \
                               Py_ssize_t k_tile, Py_ssize_t row0, Py_ssize_t row1)               \
    {                                                                                             \
        const pcf_db_variant* variant = pcf_db_variant_now();                                    \
        const int MB = variant->mb, P = variant->p;                                               \
        const int KB = 64 / (int)sizeof(T);                                                       \
        const pcf_db_tile_##S##_fn tile = variant->tile_##S;                                      \
        const pcf_db_table_##S##_fn table = variant->table_##S;                                   \
        const pcf_db_full_##S##_fn full = variant->full_##S;                                      \
        const Py_ssize_t blk0 = k_tile * MB;                                                      \
        /* the (int) casts of M and np are exact: M <= MB and np <= P */                          \
        const int M = a->n_blk - blk0 < MB ? (int)(a->n_blk - blk0) : MB;                         \
        const Py_ssize_t k0 = blk0 * KB;                                                          \
        const Py_ssize_t n_k = a->k_g - k0 < M * KB ? a->k_g - k0 : M * KB;                       \
        const Py_ssize_t taps = a->kd_n * a->kh_n * a->kw_n;                                      \
        const Py_ssize_t w_blk = a->c_g * taps * KB;                                              \
        const T* w = (const T*)a->wp + (g * a->n_blk + blk0) * w_blk;                                       \
        const T* xg = (const T*)a->x + n * a->x_sn + g * a->c_g * a->x_sc;                                  \
        T* og = (T*)a->out + n * a->o_sn + (g * a->k_g + k0) * a->o_sk;                               \
        const T* bias = a->bias ? (const T*)a->bias + g * a->k_g + k0 : NULL;                               \
        const Py_ssize_t pix_step = a->stride_w * a->x_sw, kw_step = a->dilation_w * a->x_sw;     \
        T tmp[DB_TMP_BYTES / sizeof(T)] __attribute__((aligned(64)));                             \
        /* own cache lines: two threads' row lists must not share one (false sharing) */     \
        Py_ssize_t* rtap = (Py_ssize_t*)aligned_alloc(                                            \
            64, (2 * a->kd_n * a->kh_n * sizeof(Py_ssize_t) + a->kw_n * sizeof(unsigned) + 63)    \
                    / 64 * 64);                                                                   \
        Py_ssize_t* roff;                                                                         \
        unsigned* vm;                                                                             \
        /* full tiles: n_t tiles a row, widths as equal as they can be (w_out / n_t, the first    \
           w_out % n_t one wider) */                                                              \
        const Py_ssize_t n_t = (a->w_out + P - 1) / P;                                            \
        const Py_ssize_t t_base = a->w_out / n_t, t_extra = a->w_out % n_t;                       \
        Py_ssize_t row, kd, kh, ow, k, p, np, ti, kw;                                             \
        if (rtap == NULL)                                                                         \
            return -1;                                                                            \
        roff = rtap + a->kd_n * a->kh_n;                                                          \
        vm = (unsigned*)(roff + a->kd_n * a->kh_n);                                               \
        for (row = row0; row < row1; row++) {                                                     \
            const Py_ssize_t od = row / a->h_out, oh = row % a->h_out;                            \
            Py_ssize_t n_rows = 0;                                                                \
            T* orow = og + od * a->o_sd + oh * a->o_sh;                                           \
            for (kd = 0; kd < a->kd_n; kd++) {                                                    \
                const Py_ssize_t i_d = a->taps_d[od * a->kd_n + kd];                              \
                if (i_d < 0)                                                                      \
                    continue;                                                                     \
                for (kh = 0; kh < a->kh_n; kh++) {                                                \
                    const Py_ssize_t i_h = a->taps_h[oh * a->kh_n + kh];                          \
                    if (i_h < 0)                                                                  \
                        continue;                                                                 \
                    rtap[n_rows] = (kd * a->kh_n + kh) * a->kw_n;                                 \
                    roff[n_rows] = i_d * a->x_sd + i_h * a->x_sh;                                 \
                    n_rows++;                                                                     \
                }                                                                                 \
            }                                                                                     \
            for (ow = 0, ti = 0; ow < a->w_out; ow += np, ti++) {                                 \
                if (a->full && (np = t_base + (ti < t_extra),                                     \
                                ow < a->w_lo || ow + np > a->w_hi)) {                             \
                    /* a tile with border pixels: their taps on the padding skipped */           \
                    for (kw = 0; kw < a->kw_n; kw++) {                                            \
                        unsigned bits = 0;                                                        \
                        for (p = 0; p < np; p++)                                                  \
                            bits |= (unsigned)(a->taps_w[(ow + p) * a->kw_n + kw] >= 0) << p;     \
                        vm[kw] = bits;                                                            \
                    }                                                                             \
                    full(xg, (ow * a->stride_w - a->pad_w) * a->x_sw, a->x_sc, a->c_g, rtap,      \
                         roff, n_rows, a->kw_n, pix_step, kw_step, vm, w, w_blk, taps, tmp, M,    \
                         (int)np);                                                                \
                } else if (a->full) {                                                             \
                    tile(xg + (ow * a->stride_w - a->pad_w) * a->x_sw, a->x_sc, a->c_g, rtap,     \
                         roff, n_rows, a->kw_n, pix_step, kw_step, w, w_blk, taps, tmp, M,        \
                         (int)np);                                                                \
                } else if (ow < a->w_lo || ow >= a->w_hi) {                                       \
                    const Py_ssize_t end = ow < a->w_lo ? a->w_lo : a->w_out;                     \
                    np = end - ow < P ? end - ow : P;                                             \
                    table(xg, a->x_sc, a->c_g, rtap, roff, n_rows, a->kw_n,                       \
                          a->taps_w + ow * a->kw_n, a->x_sw, w, w_blk, taps, tmp, M, (int)np);    \
                } else {                                                                          \
                    np = a->w_hi - ow < P ? a->w_hi - ow : P;                                     \
                    tile(xg + (ow * a->stride_w - a->pad_w) * a->x_sw, a->x_sc, a->c_g, rtap,     \
                         roff, n_rows, a->kw_n, pix_step, kw_step, w, w_blk, taps, tmp, M,        \
                         (int)np);                                                                \
                }                                                                                 \
                if (a->o_sk == 1) {                                                               \
                    for (p = 0; p < np; p++) {                                                    \
                        T* o = orow + (ow + p) * a->o_sw;                                         \
                        const T* t = tmp + p * MB * KB;                                           \
                        for (k = 0; k < n_k; k++)                                                 \
                            o[k] = t[k] + (bias ? bias[k] : (T)0);                                \
                    }                                                                             \
                } else {                                                                          \
                    for (k = 0; k < n_k; k++) {                                                   \
                        T* o = orow + k * a->o_sk + ow * a->o_sw;                                 \
                        const T shift = bias ? bias[k] : (T)0;                                    \
                        for (p = 0; p < np; p++)                                                  \
                            o[p * a->o_sw] = tmp[p * MB * KB + k] + shift;                        \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        free(rtap);                                                                               \
        return 0;                                                                                 \
    }                                                                                             \
                                                                                                  \
    /* The current level's FMA-throughput loop (10 vector FMAs a round, `iters` rounds). */      \
    static T pcf_db_fma_loop_##S(long iters, T seed)                                              \
    {                                                                                             \
        return pcf_db_variant_now()->fma_loop_##S(iters, seed);                                   \
    }

DB_DRIVER(float, f32)
DB_DRIVER(double, f64)

/* Bytes of one native vector at the current level. */
static int pcf_db_vector_bytes(void) { return pcf_db_variant_now()->vector_bytes; }

#endif
