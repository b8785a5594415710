/* The inner loops of the depthwise kernel, written once for one element type and one instruction
   set. depthwise_simd.h includes this file once per (type, instruction set) after defining:

     DW_T          float or double
     DW_NAME(base) the function name for this instantiation (a suffix per type and ISA)
     DW_TARGET     function attributes, e.g. __attribute__((target("avx2"))), or nothing

   The loops are plain C that GCC and Clang auto-vectorize at -O3 for the given target. Each
   output is a sum over the taps in the order given (the caller passes them in (kd, kh, kw)
   order), starting from +0, one `a = a + w * x` per tap: the extension is built with
   -ffp-contract=off, so no instruction set fuses the multiply and the add, and every
   instantiation gives bitwise the same result as every other, and as the `direct` kernel.

   Taps are summed in groups of up to DW_GROUP per pass over the accumulators: the running sum
   of an output stays in a register for the whole group, so memory traffic on the accumulators
   is one load and one store per group instead of per tap. */

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
        /* groups as even as possible (9 taps: 5 + 4, not 8 + 1) */
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
#include "depthwise_simd_block.h"
#undef DW_VT
#undef DW_BLOCK
#define DW_VT DW_NAME(v16)
#define DW_BLOCK(b) DW_NAME(b##_v16)
#include "depthwise_simd_block.h"
#undef DW_VT
#undef DW_BLOCK
#endif
#define DW_VT DW_T
#define DW_BLOCK(b) DW_NAME(b##_v1)
#include "depthwise_simd_block.h"
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

static DW_TARGET void DW_NAME(flush_rows)(
    int width, DW_T* acc, const Py_ssize_t* acc_off, const Py_ssize_t* x_off, Py_ssize_t n_taps,
    const DW_T* const* xs, const DW_T* ws, int ni)
{
#if DW_VECTORS
    if (width == 0) DW_NAME(rows_n_vn)(acc, acc_off, x_off, n_taps, xs, ws, ni);
    else if (width == 1) DW_NAME(rows_n_v16)(acc, acc_off, x_off, n_taps, xs, ws, ni);
    else
#endif
    DW_NAME(rows_n_v1)(acc, acc_off, x_off, n_taps, xs, ws, ni);
}

static DW_TARGET void DW_NAME(flush_channels)(
    int width, DW_T* acc, const Py_ssize_t* acc_off, const Py_ssize_t* x_off,
    const Py_ssize_t* w_off, Py_ssize_t n_taps, const DW_T* const* xs, const DW_T* const* ws,
    int ni)
{
#if DW_VECTORS
    if (width == 0) DW_NAME(channels_n_vn)(acc, acc_off, x_off, w_off, n_taps, xs, ws, ni);
    else if (width == 1) DW_NAME(channels_n_v16)(acc, acc_off, x_off, w_off, n_taps, xs, ws, ni);
    else
#endif
    DW_NAME(channels_n_v1)(acc, acc_off, x_off, w_off, n_taps, xs, ws, ni);
}

/* Channels-first, unit stride: n_rows output rows of n outputs,
   acc[r * acc_row + j] = sum over t of ws[t] * xs[t][r * x_row + j].
   Each row is covered by vectors at 0, V, 2V, ... and a last one ending at n, which may overlap
   its neighbour: the outputs computed twice get the same bits both times. */
static DW_TARGET void DW_NAME(rows)(
    DW_T* acc, Py_ssize_t acc_row, Py_ssize_t n, Py_ssize_t n_rows, Py_ssize_t x_row,
    Py_ssize_t n_taps, const DW_T* const* xs, const DW_T* ws)
{
    Py_ssize_t acc_off[8], x_off[8], r, j, jj, v;
    int ni = 0, width;
    if (n <= 0 || n_rows <= 0) return;
    if (n_taps <= 0) {
        for (r = 0; r < n_rows; r++)
            for (j = 0; j < n; j++) acc[r * acc_row + j] = 0;
        return;
    }
    width = DW_NAME(width)(n, &v);
    for (r = 0; r < n_rows; r++) {
        for (j = 0; j < n; j += v) {
            jj = j + v <= n ? j : n - v;
            acc_off[ni] = r * acc_row + jj;
            x_off[ni] = r * x_row + jj;
            if (++ni == 8) {
                DW_NAME(flush_rows)(width, acc, acc_off, x_off, n_taps, xs, ws, ni);
                ni = 0;
            }
        }
    }
    if (ni) DW_NAME(flush_rows)(width, acc, acc_off, x_off, n_taps, xs, ws, ni);
}

/* Channels-last (unit channel stride): n_pixels output pixels, all channels,
   acc[p * acc_step + j * channels + c] = sum over t of ws[t][j * w_pitch + c]
                                                       * xs[t][p * x_step + c],
   for output channel c * multiplier + j. Vectors run over c, the last one overlapping. */
static DW_TARGET void DW_NAME(pixels)(
    DW_T* acc, Py_ssize_t acc_step, Py_ssize_t n_pixels, Py_ssize_t x_step, Py_ssize_t channels,
    Py_ssize_t multiplier, Py_ssize_t w_pitch, Py_ssize_t n_taps, const DW_T* const* xs,
    const DW_T* const* ws)
{
    Py_ssize_t acc_off[8], x_off[8], w_off[8], p, j, c, cc, v;
    int ni = 0, width;
    if (n_pixels <= 0 || channels <= 0) return;
    if (n_taps <= 0) {
        for (p = 0; p < n_pixels; p++)
            for (c = 0; c < channels * multiplier; c++) acc[p * acc_step + c] = 0;
        return;
    }
    width = DW_NAME(width)(channels, &v);
    for (p = 0; p < n_pixels; p++) {
        for (j = 0; j < multiplier; j++) {
            for (c = 0; c < channels; c += v) {
                cc = c + v <= channels ? c : channels - v;
                acc_off[ni] = p * acc_step + j * channels + cc;
                x_off[ni] = p * x_step + cc;
                w_off[ni] = j * w_pitch + cc;
                if (++ni == 8) {
                    DW_NAME(flush_channels)(width, acc, acc_off, x_off, w_off, n_taps, xs, ws, ni);
                    ni = 0;
                }
            }
        }
    }
    if (ni) DW_NAME(flush_channels)(width, acc, acc_off, x_off, w_off, n_taps, xs, ws, ni);
}

#undef DW_VN
#undef DW_V16
