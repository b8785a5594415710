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
   A task is one (sample, group, tile of output channels, block of output rows). Inside it,
   with full tiles (a->full: zero padding along W), each row is cut into tiles that hold its
   border columns too (pcf_db_task_full: a border pixel's taps on the padding skipped per pixel,
   full_tile; tiles without border pixels run tile); with the split tiling (any padding mode)
   the interior columns of a row (every W tap in range, no table) go in tiles of up to DB_P
   pixels, the border columns in tiles of their own that read the W tap table. */
#ifndef PYCONVFAST_DIRECT_BLOCKED_SIMD_H
#define PYCONVFAST_DIRECT_BLOCKED_SIMD_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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
    int pf;                       /* pixels per full tile at most (its masked FMAs need a few
                                     registers more: wider ones spill) */
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

#define DB_VARIANT(NAME, MB, P, PF, VBYTES, AT)                                                   \
    {NAME, MB, P, PF, VBYTES,                                                                     \
     AT(pcf_db_tile_any, f32), AT(pcf_db_table_any, f32), AT(pcf_db_full_any, f32),              \
     AT(pcf_db_fma_loop, f32),                                                                    \
     AT(pcf_db_tile_any, f64), AT(pcf_db_table_any, f64), AT(pcf_db_full_any, f64),              \
     AT(pcf_db_fma_loop, f64)}

/* The variant table, indexed by level (cpu/dispatch.h). */
static const pcf_db_variant pcf_db_variants[PCF_N_LEVELS] = {
    DB_VARIANT("baseline_1x2", 1, 2, 2, 16, PCF_AT_BASELINE),
    DB_VARIANT("avx2_1x6", 1, 6, 5, 32, PCF_AT_AVX2),
    DB_VARIANT("avx512f_2x12", 2, 12, 10, 64, PCF_AT_AVX512F),
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
    Py_ssize_t c_chunk;           /* full tiles: input channels per chunk; -1 auto, 0 all */
    void* out;                     /* the output at (0, 0, 0, 0, 0) */
    Py_ssize_t o_sn, o_sk, o_sd, o_sh, o_sw;
    const void* bias;                /* NULL: none */
} pcf_db_args;

/* Sums of np pixels in tmp (pixel stride MB * KB) plus the bias into the output row orow at
   column ow: n_k channels. */
#define DB_STORE(T, TMP)                                                                          \
    if (a->o_sk == 1) {                                                                           \
        for (p = 0; p < np; p++) {                                                                \
            T* o = orow + (ow + p) * a->o_sw;                                                     \
            const T* t = (TMP) + p * MB * KB;                                                     \
            for (k = 0; k < n_k; k++)                                                             \
                o[k] = t[k] + (bias ? bias[k] : (T)0);                                            \
        }                                                                                         \
    } else {                                                                                      \
        for (k = 0; k < n_k; k++) {                                                               \
            T* o = orow + k * a->o_sk + ow * a->o_sw;                                             \
            const T shift = bias ? bias[k] : (T)0;                                                \
            for (p = 0; p < np; p++)                                                              \
                o[p * a->o_sw] = (TMP)[p * MB * KB + k] + shift;                                  \
        }                                                                                         \
    }

/* Column ow and width np of tile ti of a row (full tiles; see pcf_db_task_full). */
#define DB_TILE_AT(TI, OW, NP)                                                                    \
    do {                                                                                          \
        const Py_ssize_t j_ = wide ? (TI) - 1 : (TI);                                             \
        if (wide && j_ < 0) {                                                                     \
            (OW) = 0;                                                                             \
            (NP) = P;                                                                             \
        } else if (wide && j_ == n_span) {                                                        \
            (OW) = a->w_out - P;                                                                  \
            (NP) = P;                                                                             \
        } else {                                                                                  \
            (OW) = (wide ? P : 0) + j_ * t_base + (j_ < t_extra ? j_ : t_extra);                  \
            (NP) = t_base + (j_ < t_extra);                                                       \
        }                                                                                         \
    } while (0)

/* Bytes of sums a full-tile task keeps per group of tiles, and of weights per chunk of input
   channels: both stay in L1 while the chunk's weights are used for every tile of the group. */
#define DB_GROUP_BYTES (16 * 1024)
#define DB_CHUNK_BYTES (16 * 1024)

/* The full-tile task of one element type T (suffix S): each output row in n_t tiles of equal
   width (tiles with border pixels skip their taps on the zero padding, full_tile; the others
   run tile). The (row, tile) units of the task go in groups whose sums fit DB_GROUP_BYTES; for
   each group the input channels go in chunks whose weights fit DB_CHUNK_BYTES (a->c_chunk
   channels if > 0), and every unit of the group adds the chunk's products to its sums before
   the next chunk: the weight slice is read from L2 once per group, not once per tile. Each
   output is still summed in the order (input channel, kd, kh, kw) from +0. */
#define DB_FULL_TASK(T, S)                                                                        \
    static int pcf_db_task_full_##S(const pcf_db_args* a, Py_ssize_t n, Py_ssize_t g,             \
                                    Py_ssize_t k_tile, Py_ssize_t row0, Py_ssize_t row1)          \
    {                                                                                             \
        const pcf_db_variant* variant = pcf_db_variant_now();                                    \
        const int MB = variant->mb, P = variant->pf, PM = variant->p;                            \
        const int KB = 64 / (int)sizeof(T);                                                       \
        const pcf_db_tile_##S##_fn tile = variant->tile_##S;                                      \
        const pcf_db_full_##S##_fn full = variant->full_##S;                                      \
        const Py_ssize_t blk0 = k_tile * MB;                                                      \
        const int M = a->n_blk - blk0 < MB ? (int)(a->n_blk - blk0) : MB;                         \
        const Py_ssize_t k0 = blk0 * KB;                                                          \
        const Py_ssize_t n_k = a->k_g - k0 < M * KB ? a->k_g - k0 : M * KB;                       \
        const Py_ssize_t taps = a->kd_n * a->kh_n * a->kw_n, kdh = a->kd_n * a->kh_n;             \
        const Py_ssize_t w_blk = a->c_g * taps * KB;                                              \
        const T* w = (const T*)a->wp + (g * a->n_blk + blk0) * w_blk;                             \
        const T* xg = (const T*)a->x + n * a->x_sn + g * a->c_g * a->x_sc;                        \
        T* og = (T*)a->out + n * a->o_sn + (g * a->k_g + k0) * a->o_sk;                           \
        const T* bias = a->bias ? (const T*)a->bias + g * a->k_g + k0 : NULL;                     \
        const Py_ssize_t pix_step = a->stride_w * a->x_sw, kw_step = a->dilation_w * a->x_sw;     \
        /* Wide rows whose border columns lie within P of each end: a tile of P at each end and \
           n_t - 2 interior tiles of up to PM between them, as equal as they can be (the first    \
           t_extra one wider). Other rows: n_t tiles of up to P, as equal as they can be. */      \
        const int wide = a->w_out - 2 * P >= PM && a->w_lo <= P && a->w_out - a->w_hi <= P;     \
        const Py_ssize_t span = wide ? a->w_out - 2 * P : a->w_out, t_w = wide ? PM : P;         \
        const Py_ssize_t n_span = (span + t_w - 1) / t_w, n_t = n_span + (wide ? 2 : 0);          \
        const Py_ssize_t t_base = span / n_span, t_extra = span % n_span;                         \
        const Py_ssize_t unit_elems = (Py_ssize_t)PM * MB * KB;                                   \
        const Py_ssize_t per_group = DB_GROUP_BYTES / (unit_elems * (Py_ssize_t)sizeof(T)) > 1    \
            ? DB_GROUP_BYTES / (unit_elems * (Py_ssize_t)sizeof(T)) : 1;                          \
        const Py_ssize_t chunk_auto = DB_CHUNK_BYTES / (taps * M * 64) > 1                        \
            ? DB_CHUNK_BYTES / (taps * M * 64) : 1;                                               \
        const Py_ssize_t chunk = a->c_chunk > 0 ? a->c_chunk : a->c_chunk == 0 ? a->c_g           \
            : chunk_auto;                                                                         \
        const Py_ssize_t units = (row1 - row0) * n_t;                                             \
        /* a group spans at most per_group / n_t + 2 rows */                                      \
        const Py_ssize_t max_rows = per_group / n_t + 2;                                          \
        char* mem;                                                                                \
        T* sums;                                                                                  \
        Py_ssize_t *lists, *counts;                                                               \
        unsigned* vms;                                                                            \
        Py_ssize_t u0, u1, u, c0, kd, kh, kw, k, p, np, ow, ti, row, first_row;                   \
        /* own cache lines (false sharing): sums, then row lists, counts and tap masks */         \
        const size_t sums_bytes = (size_t)per_group * unit_elems * sizeof(T);                     \
        const size_t lists_bytes = (size_t)max_rows * (2 * kdh + 1) * sizeof(Py_ssize_t);         \
        const size_t vms_bytes = (size_t)per_group * a->kw_n * sizeof(unsigned);                  \
        mem = (char*)aligned_alloc(64, (sums_bytes + lists_bytes + vms_bytes + 63) / 64 * 64);   \
        if (mem == NULL)                                                                          \
            return -1;                                                                            \
        sums = (T*)mem;                                                                           \
        lists = (Py_ssize_t*)(mem + sums_bytes);                                                  \
        counts = lists + max_rows * 2 * kdh;                                                      \
        vms = (unsigned*)(counts + max_rows);                                                     \
        for (u0 = 0; u0 < units; u0 = u1) {                                                       \
            u1 = u0 + per_group < units ? u0 + per_group : units;                                 \
            first_row = row0 + u0 / n_t;                                                          \
            /* the group's row lists: (tap offset, input offset) per D, H tap in range */        \
            for (row = first_row; row <= row0 + (u1 - 1) / n_t; row++) {                          \
                const Py_ssize_t od = row / a->h_out, oh = row % a->h_out;                        \
                Py_ssize_t* rl = lists + (row - first_row) * 2 * kdh;                             \
                Py_ssize_t n_rows = 0;                                                            \
                for (kd = 0; kd < a->kd_n; kd++) {                                                \
                    const Py_ssize_t i_d = a->taps_d[od * a->kd_n + kd];                          \
                    if (i_d < 0)                                                                  \
                        continue;                                                                 \
                    for (kh = 0; kh < a->kh_n; kh++) {                                            \
                        const Py_ssize_t i_h = a->taps_h[oh * a->kh_n + kh];                      \
                        if (i_h < 0)                                                              \
                            continue;                                                             \
                        rl[n_rows] = (kd * a->kh_n + kh) * a->kw_n;                               \
                        rl[kdh + n_rows] = i_d * a->x_sd + i_h * a->x_sh;                         \
                        n_rows++;                                                                 \
                    }                                                                             \
                }                                                                                 \
                counts[row - first_row] = n_rows;                                                 \
            }                                                                                     \
            /* the tap masks of the group's tiles with border pixels */                           \
            for (u = u0; u < u1; u++) {                                                           \
                ti = u % n_t;                                                                     \
                DB_TILE_AT(ti, ow, np);                                                           \
                if (ow >= a->w_lo && ow + np <= a->w_hi)                                          \
                    continue;                                                                     \
                for (kw = 0; kw < a->kw_n; kw++) {                                                \
                    unsigned bits = 0;                                                            \
                    for (p = 0; p < np; p++)                                                      \
                        bits |= (unsigned)(a->taps_w[(ow + p) * a->kw_n + kw] >= 0) << p;         \
                    vms[(u - u0) * a->kw_n + kw] = bits;                                          \
                }                                                                                 \
            }                                                                                     \
            memset(sums, 0, (size_t)(u1 - u0) * unit_elems * sizeof(T));                          \
            for (c0 = 0; c0 < a->c_g; c0 += chunk) {                                              \
                const Py_ssize_t c_n = a->c_g - c0 < chunk ? a->c_g - c0 : chunk;                 \
                const T* xc = xg + c0 * a->x_sc;                                                  \
                const T* wc = w + c0 * taps * KB;                                                 \
                for (u = u0; u < u1; u++) {                                                       \
                    const Py_ssize_t* rl = lists + (row0 + u / n_t - first_row) * 2 * kdh;        \
                    const Py_ssize_t n_rows = counts[row0 + u / n_t - first_row];                 \
                    T* t = sums + (u - u0) * unit_elems;                                          \
                    ti = u % n_t;                                                                 \
                    DB_TILE_AT(ti, ow, np);                                                       \
                    if (ow >= a->w_lo && ow + np <= a->w_hi)                                      \
                        tile(xc + (ow * a->stride_w - a->pad_w) * a->x_sw, a->x_sc, c_n, rl,      \
                             rl + kdh, n_rows, a->kw_n, pix_step, kw_step, wc, w_blk, taps, t, M, \
                             (int)np);                                                            \
                    else                                                                          \
                        full(xc, (ow * a->stride_w - a->pad_w) * a->x_sw, a->x_sc, c_n, rl,       \
                             rl + kdh, n_rows, a->kw_n, pix_step, kw_step,                        \
                             vms + (u - u0) * a->kw_n, wc, w_blk, taps, t, M, (int)np);           \
                }                                                                                 \
            }                                                                                     \
            for (u = u0; u < u1; u++) {                                                           \
                const Py_ssize_t r = row0 + u / n_t;                                              \
                T* orow = og + (r / a->h_out) * a->o_sd + (r % a->h_out) * a->o_sh;               \
                ti = u % n_t;                                                                     \
                DB_TILE_AT(ti, ow, np);                                                           \
                DB_STORE(T, sums + (u - u0) * unit_elems)                                         \
            }                                                                                     \
        }                                                                                         \
        free(mem);                                                                                \
        return 0;                                                                                 \
    }

DB_FULL_TASK(float, f32)
DB_FULL_TASK(double, f64)

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
        Py_ssize_t* rtap;                                                                         \
        Py_ssize_t* roff;                                                                         \
        Py_ssize_t row, kd, kh, ow, k, p, np;                                                     \
        if (a->full)                                                                              \
            return pcf_db_task_full_##S(a, n, g, k_tile, row0, row1);                             \
        rtap = (Py_ssize_t*)aligned_alloc(                                                        \
            64, (2 * a->kd_n * a->kh_n * sizeof(Py_ssize_t) + 63) / 64 * 64);                     \
        if (rtap == NULL)                                                                         \
            return -1;                                                                            \
        roff = rtap + a->kd_n * a->kh_n;                                                          \
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
            for (ow = 0; ow < a->w_out; ow += np) {                                               \
                if (ow < a->w_lo || ow >= a->w_hi) {                                       \
                    const Py_ssize_t end = ow < a->w_lo ? a->w_lo : a->w_out;                     \
                    np = end - ow < P ? end - ow : P;                                             \
                    table(xg, a->x_sc, a->c_g, rtap, roff, n_rows, a->kw_n,                       \
                          a->taps_w + ow * a->kw_n, a->x_sw, w, w_blk, taps, tmp, M, (int)np);    \
                } else {                                                                          \
                    np = a->w_hi - ow < P ? a->w_hi - ow : P;                                     \
                    memset(tmp, 0, (size_t)np * MB * KB * sizeof(T));                             \
                    tile(xg + (ow * a->stride_w - a->pad_w) * a->x_sw, a->x_sc, a->c_g, rtap,     \
                         roff, n_rows, a->kw_n, pix_step, kw_step, w, w_blk, taps, tmp, M,        \
                         (int)np);                                                                \
                }                                                                                 \
                DB_STORE(T, tmp)                                                                  \
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
