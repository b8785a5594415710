/* One register tile of gemm_impl.h, included there once per tile shape with
     PW_TILE_NAME  the function's name
     PW_TILE_R     its rows (broadcast scalars of A)
     PW_TILE_NV    its columns, in vectors (loads of B)
     PW_TILE_VP    vectors per panel of B: vector v is read at (v / VP) * b_p + (v % VP) * V
   as literals, so that the accumulator array has a fixed size and, its loops unrolled, lives in
   registers (an array sized by a function argument stays in memory even when inlined). No
   include guard: included once per shape; the four macros are undefined afterwards.

   c[r * c_r + v * V] = init + sum over kk < kc of a[kk * a_k + r * a_r] * (vector v of
   b + kk * b_k),
   init: 0 c itself, 1 bias[r], 2 bias[v * V ...], 3 zero; the sum in kk order, one
   multiply-add (fused where the level has FMA) per term. */
static PCF_TARGET void PW_TILE_NAME(Py_ssize_t kc, const PW_T* a, Py_ssize_t a_k, Py_ssize_t a_r,
                                    const PW_T* b, Py_ssize_t b_k, Py_ssize_t b_p, PW_T* c,
                                    Py_ssize_t c_r,
                                    int init, const PW_T* bias)
{
    PW_VT acc[PW_TILE_R][PW_TILE_NV];
    Py_ssize_t kk;
    PW_UNROLL for (Py_ssize_t r = 0; r < PW_TILE_R; r++) {
        PW_UNROLL for (Py_ssize_t v = 0; v < PW_TILE_NV; v++) {
            if (init == 0)
                acc[r][v] = PW_NAME(load)(c + r * c_r + v * PW_V);
            else if (init == 1)
                acc[r][v] = PW_NAME(splat)(bias[r]);
            else if (init == 2)
                acc[r][v] = PW_NAME(load)(bias + v * PW_V);
            else
                acc[r][v] = PW_NAME(splat)(0);
        }
    }
    for (kk = 0; kk < kc; kk++) {
        PW_VT bv[PW_TILE_NV];
        PW_UNROLL for (Py_ssize_t v = 0; v < PW_TILE_NV; v++) 
            bv[v] = PW_NAME(load)(b + v / PW_TILE_VP * b_p + v % PW_TILE_VP * PW_V);
        PW_UNROLL for (Py_ssize_t r = 0; r < PW_TILE_R; r++) {
            PW_VT av = PW_NAME(splat)(a[r * a_r]);
            PW_UNROLL for (Py_ssize_t v = 0; v < PW_TILE_NV; v++)
                acc[r][v] = PW_NAME(fma)(av, bv[v], acc[r][v]);
        }
        a += a_k;
        b += b_k;
    }
    PW_UNROLL for (Py_ssize_t r = 0; r < PW_TILE_R; r++) {
        PW_UNROLL for (Py_ssize_t v = 0; v < PW_TILE_NV; v++)
            PW_NAME(store)(c + r * c_r + v * PW_V, acc[r][v]);
    }
}

#undef PW_TILE_NAME
#undef PW_TILE_R
#undef PW_TILE_NV
#undef PW_TILE_VP
