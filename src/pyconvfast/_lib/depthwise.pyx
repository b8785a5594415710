"""The ``depthwise`` algorithm: one input channel per group, with a channel multiplier.

Output channel ``k`` reads input channel ``k // m`` only (``C_out = m * C_in``), so every output
is a sum over the ``KD * KH * KW`` kernel taps of one channel. Two loop orders, chosen by the
caller from the input's strides:

* channels-first ("rows"): one task is one output row segment of one (sample, output channel).
  Along W, the *interior* columns (every tap of the row in range) are computed by a SIMD loop
  over contiguous output columns, ``acc[j] += w_t * x_t[j * stride]``, with no table lookups;
  the few *border* columns on each side go through the tap table of W. Along D and H a whole
  input row is chosen per tap through the tables, so every padding mode costs nothing there.
* channels-last ("pixels", for inputs whose channel axis has unit stride, as NHWC): one task is
  a segment of one output row, all channels; each output pixel's channels are computed by a
  SIMD loop over channels (as XNNPACK's NHWC depthwise kernels), with the weights packed tap by
  tap, ``packed[t, j * C + c]`` for output channel ``c * m + j``. Interior pixels again skip the
  W table.

The SIMD loops live in ``depthwise_simd.h`` (baseline, AVX2 and AVX-512F versions, chosen at run
time). Each output is summed in one fixed order, kernel taps in (kd, kh, kw) order from +0,
taps in the zero padding skipped, bias added last: the order of the ``direct`` kernel. It does
not depend on how the work is split, so results are bitwise the same for every thread count
and every instruction set.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

cdef extern from "depthwise_simd.h" nogil:
    void pcf_dw_rows_f32(float* acc, Py_ssize_t n, Py_ssize_t n_taps, const float** xs,
                         const float* ws, Py_ssize_t offset, Py_ssize_t step)
    void pcf_dw_rows_f64(double* acc, Py_ssize_t n, Py_ssize_t n_taps, const double** xs,
                         const double* ws, Py_ssize_t offset, Py_ssize_t step)
    void pcf_dw_pixels_f32(float* acc, Py_ssize_t n_pixels, Py_ssize_t acc_step,
                           Py_ssize_t offset, Py_ssize_t pixel_step, Py_ssize_t channels,
                           Py_ssize_t multiplier, Py_ssize_t n_taps, const float** xs,
                           const float** ws)
    void pcf_dw_pixels_f64(double* acc, Py_ssize_t n_pixels, Py_ssize_t acc_step,
                           Py_ssize_t offset, Py_ssize_t pixel_step, Py_ssize_t channels,
                           Py_ssize_t multiplier, Py_ssize_t n_taps, const double** xs,
                           const double** ws)
    int pcf_dw_max_level()
    int pcf_dw_set_level(int level)
    int pcf_dw_get_level()


SIMD_LEVELS = ("baseline", "avx2", "avx512f")

# Largest accumulator segment one task keeps (elements): small enough to stay in L1/L2 while the
# passes over the taps run over it. Task boundaries never change results.
cdef Py_ssize_t MAX_SEGMENT = 2048
# Below this many tasks per thread, rows are split into segments to balance the threads.
cdef Py_ssize_t TASKS_PER_THREAD = 4


def simd_levels():
    """The instruction-set levels this CPU can run, baseline first.

    Returns
    -------
    tuple of str
        A prefix of ``("baseline", "avx2", "avx512f")``.
    """
    return SIMD_LEVELS[:pcf_dw_max_level() + 1]


def simd_level():
    """The instruction-set level the kernel uses now (``"baseline"``, ``"avx2"`` or ``"avx512f"``)."""
    return SIMD_LEVELS[pcf_dw_get_level()]


def set_simd_level(str level):
    """Use ``level`` (capped at what the CPU has) from now on; returns the level set.

    For tests and benchmarks: results are the same at every level, only the speed differs. Not
    to be called while a convolution runs.
    """
    if level not in SIMD_LEVELS:
        raise ValueError(f"level must be one of {SIMD_LEVELS}, got {level!r}")
    return SIMD_LEVELS[pcf_dw_set_level(SIMD_LEVELS.index(level))]


pcf_dw_set_level(pcf_dw_max_level())


cdef inline void _rows(floating* acc, Py_ssize_t n, Py_ssize_t n_taps, const floating** xs,
                       const floating* ws, Py_ssize_t offset, Py_ssize_t step) noexcept nogil:
    if floating is float:
        pcf_dw_rows_f32(acc, n, n_taps, xs, ws, offset, step)
    else:
        pcf_dw_rows_f64(acc, n, n_taps, xs, ws, offset, step)


cdef inline void _pixels(floating* acc, Py_ssize_t n_pixels, Py_ssize_t acc_step,
                         Py_ssize_t offset, Py_ssize_t pixel_step, Py_ssize_t channels,
                         Py_ssize_t multiplier, Py_ssize_t n_taps, const floating** xs,
                         const floating** ws) noexcept nogil:
    if floating is float:
        pcf_dw_pixels_f32(acc, n_pixels, acc_step, offset, pixel_step, channels, multiplier,
                          n_taps, xs, ws)
    else:
        pcf_dw_pixels_f64(acc, n_pixels, acc_step, offset, pixel_step, channels, multiplier,
                          n_taps, xs, ws)


cdef Py_ssize_t _n_segments(Py_ssize_t n_rows, Py_ssize_t width, Py_ssize_t max_width,
                            int n_threads) noexcept nogil:
    """Segments each row of ``width`` outputs is cut into: none wider than ``max_width``, and
    enough of them that every thread gets several tasks."""
    cdef Py_ssize_t segments = (width + max_width - 1) // max_width
    cdef Py_ssize_t wanted = TASKS_PER_THREAD * n_threads
    if n_rows * segments < wanted:
        segments = (wanted + n_rows - 1) // n_rows
    if segments > width:
        segments = width
    return segments


cdef void _rows_task(
    floating* acc, const floating** xs, floating* ws, const floating** row_ptr,
    Py_ssize_t* row_tap,
    const floating* x_plane, const floating[:, ::1] w_taps, const Py_ssize_t k,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w, Py_ssize_t od, Py_ssize_t oh,
    Py_ssize_t x_sd, Py_ssize_t x_sh, Py_ssize_t x_sw,
    Py_ssize_t w_first, Py_ssize_t w_lo, Py_ssize_t w_hi, Py_ssize_t seg_lo, Py_ssize_t seg_hi,
    Py_ssize_t stride_w, Py_ssize_t dilation_w,
) noexcept nogil:
    """acc[ow - seg_lo] for ow in [seg_lo, seg_hi): one row segment of output channel k.

    ``w_lo, w_hi``: the interior columns; ``w_first``: the input column output ``w_lo`` reads at
    tap kw = 0 (every tap of an interior column is in range, so it needs no table)."""
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t kd, kh, kw, i_d, i_h, i_w, t, r, ow, n_taps = 0, n_rows = 0, lo, hi
    cdef const floating* row
    cdef floating a
    for kd in range(kd_size):
        i_d = taps_d[od, kd]
        if i_d < 0:
            continue
        for kh in range(kh_size):
            i_h = taps_h[oh, kh]
            if i_h < 0:
                continue
            row = x_plane + i_d * x_sd + i_h * x_sh
            t = (kd * kh_size + kh) * kw_size
            row_ptr[n_rows] = row
            row_tap[n_rows] = t
            n_rows = n_rows + 1
            if w_hi > w_lo:
                for kw in range(kw_size):
                    xs[n_taps] = row + (w_first + kw * dilation_w) * x_sw
                    ws[n_taps] = w_taps[k, t + kw]
                    n_taps = n_taps + 1
    # left border, interior, right border: each output still sums its taps in (kd, kh, kw) order
    hi = seg_hi if seg_hi < w_lo else w_lo
    for ow in range(seg_lo, hi):
        a = 0
        for r in range(n_rows):
            for kw in range(kw_size):
                i_w = taps_w[ow, kw]
                if i_w >= 0:
                    a = a + w_taps[k, row_tap[r] + kw] * row_ptr[r][i_w * x_sw]
        acc[ow - seg_lo] = a
    lo = seg_lo if seg_lo > w_lo else w_lo
    hi = seg_hi if seg_hi < w_hi else w_hi
    if hi > lo:
        _rows(acc + (lo - seg_lo), hi - lo, n_taps, xs, ws, (lo - w_lo) * stride_w * x_sw,
              stride_w * x_sw)
    lo = seg_lo if seg_lo > w_hi else w_hi
    for ow in range(lo, seg_hi):
        a = 0
        for r in range(n_rows):
            for kw in range(kw_size):
                i_w = taps_w[ow, kw]
                if i_w >= 0:
                    a = a + w_taps[k, row_tap[r] + kw] * row_ptr[r][i_w * x_sw]
        acc[ow - seg_lo] = a


cdef void _pixels_task(
    floating* acc, const floating** xs, const floating** ws, const floating** row_ptr,
    Py_ssize_t* row_tap, const floating** xs_border, const floating** ws_border,
    const floating* x_sample, const floating[:, ::1] w_packed,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w, Py_ssize_t od, Py_ssize_t oh,
    Py_ssize_t x_sd, Py_ssize_t x_sh, Py_ssize_t x_sw, Py_ssize_t channels,
    Py_ssize_t multiplier,
    Py_ssize_t w_first, Py_ssize_t w_lo, Py_ssize_t w_hi, Py_ssize_t seg_lo, Py_ssize_t seg_hi,
    Py_ssize_t stride_w, Py_ssize_t dilation_w,
) noexcept nogil:
    """acc[(ow - seg_lo) * C_out + j * C + c] for ow in [seg_lo, seg_hi): one row segment, all
    channels, of a channels-last input (channel stride 1)."""
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t c_out = channels * multiplier
    cdef Py_ssize_t kd, kh, kw, i_d, i_h, i_w, t, r, ow, n_taps = 0, n_rows = 0, n_border, lo, hi
    cdef const floating* row
    for kd in range(kd_size):
        i_d = taps_d[od, kd]
        if i_d < 0:
            continue
        for kh in range(kh_size):
            i_h = taps_h[oh, kh]
            if i_h < 0:
                continue
            row = x_sample + i_d * x_sd + i_h * x_sh
            t = (kd * kh_size + kh) * kw_size
            row_ptr[n_rows] = row
            row_tap[n_rows] = t
            n_rows = n_rows + 1
            if w_hi > w_lo:
                for kw in range(kw_size):
                    xs[n_taps] = row + (w_first + kw * dilation_w) * x_sw
                    ws[n_taps] = &w_packed[t + kw, 0]
                    n_taps = n_taps + 1
    lo = seg_lo if seg_lo > w_lo else w_lo
    hi = seg_hi if seg_hi < w_hi else w_hi
    if hi > lo:
        _pixels(acc + (lo - seg_lo) * c_out, hi - lo, c_out, (lo - w_lo) * stride_w * x_sw,
                stride_w * x_sw, channels, multiplier, n_taps, xs, ws)
    for ow in range(seg_lo, seg_hi):
        if w_lo <= ow < w_hi:
            continue
        n_border = 0
        for r in range(n_rows):
            for kw in range(kw_size):
                i_w = taps_w[ow, kw]
                if i_w >= 0:
                    xs_border[n_border] = row_ptr[r] + i_w * x_sw
                    ws_border[n_border] = &w_packed[row_tap[r] + kw, 0]
                    n_border = n_border + 1
        _pixels(acc + (ow - seg_lo) * c_out, 1, c_out, 0, 0, channels, multiplier, n_border,
                xs_border, ws_border)


def conv_depthwise(
    const floating[:, :, :, :, :] x,
    const floating[:, ::1] w_taps,
    const floating[:, ::1] w_packed,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t stride_w,
    Py_ssize_t dilation_w,
    Py_ssize_t pad_w,
    bint channels_last,
    int n_threads,
):
    """Depthwise convolution of validated 5-D views into ``out``.

    Parameters
    ----------
    x : (N, C, D, H, W) float32 or float64 array view, any strides
    w_taps : (m * C, KD * KH * KW) C-contiguous weights of the same dtype, taps in (kd, kh, kw)
        order; output channel k reads input channel k // m
    w_packed : (KD * KH * KW, m * C) C-contiguous, ``w_packed[t, j * C + c] = w_taps[c * m + j, t]``
    bias : (m * C,) or (0,) contiguous array; empty means no bias
    out : (N, m * C, D_out, H_out, W_out) writable array view, any strides
    taps_d, taps_h, taps_w : (out_size, kernel_size) int64 tap tables, -1 for a zero tap
    stride_w, dilation_w, pad_w : int, the geometry of the W axis (pad_w: padding before)
    channels_last : bool, use the channels-innermost loop order; needs x's channel stride to be
        one element
    n_threads : int, OpenMP team size
    """
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t batch = out.shape[0], c_out = out.shape[1]
    cdef Py_ssize_t d_out = out.shape[2], h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t channels = x.shape[1], w_in = x.shape[4]
    cdef Py_ssize_t multiplier = c_out // channels
    cdef Py_ssize_t n_taps = w_taps.shape[1]
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t x_sn = x.strides[0] // itemsize, x_sc = x.strides[1] // itemsize
    cdef Py_ssize_t x_sd = x.strides[2] // itemsize, x_sh = x.strides[3] // itemsize
    cdef Py_ssize_t x_sw = x.strides[4] // itemsize
    cdef Py_ssize_t o_sn = out.strides[0] // itemsize, o_sc = out.strides[1] // itemsize
    cdef Py_ssize_t o_sd = out.strides[2] // itemsize, o_sh = out.strides[3] // itemsize
    cdef Py_ssize_t o_sw = out.strides[4] // itemsize
    cdef bint has_bias = bias.shape[0] > 0
    cdef const floating* x0 = &x[0, 0, 0, 0, 0]
    cdef floating* o0 = &out[0, 0, 0, 0, 0]
    cdef Py_ssize_t w_lo, w_hi, w_first, last, n_rows, seg_width, n_segments, n_tasks, acc_size
    cdef Py_ssize_t task, seg, rest, n, k, c, j, od, oh, ow, seg_lo, seg_hi
    cdef floating shift
    cdef floating* acc
    cdef floating* ws
    cdef const floating** xs
    cdef const floating** wps
    cdef const floating** row_ptr
    cdef const floating** xs_border
    cdef const floating** ws_border
    cdef Py_ssize_t* row_tap
    cdef floating* o
    cdef floating* a
    # An array, not a scalar: Cython makes scalars assigned in a parallel block thread-private.
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    if channels_last and x_sc != 1:
        raise ValueError("depthwise: the channels-last loop order needs a unit channel stride")
    if c_out != multiplier * channels or w_taps.shape[0] != c_out:
        raise ValueError("depthwise: C_out must be a multiple of C_in, one row of w_taps each")

    # Interior columns [w_lo, w_hi): every tap 0 <= ow*stride - pad + kw*dilation < w_in.
    w_lo = (pad_w + stride_w - 1) // stride_w
    last = w_in - 1 + pad_w - (kw_size - 1) * dilation_w
    w_hi = last // stride_w + 1 if last >= 0 else 0
    w_lo = min(w_lo, w_out)
    w_hi = max(min(w_hi, w_out), w_lo)
    w_first = w_lo * stride_w - pad_w

    if channels_last:
        n_rows = batch * d_out * h_out
        seg_width = max(1, MAX_SEGMENT // c_out)
    else:
        n_rows = batch * c_out * d_out * h_out
        seg_width = MAX_SEGMENT
    n_segments = _n_segments(n_rows, w_out, seg_width, n_threads)
    seg_width = (w_out + n_segments - 1) // n_segments
    n_segments = (w_out + seg_width - 1) // seg_width
    n_tasks = n_rows * n_segments
    acc_size = seg_width * (c_out if channels_last else 1)

    with nogil, parallel(num_threads=n_threads):
        acc = <floating*> malloc(acc_size * sizeof(floating))
        ws = <floating*> malloc(n_taps * sizeof(floating))
        xs = <const floating**> malloc(n_taps * sizeof(floating*))
        wps = <const floating**> malloc(n_taps * sizeof(floating*))
        xs_border = <const floating**> malloc(n_taps * sizeof(floating*))
        ws_border = <const floating**> malloc(n_taps * sizeof(floating*))
        row_ptr = <const floating**> malloc(kd_size * kh_size * sizeof(floating*))
        row_tap = <Py_ssize_t*> malloc(kd_size * kh_size * sizeof(Py_ssize_t))
        if (acc == NULL or ws == NULL or xs == NULL or wps == NULL or xs_border == NULL
                or ws_border == NULL or row_ptr == NULL or row_tap == NULL):
            out_of_memory[0] = 1
        for task in prange(n_tasks, schedule="static"):
            if out_of_memory[0]:
                continue
            seg = task % n_segments
            rest = task // n_segments
            oh = rest % h_out
            rest = rest // h_out
            od = rest % d_out
            rest = rest // d_out
            seg_lo = seg * seg_width
            seg_hi = min(seg_lo + seg_width, w_out)
            if channels_last:
                n = rest
                _pixels_task(acc, xs, wps, row_ptr, row_tap, xs_border, ws_border,
                             x0 + n * x_sn, w_packed, taps_d, taps_h, taps_w, od, oh,
                             x_sd, x_sh, x_sw, channels, multiplier,
                             w_first, w_lo, w_hi, seg_lo, seg_hi, stride_w, dilation_w)
                for ow in range(seg_lo, seg_hi):
                    o = o0 + n * o_sn + od * o_sd + oh * o_sh + ow * o_sw
                    a = acc + (ow - seg_lo) * c_out
                    if multiplier == 1 and o_sc == 1:
                        if has_bias:
                            for k in range(c_out):
                                o[k] = a[k] + bias[k]
                        else:
                            for k in range(c_out):
                                o[k] = a[k] + 0
                    else:
                        for c in range(channels):
                            for j in range(multiplier):
                                k = c * multiplier + j
                                shift = bias[k] if has_bias else 0
                                o[k * o_sc] = a[j * channels + c] + shift
            else:
                k = rest % c_out
                n = rest // c_out
                c = k // multiplier
                _rows_task(acc, xs, ws, row_ptr, row_tap, x0 + n * x_sn + c * x_sc, w_taps, k,
                           taps_d, taps_h, taps_w, od, oh, x_sd, x_sh, x_sw,
                           w_first, w_lo, w_hi, seg_lo, seg_hi, stride_w, dilation_w)
                shift = bias[k] if has_bias else 0
                o = o0 + n * o_sn + k * o_sc + od * o_sd + oh * o_sh
                if o_sw == 1:
                    for ow in range(seg_lo, seg_hi):
                        o[ow] = acc[ow - seg_lo] + shift
                else:
                    for ow in range(seg_lo, seg_hi):
                        o[ow * o_sw] = acc[ow - seg_lo] + shift
        free(acc)
        free(ws)
        free(xs)
        free(wps)
        free(xs_border)
        free(ws_border)
        free(row_ptr)
        free(row_tap)
    if out_of_memory[0]:
        raise MemoryError(f"depthwise: could not allocate the work buffers of {acc_size} elements")
