/* The blocked direct kernel's register tiles, written once for one element type and one
   instruction set. blocked_simd.h instantiates it once per (type, level) through
   cpu/instantiate.h, after mapping these names onto the instantiation's (DB_MB and DB_P through
   PCF_BY_LEVEL):

     DB_T          float or double
     DB_NAME(base) the function name for this instantiation (a suffix per type and ISA)
     DB_TARGET     function attributes, e.g. __attribute__((target("avx2,fma"))), or nothing
     DB_VBYTES     bytes of the native vector (16, 32 or 64)
     DB_MB         channel blocks (of DB_KB = 64 bytes of channels) per register tile
     DB_P          output pixels per register tile

   The accumulators of a tile, DB_MB * (64 / DB_VBYTES) * DB_P vectors, stay in registers for the
   whole sum over the input channels and kernel taps: the weights of a tap are DB_MB * 64 bytes
   loaded once and used for DB_P pixels, each input value is broadcast once and used for
   DB_MB * 64 bytes of output channels.

   Every output is summed in the order (input channel, kd, kh, kw) from +0, taps on the zero
   padding skipped, whatever the tile, the thread or the task: results do not depend on the
   thread count. (With FMA, the AVX2 and AVX-512 instantiations round each product-and-sum once;
   the baseline rounds twice, so results may differ between CPUs, not between thread counts.) */

#define DB_VL (DB_VBYTES / (int)sizeof(DB_T))
#define DB_NV (64 / DB_VBYTES)
#define DB_KB (64 / (int)sizeof(DB_T))

typedef DB_T DB_NAME(vec) __attribute__((vector_size(DB_VBYTES), aligned(sizeof(DB_T))));

/* One register tile of NP (<= DB_P) pixels of one output row, all taps in range (no table):
   pixel p of kernel column kw reads x0[c * x_sc + roff[r] + p * pix_step + kw * kw_step].
   w: the packed weights of the tile's first channel block, [c][tap][DB_KB], the next block
   w_blk elements further. Adds to the sums in tmp[p * DB_MB * DB_KB + channel] (the caller
   zeroes them before the first input channel). */
static inline DB_ALWAYS_INLINE DB_TARGET void DB_NAME(tile)(
    const DB_T* x0, Py_ssize_t x_sc, Py_ssize_t c_g, const Py_ssize_t* rtap,
    const Py_ssize_t* roff, Py_ssize_t n_rows, Py_ssize_t kw_n, Py_ssize_t pix_step,
    Py_ssize_t kw_step, const DB_T* w, Py_ssize_t w_blk, Py_ssize_t taps, DB_T* tmp,
    const int M, const int NP)
{
    DB_NAME(vec) acc[DB_MB][DB_NV][DB_P];
    int m, v, p;
    Py_ssize_t c, r, kw;
    for (m = 0; m < M; m++)
        for (v = 0; v < DB_NV; v++)
            for (p = 0; p < NP; p++)
                acc[m][v][p] =
                    *(const DB_NAME(vec)*)(tmp + p * DB_MB * DB_KB + m * DB_KB + v * DB_VL);
    for (c = 0; c < c_g; c++) {
        const DB_T* xc = x0 + c * x_sc;
        const DB_T* wc = w + c * taps * DB_KB;
        for (r = 0; r < n_rows; r++) {
            const DB_T* xr = xc + roff[r];
            const DB_T* wr = wc + rtap[r] * DB_KB;
            for (kw = 0; kw < kw_n; kw++) {
                DB_NAME(vec) wv[DB_MB][DB_NV];
                const DB_T* xk = xr + kw * kw_step;
                for (m = 0; m < M; m++)
                    for (v = 0; v < DB_NV; v++)
                        wv[m][v] = *(const DB_NAME(vec)*)(wr + m * w_blk + kw * DB_KB + v * DB_VL);
                for (p = 0; p < NP; p++) {
                    const DB_T xs = xk[p * pix_step];
                    for (m = 0; m < M; m++)
                        for (v = 0; v < DB_NV; v++)
                            acc[m][v][p] += wv[m][v] * xs;
                }
            }
        }
    }
    for (p = 0; p < NP; p++)
        for (m = 0; m < M; m++)
            for (v = 0; v < DB_NV; v++)
                *(DB_NAME(vec)*)(tmp + p * DB_MB * DB_KB + m * DB_KB + v * DB_VL) = acc[m][v][p];
}

/* A register tile of NP (<= DB_P) border pixels through the W tap table: pixel p reads input
   column tw[p * kw_n + kw] at kernel column kw, a negative entry being a zero tap, skipped (not
   multiplied by zero: an inf weight on the padding gives no NaN). */
static inline DB_ALWAYS_INLINE DB_TARGET void DB_NAME(table_tile)(
    const DB_T* x0, Py_ssize_t x_sc, Py_ssize_t c_g, const Py_ssize_t* rtap,
    const Py_ssize_t* roff, Py_ssize_t n_rows, Py_ssize_t kw_n, const Py_ssize_t* tw,
    Py_ssize_t x_sw, const DB_T* w, Py_ssize_t w_blk, Py_ssize_t taps, DB_T* tmp, const int M,
    const int NP)
{
    DB_NAME(vec) acc[DB_MB][DB_NV][DB_P];
    int m, v, p;
    Py_ssize_t c, r, kw;
    for (m = 0; m < M; m++)
        for (v = 0; v < DB_NV; v++)
            for (p = 0; p < NP; p++)
                acc[m][v][p] = (DB_NAME(vec)){0};
    for (c = 0; c < c_g; c++) {
        const DB_T* xc = x0 + c * x_sc;
        const DB_T* wc = w + c * taps * DB_KB;
        for (r = 0; r < n_rows; r++) {
            const DB_T* xr = xc + roff[r];
            const DB_T* wr = wc + rtap[r] * DB_KB;
            for (kw = 0; kw < kw_n; kw++) {
                DB_NAME(vec) wv[DB_MB][DB_NV];
                for (m = 0; m < M; m++)
                    for (v = 0; v < DB_NV; v++)
                        wv[m][v] = *(const DB_NAME(vec)*)(wr + m * w_blk + kw * DB_KB + v * DB_VL);
                for (p = 0; p < NP; p++) {
                    const Py_ssize_t t = tw[p * kw_n + kw];
                    if (t < 0)
                        continue;
                    const DB_T xs = xr[t * x_sw];
                    for (m = 0; m < M; m++)
                        for (v = 0; v < DB_NV; v++)
                            acc[m][v][p] += wv[m][v] * xs;
                }
            }
        }
    }
    for (p = 0; p < NP; p++)
        for (m = 0; m < M; m++)
            for (v = 0; v < DB_NV; v++)
                *(DB_NAME(vec)*)(tmp + p * DB_MB * DB_KB + m * DB_KB + v * DB_VL) = acc[m][v][p];
}

/* acc + w * x where ok is 1; acc unchanged (no multiply) where ok is 0. With AVX-512 a masked
   FMA; elsewhere w and x are replaced by +0 (x by the caller), and acc + (+0 * +0) is acc
   exactly: a sum that starts from +0 is never -0, and an inf or NaN weight is not multiplied. */
static inline DB_ALWAYS_INLINE DB_TARGET DB_NAME(vec) DB_NAME(fma_if)(
    DB_NAME(vec) acc, DB_NAME(vec) w, DB_T x, unsigned ok)
{
#if DB_VBYTES == 64 && defined(PCF_X86_DISPATCH)
    if (sizeof(DB_T) == 4)
        return (DB_NAME(vec))_mm512_mask3_fmadd_ps((__m512)w, _mm512_set1_ps((float)x),
                                                   (__m512)acc, (__mmask16)(0u - ok));
    return (DB_NAME(vec))_mm512_mask3_fmadd_pd((__m512d)w, _mm512_set1_pd((double)x),
                                               (__m512d)acc, (__mmask8)(0u - ok));
#else
    typedef long long DB_NAME(ivec) __attribute__((vector_size(DB_VBYTES)));
    const DB_NAME(ivec) mask = (DB_NAME(ivec)){0} - (long long)ok;
    return acc + (DB_NAME(vec))((DB_NAME(ivec))w & mask) * x;
#endif
}

/* Zeros read in place of an input value on the padding (and of the weights, see fma_if). */
static const DB_T DB_NAME(zeros)[DB_KB] __attribute__((aligned(64)));

/* A register tile of NP (<= DB_P) pixels of one output row whose taps may fall on the zero
   padding: pixel p at kernel column kw reads x0[c * x_sc + roff[r] + x_off + p * pix_step
   + kw * kw_step] where bit p of vm[kw] is set, and skips the tap (fma_if: no multiply) where it
   is not, so a row needs no narrow border tiles. Interior tiles (every tap in range) run tile().
   Adds to the sums in tmp as tile() does. */
static inline DB_ALWAYS_INLINE DB_TARGET void DB_NAME(full_tile)(
    const DB_T* x0, Py_ssize_t x_off, Py_ssize_t x_sc, Py_ssize_t c_g, const Py_ssize_t* rtap,
    const Py_ssize_t* roff, Py_ssize_t n_rows, Py_ssize_t kw_n, Py_ssize_t pix_step,
    Py_ssize_t kw_step, const unsigned* vm, const DB_T* w, Py_ssize_t w_blk, Py_ssize_t taps,
    DB_T* tmp, const int M, const int NP)
{
    DB_NAME(vec) acc[DB_MB][DB_NV][DB_P];
    const unsigned all = (1u << NP) - 1u;
    /* the pixels past the first and before the last E, all of them if NP <= 2 * E */
    const unsigned mid1 = NP > 2 ? all & ~1u & (all >> 1) : 0u;
    const unsigned mid2 = NP > 4 ? all & ~3u & (all >> 2) : 0u;
    int m, v, p;
    Py_ssize_t c, r, kw;
    for (m = 0; m < M; m++)
        for (v = 0; v < DB_NV; v++)
            for (p = 0; p < NP; p++)
                acc[m][v][p] =
                    *(const DB_NAME(vec)*)(tmp + p * DB_MB * DB_KB + m * DB_KB + v * DB_VL);
    for (c = 0; c < c_g; c++) {
        const DB_T* xc = x0 + c * x_sc;
        const DB_T* wc = w + c * taps * DB_KB;
        for (r = 0; r < n_rows; r++) {
            const DB_T* xr = xc + roff[r];
            const DB_T* wr = wc + rtap[r] * DB_KB;
            for (kw = 0; kw < kw_n; kw++) {
                DB_NAME(vec) wv[DB_MB][DB_NV];
                const unsigned bits = vm[kw];
                const Py_ssize_t xk = x_off + kw * kw_step;
                for (m = 0; m < M; m++)
                    for (v = 0; v < DB_NV; v++)
                        wv[m][v] = *(const DB_NAME(vec)*)(wr + m * w_blk + kw * DB_KB + v * DB_VL);
                /* pixels [E, NP - E) in range: plain FMAs there, fma_if on the E at each end */
#define DB_FULL_PIXELS(E)                                                                         \
    _Pragma("GCC unroll 16")                                                                      \
    for (p = 0; p < NP; p++) {                                                                    \
        if (p >= (E) && p < NP - (E)) {                                                           \
            const DB_T xs = xr[xk + p * pix_step];                                                \
            for (m = 0; m < M; m++)                                                               \
                for (v = 0; v < DB_NV; v++)                                                       \
                    acc[m][v][p] += wv[m][v] * xs;                                                \
        } else {                                                                                  \
            const unsigned ok = bits >> p & 1u;                                                   \
            const DB_T xs = *(ok ? xr + (xk + p * pix_step) : DB_NAME(zeros));                    \
            for (m = 0; m < M; m++)                                                               \
                for (v = 0; v < DB_NV; v++)                                                       \
                    acc[m][v][p] = DB_NAME(fma_if)(acc[m][v][p], wv[m][v], xs, ok);               \
        }                                                                                         \
    }
                if (bits == all) {
                    DB_FULL_PIXELS(0)
                } else if ((bits & mid1) == mid1) {
                    DB_FULL_PIXELS(1)
                } else if ((bits & mid2) == mid2) {
                    DB_FULL_PIXELS(2)
                } else {
                    DB_FULL_PIXELS(NP)
                }
#undef DB_FULL_PIXELS
            }
        }
    }
    for (p = 0; p < NP; p++)
        for (m = 0; m < M; m++)
            for (v = 0; v < DB_NV; v++)
                *(DB_NAME(vec)*)(tmp + p * DB_MB * DB_KB + m * DB_KB + v * DB_VL) = acc[m][v][p];
}

/* Cases NP = 1 .. DB_P of a switch, CASE(MM, N) each. */
#define DB_CASES_1_4(CASE, MM) CASE(MM, 1) CASE(MM, 2) CASE(MM, 3) CASE(MM, 4)
#define DB_CASES_5_8(CASE, MM) CASE(MM, 5) CASE(MM, 6) CASE(MM, 7) CASE(MM, 8)
#define DB_CASES_9_12(CASE, MM) CASE(MM, 9) CASE(MM, 10) CASE(MM, 11) CASE(MM, 12)
#if DB_P == 2
#define DB_CASES(CASE, MM) CASE(MM, 1) CASE(MM, 2)
#elif DB_P == 6
#define DB_CASES(CASE, MM) DB_CASES_1_4(CASE, MM) CASE(MM, 5) CASE(MM, 6)
#elif DB_P == 12
#define DB_CASES(CASE, MM) DB_CASES_1_4(CASE, MM) DB_CASES_5_8(CASE, MM) DB_CASES_9_12(CASE, MM)
#else
#error "blocked_impl.h: DB_P must be 2, 6 or 12"
#endif

/* Pixel steps compiled as constants: 1 and 2 (stride 1 and 2 of a row with unit stride), any
   other at run time. */
#define DB_FULL_CASE(MM, N)                                                                       \
    case N:                                                                                       \
        if (pix_step == 1)                                                                        \
            DB_NAME(full_tile)(x0, x_off, x_sc, c_g, rtap, roff, n_rows, kw_n, 1, kw_step, vm, w, \
                               w_blk, taps, tmp, MM, N);                                          \
        else if (pix_step == 2)                                                                   \
            DB_NAME(full_tile)(x0, x_off, x_sc, c_g, rtap, roff, n_rows, kw_n, 2, kw_step, vm, w, \
                               w_blk, taps, tmp, MM, N);                                          \
        else                                                                                      \
            DB_NAME(full_tile)(x0, x_off, x_sc, c_g, rtap, roff, n_rows, kw_n, pix_step, kw_step, \
                               vm, w, w_blk, taps, tmp, MM, N);                                   \
        break;

/* The full tile with M and NP as compile-time constants. */
static DB_TARGET void DB_NAME(full_any)(
    const DB_T* x0, Py_ssize_t x_off, Py_ssize_t x_sc, Py_ssize_t c_g, const Py_ssize_t* rtap,
    const Py_ssize_t* roff, Py_ssize_t n_rows, Py_ssize_t kw_n, Py_ssize_t pix_step,
    Py_ssize_t kw_step, const unsigned* vm, const DB_T* w, Py_ssize_t w_blk, Py_ssize_t taps,
    DB_T* tmp, int M, int NP)
{
#if DB_MB > 1
    if (M == 2) {
        switch (NP) { DB_CASES(DB_FULL_CASE, 2) }
        return;
    }
#endif
    switch (NP) { DB_CASES(DB_FULL_CASE, 1) }
}
#undef DB_FULL_CASE
#undef DB_CASES
#undef DB_CASES_1_4
#undef DB_CASES_5_8
#undef DB_CASES_9_12

#define DB_TILE_CASE(MM, N)                                                                       \
    case N:                                                                                       \
        if (unit)                                                                                 \
            DB_NAME(tile)(x0, x_sc, c_g, rtap, roff, n_rows, kw_n, 1, kw_step, w, w_blk, taps,    \
                          tmp, MM, N);                                                            \
        else if (pix_step == 2)                                                                   \
            DB_NAME(tile)(x0, x_sc, c_g, rtap, roff, n_rows, kw_n, 2, kw_step, w, w_blk, taps,    \
                          tmp, MM, N);                                                            \
        else                                                                                      \
            DB_NAME(tile)(x0, x_sc, c_g, rtap, roff, n_rows, kw_n, pix_step, kw_step, w, w_blk,   \
                          taps, tmp, MM, N);                                                      \
        break;

/* The tile with M and NP as compile-time constants (a switch over every value), and the pixel
   step too where it is 1 or 2 (stride 1 or 2 along a row of unit stride). */
static DB_TARGET void DB_NAME(tile_any)(
    const DB_T* x0, Py_ssize_t x_sc, Py_ssize_t c_g, const Py_ssize_t* rtap,
    const Py_ssize_t* roff, Py_ssize_t n_rows, Py_ssize_t kw_n, Py_ssize_t pix_step,
    Py_ssize_t kw_step, const DB_T* w, Py_ssize_t w_blk, Py_ssize_t taps, DB_T* tmp, int M,
    int NP)
{
    const int unit = pix_step == 1;
#if DB_MB > 1
    if (M == 2) {
        switch (NP) {
#if DB_P >= 1
            DB_TILE_CASE(2, 1)
#endif
#if DB_P >= 2
            DB_TILE_CASE(2, 2)
#endif
#if DB_P >= 3
            DB_TILE_CASE(2, 3)
#endif
#if DB_P >= 4
            DB_TILE_CASE(2, 4)
#endif
#if DB_P >= 5
            DB_TILE_CASE(2, 5)
#endif
#if DB_P >= 6
            DB_TILE_CASE(2, 6)
#endif
#if DB_P >= 7
            DB_TILE_CASE(2, 7)
#endif
#if DB_P >= 8
            DB_TILE_CASE(2, 8)
#endif
#if DB_P >= 9
            DB_TILE_CASE(2, 9)
#endif
#if DB_P >= 10
            DB_TILE_CASE(2, 10)
#endif
#if DB_P >= 11
            DB_TILE_CASE(2, 11)
#endif
#if DB_P >= 12
            DB_TILE_CASE(2, 12)
#endif
        }
        return;
    }
#endif
    switch (NP) {
#if DB_P >= 1
        DB_TILE_CASE(1, 1)
#endif
#if DB_P >= 2
        DB_TILE_CASE(1, 2)
#endif
#if DB_P >= 3
        DB_TILE_CASE(1, 3)
#endif
#if DB_P >= 4
        DB_TILE_CASE(1, 4)
#endif
#if DB_P >= 5
        DB_TILE_CASE(1, 5)
#endif
#if DB_P >= 6
        DB_TILE_CASE(1, 6)
#endif
#if DB_P >= 7
        DB_TILE_CASE(1, 7)
#endif
#if DB_P >= 8
        DB_TILE_CASE(1, 8)
#endif
#if DB_P >= 9
        DB_TILE_CASE(1, 9)
#endif
#if DB_P >= 10
        DB_TILE_CASE(1, 10)
#endif
#if DB_P >= 11
        DB_TILE_CASE(1, 11)
#endif
#if DB_P >= 12
        DB_TILE_CASE(1, 12)
#endif
    }
}
#undef DB_TILE_CASE

#define DB_TABLE_CASE(MM, N)                                                                      \
    case N:                                                                                       \
        DB_NAME(table_tile)(x0, x_sc, c_g, rtap, roff, n_rows, kw_n, tw, x_sw, w, w_blk, taps,    \
                            tmp, MM, N);                                                          \
        break;

static DB_TARGET void DB_NAME(table_any)(
    const DB_T* x0, Py_ssize_t x_sc, Py_ssize_t c_g, const Py_ssize_t* rtap,
    const Py_ssize_t* roff, Py_ssize_t n_rows, Py_ssize_t kw_n, const Py_ssize_t* tw,
    Py_ssize_t x_sw, const DB_T* w, Py_ssize_t w_blk, Py_ssize_t taps, DB_T* tmp, int M, int NP)
{
#if DB_MB > 1
    if (M == 2) {
        switch (NP) {
#if DB_P >= 1
            DB_TABLE_CASE(2, 1)
#endif
#if DB_P >= 2
            DB_TABLE_CASE(2, 2)
#endif
#if DB_P >= 3
            DB_TABLE_CASE(2, 3)
#endif
#if DB_P >= 4
            DB_TABLE_CASE(2, 4)
#endif
#if DB_P >= 5
            DB_TABLE_CASE(2, 5)
#endif
#if DB_P >= 6
            DB_TABLE_CASE(2, 6)
#endif
#if DB_P >= 7
            DB_TABLE_CASE(2, 7)
#endif
#if DB_P >= 8
            DB_TABLE_CASE(2, 8)
#endif
#if DB_P >= 9
            DB_TABLE_CASE(2, 9)
#endif
#if DB_P >= 10
            DB_TABLE_CASE(2, 10)
#endif
#if DB_P >= 11
            DB_TABLE_CASE(2, 11)
#endif
#if DB_P >= 12
            DB_TABLE_CASE(2, 12)
#endif
        }
        return;
    }
#endif
    switch (NP) {
#if DB_P >= 1
        DB_TABLE_CASE(1, 1)
#endif
#if DB_P >= 2
        DB_TABLE_CASE(1, 2)
#endif
#if DB_P >= 3
        DB_TABLE_CASE(1, 3)
#endif
#if DB_P >= 4
        DB_TABLE_CASE(1, 4)
#endif
#if DB_P >= 5
        DB_TABLE_CASE(1, 5)
#endif
#if DB_P >= 6
        DB_TABLE_CASE(1, 6)
#endif
#if DB_P >= 7
        DB_TABLE_CASE(1, 7)
#endif
#if DB_P >= 8
        DB_TABLE_CASE(1, 8)
#endif
#if DB_P >= 9
        DB_TABLE_CASE(1, 9)
#endif
#if DB_P >= 10
        DB_TABLE_CASE(1, 10)
#endif
#if DB_P >= 11
        DB_TABLE_CASE(1, 11)
#endif
#if DB_P >= 12
        DB_TABLE_CASE(1, 12)
#endif
    }
}
#undef DB_TABLE_CASE

/* An FMA-throughput loop: 10 independent accumulators of native vectors, `iters` rounds
   (enough to cover the FMA latency of two pipes; few enough for 16 vector registers).
   Returns a sum so that nothing is optimized away. */
static DB_TARGET DB_T DB_NAME(fma_loop)(long iters, DB_T seed)
{
    DB_NAME(vec) a[10], b = (DB_NAME(vec)){0} + seed, c = (DB_NAME(vec)){0} + (DB_T)0.999;
    DB_T sum = 0;
    long i;
    int j, l;
    for (j = 0; j < 10; j++)
        a[j] = (DB_NAME(vec)){0} + (DB_T)j;
    for (i = 0; i < iters; i++)
        for (j = 0; j < 10; j++)
            a[j] = a[j] * c + b;
    for (j = 0; j < 10; j++)
        for (l = 0; l < DB_VL; l++)
            sum += a[j][l];
    return sum;
}

#undef DB_VL
#undef DB_NV
#undef DB_KB
