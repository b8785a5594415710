/* One register tile of the depthwise kernel: nq consecutive vectors along the contiguous axis
   (output columns, or channels) times np rows or pixels, nq * np <= 8, summed over all taps
   with every running sum in a register: per tap, one load of each input vector (and of each
   distinct weight vector), one store of each output vector at the end. Eight accumulators are
   enough independent dependency chains to hide the latency of the additions.

   simd_impl.h includes this file once per vector width after defining
     DW_VT        the vector type (a GNU vector of DW_T, or DW_T itself for one element)
     DW_BLOCK(b)  the function name for this width

   Slot i of the tile is vector q = i % nq of row/pixel p = i / nq. Its outputs are at
   acc + p * acc_step + q * V, its inputs at tap t at xs[t] + x_off + p * x_step + q * V, and its
   weight is ws[t] (one scalar per tap: channels-first) or the vector at
   wv[t] + w_off + q * V (channels-last). With a bias, the outputs are stored plus *bias
   (channels-first) or plus the vector at bias + w_off + q * V (channels-last): the bias is
   added last, as everywhere. nq and np are literals after inlining, so the slot
   arithmetic is constant and the loads of a weight vector shared by slots are merged. */

#define DW_LEN ((Py_ssize_t)(sizeof(DW_VT) / sizeof(DW_T)))

static inline DW_ALWAYS_INLINE DW_TARGET DW_VT DW_BLOCK(load)(const DW_T* p)
{
    DW_VT v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline DW_ALWAYS_INLINE DW_TARGET void DW_BLOCK(store)(DW_T* p, DW_VT v)
{
    memcpy(p, &v, sizeof v);
}

#define DW_X(i) DW_BLOCK(load)(x + ((i) / nq) * x_step + ((i) % nq) * DW_LEN)
#define DW_SLOT_SCALAR(i) \
    if ((i) < nq * np) a##i = a##i + w * DW_X(i);
#define DW_SLOT_VECTOR(i) \
    if ((i) < nq * np) a##i = a##i + DW_BLOCK(load)(w + ((i) % nq) * DW_LEN) * DW_X(i);
#define DW_STORE(i)                                                                            \
    if ((i) < nq * np) {                                                                       \
        if (bias != NULL) {                                                                    \
            if (scalar_weights) a##i = a##i + *bias;                                           \
            else a##i = a##i + DW_BLOCK(load)(bias + w_off + ((i) % nq) * DW_LEN);              \
        }                                                                                      \
        DW_BLOCK(store)(acc + ((i) / nq) * acc_step + ((i) % nq) * DW_LEN, a##i);               \
    }

static inline DW_ALWAYS_INLINE DW_TARGET void DW_BLOCK(tile)(
    DW_T* acc, Py_ssize_t acc_step, Py_ssize_t x_step, Py_ssize_t n_taps, const DW_T* const* xs,
    Py_ssize_t x_off, const DW_T* ws, const DW_T* const* wv, Py_ssize_t w_off, const DW_T* bias,
    const int nq, const int np, const int scalar_weights)
{
    DW_VT a0 = (DW_VT){0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    Py_ssize_t t;
    for (t = 0; t < n_taps; t++) {
        const DW_T* x = xs[t] + x_off;
        if (scalar_weights) {
            const DW_T w = ws[t];
            DW_SLOT_SCALAR(0) DW_SLOT_SCALAR(1) DW_SLOT_SCALAR(2) DW_SLOT_SCALAR(3)
            DW_SLOT_SCALAR(4) DW_SLOT_SCALAR(5) DW_SLOT_SCALAR(6) DW_SLOT_SCALAR(7)
        } else {
            const DW_T* w = wv[t] + w_off;
            DW_SLOT_VECTOR(0) DW_SLOT_VECTOR(1) DW_SLOT_VECTOR(2) DW_SLOT_VECTOR(3)
            DW_SLOT_VECTOR(4) DW_SLOT_VECTOR(5) DW_SLOT_VECTOR(6) DW_SLOT_VECTOR(7)
        }
    }
    DW_STORE(0) DW_STORE(1) DW_STORE(2) DW_STORE(3)
    DW_STORE(4) DW_STORE(5) DW_STORE(6) DW_STORE(7)
}

#undef DW_X
#undef DW_SLOT_SCALAR
#undef DW_SLOT_VECTOR
#undef DW_STORE

/* A tile of run-time shape: nq in {1, 2, 4, 8}, 1 <= np <= 8 / nq; switches to the literal
   shapes. */
#define DW_TILE(NQ, NP)                                                                         \
    DW_BLOCK(tile)(acc, acc_step, x_step, n_taps, xs, x_off, ws, wv, w_off, bias, NQ, NP,         \
                   scalar_weights)
#define DW_TILE_NP8(NQ)                                                                         \
    switch (np) {                                                                               \
    case 1: DW_TILE(NQ, 1); break; case 2: DW_TILE(NQ, 2); break;                               \
    case 3: DW_TILE(NQ, 3); break; case 4: DW_TILE(NQ, 4); break;                               \
    case 5: DW_TILE(NQ, 5); break; case 6: DW_TILE(NQ, 6); break;                               \
    case 7: DW_TILE(NQ, 7); break; default: DW_TILE(NQ, 8); break;                              \
    }

static inline DW_ALWAYS_INLINE DW_TARGET void DW_BLOCK(tile_n)(
    DW_T* acc, Py_ssize_t acc_step, Py_ssize_t x_step, Py_ssize_t n_taps, const DW_T* const* xs,
    Py_ssize_t x_off, const DW_T* ws, const DW_T* const* wv, Py_ssize_t w_off, const DW_T* bias,
    int nq, int np, const int scalar_weights)
{
    if (nq == 1) {
        DW_TILE_NP8(1)
    } else if (nq == 2) {
        switch (np) {
        case 1: DW_TILE(2, 1); break; case 2: DW_TILE(2, 2); break;
        case 3: DW_TILE(2, 3); break; default: DW_TILE(2, 4); break;
        }
    } else if (nq == 4) {
        if (np == 1) DW_TILE(4, 1);
        else DW_TILE(4, 2);
    } else {
        DW_TILE(8, 1);
    }
}

static DW_TARGET void DW_BLOCK(tile_rows)(
    DW_T* acc, Py_ssize_t acc_step, Py_ssize_t x_step, Py_ssize_t n_taps, const DW_T* const* xs,
    Py_ssize_t x_off, const DW_T* ws, const DW_T* bias, int nq, int np)
{
    DW_BLOCK(tile_n)(acc, acc_step, x_step, n_taps, xs, x_off, ws, NULL, 0, bias, nq, np, 1);
}

static DW_TARGET void DW_BLOCK(tile_channels)(
    DW_T* acc, Py_ssize_t acc_step, Py_ssize_t x_step, Py_ssize_t n_taps, const DW_T* const* xs,
    Py_ssize_t x_off, const DW_T* const* wv, Py_ssize_t w_off, const DW_T* bias, int nq, int np)
{
    DW_BLOCK(tile_n)(acc, acc_step, x_step, n_taps, xs, x_off, NULL, wv, w_off, bias, nq, np, 0);
}

#undef DW_TILE
#undef DW_TILE_NP8
#undef DW_LEN
