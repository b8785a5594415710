/* The register-tile product of the grouped kernel, written once for one element type and one
   instruction set. grouped_simd.h includes this file once per (type, instruction set) after
   defining:

     GR_T          float or double
     GR_NAME(base) the function name for this instantiation (a suffix per type and ISA)
     GR_TARGET     function attributes, e.g. __attribute__((target("avx2,fma"))), or nothing
     GR_VBYTES     bytes of the native vector (16, 32 or 64)
     GR_NV         vectors of pixels per register tile (GR_MR x GR_NV accumulators)

   c[k, p] = sum over d in [0, depth) of w[k, d] * b[d, p], summed in the order of d from +0,
   for the GR_MR output channels of each weight block and every pixel p in [0, n_pix). The
   weights are packed block by block, w[kb][d][i] for output channel kb * GR_MR + i, so that the
   GR_MR broadcasts of one step are adjacent; b's rows are ldb apart and readable up to n_pix
   rounded up to whole vectors (the caller's buffers are padded: the extra columns are computed
   and dropped). Where the instruction set has FMA the compiler contracts each multiply-add into
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
        const GR_T* __restrict w, Py_ssize_t depth, const GR_T* __restrict b, Py_ssize_t ldb,   \
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
                x[j] = GR_NAME(load)(b + d * ldb + j * GR_VL);                                   \
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
#undef GR_TILE

static GR_TARGET void GR_NAME(gemm)(const GR_T* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                                    const GR_T* b, Py_ssize_t ldb, Py_ssize_t n_pix, GR_T* c,
                                    Py_ssize_t ldc)
{
    const Py_ssize_t wide = GR_NV * GR_VL;
    Py_ssize_t p = 0, kb;
    for (; p + wide <= n_pix; p += wide)
        for (kb = 0; kb < k_blocks; kb++)
            GR_NAME(tile_wide)(w + kb * depth * GR_MR, depth, b + p, ldb,
                               c + kb * GR_MR * ldc + p, ldc);
    for (; p < n_pix; p += GR_VL)
        for (kb = 0; kb < k_blocks; kb++)
            GR_NAME(tile_1)(w + kb * depth * GR_MR, depth, b + p, ldb, c + kb * GR_MR * ldc + p,
                            ldc);
}

#undef GR_VL
