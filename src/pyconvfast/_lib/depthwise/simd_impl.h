/* The inner loops of the depthwise kernel, written once for one element type and one instruction
   set. simd.h instantiates it once per (type, level) through cpu/instantiate.h, after mapping
   these names onto the instantiation's:

     DW_T          float or double
     DW_NAME(base) the function name for this instantiation (a suffix per type and ISA)
     DW_TARGET     function attributes, e.g. __attribute__((target("avx2,fma"))), or nothing
     DW_VBYTES     bytes of the native vector (16, 32 or 64)

   Each output is a sum over the taps in the order given (the caller passes them in (kd, kh, kw)
   order), starting from +0, one `a = a + w * x` per tap: the extension is built with
   -ffp-contract=off, so no instruction set fuses the multiply and the add, and every
   instantiation gives bitwise the same result as every other, and as the `direct` kernel.

   Unit-stride rows and channels-last pixels (DW_NAME(rows), DW_NAME(pixels), at the end) use
   register tiles written with GNU vector extensions (simd_block.h). Strided rows
   (DW_NAME(rows_strided), next) use plain loops that the compiler auto-vectorizes, summing
   groups of up to DW_GROUP taps per pass over the accumulators: the running sum of an output
   stays in a register for the whole group. */

/* acc[j] (+)= sum over the k taps t of ws[t] * xs[t][offset + j * step], for j in [0, n). */
static inline DW_ALWAYS_INLINE DW_TARGET void DW_NAME(pass_rows)(
    DW_T* __restrict acc, Py_ssize_t n, const DW_T* const* xs, const DW_T* ws,
    Py_ssize_t offset, Py_ssize_t step, const int k, const int init)
{
    const DW_T* x0 = xs[0] + offset;
    const DW_T* x1 = k > 1 ? xs[1] + offset : x0;
    const DW_T* x2 = k > 2 ? xs[2] + offset : x0;
    const DW_T* x3 = k > 3 ? xs[3] + offset : x0;
    const DW_T* x4 = k > 4 ? xs[4] + offset : x0;
    const DW_T* x5 = k > 5 ? xs[5] + offset : x0;
    const DW_T* x6 = k > 6 ? xs[6] + offset : x0;
    const DW_T* x7 = k > 7 ? xs[7] + offset : x0;
    const DW_T w0 = ws[0];
    const DW_T w1 = k > 1 ? ws[1] : 0;
    const DW_T w2 = k > 2 ? ws[2] : 0;
    const DW_T w3 = k > 3 ? ws[3] : 0;
    const DW_T w4 = k > 4 ? ws[4] : 0;
    const DW_T w5 = k > 5 ? ws[5] : 0;
    const DW_T w6 = k > 6 ? ws[6] : 0;
    const DW_T w7 = k > 7 ? ws[7] : 0;
    Py_ssize_t j;
    for (j = 0; j < n; j++) {
        DW_T a = init ? (DW_T)0 : acc[j];
        a = a + w0 * x0[j * step];
        if (k > 1) a = a + w1 * x1[j * step];
        if (k > 2) a = a + w2 * x2[j * step];
        if (k > 3) a = a + w3 * x3[j * step];
        if (k > 4) a = a + w4 * x4[j * step];
        if (k > 5) a = a + w5 * x5[j * step];
        if (k > 6) a = a + w6 * x6[j * step];
        if (k > 7) a = a + w7 * x7[j * step];
        acc[j] = a;
    }
}

/* One pass of k (a literal 1..DW_GROUP) taps; STEP a literal 1 or 2, or the variable `step`. */
#define DW_ROWS_CASE(K, STEP)                                                                    \
    case K:                                                                                      \
        if (init) DW_NAME(pass_rows)(acc, n, xs + t0, ws + t0, offset, STEP, K, 1);              \
        else DW_NAME(pass_rows)(acc, n, xs + t0, ws + t0, offset, STEP, K, 0);                   \
        break;
#define DW_ROWS_SWITCH(STEP)                                                                     \
    switch (k) {                                                                                 \
        DW_ROWS_CASE(1, STEP) DW_ROWS_CASE(2, STEP) DW_ROWS_CASE(3, STEP) DW_ROWS_CASE(4, STEP)  \
        DW_ROWS_CASE(5, STEP) DW_ROWS_CASE(6, STEP) DW_ROWS_CASE(7, STEP) DW_ROWS_CASE(8, STEP)  \
    }

/* Channels-first inner loop for strided rows (stride > 1 or a W axis without unit stride): one
   output row segment, acc[j] = sum over t of ws[t] * xs[t][offset + j * step], j in [0, n). The
   loads are strided, so this auto-vectorized loop sums groups of taps per pass; unit-stride rows
   go to DW_NAME(rows) below, which keeps each sum in a register for all taps. */
static DW_TARGET void DW_NAME(rows_strided)(
    DW_T* __restrict acc, Py_ssize_t n, Py_ssize_t n_taps, const DW_T* const* xs,
    const DW_T* ws, Py_ssize_t offset, Py_ssize_t step)
{
    Py_ssize_t n_groups, t0 = 0, g;
    if (n <= 0) return;
    if (n_taps <= 0) {
        for (g = 0; g < n; g++) acc[g] = 0;
        return;
    }
    n_groups = (n_taps + DW_GROUP - 1) / DW_GROUP;
    for (g = 0; g < n_groups; g++) {
        /* groups as even as possible (9 taps: 5 + 4, not 8 + 1); k <= DW_GROUP, so the cast
           is exact */
        const int k = (int)(n_taps / n_groups + (g < n_taps % n_groups));
        const int init = g == 0;
        if (step == 1) {
            DW_ROWS_SWITCH(1)
        } else if (step == 2) {
            DW_ROWS_SWITCH(2)
        } else {
            DW_ROWS_SWITCH(step)
        }
        t0 += k;
    }
}

#undef DW_ROWS_CASE
#undef DW_ROWS_SWITCH

/* ---- unit-stride kernels: every running sum in a register for all taps ---------------------- */

#define DW_VN ((Py_ssize_t)(DW_VBYTES / sizeof(DW_T)))
#define DW_V16 ((Py_ssize_t)(16 / sizeof(DW_T)))

#if DW_VECTORS
typedef DW_T DW_NAME(vn) __attribute__((vector_size(DW_VBYTES)));
typedef DW_T DW_NAME(v16) __attribute__((vector_size(16)));
#define DW_VT DW_NAME(vn)
#define DW_BLOCK(b) DW_NAME(b##_vn)
#include "simd_block.h"
#undef DW_VT
#undef DW_BLOCK
#define DW_VT DW_NAME(v16)
#define DW_BLOCK(b) DW_NAME(b##_v16)
#include "simd_block.h"
#undef DW_VT
#undef DW_BLOCK
#endif
#define DW_VT DW_T
#define DW_BLOCK(b) DW_NAME(b##_v1)
#include "simd_block.h"
#undef DW_VT
#undef DW_BLOCK

/* The widest vector (0: native, 1: 16 bytes, 2: one element) that fits in n, and its length. */
static inline DW_ALWAYS_INLINE DW_TARGET int DW_NAME(width)(Py_ssize_t n, Py_ssize_t* length)
{
#if DW_VECTORS
    if (n >= DW_VN) {
        *length = DW_VN;
        return 0;
    }
    if (n >= DW_V16) {
        *length = DW_V16;
        return 1;
    }
#endif
    *length = 1;
    return 2;
}

/* One tile of width `width` (see DW_NAME(width)); weights scalar (wv NULL) or vectors. */
static DW_TARGET void DW_NAME(tile)(
    int width, DW_T* acc, Py_ssize_t acc_step, Py_ssize_t x_step, Py_ssize_t n_taps,
    const DW_T* const* xs, Py_ssize_t x_off, const DW_T* ws, const DW_T* const* wv,
    Py_ssize_t w_off, const DW_T* bias, int nq, int np)
{
#if DW_VECTORS
    if (width == 0) {
        if (wv == NULL) DW_NAME(tile_rows_vn)(acc, acc_step, x_step, n_taps, xs, x_off, ws, bias, nq, np);
        else DW_NAME(tile_channels_vn)(acc, acc_step, x_step, n_taps, xs, x_off, wv, w_off, bias, nq, np);
        return;
    }
    if (width == 1) {
        if (wv == NULL) DW_NAME(tile_rows_v16)(acc, acc_step, x_step, n_taps, xs, x_off, ws, bias, nq, np);
        else DW_NAME(tile_channels_v16)(acc, acc_step, x_step, n_taps, xs, x_off, wv, w_off, bias, nq, np);
        return;
    }
#endif
    if (wv == NULL) DW_NAME(tile_rows_v1)(acc, acc_step, x_step, n_taps, xs, x_off, ws, bias, nq, np);
    else DW_NAME(tile_channels_v1)(acc, acc_step, x_step, n_taps, xs, x_off, wv, w_off, bias, nq, np);
}

/* Covers n contiguous outputs (and, for each, n_lines lines `line_step` apart in acc and
   `x_line` apart in the input) with tiles: groups of nq <= max_nq whole vectors, the lines
   taken 8 / nq at a time, then the last, overlapping vector (n not a multiple of V) for which
   the outputs it shares with its neighbour get the same bits again. */
static DW_TARGET void DW_NAME(cover)(
    DW_T* acc, Py_ssize_t n, Py_ssize_t n_lines, Py_ssize_t line_step, Py_ssize_t x_line,
    Py_ssize_t n_taps, const DW_T* const* xs, Py_ssize_t x_off, const DW_T* ws,
    const DW_T* const* wv, Py_ssize_t w_off, const DW_T* bias, int max_nq)
{
    Py_ssize_t v, n_full, q0, l, rest;
    int width = DW_NAME(width)(n, &v), nq, np;
    n_full = n / v;
    for (q0 = 0; q0 < n_full; q0 += nq) {
        rest = n_full - q0;
        nq = rest >= 8 && max_nq >= 8 ? 8 : rest >= 4 && max_nq >= 4 ? 4 : rest >= 2 ? 2 : 1;
        for (l = 0; l < n_lines; l += np) {
            np = (int)(n_lines - l < 8 / nq ? n_lines - l : 8 / nq); /* <= 8: exact cast */
            DW_NAME(tile)(width, acc + l * line_step + q0 * v, line_step, x_line, n_taps, xs,
                          x_off + l * x_line + q0 * v, ws, wv, w_off + q0 * v, bias, nq, np);
        }
    }
    if (n_full * v < n) {
        for (l = 0; l < n_lines; l += np) {
            np = (int)(n_lines - l < 8 ? n_lines - l : 8); /* <= 8: exact cast */
            DW_NAME(tile)(width, acc + l * line_step + (n - v), line_step, x_line, n_taps, xs,
                          x_off + l * x_line + (n - v), ws, wv, w_off + (n - v), bias, 1, np);
        }
    }
}

/* Channels-first, unit stride: n_rows output rows of n outputs,
   acc[r * acc_row + j] = sum over t of ws[t] * xs[t][r * x_row + j]  (+ *bias if not NULL). */
static DW_TARGET void DW_NAME(rows)(
    DW_T* acc, Py_ssize_t acc_row, Py_ssize_t n, Py_ssize_t n_rows, Py_ssize_t x_row,
    Py_ssize_t n_taps, const DW_T* const* xs, const DW_T* ws, const DW_T* bias)
{
    Py_ssize_t r, j;
    if (n <= 0 || n_rows <= 0) return;
    if (n_taps <= 0) {
        for (r = 0; r < n_rows; r++)
            for (j = 0; j < n; j++) acc[r * acc_row + j] = bias != NULL ? (DW_T)0 + *bias : 0;
        return;
    }
    DW_NAME(cover)(acc, n, n_rows, acc_row, x_row, n_taps, xs, 0, ws, NULL, 0, bias, 8);
}

/* Channels-last (unit channel stride): n_pixels output pixels, all channels,
   acc[p * acc_step + j * channels + c] = sum over t of ws[t][j * w_pitch + c]
                                                       * xs[t][p * x_step + c],
   for output channel c * multiplier + j, plus bias[c] if bias is not NULL (only with
   multiplier 1). Vectors run over c; a tile takes up to 4 channel
   vectors of 2 pixels, or 2 of 4, or 1 of 8, sharing each weight vector between its pixels. */
static DW_TARGET void DW_NAME(pixels)(
    DW_T* acc, Py_ssize_t acc_step, Py_ssize_t n_pixels, Py_ssize_t x_step, Py_ssize_t channels,
    Py_ssize_t multiplier, Py_ssize_t w_pitch, Py_ssize_t n_taps, const DW_T* const* xs,
    const DW_T* const* ws, const DW_T* bias)
{
    Py_ssize_t p, j;
    if (n_pixels <= 0 || channels <= 0) return;
    if (n_taps <= 0) {
        for (p = 0; p < n_pixels; p++)
            for (j = 0; j < channels * multiplier; j++)
                acc[p * acc_step + j] = bias != NULL ? (DW_T)0 + bias[j] : 0;
        return;
    }
    for (j = 0; j < multiplier; j++)
        DW_NAME(cover)(acc + j * channels, channels, n_pixels, acc_step, x_step, n_taps, xs, 0,
                       NULL, ws, j * w_pitch, bias, n_pixels == 1 ? 8 : 4);
}

#undef DW_VN
#undef DW_V16
