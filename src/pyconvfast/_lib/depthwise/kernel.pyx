"""The ``depthwise`` algorithm: one input channel per group, with a channel multiplier.

Output channel ``k`` reads input channel ``k // m`` only (``C_out = m * C_in``), so every output
is a sum over the ``KD * KH * KW`` kernel taps of one channel. Four loop orders, chosen by the
caller from the input's strides and sizes (``pyconvfast._algorithms``):

* "chw" (channels-first 2-D, 3x3 or 5x5, stride 1 or 2, zero padding, unit column stride): one
  task is a block of output rows of one (sample, output channel) plane, computed by the loops
  of ``depthwise/chw.h`` (rows as vectors along W, up to 4 rows a pass sharing input rows,
  masked edges, FMA; :data:`CHW_VARIANTS`). Not bitwise equal to the other orders: see below.
* "rows" (channels-first): one task is a block of output rows (or a segment of a long row) of
  one (sample, output channel). Along W, the *interior* columns (every tap in range) go to the
  SIMD kernel with no table lookups; a run of regular rows (every H tap in range) is one call,
  and with unit strides, stride 1 and input rows as wide as the output rows the run is a single
  contiguous stretch. The few *border* columns go through the W tap table. Along D and H a whole
  input row is chosen per tap through the tables, so no padding mode costs anything there.
* "pixels" (inputs whose channel axis has unit stride, as NHWC): one task is a segment of one
  output row, all channels; the SIMD kernel runs over channels (as XNNPACK's NHWC depthwise
  kernels), the weights packed tap by tap, ``w_packed[t, j * C + c]`` for output channel
  ``c * m + j``. Interior pixels again skip the W table.
* "blocked" (small channels-first planes): one task copies 16 channels of one sample,
  channels innermost and unpadded, into a per-thread buffer and runs the "pixels" code on it.

The kernels add the bias and store straight into ``out`` when its strides allow, else into a
per-thread buffer that is then copied. The SIMD loops live in ``depthwise/simd*.h`` (baseline,
AVX2 and AVX-512F variants, :data:`VARIANTS`; the SIMD level of :mod:`pyconvfast._lib.cpu.levels`
picks one). In the orders other than "chw", each output is summed in one fixed order,
kernel taps in (kd, kh, kw) order from +0, taps in the zero padding skipped, bias added last:
the order of the ``direct`` kernel. It does not depend on the loop order or on how the work is
split, and this module is built without FMA contraction, so results are bitwise the same for
every thread count and every instruction set. "chw" accumulates from the bias with explicit
FMA (AVX2, AVX-512F) in (kh, kw) order: bitwise the same for every thread count and split, but
not across levels nor equal to the other orders.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from libc.stdlib cimport free
from libc.string cimport memset
from pyconvfast._lib.common.buffers cimport thread_buffer
from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end

from pyconvfast._lib.cpu.levels cimport PCF_N_LEVELS, bind_level, pcf_cpu_level
from pyconvfast._lib.depthwise.simd cimport (
    dw_pixels, dw_rows, dw_rows_strided, interior_outputs, pcf_dw_variants,
)

from pyconvfast._lib.cpu.levels import SIMD_LEVELS, Variant


cdef extern from "depthwise/chw.h" nogil:
    void pcf_dw_chw_rows_f32(const float* x, Py_ssize_t x_sh, Py_ssize_t h_in, Py_ssize_t w_in,
                             float* out, Py_ssize_t o_sh, Py_ssize_t oh0, Py_ssize_t oh1,
                             Py_ssize_t w_out, const float* w, const float* bias, Py_ssize_t k,
                             Py_ssize_t s, Py_ssize_t pad_h, Py_ssize_t pad_w,
                             const float* zero_row)
    void pcf_dw_chw_rows_f64(const double* x, Py_ssize_t x_sh, Py_ssize_t h_in, Py_ssize_t w_in,
                             double* out, Py_ssize_t o_sh, Py_ssize_t oh0, Py_ssize_t oh1,
                             Py_ssize_t w_out, const double* w, const double* bias, Py_ssize_t k,
                             Py_ssize_t s, Py_ssize_t pad_h, Py_ssize_t pad_w,
                             const double* zero_row)
    ctypedef struct pcf_dw_chw_variant:
        const char* name
    const pcf_dw_chw_variant pcf_dw_chw_variants[]


cdef inline void dw_chw_rows(const floating* x, Py_ssize_t x_sh, Py_ssize_t h_in, Py_ssize_t w_in,
                             floating* out, Py_ssize_t o_sh, Py_ssize_t oh0, Py_ssize_t oh1,
                             Py_ssize_t w_out, const floating* w, const floating* bias,
                             Py_ssize_t k, Py_ssize_t s, Py_ssize_t pad_h,
                             Py_ssize_t pad_w, const floating* zero_row) noexcept nogil:
    if floating is float:
        pcf_dw_chw_rows_f32(x, x_sh, h_in, w_in, out, o_sh, oh0, oh1, w_out, w, bias, k, s, pad_h,
                            pad_w, zero_row)
    else:
        pcf_dw_chw_rows_f64(x, x_sh, h_in, w_in, out, o_sh, oh0, oh1, w_out, w, bias, k, s, pad_h,
                            pad_w, zero_row)

bind_level()

VARIANTS = tuple(Variant("depthwise", SIMD_LEVELS[i], pcf_dw_variants[i].name.decode())
                 for i in range(PCF_N_LEVELS))
"""The variant table (``pcf_dw_variants``): the loops of each SIMD level, named by vector width.
Every variant gives the same bits."""

CHW_VARIANTS = tuple(Variant("depthwise", SIMD_LEVELS[i], pcf_dw_chw_variants[i].name.decode())
                     for i in range(PCF_N_LEVELS))
"""The variant table of the "chw" loop order (``pcf_dw_chw_variants``, ``depthwise/chw.h``): FMA
at the AVX2 and AVX-512F levels, so its variants differ in the last bits."""

# Largest accumulator segment one task keeps (elements): small enough to stay in L1/L2 while the
# passes over the taps run over it. Task boundaries never change results.
cdef Py_ssize_t MAX_SEGMENT = 2048
# Channels-first tasks take several rows of a plane, about this many outputs, so that short rows
# still fill the SIMD kernel's eight accumulators.
cdef Py_ssize_t ROW_BLOCK = 512
# Below this many tasks per thread, row blocks and then rows are split to balance the threads.
cdef Py_ssize_t TASKS_PER_THREAD = 4


def active_variant():
    """The row of :data:`VARIANTS` this kernel runs now (the SIMD level in use)."""
    return VARIANTS[pcf_cpu_level()]


def active_chw_variant():
    """The row of :data:`CHW_VARIANTS` the "chw" loop order runs now."""
    return CHW_VARIANTS[pcf_cpu_level()]



cdef struct Geometry:
    Py_ssize_t x_sd, x_sh, x_sw          # input strides in elements (any sign)
    Py_ssize_t stride_h, stride_w, dilation_w, pad_w
    Py_ssize_t h_lo, h_hi                # regular rows: every H tap in range (no table needed)
    Py_ssize_t w_lo, w_hi                # interior columns: every W tap in range
    Py_ssize_t channels, multiplier     # channels of this task; output channel c * m + j
    Py_ssize_t w_pitch                   # packed weights: tap t, (j, c) at t * w_row + j * w_pitch + c
    bint unit                            # stride_w * x_sw == 1: rows read with unit stride
    bint flat                            # unit strides, input rows contiguous and as wide as
                                         # the output rows: a run of rows is one 1-D stretch


cdef Py_ssize_t _input_rows(
    const floating** row_ptr, Py_ssize_t* row_tap, const floating* x_base,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h, Py_ssize_t kw_size,
    Py_ssize_t od, Py_ssize_t oh, const Geometry* g,
) noexcept nogil:
    """The input rows output row (od, oh) reads, in (kd, kh) order without the zero taps: their
    start and the index of their first tap (kw = 0). Returns how many."""
    cdef Py_ssize_t kd, kh, i_d, i_h, n_rows = 0
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1]
    for kd in range(kd_size):
        i_d = taps_d[od, kd]
        if i_d < 0:
            continue
        for kh in range(kh_size):
            i_h = taps_h[oh, kh]
            if i_h < 0:
                continue
            row_ptr[n_rows] = x_base + i_d * g.x_sd + i_h * g.x_sh
            row_tap[n_rows] = (kd * kh_size + kh) * kw_size
            n_rows = n_rows + 1
    return n_rows


cdef void _border_columns(
    floating* acc, const floating** xs, floating* ws, Py_ssize_t pitch, Py_ssize_t run,
    const floating** row_ptr,
    const Py_ssize_t* row_tap, Py_ssize_t n_rows, const floating[:, ::1] w_taps, Py_ssize_t k,
    const Py_ssize_t[:, ::1] taps_w, Py_ssize_t lo, Py_ssize_t hi, const floating* bias,
    const Geometry* g,
) noexcept nogil:
    """acc[rr * pitch + ow - lo] for the border columns ow in [lo, hi) of ``run`` regular rows
    (row rr reads each input row ``rr * stride_h`` rows further), through the W table, plus
    *bias (if not NULL) last.

    Column by column through the SIMD kernel with one-element vectors, one register chain per
    row; but with many border columns and few rows (1-D rows, long kernels) tap-major instead:
    each tap updates every output it touches before the next tap, so the many outputs are
    independent chains. Either way each output sums its taps in (kd, kh, kw) order."""
    cdef Py_ssize_t kw_size = taps_w.shape[1], x_row = g.stride_h * g.x_sh
    cdef Py_ssize_t ow, r, rr, kw, i_w, n_taps
    cdef const floating* p
    cdef floating weight
    if hi <= lo:
        return
    if run >= 4 or hi - lo < 4:
        for ow in range(lo, hi):
            n_taps = 0
            for r in range(n_rows):
                for kw in range(kw_size):
                    i_w = taps_w[ow, kw]
                    if i_w >= 0:
                        xs[n_taps] = row_ptr[r] + i_w * g.x_sw
                        ws[n_taps] = w_taps[k, row_tap[r] + kw]
                        n_taps = n_taps + 1
            dw_rows(acc + ow - lo, pitch, 1, run, x_row, n_taps, xs, ws, bias)
        return
    for rr in range(run):
        for ow in range(lo, hi):
            acc[rr * pitch + ow - lo] = 0
    for r in range(n_rows):
        for kw in range(kw_size):
            weight = w_taps[k, row_tap[r] + kw]
            for ow in range(lo, hi):
                i_w = taps_w[ow, kw]
                if i_w < 0:
                    continue
                p = row_ptr[r] + i_w * g.x_sw
                for rr in range(run):
                    acc[rr * pitch + ow - lo] = acc[rr * pitch + ow - lo] + weight * p[rr * x_row]
    if bias != NULL:
        for rr in range(run):
            for ow in range(lo, hi):
                acc[rr * pitch + ow - lo] = acc[rr * pitch + ow - lo] + bias[0]


cdef void _rows_task(
    floating* acc, const floating** xs, floating* ws, const floating** row_ptr,
    Py_ssize_t* row_tap, const floating* x_plane, const floating[:, ::1] w_taps, Py_ssize_t k,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w, Py_ssize_t od, Py_ssize_t oh0, Py_ssize_t oh1,
    Py_ssize_t seg_lo, Py_ssize_t seg_hi, Py_ssize_t pitch, const floating* bias,
    const Geometry* g,
) noexcept nogil:
    """Channels-first: acc[(oh - oh0) * pitch + ow - seg_lo] for rows oh in [oh0, oh1) and
    columns ow in [seg_lo, seg_hi) of output channel k, plus *bias (if not NULL); ``acc`` may
    be the output itself.

    A run of regular rows (the same taps, each row ``stride_h`` input rows below the last) is
    done by one call per part (interior, left and right border), so that short rows still fill
    the SIMD kernel's eight accumulators."""
    cdef Py_ssize_t kw_size = taps_w.shape[1]
    cdef Py_ssize_t lo = max(seg_lo, g.w_lo), hi = min(seg_hi, g.w_hi)
    cdef Py_ssize_t left_hi = min(seg_hi, g.w_lo), right_lo = max(seg_lo, g.w_hi)
    cdef Py_ssize_t x_row = g.stride_h * g.x_sh
    cdef Py_ssize_t oh = oh0, run, r, kw, n_rows, n_taps, first, ow
    cdef floating* row_acc
    while oh < oh1:
        n_rows = _input_rows(row_ptr, row_tap, x_plane, taps_d, taps_h, kw_size, od, oh, g)
        run = 1
        if g.h_lo <= oh < g.h_hi:
            run = min(oh1, g.h_hi) - oh
        row_acc = acc + (oh - oh0) * pitch
        if hi > lo:
            first = lo * g.stride_w - g.pad_w
            n_taps = 0
            for r in range(n_rows):
                for kw in range(kw_size):
                    xs[n_taps] = row_ptr[r] + (first + kw * g.dilation_w) * g.x_sw
                    ws[n_taps] = w_taps[k, row_tap[r] + kw]
                    n_taps = n_taps + 1
            if g.flat and run > 1 and pitch == g.x_sh and seg_lo == 0 and seg_hi == g.x_sh:
                # Rows and their inputs are contiguous with the same pitch: the run's interior
                # is one stretch from its first interior output to its last, each tap at a
                # fixed offset. The border columns inside the stretch get values that wrap
                # across rows; the border pass below overwrites them.
                dw_rows(row_acc + lo, 0, (run - 1) * pitch + hi - lo, 1, 0, n_taps, xs, ws,
                        bias)
            elif g.unit:
                dw_rows(row_acc + (lo - seg_lo), pitch, hi - lo, run, x_row, n_taps, xs, ws,
                        bias)
            else:
                for r in range(run):
                    dw_rows_strided(row_acc + r * pitch + (lo - seg_lo), hi - lo, n_taps, xs, ws,
                                    r * x_row, g.stride_w * g.x_sw)
                    if bias != NULL:
                        for ow in range(lo, hi):
                            row_acc[r * pitch + ow - seg_lo] = (
                                row_acc[r * pitch + ow - seg_lo] + bias[0])
        _border_columns(row_acc, xs, ws, pitch, run, row_ptr, row_tap, n_rows, w_taps, k, taps_w,
                        seg_lo, left_hi, bias, g)
        _border_columns(row_acc + (right_lo - seg_lo), xs, ws, pitch, run, row_ptr, row_tap,
                        n_rows, w_taps, k, taps_w, right_lo, seg_hi, bias, g)
        oh = oh + run


cdef void _pixels_task(
    floating* acc, const floating** xs, const floating** ws, const floating** row_ptr,
    Py_ssize_t* row_tap, const floating* x_sample, const floating* w_base, Py_ssize_t w_row,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w, Py_ssize_t od, Py_ssize_t oh, Py_ssize_t seg_lo,
    Py_ssize_t seg_hi, Py_ssize_t acc_step, const floating* bias, const Geometry* g,
) noexcept nogil:
    """Channels-last: acc[(ow - seg_lo) * acc_step + j * C + c] (output channel c * m + j) for
    the pixels ow in [seg_lo, seg_hi) of output row (od, oh), plus bias[c] if not NULL (m = 1
    only); tap t's weights at w_base + t * w_row. ``acc`` may be the output itself."""
    cdef Py_ssize_t kw_size = taps_w.shape[1]
    cdef Py_ssize_t lo = max(seg_lo, g.w_lo), hi = min(seg_hi, g.w_hi)
    cdef Py_ssize_t n_rows, n_taps, r, kw, ow, i_w, first
    n_rows = _input_rows(row_ptr, row_tap, x_sample, taps_d, taps_h, kw_size, od, oh, g)
    if hi > lo:
        first = lo * g.stride_w - g.pad_w
        n_taps = 0
        for r in range(n_rows):
            for kw in range(kw_size):
                xs[n_taps] = row_ptr[r] + (first + kw * g.dilation_w) * g.x_sw
                ws[n_taps] = w_base + (row_tap[r] + kw) * w_row
                n_taps = n_taps + 1
        dw_pixels(acc + (lo - seg_lo) * acc_step, acc_step, hi - lo, g.stride_w * g.x_sw,
                  g.channels, g.multiplier, g.w_pitch, n_taps, xs, ws, bias)
    for ow in range(seg_lo, seg_hi):
        if lo <= ow < hi:
            continue
        n_taps = 0
        for r in range(n_rows):
            for kw in range(kw_size):
                i_w = taps_w[ow, kw]
                if i_w >= 0:
                    xs[n_taps] = row_ptr[r] + i_w * g.x_sw
                    ws[n_taps] = w_base + (row_tap[r] + kw) * w_row
                    n_taps = n_taps + 1
        dw_pixels(acc + (ow - seg_lo) * acc_step, acc_step, 1, 0, g.channels, g.multiplier,
                  g.w_pitch, n_taps, xs, ws, bias)


cdef void _blocked_task(
    floating* stage, floating* acc, const floating** xs, const floating** ws,
    const floating** row_ptr, Py_ssize_t* row_tap, const floating* x_block, Py_ssize_t x_sc,
    Py_ssize_t x_sd, Py_ssize_t x_sh, Py_ssize_t x_sw, Py_ssize_t d_in, Py_ssize_t h_in,
    Py_ssize_t w_in, Py_ssize_t n_block, const floating* w_base, Py_ssize_t w_row,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w, const Geometry* g,
) noexcept nogil:
    """Channels-first, small planes: the n_block channels at x_block of one sample are copied
    channels-innermost into ``stage`` (D, H, W, n_block), unpadded, and run through the
    channels-last kernel: acc[((od * H_out + oh) * W_out + ow) * n_block * m + j * n_block + c]."""
    cdef Py_ssize_t d_out = taps_d.shape[0], h_out = taps_h.shape[0], w_out = taps_w.shape[0]
    cdef Py_ssize_t c, d, h, w, od, oh
    cdef const floating* src
    cdef floating* dst
    cdef Geometry gb = g[0]
    gb.x_sd = h_in * w_in * n_block
    gb.x_sh = w_in * n_block
    gb.x_sw = n_block
    gb.channels = n_block
    for c in range(n_block):
        for d in range(d_in):
            for h in range(h_in):
                src = x_block + c * x_sc + d * x_sd + h * x_sh
                dst = stage + (d * h_in + h) * w_in * n_block + c
                for w in range(w_in):
                    dst[w * n_block] = src[w * x_sw]
    for od in range(d_out):
        for oh in range(h_out):
            _pixels_task(acc + (od * h_out + oh) * w_out * n_block * g.multiplier, xs, ws,
                         row_ptr, row_tap, stage, w_base, w_row, taps_d, taps_h, taps_w, od, oh,
                         0, w_out, n_block * g.multiplier, NULL, &gb)


cdef Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


ORDERS = ("rows", "pixels", "blocked", "chw")
# The kernel sizes and strides of the "chw" loop order.
CHW_KERNELS = (3, 5)
CHW_STRIDES = (1, 2)


def chw_applies(x_shape, x_strides, itemsize, kernel, stride, dilation):
    """Whether the "chw" loop order runs this geometry (3-D views as given to conv_depthwise;
    the caller also checks the padding mode is zeros): one plane deep, a square 3x3 or 5x5
    kernel, the same stride 1 or 2 on H and W, no dilation, a unit column stride."""
    return (x_shape[2] == 1 and kernel[0] == 1 and kernel[1] == kernel[2]
            and kernel[2] in CHW_KERNELS and stride[1] == stride[2] and stride[2] in CHW_STRIDES
            and tuple(dilation[1:]) == (1, 1) and (x_strides[4] == itemsize or x_shape[4] == 1))
# Channels per task of the "blocked" loop order.
BLOCK_CHANNELS = 16


def blocked_work_elements(d_in, h_in, w_in, d_out, h_out, w_out, multiplier):
    """Elements of one thread's buffers in the "blocked" loop order (staged input and output)."""
    return BLOCK_CHANNELS * (d_in * h_in * w_in + d_out * h_out * w_out * multiplier)


def conv_depthwise(
    const floating[:, :, :, :, :] x,
    const floating[:, ::1] w_taps,
    const floating[:, ::1] w_packed,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    tuple stride,
    tuple dilation,
    tuple pad_before,
    str order,
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
    stride, dilation, pad_before : tuples of 3 ints (D, H, W), the geometry the tables encode
    order : {"rows", "pixels", "blocked", "chw"}
        The loop order: output columns innermost; channels innermost (needs x's channel stride
        to be one element); blocks of channels staged channels-innermost (small planes); or
        channels-first planes with FMA (``depthwise/chw.h``; zero padding only, which the
        caller checks, and the geometries of :func:`chw_applies`).
    n_threads : int, OpenMP team size
    """
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t batch = out.shape[0], c_out = out.shape[1]
    cdef Py_ssize_t d_out = out.shape[2], h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t channels = x.shape[1]
    cdef Py_ssize_t d_in = x.shape[2], h_in = x.shape[3], w_in = x.shape[4]
    cdef Py_ssize_t multiplier = c_out // channels
    cdef Py_ssize_t n_taps = w_taps.shape[1]
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t x_sn = x.strides[0] // itemsize, x_sc = x.strides[1] // itemsize
    cdef Py_ssize_t x_sd = x.strides[2] // itemsize, x_sh = x.strides[3] // itemsize
    cdef Py_ssize_t x_sw = x.strides[4] // itemsize
    cdef Py_ssize_t o_sn = out.strides[0] // itemsize, o_sc = out.strides[1] // itemsize
    cdef Py_ssize_t o_sd = out.strides[2] // itemsize, o_sh = out.strides[3] // itemsize
    cdef Py_ssize_t o_sw = out.strides[4] // itemsize
    cdef Py_ssize_t plane_out = d_out * h_out * w_out
    cdef bint has_bias = bias.shape[0] > 0
    cdef const floating* x0 = &x[0, 0, 0, 0, 0]
    cdef floating* o0 = &out[0, 0, 0, 0, 0]
    cdef const floating* w_packed0 = &w_packed[0, 0]
    cdef int loop_order
    cdef Geometry g
    cdef Py_ssize_t n_rows, seg_width, n_segments, rows_per_task, n_row_blocks, n_tasks, acc_size
    cdef Py_ssize_t stage_size = 1, n_blocks = 1, n_block = 1, c0 = 0
    cdef Py_ssize_t wanted = TASKS_PER_THREAD * n_threads
    cdef Py_ssize_t task, seg, rest, n, k, c, j, p, od, oh, oh0, oh1, ow, seg_lo, seg_hi
    cdef Py_ssize_t pad_h = pad_before[1]
    cdef floating shift
    cdef floating* acc
    cdef floating* stage
    cdef floating* zero_row
    cdef Py_ssize_t zero_size = w_in if order == "chw" else 1
    cdef floating* ws
    cdef const floating** xs
    cdef const floating** wps
    cdef const floating** row_ptr
    cdef Py_ssize_t* row_tap
    cdef floating* o
    cdef floating* a
    # An array, not a scalar: Cython makes scalars assigned in a parallel block thread-private.
    cdef unsigned int fp_saved
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    if channels == 1:
        x_sc = 1  # any stride will do for a single channel (numpy may report any)
    if c_out == 1:
        o_sc = 1
    if order not in ORDERS:
        raise ValueError(f"depthwise: order must be one of {ORDERS}, got {order!r}")
    loop_order = ORDERS.index(order)
    if loop_order == 1 and x_sc != 1:
        raise ValueError("depthwise: the 'pixels' loop order needs a unit channel stride")
    if loop_order == 3 and not chw_applies(
            (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]),
            (x.strides[0], x.strides[1], x.strides[2], x.strides[3], x.strides[4]), itemsize,
            (kd_size, kh_size, kw_size), stride, dilation):
        raise ValueError("depthwise: the 'chw' loop order needs a 2-D 3x3 or 5x5 kernel, stride "
                         "1 or 2, no dilation and a unit column stride")
    if c_out != multiplier * channels or w_taps.shape[0] != c_out:
        raise ValueError("depthwise: C_out must be a multiple of C_in, one row of w_taps each")

    g.x_sd, g.x_sh, g.x_sw = x_sd, x_sh, x_sw
    g.stride_h, g.stride_w = stride[1], stride[2]
    g.dilation_w = dilation[2]
    g.pad_w = pad_before[2]
    g.channels, g.multiplier, g.w_pitch = channels, multiplier, channels
    g.unit = g.stride_w * g.x_sw == 1
    g.flat = (g.unit and g.x_sw == 1 and g.stride_h == 1 and g.x_sh == w_in and w_out == w_in
              and w_in > 1)
    interior_outputs(h_in, h_out, kh_size, stride[1], dilation[1], pad_before[1],
                     &g.h_lo, &g.h_hi)
    interior_outputs(w_in, w_out, kw_size, stride[2], dilation[2], pad_before[2],
                     &g.w_lo, &g.w_hi)

    # Tasks: enough of them to keep every thread busy. The split never changes a result: each
    # output is summed by one task in the fixed tap order.
    rows_per_task = 1
    n_row_blocks = h_out
    n_segments = 1
    seg_width = w_out
    if loop_order == 2:
        n_block = min(BLOCK_CHANNELS, channels)
        n_blocks = _ceil_div(channels, n_block)
        n_tasks = batch * n_blocks
        stage_size = n_block * d_in * h_in * w_in
        acc_size = n_block * multiplier * plane_out
    elif loop_order == 3:
        # Whole planes, halved into row blocks until every thread has tasks enough; a block
        # boundary never changes a result (see depthwise/chw_impl.h).
        rows_per_task = h_out
        while rows_per_task > 1 and batch * c_out * _ceil_div(h_out, rows_per_task) < wanted:
            rows_per_task = _ceil_div(rows_per_task, 2)
        n_row_blocks = _ceil_div(h_out, rows_per_task)
        n_tasks = batch * c_out * n_row_blocks
        acc_size = rows_per_task * w_out
    else:
        if loop_order == 1:
            n_rows = batch * d_out * h_out
            seg_width = max(1, MAX_SEGMENT // c_out)
        else:
            n_rows = batch * c_out * d_out * h_out
            seg_width = MAX_SEGMENT
            rows_per_task = max(1, min(h_out, ROW_BLOCK // min(w_out, seg_width)))
            while rows_per_task > 1 and n_rows // rows_per_task < wanted:
                rows_per_task = _ceil_div(rows_per_task, 2)
        n_row_blocks = _ceil_div(h_out, rows_per_task)
        n_rows = n_rows // h_out * n_row_blocks
        n_segments = _ceil_div(w_out, seg_width)
        if n_rows * n_segments < wanted:
            n_segments = min(_ceil_div(wanted, n_rows), w_out)
        seg_width = _ceil_div(w_out, n_segments)
        n_segments = _ceil_div(w_out, seg_width)
        n_tasks = n_rows * n_segments
        acc_size = seg_width * (c_out if loop_order == 1 else rows_per_task)

    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        acc = <floating*> thread_buffer(acc_size * sizeof(floating))
        stage = <floating*> thread_buffer(stage_size * sizeof(floating))
        zero_row = <floating*> thread_buffer(zero_size * sizeof(floating))
        if zero_row != NULL:
            memset(zero_row, 0, zero_size * sizeof(floating))  # the rows of the zero padding
        ws = <floating*> thread_buffer(n_taps * sizeof(floating))
        xs = <const floating**> thread_buffer(n_taps * sizeof(floating*))
        wps = <const floating**> thread_buffer(n_taps * sizeof(floating*))
        row_ptr = <const floating**> thread_buffer(kd_size * kh_size * sizeof(floating*))
        row_tap = <Py_ssize_t*> thread_buffer(kd_size * kh_size * sizeof(Py_ssize_t))
        if (acc == NULL or stage == NULL or zero_row == NULL or ws == NULL or xs == NULL
                or wps == NULL or row_ptr == NULL or row_tap == NULL):
            out_of_memory[0] = 1
        for task in prange(n_tasks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            if out_of_memory[0]:
                continue
            if loop_order == 2:
                n = task // n_blocks
                c0 = (task % n_blocks) * n_block
                c = min(n_block, channels - c0)  # channels in this block
                _blocked_task(stage, acc, xs, wps, row_ptr, row_tap, x0 + n * x_sn + c0 * x_sc,
                              x_sc, x_sd, x_sh, x_sw, d_in, h_in, w_in, c, w_packed0 + c0,
                              c_out, taps_d, taps_h, taps_w, &g)
                # acc holds (pixel, j, channel of the block): write each output plane in turn
                for j in range(multiplier):
                    for k in range(c):
                        shift = bias[(c0 + k) * multiplier + j] if has_bias else 0
                        a = acc + j * c + k
                        p = 0
                        for od in range(d_out):
                            for oh in range(h_out):
                                o = (o0 + n * o_sn + ((c0 + k) * multiplier + j) * o_sc
                                     + od * o_sd + oh * o_sh)
                                for ow in range(w_out):
                                    o[ow * o_sw] = a[p * c * multiplier] + shift
                                    p = p + 1
                continue
            seg = task % n_segments
            rest = task // n_segments
            seg_lo = seg * seg_width
            seg_hi = min(seg_lo + seg_width, w_out)
            oh0 = (rest % n_row_blocks) * rows_per_task
            oh1 = min(oh0 + rows_per_task, h_out)
            rest = rest // n_row_blocks
            od = rest % d_out
            rest = rest // d_out
            if loop_order == 1:
                n = rest
                o = o0 + n * o_sn + od * o_sd + oh0 * o_sh
                if multiplier == 1 and o_sc == 1:
                    # straight into the output, bias added by the kernel
                    _pixels_task(o + seg_lo * o_sw, xs, wps, row_ptr, row_tap, x0 + n * x_sn,
                                 w_packed0, c_out, taps_d, taps_h, taps_w, od, oh0, seg_lo,
                                 seg_hi, o_sw, &bias[0] if has_bias else NULL, &g)
                    continue
                _pixels_task(acc, xs, wps, row_ptr, row_tap, x0 + n * x_sn, w_packed0, c_out,
                             taps_d, taps_h, taps_w, od, oh0, seg_lo, seg_hi, c_out, NULL, &g)
                for ow in range(seg_lo, seg_hi):
                    a = acc + (ow - seg_lo) * c_out
                    for c in range(channels):
                        for j in range(multiplier):
                            k = c * multiplier + j
                            shift = bias[k] if has_bias else 0
                            o[ow * o_sw + k * o_sc] = a[j * channels + c] + shift
            else:
                k = rest % c_out
                n = rest // c_out
                c = k // multiplier
                o = o0 + n * o_sn + k * o_sc + od * o_sd + oh0 * o_sh
                if loop_order == 3:
                    if o_sw == 1:
                        dw_chw_rows(x0 + n * x_sn + c * x_sc, x_sh, h_in, w_in, o, o_sh, oh0, oh1,
                                    w_out, &w_taps[k, 0], &bias[k] if has_bias else NULL,
                                    kw_size, g.stride_w, pad_h, g.pad_w, zero_row)
                        continue
                    dw_chw_rows(x0 + n * x_sn + c * x_sc, x_sh, h_in, w_in, acc, w_out, oh0, oh1,
                                w_out, &w_taps[k, 0], &bias[k] if has_bias else NULL, kw_size,
                                g.stride_w, pad_h, g.pad_w, zero_row)
                    for oh in range(oh0, oh1):
                        for ow in range(w_out):
                            o[(oh - oh0) * o_sh + ow * o_sw] = acc[(oh - oh0) * w_out + ow]
                    continue
                if o_sw == 1:
                    # straight into the output rows, bias added by the kernel
                    _rows_task(o + seg_lo, xs, ws, row_ptr, row_tap, x0 + n * x_sn + c * x_sc,
                               w_taps, k, taps_d, taps_h, taps_w, od, oh0, oh1, seg_lo, seg_hi,
                               o_sh, &bias[k] if has_bias else NULL, &g)
                    continue
                _rows_task(acc, xs, ws, row_ptr, row_tap, x0 + n * x_sn + c * x_sc, w_taps, k,
                           taps_d, taps_h, taps_w, od, oh0, oh1, seg_lo, seg_hi, seg_hi - seg_lo,
                           &bias[k] if has_bias else NULL, &g)
                for oh in range(oh0, oh1):
                    a = acc + (oh - oh0) * (seg_hi - seg_lo) - seg_lo
                    for ow in range(seg_lo, seg_hi):
                        o[(oh - oh0) * o_sh + ow * o_sw] = a[ow]
        free(acc)
        free(stage)
        free(zero_row)
        free(ws)
        free(xs)
        free(wps)
        free(row_ptr)
        free(row_tap)
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError(
            f"depthwise: could not allocate work buffers of {acc_size} + {stage_size} elements")
