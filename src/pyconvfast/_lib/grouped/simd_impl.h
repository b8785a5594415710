/* The register-tile product of the grouped kernel, written once for one element type and one
   instruction set. simd.h instantiates it once per (type, level) through cpu/instantiate.h,
   after mapping these names onto the instantiation's (GR_NV through PCF_BY_LEVEL):

     GR_T          float or double
     GR_NAME(base) the function name for this instantiation (a suffix per type and ISA)
     GR_TARGET     function attributes, e.g. __attribute__((target("avx2,fma"))), or nothing
     GR_VBYTES     bytes of the native vector (16, 32 or 64)
     GR_NV         vectors of pixels per register tile (GR_MR x GR_NV accumulators)

   c[k, p] = sum over d in [0, depth) of w[k, d] * rows[d][p], summed in the order of d from +0,
   for the GR_MR output channels of each weight block and every pixel p in [0, n_pix). The
   weights are packed block by block, w[kb][d][i] for output channel kb * GR_MR + i, so that the
   GR_MR broadcasts of one step are adjacent; each row rows[d] is readable up to n_pix rounded
   up to whole vectors (the caller's buffers are padded: the extra columns are computed and
   dropped). Where the instruction set has FMA the compiler contracts each multiply-add into
   one (the build allows contraction), so results differ between instruction sets in the last
   bits, never between thread counts. */

typedef GR_T GR_NAME(vec) __attribute__((vector_size(GR_VBYTES), aligned(sizeof(GR_T))));
#define GR_VL ((Py_ssize_t)(GR_VBYTES / sizeof(GR_T)))

static inline __attribute__((always_inline)) GR_TARGET GR_NAME(vec) GR_NAME(load)(const GR_T* p)
{
    GR_NAME(vec) v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline __attribute__((always_inline)) GR_TARGET void GR_NAME(store)(GR_T* p,
                                                                            GR_NAME(vec) v)
{
    memcpy(p, &v, sizeof(v));
}

/* One GR_MR x (NV vectors) tile: c[i * ldc + j * VL + lane] for the tile at b + p. */
#define GR_TILE(NV, TILE)                                                                        \
    static inline __attribute__((always_inline)) GR_TARGET void GR_NAME(TILE)(                  \
        const GR_T* __restrict w, Py_ssize_t depth, const GR_T* const* rows, Py_ssize_t p,      \
        GR_T* __restrict c, Py_ssize_t ldc)                                                      \
    {                                                                                            \
        GR_NAME(vec) acc[GR_MR][NV];                                                             \
        Py_ssize_t d;                                                                            \
        int i, j;                                                                                \
        _Pragma("GCC unroll 8") for (i = 0; i < GR_MR; i++)                                      \
            _Pragma("GCC unroll 8") for (j = 0; j < NV; j++) acc[i][j] = (GR_NAME(vec)){0};      \
        for (d = 0; d < depth; d++) {                                                            \
            GR_NAME(vec) x[NV];                                                                  \
            _Pragma("GCC unroll 8") for (j = 0; j < NV; j++)                                     \
                x[j] = GR_NAME(load)(rows[d] + p + j * GR_VL);                                   \
            _Pragma("GCC unroll 8") for (i = 0; i < GR_MR; i++) {                                \
                GR_T s = w[d * GR_MR + i];                                                       \
                _Pragma("GCC unroll 8") for (j = 0; j < NV; j++) acc[i][j] += s * x[j];          \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 8") for (i = 0; i < GR_MR; i++)                                      \
            _Pragma("GCC unroll 8") for (j = 0; j < NV; j++)                                     \
                GR_NAME(store)(c + i * ldc + j * GR_VL, acc[i][j]);                              \
    }
GR_TILE(GR_NV, tile_wide)
GR_TILE(1, tile_1)
GR_TILE(2, tile_2)
#if GR_NV > 3
GR_TILE(3, tile_3)
GR_TILE(4, tile_4)
GR_TILE(5, tile_5)
#endif
#undef GR_TILE

/* The last pixels of a block (fewer than a wide tile) as one narrower tile, so that short rows
   (7x7, 14x14 planes) still keep several vectors of accumulators in flight. */
static inline __attribute__((always_inline)) GR_TARGET void GR_NAME(tile_n)(
    int nv, const GR_T* w, Py_ssize_t depth, const GR_T* const* rows, Py_ssize_t p, GR_T* c,
    Py_ssize_t ldc)
{
    switch (nv) {
    case 1: GR_NAME(tile_1)(w, depth, rows, p, c, ldc); break;
    case 2: GR_NAME(tile_2)(w, depth, rows, p, c, ldc); break;
#if GR_NV > 3
    case 3: GR_NAME(tile_3)(w, depth, rows, p, c, ldc); break;
    case 4: GR_NAME(tile_4)(w, depth, rows, p, c, ldc); break;
    case 5: GR_NAME(tile_5)(w, depth, rows, p, c, ldc); break;
#endif
    default: break;
    }
}

static GR_TARGET void GR_NAME(gemm)(const GR_T* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                                    const GR_T* const* rows, Py_ssize_t n_pix, GR_T* c,
                                    Py_ssize_t ldc)
{
    const Py_ssize_t wide = GR_NV * GR_VL;
    Py_ssize_t p = 0, kb;
    int nv;
    for (; p + wide <= n_pix; p += wide)
        for (kb = 0; kb < k_blocks; kb++)
            GR_NAME(tile_wide)(w + kb * depth * GR_MR, depth, rows, p,
                               c + kb * GR_MR * ldc + p, ldc);
    nv = (int)((n_pix - p + GR_VL - 1) / GR_VL); /* n_pix - p < GR_NV * GR_VL: nv <= GR_NV */
    if (nv == GR_NV) {  /* a wide tile whose last vector is partial */
        for (kb = 0; kb < k_blocks; kb++)
            GR_NAME(tile_wide)(w + kb * depth * GR_MR, depth, rows, p,
                               c + kb * GR_MR * ldc + p, ldc);
    } else if (nv > 0) {
        for (kb = 0; kb < k_blocks; kb++)
            GR_NAME(tile_n)(nv, w + kb * depth * GR_MR, depth, rows, p,
                            c + kb * GR_MR * ldc + p, ldc);
    }
}

#undef GR_VL
