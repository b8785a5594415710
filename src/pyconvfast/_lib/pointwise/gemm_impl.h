/* The packed GEMM micro-kernels of 1x1 convolutions, written once for one element type and one
   instruction set; gemm.h instantiates them for every (type, level) through cpu/instantiate.h.

   One call of a micro-kernel adds a rank-kc update to an R x (NV vectors) register tile, in the
   manner of the BLIS/MLAS micro-kernels: per step kk it loads NV vectors of the "vector" operand
   B (kk * b_k, panel by panel) and broadcasts R scalars of the "broadcast" operand A
   (kk * a_k + r * a_r), R * NV independent FMA chains. Two forms (gemm_tile.h has the tile):
     "chw"  rows are R output channels (A: the packed weight panel, a_k = panel width, a_r = 1),
            vectors are NV * V consecutive pixels of the packed activation panel (B); narrower
            tiles (1 or 2 vectors, more rows) take the last pixels of a row;
     "hwc"  rows are R pixels (A: the packed activation rows), vectors are the 16 (float32) or
            8 (float64) output channels of one packed weight panel (B), or of 2 or 4 panels at
            AVX-512.
   The tile is stored at C + r * c_r + v * V (vectors contiguous).

   The accumulators start from C itself (init 0), from a bias value per row (1), from a bias
   vector per column (2) or from zero (3); then each step adds w * x, fused (FMA) at the AVX2 and
   AVX-512 levels and a separate multiply and add at the baseline. An output therefore sums
   bias + w[0] x[0] + w[1] x[1] + ... in input-channel order, whatever the tile, the K block or
   the task that computes it: results do not depend on the thread count (they differ between
   levels). */

#define PW_T PCF_T
#define PW_NAME(base) PCF_VARIANT(pcf_pw_##base)
#define PW_INLINE static inline PCF_ALWAYS_INLINE PCF_TARGET
#if defined(__GNUC__) || defined(__clang__)
#define PW_UNROLL _Pragma("GCC unroll 32")
#else
#define PW_UNROLL
#endif

#if PCF_GNU_VECTORS
typedef PW_T PW_NAME(vec) __attribute__((vector_size(PCF_VBYTES), aligned(sizeof(PW_T))));
#define PW_VT PW_NAME(vec)
#define PW_V ((Py_ssize_t)(PCF_VBYTES / sizeof(PW_T)))
#else
#define PW_VT PW_T
#define PW_V ((Py_ssize_t)1)
#endif

/* Tile shapes of this level: (rows, vectors) of "chw", and of its narrower tiles for the last
   pixels of a row (so that a 49-pixel plane does not cost two 48-pixel tiles); rows of "hwc"
   (its vectors span one weight panel). At most 28 of AVX-512's 32 registers and 16 of the 16
   of AVX2 and SSE2 hold accumulators, loaded vectors and the broadcast; the rows of a "chw"
   tile divide the panel. */
#define PW_PANEL ((Py_ssize_t)(64 / sizeof(PW_T)))
#define PW_CHW_R PCF_BY_LEVEL(4, 4, 8)
#define PW_CHW_NV 3
#define PW_CHW2_R PCF_BY_LEVEL(4, 4, 8)
#define PW_CHW1_R PCF_BY_LEVEL(8, 8, PW_PANEL)
#define PW_HWC_NV (PW_PANEL / PW_V)
#define PW_HWC_R PCF_BY_LEVEL(2, 6, 24)
/* AVX-512 also has wide "hwc" tiles, 6 pixels x 4 panels and 12 pixels x 2 panels (a panel is
   one vector there): 4 loads and 6 broadcasts (or 2 and 12) feed 24 FMAs, where the one-panel
   tile needs 24 broadcasts. */
#define PW_HWC4_R 6
#define PW_HWC2_R 12

PW_INLINE PW_VT PW_NAME(splat)(PW_T s)
{
#if PCF_LEVEL == 2
    return PCF_CAT(PW_SET1_512_, PCF_TS)(s);
#elif PCF_LEVEL == 1
    return PCF_CAT(PW_SET1_256_, PCF_TS)(s);
#elif PCF_GNU_VECTORS
    PW_VT v;
    Py_ssize_t l;
    for (l = 0; l < PW_V; l++) v[l] = s;
    return v;
#else
    return s;
#endif
}

PW_INLINE PW_VT PW_NAME(load)(const PW_T* p)
{
    PW_VT v;
    memcpy(&v, p, sizeof v);
    return v;
}

PW_INLINE void PW_NAME(store)(PW_T* p, PW_VT v) { memcpy(p, &v, sizeof v); }

/* a * b + c: fused where the level has FMA. */
PW_INLINE PW_VT PW_NAME(fma)(PW_VT a, PW_VT b, PW_VT c)
{
#if PCF_LEVEL == 2
    return PCF_CAT(PW_FMA512_, PCF_TS)(a, b, c);
#elif PCF_LEVEL == 1
    return PCF_CAT(PW_FMA256_, PCF_TS)(a, b, c);
#else
    return a * b + c;
#endif
}

/* The tiles (gemm_tile.h): "chw" and its narrower chw2 and chw1, and "hwc": see the top of this
   file. */
#define PW_TILE_NAME PW_NAME(chw_tile)
#define PW_TILE_R PW_CHW_R
#define PW_TILE_NV PW_CHW_NV
#define PW_TILE_VP PW_CHW_NV
#include "pointwise/gemm_tile.h"
#define PW_TILE_NAME PW_NAME(chw2_tile)
#define PW_TILE_R PW_CHW2_R
#define PW_TILE_NV 2
#define PW_TILE_VP 2
#include "pointwise/gemm_tile.h"
#define PW_TILE_NAME PW_NAME(chw1_tile)
#define PW_TILE_R PW_CHW1_R
#define PW_TILE_NV 1
#define PW_TILE_VP 1
#include "pointwise/gemm_tile.h"
#define PW_TILE_NAME PW_NAME(hwc_tile)
#define PW_TILE_R PW_HWC_R
#define PW_TILE_NV PW_HWC_NV
#define PW_TILE_VP PW_HWC_NV
#include "pointwise/gemm_tile.h"
#if PCF_LEVEL == 2
#define PW_TILE_NAME PW_NAME(hwc4_tile)
#define PW_TILE_R PW_HWC4_R
#define PW_TILE_NV 4
#define PW_TILE_VP 1
#include "pointwise/gemm_tile.h"
#define PW_TILE_NAME PW_NAME(hwc2_tile)
#define PW_TILE_R PW_HWC2_R
#define PW_TILE_NV 2
#define PW_TILE_VP 1
#include "pointwise/gemm_tile.h"
#endif

typedef void (*PW_NAME(tile_fn))(Py_ssize_t, const PW_T*, Py_ssize_t, Py_ssize_t, const PW_T*,
                                 Py_ssize_t, Py_ssize_t, PW_T*, Py_ssize_t, int, const PW_T*);

/* The tile at cp (rows c_r apart, columns c_j apart; n_rows x n_cols of it in range) when it is
   whole and its columns are contiguous; else a tile in `local`, started from cp's values (or
   the bias, or zero) and copied back: the same sums in the same order. */
static PCF_TARGET void PW_NAME(run_tile)(PW_NAME(tile_fn) tile, Py_ssize_t rows, Py_ssize_t cols,
                                         Py_ssize_t kc, const PW_T* a, Py_ssize_t a_k,
                                         Py_ssize_t a_r, const PW_T* b, Py_ssize_t b_k,
                                         Py_ssize_t b_p, PW_T* cp,
                                         Py_ssize_t c_r, Py_ssize_t c_j, Py_ssize_t n_rows,
                                         Py_ssize_t n_cols, int init, const PW_T* bias,
                                         PW_T* local)
{
    Py_ssize_t r, j;
    if (n_rows == rows && n_cols == cols && c_j == 1) {
        tile(kc, a, a_k, a_r, b, b_k, b_p, cp, c_r, init, bias);
        return;
    }
    for (r = 0; r < rows; r++)
        for (j = 0; j < cols; j++) {
            PW_T start = 0;
            if (r < n_rows && j < n_cols) {
                if (init == 0) start = cp[r * c_r + j * c_j];
                else if (init == 1) start = bias[r];
                else if (init == 2) start = bias[j];
            }
            local[r * cols + j] = start;
        }
    tile(kc, a, a_k, a_r, b, b_k, b_p, local, cols, 0, NULL);
    for (r = 0; r < n_rows; r++)
        for (j = 0; j < n_cols; j++) cp[r * c_r + j * c_j] = local[r * cols + j];
}

/* One task: outputs out[k * o_sk + p * o_sp] of one (sample, group) for pixels p in [p0, p1) and
   the output channels of weight panels [q0, q1), from x[c * x_sc + p * x_sp] (c < c_g), the
   packed panels wp[(q * c_g + c) * panel + j] (weight of output channel q * panel + j) and the
   bias (k_g values, or NULL). The input channels are taken kb at a time; for each block, a
   panel of the activation (a "chw" tile's pixels, or a "hwc" tile's rows) is packed once into
   buf and reused by every panel's tile.
   buf holds kb * 48 + 512 elements (pcf_pw_buffer_elements). With "hwc" tiles and an output
   whose channels are not contiguous (NCHW), `stage` (NULL otherwise) holds the task's
   (p1 - p0) x (q1 - q0) * panel outputs, pixel by pixel, so that the tiles store whole vectors;
   they are copied to out at the end. */
static PCF_TARGET void PW_NAME(task)(const PW_T* x, Py_ssize_t x_sc, Py_ssize_t x_sp, PW_T* out,
                                     Py_ssize_t o_sk, Py_ssize_t o_sp, const PW_T* wp,
                                     const PW_T* bias, Py_ssize_t c_g, Py_ssize_t k_g,
                                     Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t q0, Py_ssize_t q1,
                                     Py_ssize_t kb, int hwc, PW_T* buf, PW_T* stage)
{
    const Py_ssize_t panel = PW_PANEL, k0 = q0 * panel;
    const Py_ssize_t k1 = q1 * panel < k_g ? q1 * panel : k_g;
    /* where the "hwc" tiles store output (p, k): cbase + (p - p0) * c_sp + (k - k0) * c_sk */
    PW_T* cbase = stage ? stage : out + p0 * o_sp + k0 * o_sk;
    const Py_ssize_t c_sk = stage ? 1 : o_sk, c_sp = stage ? (q1 - q0) * panel : o_sp;
    PW_T* local = buf + kb * 48;
    Py_ssize_t kc0, kc, pt, q, r, j, kk, k;
    for (kc0 = 0; kc0 < c_g; kc0 += kb) {
        kc = c_g - kc0 < kb ? c_g - kc0 : kb;
        if (!hwc) {
            const Py_ssize_t tw = PW_CHW_NV * PW_V;
            for (pt = p0; pt < p1; pt += tw) {
                const Py_ssize_t n_cols = p1 - pt < tw ? p1 - pt : tw;
                for (kk = 0; kk < kc; kk++) {
                    const PW_T* src = x + (kc0 + kk) * x_sc + pt * x_sp;
                    PW_T* dst = buf + kk * tw;
                    if (x_sp == 1) {
                        memcpy(dst, src, (size_t)n_cols * sizeof(PW_T));
                    } else {
                        for (j = 0; j < n_cols; j++) dst[j] = src[j * x_sp];
                    }
                    for (j = n_cols; j < tw; j++) dst[j] = 0;
                }
                /* the tile as narrow as the pixels left allow */
                PW_NAME(tile_fn) tile = PW_NAME(chw_tile);
                Py_ssize_t rows = PW_CHW_R, cols = tw;
                if (n_cols <= PW_V) {
                    tile = PW_NAME(chw1_tile);
                    rows = PW_CHW1_R;
                    cols = PW_V;
                } else if (n_cols <= 2 * PW_V) {
                    tile = PW_NAME(chw2_tile);
                    rows = PW_CHW2_R;
                    cols = 2 * PW_V;
                }
                for (q = q0; q < q1; q++) {
                    for (r = 0; r < panel; r += rows) {
                        k = q * panel + r;
                        if (k >= k_g) break;
                        PW_NAME(run_tile)(tile, rows, cols, kc, wp + (q * c_g + kc0) * panel + r,
                                          panel, 1, buf, tw, 0, out + k * o_sk + pt * o_sp, o_sk,
                                          o_sp, k_g - k < rows ? k_g - k : rows, n_cols,
                                          kc0 > 0 ? 0 : (bias ? 1 : 3), bias ? bias + k : NULL,
                                          local);
                    }
                }
            }
        } else {
            for (pt = p0; pt < p1; pt += PW_HWC_R) {
                const Py_ssize_t n_rows = p1 - pt < PW_HWC_R ? p1 - pt : PW_HWC_R;
                const PW_T* xt = x + kc0 * x_sc + pt * x_sp;
                /* The rows packed kc apart (zero past the last pixel), even where they are
                   contiguous channels already: rows of 1024 float32 channels are 4 KB apart,
                   and 24 of them would fall in one set of the L1 cache. */
                for (r = 0; r < PW_HWC_R; r++) {
                    if (r >= n_rows) {
                        memset(buf + r * kc, 0, (size_t)kc * sizeof(PW_T));
                    } else if (x_sc == 1) {
                        memcpy(buf + r * kc, xt + r * x_sp, (size_t)kc * sizeof(PW_T));
                    } else {
                        for (kk = 0; kk < kc; kk++) buf[r * kc + kk] = xt[kk * x_sc + r * x_sp];
                    }
                }
                for (q = q0; q < q1;) {
                    k = q * panel;
#if PCF_LEVEL == 2
                    {
                        /* 4 or 2 whole panels at once where there are */
                        const Py_ssize_t n_panels = q + 4 <= q1 && k + 4 * panel <= k_g ? 4
                            : q + 2 <= q1 && k + 2 * panel <= k_g ? 2 : 1;
                        const Py_ssize_t rows = n_panels == 4 ? PW_HWC4_R : PW_HWC2_R;
                        if (n_panels > 1) {
                            for (r = 0; r < n_rows; r += rows) {
                                PW_NAME(run_tile)(
                                    n_panels == 4 ? PW_NAME(hwc4_tile) : PW_NAME(hwc2_tile), rows,
                                    n_panels * panel, kc, buf + r * kc, 1, kc,
                                    wp + (q * c_g + kc0) * panel, panel, c_g * panel,
                                    cbase + (pt + r - p0) * c_sp + (k - k0) * c_sk, c_sp, c_sk,
                                    n_rows - r < rows ? n_rows - r : rows, n_panels * panel,
                                    kc0 > 0 ? 0 : (bias ? 2 : 3), bias ? bias + k : NULL, local);
                            }
                            q += n_panels;
                            continue;
                        }
                    }
#endif
                    PW_NAME(run_tile)(PW_NAME(hwc_tile), PW_HWC_R, panel, kc, buf, 1, kc,
                                      wp + (q * c_g + kc0) * panel, panel, 0,
                                      cbase + (pt - p0) * c_sp + (k - k0) * c_sk, c_sp, c_sk,
                                      n_rows,
                                      k_g - k < panel ? k_g - k : panel,
                                      kc0 > 0 ? 0 : (bias ? 2 : 3), bias ? bias + k : NULL,
                                      local);
                    q++;
                }
            }
        }
    }
    if (stage) {
        /* a panel of channels at a time: each pixel's panel is one line of the stage, and the
           panel's output rows are the lines written */
        for (k = k0; k < k1; k += panel) {
            const Py_ssize_t n_k = k1 - k < panel ? k1 - k : panel;
            for (pt = p0; pt < p1; pt++)
                for (j = 0; j < n_k; j++)
                    out[(k + j) * o_sk + pt * o_sp] = stage[(pt - p0) * c_sp + k - k0 + j];
        }
    }
}

static const PCF_CAT(pcf_pw_shape_, PCF_TS) PW_NAME(shape) = {
    PW_CHW_R, PW_CHW_NV * PW_V, PW_HWC_R, PW_PANEL, PW_NAME(task),
};

#undef PW_T
#undef PW_NAME
#undef PW_INLINE
#undef PW_UNROLL
#undef PW_VT
#undef PW_V
#undef PW_CHW_R
#undef PW_CHW_NV
#undef PW_CHW2_R
#undef PW_CHW1_R
#undef PW_PANEL
#undef PW_HWC_NV
#undef PW_HWC_R
#undef PW_HWC4_R
#undef PW_HWC2_R
