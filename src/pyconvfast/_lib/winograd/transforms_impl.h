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
     F(2, 5), the points of F(4, 3), so the same B^T (a 6-point transform depends only on
     its points):
          A^T = [1  1  1  1  1  0]        G = [ 1/4     0     0     0     0   ]
                [0  1 -1  2 -2  1]            [-1/6  -1/6  -1/6  -1/6  -1/6  ]
                                              [-1/6   1/6  -1/6   1/6  -1/6  ]
                                              [ 1/24  1/12  1/6   1/3   2/3  ]
                                              [ 1/24 -1/12  1/6  -1/3   2/3  ]
                                              [ 0     0     0     0     1    ]
   (row i of G is f_i * (1, a_i, a_i^2, ...) for point a_i, with the F(4, 3) scale f_i; A^T
   is the first m rows of the same Vandermonde matrix, the last column for the point inf.)
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

static inline void WG(wg_out_f2_r5)(const WG_T* WG_RESTRICT s0, const WG_T* WG_RESTRICT s1,
                                    const WG_T* WG_RESTRICT s2, const WG_T* WG_RESTRICT s3,
                                    const WG_T* WG_RESTRICT s4, const WG_T* WG_RESTRICT s5,
                                    WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    WG_IVDEP
    for (ptrdiff_t t = 0; t < n; ++t) {   /* the first two rows of wg_out_f4 */
        WG_T sum12 = s1[t] + s2[t], dif12 = s1[t] - s2[t];
        WG_T sum34 = s3[t] + s4[t], dif34 = s3[t] - s4[t];
        d[t] = s0[t] + sum12 + sum34;
        d[ds + t] = dif12 + 2 * dif34 + s5[t];
    }
}

/* --- one channel of a block of tiles ------------------------------------------------------ */
/* Tiles are numbered over (sample, tile row, tile column). A block is cut into segments of at
   most WG_CHUNK consecutive tiles of one tile row. The rows of a segment are kept split by
   phase: row position m * s + r (tile s, offset r < m) is stored at r * p + s,
   p = seg + WG_EXTRA(m, r). The vertical transform then runs along whole rows, and the
   horizontal one reads, for tile s, its alpha positions as unit-stride streams again, not
   stride m: phases 0 .. m-1 at s and 0, 1 at s + 1 (F(m, 3)), or phases 0, 1 at s, s + 1 and
   s + 2 (F(2, 5)). */

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
   sample 0) into v[xi * vs + t - t_first], xi = i * alpha + j. Padded position q of a row
   (column) is input index line_h[q] (line_w[q]), -1 for a zero: every padding mode is read
   through these tables, without a padded copy of the input; they must cover
   (tiles + WG_EXTRA(m, r)) * m positions. Positions [col_first, col_stop) lie inside the
   input, col_step columns apart (line_w[q + 1] = line_w[q] + col_step: 1, or the dilation
   when the tables are those of one phase of a dilated convolution), and are read without
   the table. scratch: WG_SCRATCH(m, r). */
WG_ALWAYS_INLINE void WG(wg_input_tiles)(const int m, const int r_taps, WG_T* v, ptrdiff_t vs,
                                         const WG_T* x_c, ptrdiff_t x_sn, ptrdiff_t x_sh,
                                         ptrdiff_t x_sw, const ptrdiff_t* line_h,
                                         const ptrdiff_t* line_w, ptrdiff_t col_first,
                                         ptrdiff_t col_stop, ptrdiff_t col_step,
                                         ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                                         ptrdiff_t t_first, ptrdiff_t n_tiles, WG_T* scratch)
{
    const ptrdiff_t a = m + r_taps - 1, row_len = WG_ROW(m, r_taps);
    const ptrdiff_t inner_sw = col_step * x_sw;
    WG_T* rows = scratch;               /* the a padded input rows of a segment, by phase */
    WG_T* tmp = scratch + a * row_len;  /* the same after the vertical transform */
    ptrdiff_t done = 0, th, tw;
    while (done < n_tiles) {
        const ptrdiff_t t = t_first + done;
        const ptrdiff_t seg = WG(wg_segment)(t, n_tiles - done, tiles_w, tiles_per_image,
                                             &th, &tw);
        const ptrdiff_t p = seg + WG_EXTRA(m, r_taps), len = m * p;
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
        /* the input column of the first position of tile s_lo, when it lies inside */
        const ptrdiff_t inner_first = s_hi > s_lo ? line_w[tw * m + m * s_lo] * x_sw : 0;
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
            if (inner_sw == 1) {
                for (ptrdiff_t s = 0; s < s_hi - s_lo; ++s)
                    for (ptrdiff_t r = 0; r < m; ++r) out[r * p + s] = inner[m * s + r];
            } else {
                for (ptrdiff_t s = 0; s < s_hi - s_lo; ++s)
                    for (ptrdiff_t r = 0; r < m; ++r)
                        out[r * p + s] = inner[(m * s + r) * inner_sw];
            }
            for (ptrdiff_t s = s_hi; s < p; ++s)
                for (ptrdiff_t r = 0; r < m; ++r) {
                    const ptrdiff_t col = cols[m * s + r];
                    dst[r * p + s] = col < 0 ? 0 : src[col * x_sw];
                }
        }
        WG_T* vv = v + done;
        if (r_taps == 5) {   /* F(2, 5): 6 points, the B^T of F(4, 3) */
            WG(wg_in_f4)(rows, rows + row_len, rows + 2 * row_len, rows + 3 * row_len,
                         rows + 4 * row_len, rows + 5 * row_len, tmp, row_len, len);
            for (ptrdiff_t i = 0; i < a; ++i) {
                const WG_T* q = tmp + i * row_len;
                WG(wg_in_f4)(q, q + p, q + 1, q + p + 1, q + 2, q + p + 2,
                             vv + i * a * vs, vs, seg);
            }
        } else if (m == 2) {
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
   scratch: WG_SCRATCH(m, r). */
WG_ALWAYS_INLINE void WG(wg_output_tiles)(const int m, const int r_taps, WG_T* out_k,
                                          ptrdiff_t out_sn, ptrdiff_t out_sh, ptrdiff_t out_sw,
                                          ptrdiff_t h_out, ptrdiff_t w_out, const WG_T* mm,
                                          ptrdiff_t ms,
                                          WG_T bias, ptrdiff_t tiles_w,
                                          ptrdiff_t tiles_per_image, ptrdiff_t t_first,
                                          ptrdiff_t n_tiles, WG_T* scratch)
{
    const ptrdiff_t a = m + r_taps - 1, row_len = WG_ROW(m, r_taps);
    WG_T* tmp = scratch;                /* a rows after the horizontal transform, by phase */
    WG_T* y = scratch + a * row_len;    /* the m output rows of a segment, by phase */
    ptrdiff_t done = 0, th, tw;
    while (done < n_tiles) {
        const ptrdiff_t t = t_first + done;
        const ptrdiff_t seg = WG(wg_segment)(t, n_tiles - done, tiles_w, tiles_per_image,
                                             &th, &tw);
        const WG_T* m0 = mm + done;
        if (r_taps == 5) {
            for (ptrdiff_t i = 0; i < a; ++i) {
                const WG_T* q = m0 + i * a * ms;
                WG(wg_out_f2_r5)(q, q + ms, q + 2 * ms, q + 3 * ms, q + 4 * ms, q + 5 * ms,
                                 tmp + i * row_len, seg, seg);
            }
            WG(wg_out_f2_r5)(tmp, tmp + row_len, tmp + 2 * row_len, tmp + 3 * row_len,
                             tmp + 4 * row_len, tmp + 5 * row_len, y, row_len, m * seg);
        } else if (m == 2) {
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

/* The entry points: one specialization per (m, r), so that both are constants in the loops. */

static void WG(wg_input_channel)(int m, int r, WG_T* v, ptrdiff_t vs, const WG_T* x_c,
                                 ptrdiff_t x_sn, ptrdiff_t x_sh, ptrdiff_t x_sw,
                                 const ptrdiff_t* line_h, const ptrdiff_t* line_w,
                                 ptrdiff_t col_first, ptrdiff_t col_stop, ptrdiff_t col_step,
                                 ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                                 ptrdiff_t t_first, ptrdiff_t n_tiles, WG_T* scratch)
{
    if (r == 5)
        WG(wg_input_tiles)(2, 5, v, vs, x_c, x_sn, x_sh, x_sw, line_h, line_w, col_first,
                           col_stop, col_step, tiles_w, tiles_per_image, t_first, n_tiles,
                           scratch);
    else if (m == 2)
        WG(wg_input_tiles)(2, 3, v, vs, x_c, x_sn, x_sh, x_sw, line_h, line_w, col_first,
                           col_stop, col_step, tiles_w, tiles_per_image, t_first, n_tiles,
                           scratch);
    else
        WG(wg_input_tiles)(4, 3, v, vs, x_c, x_sn, x_sh, x_sw, line_h, line_w, col_first,
                           col_stop, col_step, tiles_w, tiles_per_image, t_first, n_tiles,
                           scratch);
}

static void WG(wg_output_channel)(int m, int r, WG_T* out_k, ptrdiff_t out_sn, ptrdiff_t out_sh,
                                  ptrdiff_t out_sw, ptrdiff_t h_out, ptrdiff_t w_out,
                                  const WG_T* mm, ptrdiff_t ms, WG_T bias,
                                  ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                                  ptrdiff_t t_first, ptrdiff_t n_tiles, WG_T* scratch)
{
    if (r == 5)
        WG(wg_output_tiles)(2, 5, out_k, out_sn, out_sh, out_sw, h_out, w_out, mm, ms, bias,
                            tiles_w, tiles_per_image, t_first, n_tiles, scratch);
    else if (m == 2)
        WG(wg_output_tiles)(2, 3, out_k, out_sn, out_sh, out_sw, h_out, w_out, mm, ms, bias,
                            tiles_w, tiles_per_image, t_first, n_tiles, scratch);
    else
        WG(wg_output_tiles)(4, 3, out_k, out_sn, out_sh, out_sw, h_out, w_out, mm, ms, bias,
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

/* 1-D, F(2, 5): u_k = (G g)[k] for g = (g[0][c], ..., g[4][c]), the taps gs apart. */
static inline void WG(wg_g_f2_r5)(const WG_WIDE* WG_RESTRICT g, ptrdiff_t gs,
                                  WG_WIDE* WG_RESTRICT u, ptrdiff_t us)
{
    const WG_WIDE sixth = (WG_WIDE) 1 / 6, twenty_fourth = (WG_WIDE) 1 / 24;
    WG_IVDEP
    for (int c = 0; c < WG_FILTERS; ++c) {
        const WG_WIDE g0 = g[c], g1 = g[gs + c], g2 = g[2 * gs + c], g3 = g[3 * gs + c];
        const WG_WIDE g4 = g[4 * gs + c];
        const WG_WIDE even1 = g0 + g2 + g4, odd1 = g1 + g3;
        const WG_WIDE even2 = g0 + 4 * g2 + 16 * g4, odd2 = 2 * g1 + 8 * g3;
        u[c] = g0 / 4;
        u[us + c] = -(even1 + odd1) * sixth;
        u[2 * us + c] = -(even1 - odd1) * sixth;
        u[3 * us + c] = (even2 + odd2) * twenty_fourth;
        u[4 * us + c] = (even2 - odd2) * twenty_fourth;
        u[5 * us + c] = g4;
    }
}

/* 1-D transform of WG_FILTERS filters: taps gs apart in g, results us apart in u. */
static inline void WG(wg_g)(int m, int r, const WG_WIDE* g, ptrdiff_t gs, WG_WIDE* u,
                            ptrdiff_t us)
{
    if (r == 5) WG(wg_g_f2_r5)(g, gs, u, us);
    else if (m == 2) WG(wg_g_f2)(g, g + gs, g + 2 * gs, u, us);
    else WG(wg_g_f4)(g, g + gs, g + 2 * gs, u, us);
}

/* u[xi * us + c] = (G g_c G^T)[xi] for the n r x r filters
   g_c[i, j] = w[c * sc + i * sr + j * ss]. */
static void WG(wg_weight_filters)(int m, int r, const WG_T* w, ptrdiff_t sc, ptrdiff_t sr,
                                  ptrdiff_t ss, ptrdiff_t n, WG_T* u, ptrdiff_t us)
{
    const int a = m + r - 1;
    const ptrdiff_t f = WG_FILTERS;
    WG_WIDE g[5 * 5 * WG_FILTERS], rows[5 * 6 * WG_FILTERS], full[6 * 6 * WG_FILTERS];
    for (ptrdiff_t c0 = 0; c0 < n; c0 += f) {
        const ptrdiff_t nc = n - c0 < f ? n - c0 : f;
        for (ptrdiff_t c = 0; c < f; ++c)   /* a short last run is padded with zeros */
            for (int rs = 0; rs < r * r; ++rs)
                g[rs * f + c] = c < nc ? w[(c0 + c) * sc + (rs / r) * sr + (rs % r) * ss] : 0;
        for (int i = 0; i < r; ++i)         /* along j: rows[i][xj] */
            WG(wg_g)(m, r, g + r * i * f, f, rows + i * a * f, f);
        for (int j = 0; j < a; ++j)         /* along i: full[xi][xj] */
            WG(wg_g)(m, r, rows + j * f, a * f, full + j * f, a * f);
        for (int xi = 0; xi < a * a; ++xi)
            for (ptrdiff_t c = 0; c < nc; ++c) u[xi * us + c0 + c] = (WG_T) full[xi * f + c];
    }
}
