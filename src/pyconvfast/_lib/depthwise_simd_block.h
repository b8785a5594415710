/* One block of up to 8 independent output vectors ("items"), summed over all taps with every
   running sum in a register: one load per tap and item, one store per item at the end.
   depthwise_simd_impl.h includes this file once per vector width after defining
     DW_VT        the vector type (a GNU vector of DW_T, or DW_T itself for one element)
     DW_BLOCK(b)  the function name for this width
   Item i's vector of outputs goes to acc + acc_off[i] and reads, at tap t, the vector at
   xs[t] + x_off[i]. Eight items make eight independent dependency chains, enough to hide the
   latency of the additions. */

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

/* Channels-first: one scalar weight per tap, ws[t], for every item. */
static inline DW_ALWAYS_INLINE DW_TARGET void DW_BLOCK(rows)(
    DW_T* acc, const Py_ssize_t* acc_off, const Py_ssize_t* x_off, Py_ssize_t n_taps,
    const DW_T* const* xs, const DW_T* ws, const int ni)
{
    const Py_ssize_t o0 = x_off[0];
    const Py_ssize_t o1 = ni > 1 ? x_off[1] : 0, o2 = ni > 2 ? x_off[2] : 0;
    const Py_ssize_t o3 = ni > 3 ? x_off[3] : 0, o4 = ni > 4 ? x_off[4] : 0;
    const Py_ssize_t o5 = ni > 5 ? x_off[5] : 0, o6 = ni > 6 ? x_off[6] : 0;
    const Py_ssize_t o7 = ni > 7 ? x_off[7] : 0;
    DW_VT a0 = (DW_VT){0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    Py_ssize_t t;
    for (t = 0; t < n_taps; t++) {
        const DW_T* x = xs[t];
        const DW_T w = ws[t];
        a0 = a0 + w * DW_BLOCK(load)(x + o0);
        if (ni > 1) a1 = a1 + w * DW_BLOCK(load)(x + o1);
        if (ni > 2) a2 = a2 + w * DW_BLOCK(load)(x + o2);
        if (ni > 3) a3 = a3 + w * DW_BLOCK(load)(x + o3);
        if (ni > 4) a4 = a4 + w * DW_BLOCK(load)(x + o4);
        if (ni > 5) a5 = a5 + w * DW_BLOCK(load)(x + o5);
        if (ni > 6) a6 = a6 + w * DW_BLOCK(load)(x + o6);
        if (ni > 7) a7 = a7 + w * DW_BLOCK(load)(x + o7);
    }
    DW_BLOCK(store)(acc + acc_off[0], a0);
    if (ni > 1) DW_BLOCK(store)(acc + acc_off[1], a1);
    if (ni > 2) DW_BLOCK(store)(acc + acc_off[2], a2);
    if (ni > 3) DW_BLOCK(store)(acc + acc_off[3], a3);
    if (ni > 4) DW_BLOCK(store)(acc + acc_off[4], a4);
    if (ni > 5) DW_BLOCK(store)(acc + acc_off[5], a5);
    if (ni > 6) DW_BLOCK(store)(acc + acc_off[6], a6);
    if (ni > 7) DW_BLOCK(store)(acc + acc_off[7], a7);
}

/* Channels-last: a vector of weights per tap and item, at ws[t] + w_off[i]. */
static inline DW_ALWAYS_INLINE DW_TARGET void DW_BLOCK(channels)(
    DW_T* acc, const Py_ssize_t* acc_off, const Py_ssize_t* x_off, const Py_ssize_t* w_off,
    Py_ssize_t n_taps, const DW_T* const* xs, const DW_T* const* ws, const int ni)
{
    const Py_ssize_t o0 = x_off[0];
    const Py_ssize_t o1 = ni > 1 ? x_off[1] : 0, o2 = ni > 2 ? x_off[2] : 0;
    const Py_ssize_t o3 = ni > 3 ? x_off[3] : 0, o4 = ni > 4 ? x_off[4] : 0;
    const Py_ssize_t o5 = ni > 5 ? x_off[5] : 0, o6 = ni > 6 ? x_off[6] : 0;
    const Py_ssize_t o7 = ni > 7 ? x_off[7] : 0;
    const Py_ssize_t v0 = w_off[0];
    const Py_ssize_t v1 = ni > 1 ? w_off[1] : 0, v2 = ni > 2 ? w_off[2] : 0;
    const Py_ssize_t v3 = ni > 3 ? w_off[3] : 0, v4 = ni > 4 ? w_off[4] : 0;
    const Py_ssize_t v5 = ni > 5 ? w_off[5] : 0, v6 = ni > 6 ? w_off[6] : 0;
    const Py_ssize_t v7 = ni > 7 ? w_off[7] : 0;
    DW_VT a0 = (DW_VT){0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    Py_ssize_t t;
    for (t = 0; t < n_taps; t++) {
        const DW_T* x = xs[t];
        const DW_T* w = ws[t];
        a0 = a0 + DW_BLOCK(load)(w + v0) * DW_BLOCK(load)(x + o0);
        if (ni > 1) a1 = a1 + DW_BLOCK(load)(w + v1) * DW_BLOCK(load)(x + o1);
        if (ni > 2) a2 = a2 + DW_BLOCK(load)(w + v2) * DW_BLOCK(load)(x + o2);
        if (ni > 3) a3 = a3 + DW_BLOCK(load)(w + v3) * DW_BLOCK(load)(x + o3);
        if (ni > 4) a4 = a4 + DW_BLOCK(load)(w + v4) * DW_BLOCK(load)(x + o4);
        if (ni > 5) a5 = a5 + DW_BLOCK(load)(w + v5) * DW_BLOCK(load)(x + o5);
        if (ni > 6) a6 = a6 + DW_BLOCK(load)(w + v6) * DW_BLOCK(load)(x + o6);
        if (ni > 7) a7 = a7 + DW_BLOCK(load)(w + v7) * DW_BLOCK(load)(x + o7);
    }
    DW_BLOCK(store)(acc + acc_off[0], a0);
    if (ni > 1) DW_BLOCK(store)(acc + acc_off[1], a1);
    if (ni > 2) DW_BLOCK(store)(acc + acc_off[2], a2);
    if (ni > 3) DW_BLOCK(store)(acc + acc_off[3], a3);
    if (ni > 4) DW_BLOCK(store)(acc + acc_off[4], a4);
    if (ni > 5) DW_BLOCK(store)(acc + acc_off[5], a5);
    if (ni > 6) DW_BLOCK(store)(acc + acc_off[6], a6);
    if (ni > 7) DW_BLOCK(store)(acc + acc_off[7], a7);
}

/* Run one block of ni (1..8, a run-time value) items: a switch to the unrolled versions. */
static DW_TARGET void DW_BLOCK(rows_n)(
    DW_T* acc, const Py_ssize_t* acc_off, const Py_ssize_t* x_off, Py_ssize_t n_taps,
    const DW_T* const* xs, const DW_T* ws, int ni)
{
    switch (ni) {
    case 1: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 1); break;
    case 2: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 2); break;
    case 3: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 3); break;
    case 4: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 4); break;
    case 5: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 5); break;
    case 6: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 6); break;
    case 7: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 7); break;
    case 8: DW_BLOCK(rows)(acc, acc_off, x_off, n_taps, xs, ws, 8); break;
    }
}

static DW_TARGET void DW_BLOCK(channels_n)(
    DW_T* acc, const Py_ssize_t* acc_off, const Py_ssize_t* x_off, const Py_ssize_t* w_off,
    Py_ssize_t n_taps, const DW_T* const* xs, const DW_T* const* ws, int ni)
{
    switch (ni) {
    case 1: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 1); break;
    case 2: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 2); break;
    case 3: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 3); break;
    case 4: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 4); break;
    case 5: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 5); break;
    case 6: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 6); break;
    case 7: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 7); break;
    case 8: DW_BLOCK(channels)(acc, acc_off, x_off, w_off, n_taps, xs, ws, 8); break;
    }
}
