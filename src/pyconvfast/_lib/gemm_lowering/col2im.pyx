"""The ``transpose_gemm`` algorithm: transposed convolution as one GEMM per task, then col2im.

A transposed convolution scatters every input sample, weighted by the whole kernel, into the
output: ``out[n, k, o] += x[n, c, i] * w[c, k, t]`` with ``o = i * stride - pad + t * dilation``
on each axis. Per group, the products for all taps are one matrix product,

    col[(k, t), (n, i)] = sum_c  w[c, (k, t)] * xpack[c, (n, i)]

(``w`` the group's weight as a matrix, read transposed by the GEMM; ``xpack`` the group's
input channels packed as rows holding all samples of a task side by side, so one GEMM covers
many samples), followed by ``col2im``: each row ``(k, t)`` of ``col`` is added into output plane ``k`` at the
positions ``o(i, t)``. No input is zero-inserted and no product is computed twice or wasted.

A task is (group, block of output channels, block of samples): it owns the output planes
``out[n, k]`` of its blocks, so tasks never write the same element and run on a static
``prange`` with single-threaded BLAS (the caller limits BLAS around the call). Planes with a
unit inner stride are accumulated in place; others (channels-last output) in a private buffer
that is then stored with its strides.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from libc.stdlib cimport free, malloc
from pyconvfast._lib.common.buffers cimport thread_buffer
from pyconvfast._lib.common.gemm cimport gemm


cdef inline Py_ssize_t _first_input(Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    """Smallest ``i >= 0`` with ``i * stride + offset >= 0``."""
    if offset >= 0:
        return 0
    return (-offset + stride - 1) // stride


cdef inline Py_ssize_t _stop_input(
    Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t out_size, Py_ssize_t in_size,
) noexcept nogil:
    """One past the largest ``i < in_size`` with ``i * stride + offset < out_size``."""
    cdef Py_ssize_t last = out_size - 1 - offset
    if last < 0:
        return 0
    return min(in_size, last // stride + 1)


cdef void _tap_ranges(
    Py_ssize_t* ranges, Py_ssize_t k_size, Py_ssize_t in_size, Py_ssize_t out_size,
    Py_ssize_t stride, Py_ssize_t dilation, Py_ssize_t pad,
) noexcept nogil:
    """Per tap ``t`` of one axis: ``ranges[3t:3t+3]`` = the first and one-past-last input index
    landing inside the output, and the output index of input 0 (``o = i * stride + base``)."""
    cdef Py_ssize_t t, base
    for t in range(k_size):
        base = t * dilation - pad
        ranges[3 * t] = _first_input(base, stride)
        ranges[3 * t + 1] = _stop_input(base, stride, out_size, in_size)
        ranges[3 * t + 2] = base


cdef void _col2im_rows(
    floating* acc, Py_ssize_t ho_w, Py_ssize_t wo_w, const floating* col, Py_ssize_t col_step,
    Py_ssize_t r_first, Py_ssize_t r_stop, Py_ssize_t h_in, Py_ssize_t w_in,
    const Py_ssize_t* d_ranges, const Py_ssize_t* h_ranges, const Py_ssize_t* w_ranges,
    Py_ssize_t kd_size, Py_ssize_t kh_size, Py_ssize_t kw_size,
    Py_ssize_t sd, Py_ssize_t sh, Py_ssize_t sw,
) noexcept nogil:
    """acc[od, oh, ow] += col[t][r - r_first, iw] for every tap t = (kd, kh, kw), input row
    r = id * h_in + ih in [r_first, r_stop) and column iw landing on (od, oh, ow); ``acc`` has
    row pitch ``wo_w`` and plane pitch ``ho_w`` (elements), tap ``t``'s rows start at
    ``col + t * col_step``, each ``w_in`` long. The ``*_ranges`` come from :func:`_tap_ranges`:
    only the rows and columns a tap maps inside the output are visited, with no division in the
    loops (on DCGAN's 1x1 -> 4x4 layer the per-row divisions cost more than the GEMM)."""
    cdef Py_ssize_t kd, kh, kw, r, i_d, i_w, row_lo, row_hi, w_lo, n_w
    cdef Py_ssize_t d_first = r_first // h_in, d_stop = (r_stop - 1) // h_in + 1
    cdef const floating* src
    cdef floating* dst
    for kd in range(kd_size):
        for kh in range(kh_size):
            for kw in range(kw_size):
                w_lo = w_ranges[3 * kw]
                n_w = w_ranges[3 * kw + 1] - w_lo
                if n_w <= 0:
                    continue
                src = (col + ((kd * kh_size + kh) * kw_size + kw) * col_step
                       - r_first * w_in + w_lo)
                for i_d in range(max(d_first, d_ranges[3 * kd]),
                                 min(d_stop, d_ranges[3 * kd + 1])):
                    row_lo = max(r_first, i_d * h_in + h_ranges[3 * kh])
                    row_hi = min(r_stop, i_d * h_in + h_ranges[3 * kh + 1])
                    for r in range(row_lo, row_hi):
                        dst = (acc + (i_d * sd + d_ranges[3 * kd + 2]) * ho_w
                               + ((r - i_d * h_in) * sh + h_ranges[3 * kh + 2]) * wo_w
                               + w_lo * sw + w_ranges[3 * kw + 2])
                        if sw == 1:
                            for i_w in range(n_w):
                                dst[i_w] += src[r * w_in + i_w]
                        else:
                            for i_w in range(n_w):
                                dst[i_w * sw] += src[r * w_in + i_w]


cdef void _pack(
    floating* xpack, const floating[:, :, :, :, :] x, Py_ssize_t c,
) noexcept nogil:
    """xpack[n * P + p] = x[n, c, p] for every sample n and flattened position p."""
    cdef Py_ssize_t n, i_d, i_h, i_w, j = 0
    for n in range(x.shape[0]):
        for i_d in range(x.shape[2]):
            for i_h in range(x.shape[3]):
                for i_w in range(x.shape[4]):
                    xpack[j] = x[n, c, i_d, i_h, i_w]
                    j = j + 1


def conv_transpose_gemm(
    const floating[:, :, :, :, :] x,
    const floating[:, :, ::1] w,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    floating[:, ::1] xpack,
    tuple kernel,
    tuple stride,
    tuple dilation,
    tuple pad_before,
    Py_ssize_t k_block,
    Py_ssize_t n_block,
    Py_ssize_t chunk_cols,
    int n_threads,
):
    """GEMM + col2im transposed convolution of validated views into ``out``.

    Parameters
    ----------
    x : (N, C_in, D, H, W) array view, any strides
    w : (groups, C_in // groups, K_g * KD * KH * KW) C-contiguous: the weight
        ``(C_in, K_g, KD, KH, KW)`` reshaped, ``w[g, c, k * T + t]``
    bias : (C_out,) or (0,) contiguous
    out : (N, C_out, D_out, H_out, W_out) writable view, any strides
    xpack : (C_in, N * D * H * W) C-contiguous scratch, overwritten
    kernel, stride, dilation, pad_before : 3 ints each (depth, height, width)
    k_block, n_block : output channels and samples per task
    chunk_cols : input positions per GEMM when ``out``'s planes are contiguous (the task's
        samples are then run in chunks of whole input rows, each added into ``out`` while its
        columns are in cache); otherwise each task makes one GEMM
    n_threads : OpenMP team size; BLAS must be single-threaded during the call
    """
    cdef Py_ssize_t batch = out.shape[0], c_out = out.shape[1]
    cdef Py_ssize_t d_out = out.shape[2], h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t d_in = x.shape[2], h_in = x.shape[3], w_in = x.shape[4]
    cdef Py_ssize_t groups = w.shape[0], c_per_group = w.shape[1]
    cdef Py_ssize_t k_per_group = c_out // groups
    cdef Py_ssize_t kd_size = kernel[0], kh_size = kernel[1], kw_size = kernel[2]
    cdef Py_ssize_t n_taps = kd_size * kh_size * kw_size
    cdef Py_ssize_t sd = stride[0], sh = stride[1], sw = stride[2]
    cdef Py_ssize_t dd = dilation[0], dh = dilation[1], dw = dilation[2]
    cdef Py_ssize_t pd = pad_before[0], ph = pad_before[1], pw = pad_before[2]
    cdef Py_ssize_t p_in = d_in * h_in * w_in, plane = d_out * h_out * w_out
    cdef Py_ssize_t np_in = batch * p_in
    cdef Py_ssize_t k_blocks = (k_per_group + k_block - 1) // k_block
    cdef Py_ssize_t n_blocks = (batch + n_block - 1) // n_block
    cdef Py_ssize_t s_o = out.strides[4] // <Py_ssize_t> sizeof(floating)
    cdef Py_ssize_t s_h = out.strides[3] // <Py_ssize_t> sizeof(floating)
    cdef Py_ssize_t s_d = out.strides[2] // <Py_ssize_t> sizeof(floating)
    # Planes whose (d, h, w) elements are contiguous and in order are accumulated in place.
    cdef bint in_place = (s_o == 1 and (h_out == 1 or s_h == w_out)
                          and (d_out == 1 or s_d == h_out * w_out))
    cdef Py_ssize_t rows_per_sample = d_in * h_in
    cdef Py_ssize_t chunk_rows = max(1, (chunk_cols + w_in - 1) // w_in) if in_place \
        else n_block * rows_per_sample
    cdef Py_ssize_t col_size = k_block * n_taps * min(chunk_rows, n_block * rows_per_sample) * w_in
    cdef Py_ssize_t task, c, g, kb, nb, k0, k_count, n0, n_count, n, k, p, od, oh, ow
    cdef Py_ssize_t row0, row1, r_stop, n_cols, ka
    cdef floating* col
    cdef floating* acc
    cdef floating* plane_ptr
    cdef floating shift
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    if batch == 0:
        return
    cdef unsigned int fp_saved
    cdef Py_ssize_t* ranges = <Py_ssize_t*> malloc(3 * (kd_size + kh_size + kw_size)
                                                    * sizeof(Py_ssize_t))
    if ranges == NULL:
        raise MemoryError("transpose_gemm: could not allocate the tap tables")
    cdef Py_ssize_t* d_ranges = ranges
    cdef Py_ssize_t* h_ranges = ranges + 3 * kd_size
    cdef Py_ssize_t* w_ranges = ranges + 3 * (kd_size + kh_size)
    _tap_ranges(d_ranges, kd_size, d_in, d_out, sd, dd, pd)
    _tap_ranges(h_ranges, kh_size, h_in, h_out, sh, dh, ph)
    _tap_ranges(w_ranges, kw_size, w_in, w_out, sw, dw, pw)
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        for c in prange(x.shape[1], schedule="static"):
            if pcf_interrupted(&stop):
                continue
            _pack(&xpack[c, 0], x, c)
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        col = <floating*> thread_buffer((col_size + (0 if in_place else plane)) * sizeof(floating))
        if col == NULL:
            out_of_memory[0] = 1
        for task in prange(groups * k_blocks * n_blocks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            if col == NULL:
                continue
            nb = task % n_blocks
            kb = (task // n_blocks) % k_blocks
            g = task // (n_blocks * k_blocks)
            k0 = kb * k_block
            k_count = min(k_block, k_per_group - k0)
            ka = g * k_per_group + k0
            n0 = nb * n_block
            n_count = min(n_block, batch - n0)
            if in_place:
                for n in range(n0, n0 + n_count):
                    for k in range(ka, ka + k_count):
                        shift = bias[k] if bias.shape[0] > 0 else 0
                        acc = &out[n, k, 0, 0, 0]
                        for p in range(plane):
                            acc[p] = shift
            # Input rows (n, id, ih) of the task's samples, in chunks: col[(k, t), (row, iw)].
            row0 = n0 * rows_per_sample
            while row0 < (n0 + n_count) * rows_per_sample:
                row1 = min(row0 + chunk_rows, (n0 + n_count) * rows_per_sample)
                n_cols = (row1 - row0) * w_in
                gemm(c'N', c'T', n_cols, k_count * n_taps, c_per_group,
                     &xpack[g * c_per_group, row0 * w_in], np_in,
                     &w[g, 0, k0 * n_taps], k_per_group * n_taps, col, n_cols)
                for n in range(row0 // rows_per_sample, (row1 - 1) // rows_per_sample + 1):
                    r_stop = min(row1, (n + 1) * rows_per_sample) - n * rows_per_sample
                    p = max(row0, n * rows_per_sample)  # first row of this sample in the chunk
                    for k in range(ka, ka + k_count):
                        if in_place:
                            acc = &out[n, k, 0, 0, 0]
                        else:
                            acc = col + col_size
                            shift = bias[k] if bias.shape[0] > 0 else 0
                            for od in range(plane):
                                acc[od] = shift
                        _col2im_rows(
                            acc, h_out * w_out, w_out,
                            col + (k - ka) * n_taps * n_cols + (p - row0) * w_in, n_cols,
                            p - n * rows_per_sample, r_stop, h_in, w_in,
                            d_ranges, h_ranges, w_ranges, kd_size, kh_size, kw_size, sd, sh, sw)
                        if not in_place:
                            od = 0
                            for oh in range(d_out * h_out):
                                plane_ptr = &out[n, k, oh // h_out, oh % h_out, 0]
                                for ow in range(w_out):
                                    plane_ptr[ow * s_o] = acc[od]
                                    od = od + 1
                row0 = row1
        free(col)
        pcf_flush_subnormals_end(fp_saved)
    free(ranges)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError(
            f"transpose_gemm: could not allocate {col_size + plane} elements per thread")
