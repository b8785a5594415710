"""The fused depthwise-separable convolution: a depthwise convolution (channel multiplier m)
followed by a pointwise (1x1) one, without writing the depthwise result to memory.

A task is one tile of output rows of one sample. It computes the depthwise result of *all*
``C * m`` channels for those rows into a per-thread buffer ``mid[C * m, P]`` (``P`` = rows x
W_out, sized by the caller to stay in L2), then one single-threaded GEMM
``out[K, P] = pointwise[K, C * m] @ mid[C * m, P]`` writes the tile of every output channel,
straight into ``out`` when its strides allow (channels-first rows contiguous, or channels-last
pixels contiguous), else through a second buffer. The two calls it replaces write and read back
the whole ``(N, C * m, H_out, W_out)`` intermediate through main memory.

The depthwise part reuses the SIMD inner loops of the ``depthwise`` kernel
(``depthwise/simd.h``, at the SIMD level of :mod:`pyconvfast._lib.cpu.levels`; built, as that
kernel, without FMA contraction: the same sums at every level), in one of two tile layouts:

* channels-first input: ``mid[j, p]``, one channel at a time; runs of *regular* rows (every H
  tap in range) go through one call over their *interior* columns (every W tap in range),
  unit-stride or strided;
* input with a unit channel stride (NHWC): ``mid[p, j' ]`` with the channels innermost, as the
  depthwise kernel's "pixels" loop (vectors over channels; channel ``c * m + j`` at
  ``j' = j * C + c``, the pointwise weight permuted to match), so that the input is read pixel
  by pixel instead of with a stride of C elements per channel.

Either way the few border columns and irregular rows go through the tap tables, so every
padding mode costs nothing but those tables.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from libc.stdlib cimport free
from pyconvfast._lib.common.buffers cimport thread_buffer
from pyconvfast._lib.common.gemm cimport INT_MAX, gemm

from pyconvfast._lib.cpu.levels cimport bind_level
from pyconvfast._lib.depthwise.simd cimport (
    dw_pixels, dw_rows, dw_rows_strided, interior_outputs,
)

bind_level()


cdef void _depthwise_tile(
    floating* acc, const floating* x_c, const floating* w, Py_ssize_t oh0, Py_ssize_t oh1,
    Py_ssize_t w_out, const Py_ssize_t[:, ::1] taps_h, const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t x_sh, Py_ssize_t x_sw, Py_ssize_t stride_h, Py_ssize_t stride_w,
    Py_ssize_t dilation_w, Py_ssize_t pad_w, Py_ssize_t h_lo, Py_ssize_t h_hi,
    Py_ssize_t w_lo, Py_ssize_t w_hi, const floating** row_ptr, Py_ssize_t* row_tap,
    const floating** xs, floating* ws,
) noexcept nogil:
    """acc[(oh - oh0) * w_out + ow] = depthwise output (oh, ow) of one channel (input plane at
    x_c, taps ``w[kh * S + kw]``) for oh in [oh0, oh1), every ow."""
    cdef Py_ssize_t kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t oh = oh0, run, n_rows, kh, i_h, r, kw, n_taps, first, ow, rr, i_w
    cdef Py_ssize_t x_row = stride_h * x_sh
    cdef floating* line
    cdef floating total
    while oh < oh1:
        n_rows = 0
        for kh in range(kh_size):
            i_h = taps_h[oh, kh]
            if i_h >= 0:
                row_ptr[n_rows] = x_c + i_h * x_sh
                row_tap[n_rows] = kh * kw_size
                n_rows = n_rows + 1
        run = 1
        if h_lo <= oh < h_hi:
            run = min(oh1, h_hi) - oh
        line = acc + (oh - oh0) * w_out
        if w_hi > w_lo:
            first = w_lo * stride_w - pad_w
            n_taps = 0
            for r in range(n_rows):
                for kw in range(kw_size):
                    xs[n_taps] = row_ptr[r] + (first + kw * dilation_w) * x_sw
                    ws[n_taps] = w[row_tap[r] + kw]
                    n_taps = n_taps + 1
            if stride_w * x_sw == 1:
                dw_rows(line + w_lo, w_out, w_hi - w_lo, run, x_row, n_taps, xs, ws, NULL)
            else:
                for rr in range(run):
                    dw_rows_strided(line + rr * w_out + w_lo, w_hi - w_lo, n_taps, xs, ws,
                                    rr * x_row, stride_w * x_sw)
        for rr in range(run):
            for ow in range(w_out):
                if w_lo <= ow < w_hi:
                    continue
                total = 0
                for r in range(n_rows):
                    for kw in range(kw_size):
                        i_w = taps_w[ow, kw]
                        if i_w >= 0:
                            total = total + w[row_tap[r] + kw] * row_ptr[r][rr * x_row + i_w * x_sw]
                line[rr * w_out + ow] = total
        oh = oh + run


cdef void _depthwise_tile_pixels(
    floating* acc, const floating* x_n, const floating* w_packed, Py_ssize_t oh0,
    Py_ssize_t oh1, Py_ssize_t w_out, Py_ssize_t channels, Py_ssize_t multiplier,
    const Py_ssize_t[:, ::1] taps_h, const Py_ssize_t[:, ::1] taps_w, Py_ssize_t x_sh,
    Py_ssize_t x_sw, Py_ssize_t stride_w, Py_ssize_t dilation_w, Py_ssize_t pad_w,
    Py_ssize_t w_lo, Py_ssize_t w_hi, const floating** row_ptr, Py_ssize_t* row_tap,
    const floating** xs, const floating** wps,
) noexcept nogil:
    """Channels innermost (input with a unit channel stride): acc[p * C*m + j * C + c] =
    depthwise output channel c * m + j at the tile's pixel p = (oh - oh0) * w_out + ow, for oh
    in [oh0, oh1); tap t's weights at w_packed + t * C*m, ``w_packed[t, j * C + c]``."""
    cdef Py_ssize_t kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t c_mid = channels * multiplier
    cdef Py_ssize_t oh, n_rows, kh, i_h, r, kw, n_taps, first, ow, i_w
    cdef floating* line
    for oh in range(oh0, oh1):
        n_rows = 0
        for kh in range(kh_size):
            i_h = taps_h[oh, kh]
            if i_h >= 0:
                row_ptr[n_rows] = x_n + i_h * x_sh
                row_tap[n_rows] = kh * kw_size
                n_rows = n_rows + 1
        line = acc + (oh - oh0) * w_out * c_mid
        if w_hi > w_lo:
            first = w_lo * stride_w - pad_w
            n_taps = 0
            for r in range(n_rows):
                for kw in range(kw_size):
                    xs[n_taps] = row_ptr[r] + (first + kw * dilation_w) * x_sw
                    wps[n_taps] = w_packed + (row_tap[r] + kw) * c_mid
                    n_taps = n_taps + 1
            dw_pixels(line + w_lo * c_mid, c_mid, w_hi - w_lo, stride_w * x_sw, channels,
                      multiplier, channels, n_taps, xs, wps, NULL)
        for ow in range(w_out):
            if w_lo <= ow < w_hi:
                continue
            n_taps = 0
            for r in range(n_rows):
                for kw in range(kw_size):
                    i_w = taps_w[ow, kw]
                    if i_w >= 0:
                        xs[n_taps] = row_ptr[r] + i_w * x_sw
                        wps[n_taps] = w_packed + (row_tap[r] + kw) * c_mid
                        n_taps = n_taps + 1
            dw_pixels(line + ow * c_mid, c_mid, 1, 0, channels, multiplier, channels, n_taps, xs,
                      wps, NULL)


def conv_separable_fused(
    const floating[:, :, :, :] x,
    const floating[:, ::1] w_depthwise,
    const floating[:, ::1] w_pointwise,
    const floating[:, ::1] w_packed,
    const floating[:, ::1] w_pointwise_packed,
    const floating[::1] bias,
    floating[:, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    tuple stride,
    tuple dilation,
    tuple pad_before,
    Py_ssize_t rows_per_tile,
    int n_threads,
):
    """Fused depthwise + pointwise convolution of validated 4-D views into ``out``.

    Parameters
    ----------
    x : (N, C, H, W) float32 or float64 array view, any strides
    w_depthwise : (C * m, R * S) C-contiguous; channel ``j`` reads input channel ``j // m``
    w_pointwise : (K, C * m) C-contiguous
    w_packed : (R * S, C * m) C-contiguous, ``w_packed[t, j * C + c] = w_depthwise[c * m + j, t]``
    w_pointwise_packed : (K, C * m), ``w_pointwise_packed[k, j * C + c] = w_pointwise[k, c*m+j]``
        (these two for the channels-innermost tiles, used when x's channel stride is one)
    bias : (K,) or (0,) contiguous array; empty means no bias
    out : (N, K, H_out, W_out) writable view, any strides, not overlapping the inputs
    taps_h, taps_w : (out_size, kernel_size) int64 tap tables of the depthwise convolution
    stride, dilation, pad_before : (H, W) pairs, the geometry the tables encode
    rows_per_tile : output rows per task (each thread keeps ``C * m * rows * W_out`` elements)
    n_threads : int, OpenMP team size; BLAS must be limited to one thread by the caller
    """
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1], h_in = x.shape[2], w_in = x.shape[3]
    cdef Py_ssize_t c_mid = w_depthwise.shape[0], c_out = w_pointwise.shape[0]
    cdef Py_ssize_t multiplier = c_mid // channels
    cdef Py_ssize_t h_out = out.shape[2], w_out = out.shape[3]
    cdef Py_ssize_t kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t x_sn = x.strides[0] // itemsize, x_sc = x.strides[1] // itemsize
    cdef Py_ssize_t x_sh = x.strides[2] // itemsize, x_sw = x.strides[3] // itemsize
    cdef Py_ssize_t o_sn = out.strides[0] // itemsize, o_sc = out.strides[1] // itemsize
    cdef Py_ssize_t o_sh = out.strides[2] // itemsize, o_sw = out.strides[3] // itemsize
    cdef Py_ssize_t stride_h = stride[0], stride_w = stride[1]
    cdef Py_ssize_t dilation_h = dilation[0], dilation_w = dilation[1]
    cdef Py_ssize_t pad_h = pad_before[0], pad_w = pad_before[1]
    cdef Py_ssize_t h_lo, h_hi, w_lo, w_hi
    cdef Py_ssize_t n_tiles, n_tasks, tile_max, task, n, t, oh0, oh1, p_count, kc, k, p
    cdef bint has_bias = bias.shape[0] > 0
    cdef const floating* x0 = &x[0, 0, 0, 0]
    cdef const floating* wd0 = &w_depthwise[0, 0]
    cdef const floating* wp0 = &w_pointwise[0, 0]
    cdef floating* o0 = &out[0, 0, 0, 0]
    cdef floating* o
    cdef floating* mid
    cdef floating* staged
    cdef floating* ws
    cdef const floating** xs
    cdef const floating** row_ptr
    cdef Py_ssize_t* row_tap
    cdef floating shift
    cdef int direct_layout  # 1: channels-first rows contiguous, 2: channels-last pixels, 0: none
    cdef bint pixels = channels > 1 and x_sc == 1
    cdef const floating* wk0 = &w_packed[0, 0]
    cdef const floating* wpp0 = &w_pointwise_packed[0, 0]
    cdef const floating** wps
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    if c_mid != multiplier * channels or w_pointwise.shape[1] != c_mid:
        raise ValueError("separable: C * m must be a multiple of C_in and match the pointwise")
    if rows_per_tile < 1:
        raise ValueError(f"separable: rows_per_tile must be >= 1, got {rows_per_tile}")
    if c_out == 1:
        o_sc = 1 if o_sw != 1 else h_out * w_out
    rows_per_tile = min(rows_per_tile, h_out)
    tile_max = rows_per_tile * w_out
    # Layout 1 passes the output's channel stride to BLAS as a leading dimension, a 32-bit int:
    # a larger one (an output in a large memory-mapped file) goes through ``staged``.
    if o_sw == 1 and (o_sh == w_out or h_out == 1) and tile_max <= o_sc <= INT_MAX:
        direct_layout = 1
    elif o_sc == 1 and o_sw == c_out and (o_sh == w_out * c_out or h_out == 1):
        direct_layout = 2
    else:
        direct_layout = 0
    interior_outputs(h_in, h_out, kh_size, stride_h, dilation_h, pad_h, &h_lo, &h_hi)
    interior_outputs(w_in, w_out, kw_size, stride_w, dilation_w, pad_w, &w_lo, &w_hi)
    n_tiles = (h_out + rows_per_tile - 1) // rows_per_tile
    n_tasks = batch * n_tiles

    cdef unsigned int fp_saved
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        mid = <floating*> thread_buffer(c_mid * tile_max * sizeof(floating))
        staged = <floating*> thread_buffer((c_out * tile_max
                                     if direct_layout == 0 or (pixels and direct_layout != 2)
                                     else 1) * sizeof(floating))
        ws = <floating*> thread_buffer(kh_size * kw_size * sizeof(floating))
        xs = <const floating**> thread_buffer(kh_size * kw_size * sizeof(floating*))
        row_ptr = <const floating**> thread_buffer(kh_size * sizeof(floating*))
        row_tap = <Py_ssize_t*> thread_buffer(kh_size * sizeof(Py_ssize_t))
        wps = <const floating**> thread_buffer(kh_size * kw_size * sizeof(floating*))
        if (wps == NULL or mid == NULL or staged == NULL or ws == NULL or xs == NULL or row_ptr == NULL
                or row_tap == NULL):
            out_of_memory[0] = 1
        for task in prange(n_tasks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            if out_of_memory[0]:
                continue
            n = task // n_tiles
            t = task % n_tiles
            oh0 = t * rows_per_tile
            oh1 = min(oh0 + rows_per_tile, h_out)
            p_count = (oh1 - oh0) * w_out
            o = o0 + n * o_sn + oh0 * o_sh
            if pixels:
                # mid[p, j * C + c]: column-major (C*m) x P, ld C*m
                _depthwise_tile_pixels(mid, x0 + n * x_sn, wk0, oh0, oh1, w_out, channels,
                                       multiplier, taps_h, taps_w, x_sh, x_sw, stride_w,
                                       dilation_w, pad_w, w_lo, w_hi, row_ptr, row_tap, xs, wps)
                if direct_layout == 2:
                    gemm(c'T', c'N', c_out, p_count, c_mid, wpp0, c_mid, mid, c_mid, o, c_out)
                    if has_bias:
                        for p in range(p_count):
                            for k in range(c_out):
                                o[p * c_out + k] = o[p * c_out + k] + bias[k]
                else:
                    gemm(c'T', c'N', p_count, c_out, c_mid, mid, c_mid, wpp0, c_mid, staged,
                         p_count)
                    for k in range(c_out):
                        shift = bias[k] if has_bias else 0
                        for p in range(p_count):
                            o[k * o_sc + (p // w_out) * o_sh + (p % w_out) * o_sw] = (
                                staged[k * p_count + p] + shift)
                continue
            for kc in range(c_mid):
                _depthwise_tile(mid + kc * p_count,
                                x0 + n * x_sn + (kc // multiplier) * x_sc,
                                wd0 + kc * kh_size * kw_size, oh0, oh1, w_out, taps_h, taps_w,
                                x_sh, x_sw, stride_h, stride_w, dilation_w, pad_w, h_lo, h_hi,
                                w_lo, w_hi, row_ptr, row_tap, xs, ws)
            if direct_layout == 1:
                # out[k, p] (column-major P x K, ldc = channel stride) = mid^T-free product
                gemm(c'N', c'N', p_count, c_out, c_mid, mid, p_count, wp0, c_mid, o, o_sc)
                if has_bias:
                    for k in range(c_out):
                        shift = bias[k]
                        for p in range(p_count):
                            o[k * o_sc + p] = o[k * o_sc + p] + shift
            elif direct_layout == 2:
                # out[p, k] (column-major K x P, ldc = K)
                gemm(c'T', c'T', c_out, p_count, c_mid, wp0, c_mid, mid, p_count, o, c_out)
                if has_bias:
                    for p in range(p_count):
                        for k in range(c_out):
                            o[p * c_out + k] = o[p * c_out + k] + bias[k]
            else:
                gemm(c'N', c'N', p_count, c_out, c_mid, mid, p_count, wp0, c_mid, staged,
                     p_count)
                for k in range(c_out):
                    shift = bias[k] if has_bias else 0
                    for p in range(p_count):
                        o[k * o_sc + (p // w_out) * o_sh + (p % w_out) * o_sw] = (
                            staged[k * p_count + p] + shift)
        free(mid)
        free(staged)
        free(ws)
        free(xs)
        free(row_ptr)
        free(row_tap)
        free(wps)
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError("separable: could not allocate the per-thread tile buffers")
