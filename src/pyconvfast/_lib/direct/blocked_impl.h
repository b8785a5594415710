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
   w_blk elements further. Writes tmp[p * DB_MB * DB_KB + channel]. */
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
                acc[m][v][p] = (DB_NAME(vec)){0};
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

#define DB_TILE_CASE(MM, N)                                                                       \
    case N:                                                                                       \
        if (unit)                                                                                 \
            DB_NAME(tile)(x0, x_sc, c_g, rtap, roff, n_rows, kw_n, 1, kw_step, w, w_blk, taps,    \
                          tmp, MM, N);                                                            \
        else                                                                                      \
            DB_NAME(tile)(x0, x_sc, c_g, rtap, roff, n_rows, kw_n, pix_step, kw_step, w, w_blk,   \
                          taps, tmp, MM, N);                                                      \
        break;

/* The tile with M and NP as compile-time constants (a switch over every value). */
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
