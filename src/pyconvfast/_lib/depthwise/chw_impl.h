/* The channels-first ("chw") depthwise loops, written once for one element type and one
   instruction set; chw.h instantiates them for every (type, level) through cpu/instantiate.h.

   One call computes a block of output rows of one (sample, output channel) plane of a 2-D
   depthwise convolution with a square K x K kernel (K = 3 or 5), stride S = 1 or 2 on both axes,
   dilation 1 and zero padding of any width, in the manner of XNNPACK's f32-dwconv2d-chw kernels:
   output rows are vectors along W; a pass takes R <= 4 output rows, which share the
   (R - 1) * S + K input rows it loads; the K * K weights and the bias are broadcast once per
   call; nothing is transposed or copied. Columns whose taps all lie inside the input row are
   loaded as plain vectors (stride 2: two vectors split into even and odd lanes; stride 1 at
   AVX-512: one vector and its successor, shifted for the other taps); a vector that crosses
   the padding or the row's end is loaded masked (AVX-512, AVX2) or element by element with
   zeros outside the row (the baseline), and stored the same way. Rows of the zero padding are
   read from a row of zeros the caller passes, so that a pass has no branch.

   Each output is bias + sum over the taps, accumulated from the bias in (kh, kw) order with one
   multiply-add per tap, fused (FMA) at the AVX2 and AVX-512 levels and a separate multiply and
   add at the baseline; taps in the zero padding add w * 0. What an output sums and in which order depends only on its position, never on the rows
   a pass or a task takes, so results do not depend on the thread count. They differ between
   levels (FMA or not) and from the `direct` kernel in the last bits. */

#define CW_T PCF_T
#define CW_NAME(base) PCF_VARIANT(pcf_dwchw_##base)
#define CW_TARGET PCF_TARGET
#define CW_INLINE static inline PCF_ALWAYS_INLINE PCF_TARGET
/* The loops over rows and taps have literal bounds once inlined: unrolled, every accumulator,
   tap and weight is a register. */
#if defined(__GNUC__) || defined(__clang__)
#define CW_UNROLL _Pragma("GCC unroll 16")
#else
#define CW_UNROLL
#endif

#if PCF_GNU_VECTORS
/* Lanes of the native vector, as a literal for the shuffles below. */
#define CW_LANES CW_CAT4(CW_LANES_, PCF_TS, _, PCF_LEVEL)
typedef CW_T CW_NAME(vec) __attribute__((vector_size(PCF_VBYTES)));
#define CW_VT CW_NAME(vec)
#else
#define CW_LANES 1
#define CW_VT CW_T
#endif
#define CW_V ((Py_ssize_t)CW_LANES)

CW_INLINE CW_VT CW_NAME(splat)(CW_T s)
{
#if PCF_GNU_VECTORS
    CW_VT v;
    int l;
    for (l = 0; l < CW_LANES; l++) v[l] = s;
    return v;
#else
    return s;
#endif
}

CW_INLINE CW_VT CW_NAME(load)(const CW_T* p)
{
    CW_VT v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* a * b + c: fused where the level has FMA. */
CW_INLINE CW_VT CW_NAME(fma)(CW_VT a, CW_VT b, CW_VT c)
{
#if PCF_LEVEL == 2
    return PCF_CAT(CW_FMA512_, PCF_TS)(a, b, c);
#elif PCF_LEVEL == 1
    return PCF_CAT(CW_FMA256_, PCF_TS)(a, b, c);
#else
    return a * b + c;
#endif
}

#if PCF_LEVEL == 2 && PCF_GNU_VECTORS
/* The vector s (a literal 0 .. 4) elements after a, b the vector after a. */
CW_INLINE CW_VT CW_NAME(shift)(CW_VT a, CW_VT b, const int s)
{
    switch (s) {
        case 1: return CW_CAT4(CW_SHIFT, 1, _, CW_LANES)(a, b);
        case 2: return CW_CAT4(CW_SHIFT, 2, _, CW_LANES)(a, b);
        case 3: return CW_CAT4(CW_SHIFT, 3, _, CW_LANES)(a, b);
        case 4: return CW_CAT4(CW_SHIFT, 4, _, CW_LANES)(a, b);
    }
    return a;
}
#endif

/* Tap kw of the outputs whose first input column is i0 (= ow0 * S - pad_w), all in the row:
   row[i0 + S * l + kw] for the lanes l. */
CW_INLINE CW_VT CW_NAME(tap)(const CW_T* row, Py_ssize_t i0, const int kw, const int S)
{
#if PCF_GNU_VECTORS
    if (S == 2) {
        const CW_T* p = row + i0 + (kw & ~1);
        CW_VT a = CW_NAME(load)(p), b = CW_NAME(load)(p + CW_V);
        return (kw & 1) ? CW_CAT(CW_ODDS_, CW_LANES)(a, b) : CW_CAT(CW_EVENS_, CW_LANES)(a, b);
    }
#endif
    return CW_NAME(load)(row + i0 + kw);
}

#if PCF_LEVEL >= 1 && PCF_GNU_VECTORS
#define CW_MASKED 1
/* Lanes [lo, hi) of a mask, clipped to the vector: a bit mask (AVX-512) or a vector of all-ones
   lanes (AVX2). */
#if PCF_LEVEL == 2
typedef unsigned CW_NAME(mask);
#else
typedef CW_CAT(CW_INT_, PCF_TS) CW_NAME(mask) __attribute__((vector_size(32)));
#endif
CW_INLINE CW_NAME(mask) CW_NAME(range)(Py_ssize_t lo, Py_ssize_t hi)
{
    lo = lo < 0 ? 0 : lo > CW_V ? CW_V : lo;
    hi = hi < lo ? lo : hi > CW_V ? CW_V : hi;
#if PCF_LEVEL == 2
    return ((1u << hi) - 1u) & ~((1u << lo) - 1u);
#else
    {
        CW_NAME(mask) lanes;
        int l;
        for (l = 0; l < CW_LANES; l++) lanes[l] = l;
        return (lanes >= (CW_CAT(CW_INT_, PCF_TS))lo) & (lanes < (CW_CAT(CW_INT_, PCF_TS))hi);
    }
#endif
}

/* row[start + l] for the lanes with 0 <= start + l < w_in, zero elsewhere; nothing else is
   read. */
CW_INLINE CW_VT CW_NAME(load_in_row)(const CW_T* row, Py_ssize_t start, Py_ssize_t w_in)
{
    return CW_CAT4(CW_MASKZ_LOAD_, PCF_TS, _, PCF_LEVEL)(CW_NAME(range)(-start, w_in - start),
                                                          row + start);
}
#else
#define CW_MASKED 0
#endif

/* The same as tap() for columns that may fall outside [0, w_in): those lanes are zero. */
CW_INLINE CW_VT CW_NAME(tap_edge)(const CW_T* row, Py_ssize_t i0, Py_ssize_t w_in, const int kw,
                                  const int S)
{
#if CW_MASKED
    if (S == 2) {
        Py_ssize_t start = i0 + (kw & ~1);
        CW_VT a = CW_NAME(load_in_row)(row, start, w_in);
        CW_VT b = CW_NAME(load_in_row)(row, start + CW_V, w_in);
        return (kw & 1) ? CW_CAT(CW_ODDS_, CW_LANES)(a, b) : CW_CAT(CW_EVENS_, CW_LANES)(a, b);
    }
    return CW_NAME(load_in_row)(row, i0 + kw, w_in);
#elif PCF_GNU_VECTORS
    CW_VT v;
    int l;
    for (l = 0; l < CW_LANES; l++) {
        Py_ssize_t i = i0 + S * l + kw;
        v[l] = i >= 0 && i < w_in ? row[i] : (CW_T)0;
    }
    return v;
#else
    Py_ssize_t i = i0 + kw;
    return i >= 0 && i < w_in ? row[i] : (CW_T)0;
#endif
}

/* The first n (< V) lanes of v to p. */
CW_INLINE void CW_NAME(store_part)(CW_T* p, CW_VT v, Py_ssize_t n)
{
#if CW_MASKED
    CW_CAT4(CW_MASK_STORE_, PCF_TS, _, PCF_LEVEL)(p, CW_NAME(range)(0, n), v);
#else
    CW_T lanes[CW_LANES];
    Py_ssize_t l;
    memcpy(lanes, &v, sizeof v);
    for (l = 0; l < n; l++) p[l] = lanes[l];
#endif
}

/* acc[r] (r < R) += the taps of the input rows `rows` (rows of the zero padding point at a row
   of zeros) for the column vector at input column i0; output row r reads rows[r * S + kh]. No
   branch inside: the accumulators stay in registers. */
CW_INLINE void CW_NAME(column)(CW_VT* acc, const CW_T* const* rows, Py_ssize_t i0, Py_ssize_t w_in,
                               const CW_VT* wv, const int K, const int S, const int R,
                               const int edge)
{
    int q, r, kh, kw;
    CW_UNROLL
    for (q = 0; q < (R - 1) * S + K; q++) {
        CW_VT t[5];
#if PCF_LEVEL == 2 && PCF_GNU_VECTORS
        if (S == 1 && !edge) {
            /* one load and its successor (masked: it may pass the row's end) shifted, instead
               of K loads across cache lines */
            CW_VT next = CW_NAME(load_in_row)(rows[q], i0 + CW_V, w_in);
            t[0] = CW_NAME(load)(rows[q] + i0);
            CW_UNROLL
            for (kw = 1; kw < K; kw++) t[kw] = CW_NAME(shift)(t[0], next, kw);
        } else
#endif
        {
            CW_UNROLL
            for (kw = 0; kw < K; kw++)
                t[kw] = edge ? CW_NAME(tap_edge)(rows[q], i0, w_in, kw, S)
                             : CW_NAME(tap)(rows[q], i0, kw, S);
        }
        CW_UNROLL
        for (r = 0; r < R; r++) {
            kh = q - r * S;
            if (kh < 0 || kh >= K) continue;
            CW_UNROLL
            for (kw = 0; kw < K; kw++) acc[r] = CW_NAME(fma)(t[kw], wv[kh * K + kw], acc[r]);
        }
    }
}

/* One pass: output rows oh0 .. oh0 + R - 1 (out, o_sh apart), every column. */
CW_INLINE void CW_NAME(pass)(const CW_T* x, Py_ssize_t x_sh, Py_ssize_t h_in, Py_ssize_t w_in,
                             CW_T* out, Py_ssize_t o_sh, Py_ssize_t oh0, Py_ssize_t w_out,
                             const CW_VT* wv, CW_VT bv, Py_ssize_t pad_h, Py_ssize_t pad_w,
                             const CW_T* zero_row, const int K, const int S, const int R)
{
    const CW_T* rows[CW_MAX_ROWS]; /* (R - 1) * S + K of them; no VLA: MSVC has none */
    CW_VT acc[4];
    Py_ssize_t ow0, i0, ih;
    int q, r;
    CW_UNROLL
    for (q = 0; q < (R - 1) * S + K; q++) {
        ih = oh0 * S - pad_h + q;
        rows[q] = ih >= 0 && ih < h_in ? x + ih * x_sh : zero_row;
    }
    for (ow0 = 0; ow0 < w_out; ow0 += CW_V) {
        i0 = ow0 * S - pad_w;
        CW_UNROLL
        for (r = 0; r < R; r++) acc[r] = bv;
        if (i0 >= 0 && i0 + K - 1 + S * CW_V <= w_in && ow0 + CW_V <= w_out)
            CW_NAME(column)(acc, rows, i0, w_in, wv, K, S, R, 0);
        else
            CW_NAME(column)(acc, rows, i0, w_in, wv, K, S, R, 1);
        if (ow0 + CW_V <= w_out) {
            CW_UNROLL
            for (r = 0; r < R; r++) memcpy(out + r * o_sh + ow0, &acc[r], sizeof acc[r]);
        } else {
            for (r = 0; r < R; r++) CW_NAME(store_part)(out + r * o_sh + ow0, acc[r], w_out - ow0);
        }
    }
}

#define CW_PASS(K, S, R)                                                                          \
    CW_NAME(pass)(x, x_sh, h_in, w_in, out + (oh - oh0) * o_sh, o_sh, oh, w_out, wv, bv, pad_h, \
                  pad_w, zero_row, K, S, R)
#define CW_PASSES(K, S)                                                                           \
    for (oh = oh0; oh + 4 <= oh1; oh += 4) CW_PASS(K, S, 4);                                      \
    switch (oh1 - oh) {                                                                           \
        case 3: CW_PASS(K, S, 3); break;                                                          \
        case 2: CW_PASS(K, S, 2); break;                                                          \
        case 1: CW_PASS(K, S, 1); break;                                                          \
    }

/* Output rows [oh0, oh1) of one plane: out[(oh - oh0) * o_sh + ow] for ow < w_out, from the
   input plane x (rows x_sh apart, unit column stride, h_in x w_in), the k * k weights w in
   (kh, kw) order and *bias (if not NULL). k is 3 or 5, s is 1 or 2. zero_row: w_in zeros, read
   for the rows of the zero padding. */
static CW_TARGET void CW_NAME(rows)(
    const CW_T* x, Py_ssize_t x_sh, Py_ssize_t h_in, Py_ssize_t w_in, CW_T* out, Py_ssize_t o_sh,
    Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t w_out, const CW_T* w, const CW_T* bias,
    Py_ssize_t k, Py_ssize_t s, Py_ssize_t pad_h, Py_ssize_t pad_w, const CW_T* zero_row)
{
    CW_VT wv[25];
    CW_VT bv = CW_NAME(splat)(bias != NULL ? *bias : (CW_T)0);
    Py_ssize_t t, oh;
    for (t = 0; t < k * k; t++) wv[t] = CW_NAME(splat)(w[t]);
    if (k == 3 && s == 1) {
        CW_PASSES(3, 1)
    } else if (k == 3 && s == 2) {
        CW_PASSES(3, 2)
    } else if (k == 5 && s == 1) {
        CW_PASSES(5, 1)
    } else if (k == 5 && s == 2) {
        CW_PASSES(5, 2)
    }
}

#undef CW_PASS
#undef CW_PASSES
#undef CW_T
#undef CW_NAME
#undef CW_TARGET
#undef CW_INLINE
#undef CW_UNROLL
#undef CW_LANES
#undef CW_VT
#undef CW_V
#undef CW_MASKED
