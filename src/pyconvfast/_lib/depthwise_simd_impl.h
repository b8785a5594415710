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

/* acc[i] (+)= sum over the k taps t of ws[t][i] * xs[t][offset + i], for i in [0, n). */
static inline DW_ALWAYS_INLINE DW_TARGET void DW_NAME(pass_channels)(
    DW_T* __restrict acc, Py_ssize_t n, const DW_T* const* xs, const DW_T* const* ws,
    Py_ssize_t offset, Py_ssize_t w_offset, const int k, const int init)
{
    const DW_T* x0 = xs[0] + offset;
    const DW_T* x1 = k > 1 ? xs[1] + offset : x0;
    const DW_T* x2 = k > 2 ? xs[2] + offset : x0;
    const DW_T* x3 = k > 3 ? xs[3] + offset : x0;
    const DW_T* x4 = k > 4 ? xs[4] + offset : x0;
    const DW_T* x5 = k > 5 ? xs[5] + offset : x0;
    const DW_T* x6 = k > 6 ? xs[6] + offset : x0;
    const DW_T* x7 = k > 7 ? xs[7] + offset : x0;
    const DW_T* w0 = ws[0] + w_offset;
    const DW_T* w1 = k > 1 ? ws[1] + w_offset : w0;
    const DW_T* w2 = k > 2 ? ws[2] + w_offset : w0;
    const DW_T* w3 = k > 3 ? ws[3] + w_offset : w0;
    const DW_T* w4 = k > 4 ? ws[4] + w_offset : w0;
    const DW_T* w5 = k > 5 ? ws[5] + w_offset : w0;
    const DW_T* w6 = k > 6 ? ws[6] + w_offset : w0;
    const DW_T* w7 = k > 7 ? ws[7] + w_offset : w0;
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        DW_T a = init ? (DW_T)0 : acc[i];
        a = a + w0[i] * x0[i];
        if (k > 1) a = a + w1[i] * x1[i];
        if (k > 2) a = a + w2[i] * x2[i];
        if (k > 3) a = a + w3[i] * x3[i];
        if (k > 4) a = a + w4[i] * x4[i];
        if (k > 5) a = a + w5[i] * x5[i];
        if (k > 6) a = a + w6[i] * x6[i];
        if (k > 7) a = a + w7[i] * x7[i];
        acc[i] = a;
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

/* Channels-first inner loop: one output row segment of n outputs (accumulated into acc[0:n]),
   acc[j] = sum over t of ws[t] * xs[t][offset + j * step]. */
static DW_TARGET void DW_NAME(rows)(
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

#define DW_CHANNELS_CASE(K)                                                                     \
    case K:                                                                                      \
        if (init) DW_NAME(pass_channels)(a, channels, xs + t0, ws + t0, x_offset, w_offset, K, 1); \
        else DW_NAME(pass_channels)(a, channels, xs + t0, ws + t0, x_offset, w_offset, K, 0);    \
        break;

/* Channels-last inner loop: n_pixels consecutive output pixels of one output row, all channels.
   Output pixel p's accumulators are acc[p * acc_step + j * channels + c] (output channel
   c * multiplier + j); its input channel c at tap t is xs[t][offset + p * pixel_step + c];
   the weight of that tap for that output is ws[t][j * channels + c]. */
static DW_TARGET void DW_NAME(pixels)(
    DW_T* __restrict acc, Py_ssize_t n_pixels, Py_ssize_t acc_step, Py_ssize_t offset,
    Py_ssize_t pixel_step, Py_ssize_t channels, Py_ssize_t multiplier, Py_ssize_t n_taps,
    const DW_T* const* xs, const DW_T* const* ws)
{
    Py_ssize_t p, g, j, n_groups, t0;
    if (n_taps <= 0) {
        for (p = 0; p < n_pixels; p++)
            for (j = 0; j < channels * multiplier; j++) acc[p * acc_step + j] = 0;
        return;
    }
    n_groups = (n_taps + DW_GROUP - 1) / DW_GROUP;
    for (p = 0; p < n_pixels; p++) {
        const Py_ssize_t x_offset = offset + p * pixel_step;
        t0 = 0;
        for (g = 0; g < n_groups; g++) {
            const int k = (int)(n_taps / n_groups + (g < n_taps % n_groups));
            const int init = g == 0;
            for (j = 0; j < multiplier; j++) {
                DW_T* __restrict a = acc + p * acc_step + j * channels;
                const Py_ssize_t w_offset = j * channels;
                switch (k) {
                    DW_CHANNELS_CASE(1) DW_CHANNELS_CASE(2) DW_CHANNELS_CASE(3)
                    DW_CHANNELS_CASE(4) DW_CHANNELS_CASE(5) DW_CHANNELS_CASE(6)
                    DW_CHANNELS_CASE(7) DW_CHANNELS_CASE(8)
                }
            }
            t0 += k;
        }
    }
}

#undef DW_ROWS_CASE
#undef DW_ROWS_SWITCH
#undef DW_CHANNELS_CASE
