/* Template body of winograd_transforms.h: include only from there, with WG_T and WG defined.

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
   G (the weight transform) is applied once per weight, in float64, by the Python side.
   B^T and A^T have small integer entries: the transforms below are exact on small integers,
   which is what makes F(2x2, 3x3) (whose G holds only halves) exact on integer data.
*/

/* --- 1-D transforms over n tiles: element k of tile t is s[k * ss + t] ------------------- */

static inline void WG(wg_in_f2)(const WG_T* WG_RESTRICT s, ptrdiff_t ss,
                                WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    for (ptrdiff_t t = 0; t < n; ++t) {
        WG_T s0 = s[t], s1 = s[ss + t], s2 = s[2 * ss + t], s3 = s[3 * ss + t];
        d[t] = s0 - s2;
        d[ds + t] = s1 + s2;
        d[2 * ds + t] = s2 - s1;
        d[3 * ds + t] = s1 - s3;
    }
}

static inline void WG(wg_out_f2)(const WG_T* WG_RESTRICT s, ptrdiff_t ss,
                                 WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    for (ptrdiff_t t = 0; t < n; ++t) {
        WG_T s0 = s[t], s1 = s[ss + t], s2 = s[2 * ss + t], s3 = s[3 * ss + t];
        d[t] = s0 + s1 + s2;
        d[ds + t] = s1 - s2 - s3;
    }
}

static inline void WG(wg_in_f4)(const WG_T* WG_RESTRICT s, ptrdiff_t ss,
                                WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    for (ptrdiff_t t = 0; t < n; ++t) {
        WG_T s0 = s[t], s1 = s[ss + t], s2 = s[2 * ss + t];
        WG_T s3 = s[3 * ss + t], s4 = s[4 * ss + t], s5 = s[5 * ss + t];
        /* rows 1-4 come in pairs (points +-1, +-2) that share their terms */
        WG_T a = s3 + s4, b = 4 * (s1 + s2);   /* row 1: a - b */
        WG_T c = s4 - s3, e = 4 * (s1 - s2);   /* row 2: c + e */
        WG_T f = s4 - s2, g = 2 * (s3 - s1);   /* rows 3, 4: f + g, f - g */
        d[t] = 4 * s0 - 5 * s2 + s4;
        d[ds + t] = a - b;
        d[2 * ds + t] = c + e;
        d[3 * ds + t] = f + g;
        d[4 * ds + t] = f - g;
        d[5 * ds + t] = 4 * s1 - 5 * s3 + s5;
    }
}

static inline void WG(wg_out_f4)(const WG_T* WG_RESTRICT s, ptrdiff_t ss,
                                 WG_T* WG_RESTRICT d, ptrdiff_t ds, ptrdiff_t n)
{
    for (ptrdiff_t t = 0; t < n; ++t) {
        WG_T s0 = s[t], s1 = s[ss + t], s2 = s[2 * ss + t];
        WG_T s3 = s[3 * ss + t], s4 = s[4 * ss + t], s5 = s[5 * ss + t];
        WG_T sum12 = s1 + s2, dif12 = s1 - s2, sum34 = s3 + s4, dif34 = s3 - s4;
        d[t] = s0 + sum12 + sum34;
        d[ds + t] = dif12 + 2 * dif34;
        d[2 * ds + t] = sum12 + 4 * sum34;
        d[3 * ds + t] = dif12 + 8 * dif34 + s5;
    }
}

/* --- 2-D transforms of n <= WG_CHUNK tiles --------------------------------------------- */

/* v[(i * a + j) * vs + t] = (B^T d_t B)[i, j], d gathered as d[(i * a + j) * n + t]. */
static inline void WG(wg_input_chunk)(int m, WG_T* WG_RESTRICT v, ptrdiff_t vs,
                                      const WG_T* WG_RESTRICT d, WG_T* WG_RESTRICT tmp,
                                      ptrdiff_t n)
{
    const ptrdiff_t a = m + 2;
    if (m == 2) {
        for (ptrdiff_t i = 0; i < a; ++i) WG(wg_in_f2)(d + i * a * n, n, tmp + i * a * n, n, n);
        for (ptrdiff_t j = 0; j < a; ++j) WG(wg_in_f2)(tmp + j * n, a * n, v + j * vs, a * vs, n);
    } else {
        for (ptrdiff_t i = 0; i < a; ++i) WG(wg_in_f4)(d + i * a * n, n, tmp + i * a * n, n, n);
        for (ptrdiff_t j = 0; j < a; ++j) WG(wg_in_f4)(tmp + j * n, a * n, v + j * vs, a * vs, n);
    }
}

/* y[(i * m + j) * n + t] = (A^T M_t A)[i, j], M_t read as mm[(i * a + j) * ms + t]. */
static inline void WG(wg_output_chunk)(int m, WG_T* WG_RESTRICT y, const WG_T* WG_RESTRICT mm,
                                       ptrdiff_t ms, WG_T* WG_RESTRICT tmp, ptrdiff_t n)
{
    const ptrdiff_t a = m + 2;
    if (m == 2) {
        for (ptrdiff_t j = 0; j < a; ++j) WG(wg_out_f2)(mm + j * ms, a * ms, tmp + j * n, a * n, n);
        for (ptrdiff_t i = 0; i < m; ++i) WG(wg_out_f2)(tmp + i * a * n, n, y + i * m * n, n, n);
    } else {
        for (ptrdiff_t j = 0; j < a; ++j) WG(wg_out_f4)(mm + j * ms, a * ms, tmp + j * n, a * n, n);
        for (ptrdiff_t i = 0; i < m; ++i) WG(wg_out_f4)(tmp + i * a * n, n, y + i * m * n, n, n);
    }
}

/* --- one channel of a block of tiles: gather + input transform, output transform + store -- */

/* Transform the tiles of one input channel x_c into v[xi * vs + t] (xi = i * a + j).
   Tile t reads x_c[x_base[t] + row_off[t * a + i] + col_off[t * a + j]]: the offsets come from
   the padding tables, so every padding mode is applied here, without a padded copy.
   scratch: 2 * a * a * WG_CHUNK elements. */
static void WG(wg_input_channel)(int m, WG_T* v, ptrdiff_t vs, const WG_T* x_c,
                                 const ptrdiff_t* x_base, const ptrdiff_t* row_off,
                                 const ptrdiff_t* col_off, ptrdiff_t n_tiles, WG_T* scratch)
{
    const ptrdiff_t a = m + 2;
    WG_T* d = scratch;
    WG_T* tmp = scratch + a * a * WG_CHUNK;
    for (ptrdiff_t t0 = 0; t0 < n_tiles; t0 += WG_CHUNK) {
        const ptrdiff_t n = n_tiles - t0 < WG_CHUNK ? n_tiles - t0 : WG_CHUNK;
        for (ptrdiff_t t = 0; t < n; ++t) {
            const WG_T* base = x_c + x_base[t0 + t];
            const ptrdiff_t* rows = row_off + (t0 + t) * a;
            const ptrdiff_t* cols = col_off + (t0 + t) * a;
            for (ptrdiff_t i = 0; i < a; ++i) {
                WG_T* dst = d + i * a * n + t;
                if (rows[i] == WG_ZERO_TAP) {
                    for (ptrdiff_t j = 0; j < a; ++j) dst[j * n] = 0;
                    continue;
                }
                const WG_T* src = base + rows[i];
                for (ptrdiff_t j = 0; j < a; ++j)
                    dst[j * n] = cols[j] == WG_ZERO_TAP ? 0 : src[cols[j]];
            }
        }
        WG(wg_input_chunk)(m, v + t0, vs, d, tmp, n);
    }
}

/* Inverse-transform the tiles of one output channel, read as mm[xi * ms + t], add the bias and
   store the first n_rows[t] x n_cols[t] outputs of tile t (fewer than m x m at the right and
   bottom edges) at out_k[out_base[t] + i * out_sh + j * out_sw].
   scratch: 2 * a * a * WG_CHUNK elements. */
static void WG(wg_output_channel)(int m, WG_T* out_k, ptrdiff_t out_sh, ptrdiff_t out_sw,
                                  const WG_T* mm, ptrdiff_t ms, WG_T bias,
                                  const ptrdiff_t* out_base, const ptrdiff_t* n_rows,
                                  const ptrdiff_t* n_cols, ptrdiff_t n_tiles, WG_T* scratch)
{
    const ptrdiff_t a = m + 2;
    WG_T* y = scratch;
    WG_T* tmp = scratch + a * a * WG_CHUNK;
    for (ptrdiff_t t0 = 0; t0 < n_tiles; t0 += WG_CHUNK) {
        const ptrdiff_t n = n_tiles - t0 < WG_CHUNK ? n_tiles - t0 : WG_CHUNK;
        WG(wg_output_chunk)(m, y, mm + t0, ms, tmp, n);
        for (ptrdiff_t t = 0; t < n; ++t) {
            WG_T* dst = out_k + out_base[t0 + t];
            const ptrdiff_t rows = n_rows[t0 + t], cols = n_cols[t0 + t];
            for (ptrdiff_t i = 0; i < rows; ++i)
                for (ptrdiff_t j = 0; j < cols; ++j)
                    dst[i * out_sh + j * out_sw] = y[(i * m + j) * n + t] + bias;
        }
    }
}
