/* Template body of transforms.h: include only from there, with WG_T and WG defined.

   Matrices (Lavin & Gray 2015), 1-D; the 2-D transforms apply them along rows, then columns.
     F(2, 3), points 0, 1, -1, inf:       F(4, 3), points 0, 1, -1, 2, -2, inf:
     B^T = [1  0 -1  0]                   B^T = [4  0 -5  0  1  0]
           [0  1  1  0]                         [0 -4 -4  1  1  0]
           [0 -1  1  0]                         [0  4 -4 -1  1  0]
           [0  1  0 -1]                         [0 -2 -1  2  1  0]
     A^T = [1  1  1  0]                         [0  2 -1 -2  1  0]
           [0  1 -1 -1]                         [0  4  0 -5  0  1]
                                          A^T = [1  1  1  1  1  0]
                                                [0  1 -1  2 -2  0]
                                                [0  1  1  4  4  0]
                                                [0  1 -1  8 -8  1]
     G = [ 1    0    0 ]                  G = [ 1/4     0     0  ]
         [ 1/2  1/2  1/2]                      [-1/6  -1/6  -1/6 ]
         [ 1/2 -1/2  1/2]                      [-1/6   1/6  -1/6 ]
         [ 0    0    1 ]                       [ 1/24  1/12  1/6 ]
                                               [ 1/24 -1/12  1/6 ]
                                               [ 0     0     1  ]
   B^T and A^T have small integer entries: the data transforms are exact on small integers,
   which is what makes F(2x2, 3x3) (whose G holds only halves) exact on integer data.
*/


/* --- 1-D transforms of n vectors ------------------------------------------------------------
   Element k of vector t is sk[t] (one pointer per element, each stream of unit stride, so the
   loop over t vectorizes); element k of the result is d[k * ds + t]. The caller guarantees
   that the result rows do not overlap (|ds| >= n) nor the inputs, which WG_IVDEP tells the
   compiler. */

static inline void WG(wg_in_f2)(const WG_T* WG_RESTRICT s0, const WG_T* WG_RESTRICT s1,
                                const WG_T* WG_RESTRICT s2, const WG_T* WG_RESTRICT s3,
                                WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    WG_IVDEP
    for (ptrdiff_t t = 0; t < n; ++t) {
        d[t] = s0[t] - s2[t];
        d[ds + t] = s1[t] + s2[t];
        d[2 * ds + t] = s2[t] - s1[t];
        d[3 * ds + t] = s1[t] - s3[t];
    }
}

static inline void WG(wg_out_f2)(const WG_T* WG_RESTRICT s0, const WG_T* WG_RESTRICT s1,
                                 const WG_T* WG_RESTRICT s2, const WG_T* WG_RESTRICT s3,
                                 WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    WG_IVDEP
    for (ptrdiff_t t = 0; t < n; ++t) {
        d[t] = s0[t] + s1[t] + s2[t];
        d[ds + t] = s1[t] - s2[t] - s3[t];
    }
}

static inline void WG(wg_in_f4)(const WG_T* WG_RESTRICT s0, const WG_T* WG_RESTRICT s1,
                                const WG_T* WG_RESTRICT s2, const WG_T* WG_RESTRICT s3,
                                const WG_T* WG_RESTRICT s4, const WG_T* WG_RESTRICT s5,
                                WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    WG_IVDEP
    for (ptrdiff_t t = 0; t < n; ++t) {
        /* rows 1-4 come in pairs (points +-1, +-2) that share their terms */
        WG_T a = s3[t] + s4[t], b = 4 * (s1[t] + s2[t]);   /* row 1: a - b */
        WG_T c = s4[t] - s3[t], e = 4 * (s1[t] - s2[t]);   /* row 2: c + e */
        WG_T f = s4[t] - s2[t], g = 2 * (s3[t] - s1[t]);   /* rows 3, 4: f + g, f - g */
        d[t] = 4 * s0[t] - 5 * s2[t] + s4[t];
        d[ds + t] = a - b;
        d[2 * ds + t] = c + e;
        d[3 * ds + t] = f + g;
        d[4 * ds + t] = f - g;
        d[5 * ds + t] = 4 * s1[t] - 5 * s3[t] + s5[t];
    }
}

static inline void WG(wg_out_f4)(const WG_T* WG_RESTRICT s0, const WG_T* WG_RESTRICT s1,
                                 const WG_T* WG_RESTRICT s2, const WG_T* WG_RESTRICT s3,
                                 const WG_T* WG_RESTRICT s4, const WG_T* WG_RESTRICT s5,
                                 WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    WG_IVDEP
    for (ptrdiff_t t = 0; t < n; ++t) {
        WG_T sum12 = s1[t] + s2[t], dif12 = s1[t] - s2[t];
        WG_T sum34 = s3[t] + s4[t], dif34 = s3[t] - s4[t];
        d[t] = s0[t] + sum12 + sum34;
        d[ds + t] = dif12 + 2 * dif34;
        d[2 * ds + t] = sum12 + 4 * sum34;
        d[3 * ds + t] = dif12 + 8 * dif34 + s5[t];
    }
}

/* --- one channel of a block of tiles ------------------------------------------------------ */
/* Tiles are numbered over (sample, tile row, tile column). A block is cut into segments of at
   most WG_CHUNK consecutive tiles of one tile row. The rows of a segment are kept split by
   phase: row position m * s + r (tile s, offset r < m) is stored at r * p + s, p = seg + 1.
   The vertical transform then runs along whole rows, and the horizontal one reads, for tile s,
   phases 0 .. m-1 at s and phases 0, 1 at s + 1: unit-stride streams again, not stride m. */

/* The segment holding tile t_first + done: its tile row th, first tile column tw, length. */
static inline ptrdiff_t WG(wg_segment)(ptrdiff_t t, ptrdiff_t left, ptrdiff_t tiles_w,
                                       ptrdiff_t tiles_per_image, ptrdiff_t* th, ptrdiff_t* tw)
{
    const ptrdiff_t in_image = t % tiles_per_image;
    ptrdiff_t seg;
    *th = in_image / tiles_w;
    *tw = in_image % tiles_w;
    seg = tiles_w - *tw;
    if (seg > left) seg = left;
    return seg > WG_CHUNK ? WG_CHUNK : seg;
}

/* Transform tiles [t_first, t_first + n_tiles) of one input channel (x_c: that channel of
   sample 0) into v[xi * vs + t - t_first], xi = i * (m + 2) + j. Padded position q of a row
   (column) is input index line_h[q] (line_w[q]), -1 for a zero: every padding mode is read
   through these tables, without a padded copy of the input; they must cover
   (tiles + 1) * m positions. Positions [col_first, col_stop) are the input's own columns
   (line_w[q] = q - col_first), read without the table. scratch: WG_SCRATCH(m). */
WG_ALWAYS_INLINE void WG(wg_input_tiles)(const int m, WG_T* v, ptrdiff_t vs, const WG_T* x_c,
                                         ptrdiff_t x_sn, ptrdiff_t x_sh, ptrdiff_t x_sw,
                                         const ptrdiff_t* line_h, const ptrdiff_t* line_w,
                                         ptrdiff_t col_first, ptrdiff_t col_stop,
                                         ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                                         ptrdiff_t t_first, ptrdiff_t n_tiles, WG_T* scratch)
{
    const ptrdiff_t a = m + 2, row_len = WG_ROW(m);
    WG_T* rows = scratch;               /* the a padded input rows of a segment, by phase */
    WG_T* tmp = scratch + a * row_len;  /* the same after the vertical transform */
    ptrdiff_t done = 0, th, tw;
    while (done < n_tiles) {
        const ptrdiff_t t = t_first + done;
        const ptrdiff_t seg = WG(wg_segment)(t, n_tiles - done, tiles_w, tiles_per_image,
                                             &th, &tw);
        const ptrdiff_t p = seg + 1, len = m * p;
        const ptrdiff_t* cols = line_w + tw * m;
        const WG_T* x_n = x_c + (t / tiles_per_image) * x_sn;
        /* Tiles s in [s_lo, s_hi) read only inside the input (positions q in [col_first,
           col_stop), input column q - col_first): no table look-up there. */
        ptrdiff_t s_lo = (col_first - tw * m + m - 1) / m, s_hi = (col_stop - tw * m) / m;
        if (col_first - tw * m <= 0) s_lo = 0;
        /* A pad wider than the segment puts the input's first column past its end: every
           tile of the segment then reads through the table. Without this clamp the head loop
           below ran s past p and wrote into the next phase's slots (wrong results with wide
           reflect/circular/replicate pads) or past the scratch (wide zero pads). */
        if (s_lo > p) s_lo = p;
        if (s_hi > p) s_hi = p;
        if (s_hi < s_lo) s_hi = s_lo;
        const ptrdiff_t inner_first = (tw * m + m * s_lo - col_first) * x_sw;
        for (ptrdiff_t i = 0; i < a; ++i) {
            const ptrdiff_t h = line_h[th * m + i];
            WG_T* dst = rows + i * row_len;
            if (h < 0) {
                for (ptrdiff_t k = 0; k < len; ++k) dst[k] = 0;
                continue;
            }
            const WG_T* src = x_n + h * x_sh;
            for (ptrdiff_t s = 0; s < s_lo; ++s)
                for (ptrdiff_t r = 0; r < m; ++r) {
                    const ptrdiff_t col = cols[m * s + r];
                    dst[r * p + s] = col < 0 ? 0 : src[col * x_sw];
                }
            /* the bulk: de-interleave a stretch of the input row, from tile s_lo on */
            const WG_T* inner = src + inner_first;
            WG_T* out = dst + s_lo;
            if (x_sw == 1) {
                for (ptrdiff_t s = 0; s < s_hi - s_lo; ++s)
                    for (ptrdiff_t r = 0; r < m; ++r) out[r * p + s] = inner[m * s + r];
            } else {
                for (ptrdiff_t s = 0; s < s_hi - s_lo; ++s)
                    for (ptrdiff_t r = 0; r < m; ++r) out[r * p + s] = inner[(m * s + r) * x_sw];
            }
            for (ptrdiff_t s = s_hi; s < p; ++s)
                for (ptrdiff_t r = 0; r < m; ++r) {
                    const ptrdiff_t col = cols[m * s + r];
                    dst[r * p + s] = col < 0 ? 0 : src[col * x_sw];
                }
        }
        WG_T* vv = v + done;
        if (m == 2) {
            WG(wg_in_f2)(rows, rows + row_len, rows + 2 * row_len, rows + 3 * row_len,
                         tmp, row_len, len);
            for (ptrdiff_t i = 0; i < a; ++i) {
                const WG_T* q = tmp + i * row_len;
                WG(wg_in_f2)(q, q + p, q + 1, q + p + 1, vv + i * a * vs, vs, seg);
            }
        } else {
            WG(wg_in_f4)(rows, rows + row_len, rows + 2 * row_len, rows + 3 * row_len,
                         rows + 4 * row_len, rows + 5 * row_len, tmp, row_len, len);
            for (ptrdiff_t i = 0; i < a; ++i) {
                const WG_T* q = tmp + i * row_len;
                WG(wg_in_f4)(q, q + p, q + 2 * p, q + 3 * p, q + 1, q + p + 1,
                             vv + i * a * vs, vs, seg);
            }
        }
        done += seg;
    }
}

/* Inverse-transform tiles [t_first, t_first + n_tiles) of one output channel, read as
   mm[xi * ms + t - t_first], add the bias and store them into out_k (that channel of sample
   0), cutting the tiles of the last tile row and column to the h_out x w_out plane.
   scratch: WG_SCRATCH(m). */
WG_ALWAYS_INLINE void WG(wg_output_tiles)(const int m, WG_T* out_k, ptrdiff_t out_sn,
                                          ptrdiff_t out_sh, ptrdiff_t out_sw, ptrdiff_t h_out,
                                          ptrdiff_t w_out, const WG_T* mm, ptrdiff_t ms,
                                          WG_T bias, ptrdiff_t tiles_w,
                                          ptrdiff_t tiles_per_image, ptrdiff_t t_first,
                                          ptrdiff_t n_tiles, WG_T* scratch)
{
    const ptrdiff_t a = m + 2, row_len = WG_ROW(m);
    WG_T* tmp = scratch;                /* a rows after the horizontal transform, by phase */
    WG_T* y = scratch + a * row_len;    /* the m output rows of a segment, by phase */
    ptrdiff_t done = 0, th, tw;
    while (done < n_tiles) {
        const ptrdiff_t t = t_first + done;
        const ptrdiff_t seg = WG(wg_segment)(t, n_tiles - done, tiles_w, tiles_per_image,
                                             &th, &tw);
        const WG_T* m0 = mm + done;
        if (m == 2) {
            for (ptrdiff_t i = 0; i < a; ++i) {
                const WG_T* q = m0 + i * a * ms;
                WG(wg_out_f2)(q, q + ms, q + 2 * ms, q + 3 * ms, tmp + i * row_len, seg, seg);
            }
            WG(wg_out_f2)(tmp, tmp + row_len, tmp + 2 * row_len, tmp + 3 * row_len,
                          y, row_len, m * seg);
        } else {
            for (ptrdiff_t i = 0; i < a; ++i) {
                const WG_T* q = m0 + i * a * ms;
                WG(wg_out_f4)(q, q + ms, q + 2 * ms, q + 3 * ms, q + 4 * ms, q + 5 * ms,
                              tmp + i * row_len, seg, seg);
            }
            WG(wg_out_f4)(tmp, tmp + row_len, tmp + 2 * row_len, tmp + 3 * row_len,
                          tmp + 4 * row_len, tmp + 5 * row_len, y, row_len, m * seg);
        }
        /* y[i * row_len + r * seg + s] is output (th * m + i, (tw + s) * m + r) */
        const ptrdiff_t n_rows = h_out - th * m < m ? h_out - th * m : m;
        const ptrdiff_t n_cols = w_out - tw * m < m * seg ? w_out - tw * m : m * seg;
        const ptrdiff_t full = n_cols / m;   /* tiles stored whole */
        WG_T* o = out_k + (t / tiles_per_image) * out_sn + th * m * out_sh + tw * m * out_sw;
        for (ptrdiff_t i = 0; i < n_rows; ++i) {
            WG_T* dst = o + i * out_sh;
            const WG_T* src = y + i * row_len;
            if (out_sw == 1) {
                for (ptrdiff_t s = 0; s < full; ++s)
                    for (ptrdiff_t r = 0; r < m; ++r)
                        dst[m * s + r] = src[r * seg + s] + bias;
            } else {
                for (ptrdiff_t s = 0; s < full; ++s)
                    for (ptrdiff_t r = 0; r < m; ++r)
                        dst[(m * s + r) * out_sw] = src[r * seg + s] + bias;
            }
            for (ptrdiff_t r = 0; r < n_cols - full * m; ++r)
                dst[(m * full + r) * out_sw] = src[r * seg + full] + bias;
        }
        done += seg;
    }
}

/* The entry points: one specialization per tile size, so that m is a constant in the loops. */

static void WG(wg_input_channel)(int m, WG_T* v, ptrdiff_t vs, const WG_T* x_c,
                                 ptrdiff_t x_sn, ptrdiff_t x_sh, ptrdiff_t x_sw,
                                 const ptrdiff_t* line_h, const ptrdiff_t* line_w,
                                 ptrdiff_t col_first, ptrdiff_t col_stop,
                                 ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                                 ptrdiff_t t_first, ptrdiff_t n_tiles, WG_T* scratch)
{
    if (m == 2)
        WG(wg_input_tiles)(2, v, vs, x_c, x_sn, x_sh, x_sw, line_h, line_w, col_first,
                           col_stop, tiles_w,
                           tiles_per_image, t_first, n_tiles, scratch);
    else
        WG(wg_input_tiles)(4, v, vs, x_c, x_sn, x_sh, x_sw, line_h, line_w, col_first,
                           col_stop, tiles_w,
                           tiles_per_image, t_first, n_tiles, scratch);
}

static void WG(wg_output_channel)(int m, WG_T* out_k, ptrdiff_t out_sn, ptrdiff_t out_sh,
                                  ptrdiff_t out_sw, ptrdiff_t h_out, ptrdiff_t w_out,
                                  const WG_T* mm, ptrdiff_t ms, WG_T bias,
                                  ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                                  ptrdiff_t t_first, ptrdiff_t n_tiles, WG_T* scratch)
{
    if (m == 2)
        WG(wg_output_tiles)(2, out_k, out_sn, out_sh, out_sw, h_out, w_out, mm, ms, bias,
                            tiles_w, tiles_per_image, t_first, n_tiles, scratch);
    else
        WG(wg_output_tiles)(4, out_k, out_sn, out_sh, out_sw, h_out, w_out, mm, ms, bias,
                            tiles_w, tiles_per_image, t_first, n_tiles, scratch);
}

/* --- weight transform: U = G g G^T, once per weight ---------------------------------------- */
/* Computed in WG_WIDE (double for float32, long double for float64), whose own rounding is
   far below that of the result type, then rounded once to the result type. WG_FILTERS filters
   at a time, filter index innermost, so that the arithmetic vectorizes across filters, and the
   results are stored a run of filters at a time: the alpha^2 rows of u lie a whole layer
   apart, a power of two often, and single elements would make them fight for cache sets. */
#define WG_FILTERS 16

/* 1-D: u_k[c] = (G g)[k] for g = (g0[c], g1[c], g2[c]), over WG_FILTERS filters c. */
static inline void WG(wg_g_f2)(const WG_WIDE* WG_RESTRICT g0,
                               const WG_WIDE* WG_RESTRICT g1,
                               const WG_WIDE* WG_RESTRICT g2, WG_WIDE* WG_RESTRICT u,
                               ptrdiff_t us)
{
    WG_IVDEP
    for (int c = 0; c < WG_FILTERS; ++c) {
        u[c] = g0[c];
        u[us + c] = (g0[c] + g1[c] + g2[c]) / 2;
        u[2 * us + c] = (g0[c] - g1[c] + g2[c]) / 2;
        u[3 * us + c] = g2[c];
    }
}

static inline void WG(wg_g_f4)(const WG_WIDE* WG_RESTRICT g0,
                               const WG_WIDE* WG_RESTRICT g1,
                               const WG_WIDE* WG_RESTRICT g2, WG_WIDE* WG_RESTRICT u,
                               ptrdiff_t us)
{
    const WG_WIDE sixth = (WG_WIDE) 1 / 6, twenty_fourth = (WG_WIDE) 1 / 24;
    WG_IVDEP
    for (int c = 0; c < WG_FILTERS; ++c) {
        const WG_WIDE even = g0[c] + g2[c], even4 = g0[c] + 4 * g2[c];
        u[c] = g0[c] / 4;
        u[us + c] = -(even + g1[c]) * sixth;
        u[2 * us + c] = -(even - g1[c]) * sixth;
        u[3 * us + c] = (even4 + 2 * g1[c]) * twenty_fourth;
        u[4 * us + c] = (even4 - 2 * g1[c]) * twenty_fourth;
        u[5 * us + c] = g2[c];
    }
}

/* u[xi * us + c] = (G g_c G^T)[xi] for the n filters g_c[r, s] = w[c * sc + r * sr + s * ss]. */
static void WG(wg_weight_filters)(int m, const WG_T* w, ptrdiff_t sc, ptrdiff_t sr,
                                  ptrdiff_t ss, ptrdiff_t n, WG_T* u, ptrdiff_t us)
{
    const int a = m + 2;
    const ptrdiff_t f = WG_FILTERS;
    WG_WIDE g[9 * WG_FILTERS], rows[3 * 6 * WG_FILTERS], full[6 * 6 * WG_FILTERS];
    for (ptrdiff_t c0 = 0; c0 < n; c0 += f) {
        const ptrdiff_t nc = n - c0 < f ? n - c0 : f;
        for (ptrdiff_t c = 0; c < f; ++c)   /* a short last run is padded with zeros */
            for (int rs = 0; rs < 9; ++rs)
                g[rs * f + c] = c < nc ? w[(c0 + c) * sc + (rs / 3) * sr + (rs % 3) * ss] : 0;
        for (int r = 0; r < 3; ++r) {       /* along s: rows[r][j] */
            const WG_WIDE* gr = g + 3 * r * f;
            if (m == 2) WG(wg_g_f2)(gr, gr + f, gr + 2 * f, rows + r * a * f, f);
            else WG(wg_g_f4)(gr, gr + f, gr + 2 * f, rows + r * a * f, f);
        }
        for (int j = 0; j < a; ++j) {       /* along r: full[i][j] */
            const WG_WIDE* rj = rows + j * f;
            if (m == 2) WG(wg_g_f2)(rj, rj + a * f, rj + 2 * a * f, full + j * f, a * f);
            else WG(wg_g_f4)(rj, rj + a * f, rj + 2 * a * f, full + j * f, a * f);
        }
        for (int xi = 0; xi < a * a; ++xi)
            for (ptrdiff_t c = 0; c < nc; ++c) u[xi * us + c0 + c] = (WG_T) full[xi * f + c];
    }
}
