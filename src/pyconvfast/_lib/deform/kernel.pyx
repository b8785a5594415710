"""Deformable convolution (v1, and v2 with a modulation mask): deformable im2col + GEMM.

A task is (sample, chunk of output positions), positions being the flattened (oh, ow) of the
output. For each offset group the task first builds a *sample table*: for every kernel tap t and
position j of the chunk, the sampling point ``(y, x) = (oh*stride - pad + i*dilation + dy,
ow*stride - pad + j*dilation + dx)``, its four bilinear corners (element offsets into a channel
plane, and which of them lie inside the image) and their weights, plus the mask value. The table
is shared by every input channel of the offset group, so the floor/branch work is done once per
(tap, position) instead of once per channel. The columns ``col[c*R*S + t, j]`` are then sampled
channel by channel, and BLAS computes, for each weight group g,
``acc[K_g, P] = W_g[K_g, C_g*R*S] @ col[rows of group g, P]``; the result is copied, bias
added, into the strided output.

Sampling follows torchvision's ``deform_conv2d`` exactly: the point is computed in the input's
precision, ``int_base + offset`` (one rounding); a point with ``y <= -1``, ``y >= H``,
``x <= -1`` or ``x >= W`` gives 0; otherwise the value is
``w1*v1 + w2*v2 + w3*v3 + w4*v4`` (in that order), with ``w1 = (1-ly)*(1-lx)``,
``w2 = (1-ly)*lx``, ``w3 = ly*(1-lx)``, ``w4 = ly*lx``, corners outside the image reading 0,
and then multiplied by the mask. So a column equals torchvision's column bit for bit; only the
GEMM's summation order differs.

The chunk size depends on the problem and the workspace bound only, never on the thread count,
so every thread count runs the same GEMMs and gives the same bits. Tasks run on a static
``prange``, each thread calling single-threaded BLAS (the caller limits BLAS to one thread).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from libc.math cimport NAN, floor
from libc.stdlib cimport free
from pyconvfast._lib.common.buffers cimport thread_buffer
from pyconvfast._lib.common.gemm cimport gemm

# The sample-table flag of a point with a NaN coordinate (the four corner bits are 1, 2, 4, 8).
cdef enum:
    _NAN_POINT = 16


cdef void _sample_table(
    const floating[:, :, :, :] offset,
    const floating[:, :, :, :] mask,
    bint has_mask,
    Py_ssize_t n, Py_ssize_t og, Py_ssize_t p_first, Py_ssize_t p_count,
    Py_ssize_t height, Py_ssize_t width, Py_ssize_t x_step_h, Py_ssize_t x_step_w,
    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    Py_ssize_t dh, Py_ssize_t dw,
    Py_ssize_t* index, floating* weight, unsigned char* inside, floating* modulation,
) noexcept nogil:
    """Fill the sample table of offset group ``og`` for positions ``p_first + j``.

    Entry ``e = t * p_count + j`` holds the four corner offsets ``index[4e .. 4e+3]`` (in
    elements, relative to a channel plane), their weights ``weight[4e ..]``, ``inside[e]`` (bit
    q set when corner q is inside the image; 0 when the point gives 0, ``_NAN_POINT`` when a
    coordinate is NaN) and ``modulation[e]``.
    """
    cdef Py_ssize_t w_out = offset.shape[3]
    cdef Py_ssize_t n_taps = kh * kw
    cdef Py_ssize_t t, i, j, p, oh, ow, e, y_low, x_low
    cdef Py_ssize_t offset_channel
    cdef floating y, x, ly, lx, hy, hx
    cdef unsigned char bits
    for t in range(n_taps):
        i = t // kw
        j = t % kw
        offset_channel = og * 2 * n_taps + 2 * t
        for p in range(p_count):
            oh = (p_first + p) // w_out
            ow = (p_first + p) % w_out
            e = t * p_count + p
            y = <floating> (oh * sh - ph + i * dh) + offset[n, offset_channel, oh, ow]
            x = <floating> (ow * sw - pw + j * dw) + offset[n, offset_channel + 1, oh, ow]
            modulation[e] = mask[n, og * n_taps + t, oh, ow] if has_mask else 1
            if not (y > -1 and y < height and x > -1 and x < width):
                # A NaN point (a NaN offset) samples NaN, flagged 16; a point outside gives 0.
                inside[e] = _NAN_POINT if y != y or x != x else 0
                index[4 * e] = index[4 * e + 1] = index[4 * e + 2] = index[4 * e + 3] = 0
                weight[4 * e] = weight[4 * e + 1] = weight[4 * e + 2] = weight[4 * e + 3] = 0
                continue
            y_low = <Py_ssize_t> floor(y)
            x_low = <Py_ssize_t> floor(x)
            ly = y - y_low
            lx = x - x_low
            hy = 1 - ly
            hx = 1 - lx
            bits = 0
            if y_low >= 0 and x_low >= 0:
                bits |= 1
            if y_low >= 0 and x_low + 1 <= width - 1:
                bits |= 2
            if y_low + 1 <= height - 1 and x_low >= 0:
                bits |= 4
            if y_low + 1 <= height - 1 and x_low + 1 <= width - 1:
                bits |= 8
            inside[e] = bits
            # Corners outside the image are never read; clamp their offsets to a valid one.
            index[4 * e] = y_low * x_step_h + x_low * x_step_w if bits & 1 else 0
            index[4 * e + 1] = y_low * x_step_h + (x_low + 1) * x_step_w if bits & 2 else 0
            index[4 * e + 2] = (y_low + 1) * x_step_h + x_low * x_step_w if bits & 4 else 0
            index[4 * e + 3] = (y_low + 1) * x_step_h + (x_low + 1) * x_step_w if bits & 8 else 0
            weight[4 * e] = hy * hx
            weight[4 * e + 1] = hy * lx
            weight[4 * e + 2] = ly * hx
            weight[4 * e + 3] = ly * lx


cdef void _sample_columns(
    floating* col, const floating* plane, Py_ssize_t n_entries,
    const Py_ssize_t* index, const floating* weight, const unsigned char* inside,
    const floating* modulation, bint has_mask,
) noexcept nogil:
    """``col[e] = modulation[e] * bilinear(plane, entry e)`` for the ``n_entries`` table entries
    (the rows of one channel, tap-major)."""
    cdef Py_ssize_t e
    cdef floating value
    cdef unsigned char bits
    for e in range(n_entries):
        bits = inside[e]
        if bits == 15:
            value = (weight[4 * e] * plane[index[4 * e]]
                     + weight[4 * e + 1] * plane[index[4 * e + 1]]
                     + weight[4 * e + 2] * plane[index[4 * e + 2]]
                     + weight[4 * e + 3] * plane[index[4 * e + 3]])
        elif bits == 0:
            value = 0
        elif bits == _NAN_POINT:
            value = NAN
        else:
            # A corner outside reads 0, contributing w * 0 = +0 (or -0) to a sum that is the
            # same without it: skipping it gives torchvision's bits and keeps inf/NaN inputs
            # outside the image from leaking in through a zero weight.
            value = 0
            if bits & 1:
                value = value + weight[4 * e] * plane[index[4 * e]]
            if bits & 2:
                value = value + weight[4 * e + 1] * plane[index[4 * e + 1]]
            if bits & 4:
                value = value + weight[4 * e + 2] * plane[index[4 * e + 2]]
            if bits & 8:
                value = value + weight[4 * e + 3] * plane[index[4 * e + 3]]
        col[e] = modulation[e] * value if has_mask else value


cdef void _store(
    floating[:, :, :, :] out, const floating* acc, const floating[::1] bias,
    Py_ssize_t n, Py_ssize_t k_first, Py_ssize_t k_count, Py_ssize_t p_first, Py_ssize_t p_count,
) noexcept nogil:
    """out[n, k_first + k, position p_first + j] = acc[k, j] + bias[k_first + k]."""
    cdef Py_ssize_t w_out = out.shape[3]
    cdef Py_ssize_t k, j, oh, ow
    cdef floating shift
    for k in range(k_count):
        shift = bias[k_first + k] if bias.shape[0] > 0 else 0
        oh = p_first // w_out
        ow = p_first % w_out
        for j in range(p_count):
            out[n, k_first + k, oh, ow] = acc[k * p_count + j] + shift
            ow += 1
            if ow == w_out:
                ow = 0
                oh += 1


def deform_conv(
    const floating[:, :, :, :] x,
    const floating[:, :, :, :] offset,
    const floating[:, :, :, :] mask,
    const floating[:, ::1] w,
    const floating[::1] bias,
    floating[:, :, :, :] out,
    Py_ssize_t kh, Py_ssize_t kw,
    Py_ssize_t sh, Py_ssize_t sw,
    Py_ssize_t ph, Py_ssize_t pw,
    Py_ssize_t dh, Py_ssize_t dw,
    Py_ssize_t groups,
    Py_ssize_t offset_groups,
    bint has_mask,
    Py_ssize_t chunk,
    int n_threads,
):
    """Deformable convolution of validated views into ``out``.

    Parameters
    ----------
    x : (N, C_in, H, W) array view, any strides
    offset : (N, 2 * offset_groups * kh * kw, H_out, W_out) view, any strides; channel
        ``2 * (g * kh * kw + t)`` holds the row (y) displacement of tap t of offset group g, the
        next channel the column (x) displacement
    mask : (N, offset_groups * kh * kw, H_out, W_out) view when ``has_mask``, else any array
    w : (C_out, C_in // groups * kh * kw) C-contiguous weight matrix
    bias : (C_out,) or (0,) contiguous
    out : (N, C_out, H_out, W_out) writable view, any strides
    kh, kw, sh, sw, ph, pw, dh, dw : kernel size, stride, padding (before) and dilation
    groups, offset_groups : weight groups and offset groups
    has_mask : modulated (v2) when true
    chunk : output positions per task (bounds the buffers)
    n_threads : OpenMP team size; BLAS must be single-threaded during the call
    """
    cdef Py_ssize_t batch = out.shape[0]
    cdef Py_ssize_t c_in = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t x_step_h = x.strides[2] // <Py_ssize_t> sizeof(floating)
    cdef Py_ssize_t x_step_w = x.strides[3] // <Py_ssize_t> sizeof(floating)
    cdef Py_ssize_t n_taps = kh * kw
    cdef Py_ssize_t rows = c_in * n_taps
    cdef Py_ssize_t k_per_group = w.shape[0] // groups
    cdef Py_ssize_t c_per_group = c_in // groups
    cdef Py_ssize_t c_per_offset_group = c_in // offset_groups
    cdef Py_ssize_t n_positions = out.shape[2] * out.shape[3]
    cdef Py_ssize_t n_chunks = (n_positions + chunk - 1) // chunk
    cdef Py_ssize_t n_entries = n_taps * chunk
    cdef Py_ssize_t col_size = rows * chunk
    cdef Py_ssize_t task, n, g, og, c, p_first, p_count
    cdef floating* col
    cdef floating* acc
    cdef floating* table_weight
    cdef floating* modulation
    cdef Py_ssize_t* table_index
    cdef unsigned char* inside
    # An array, not a scalar: Cython makes scalars assigned in a parallel block thread-private.
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    cdef unsigned int fp_saved
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        col = <floating*> thread_buffer(
            (col_size + k_per_group * chunk + 5 * n_entries) * sizeof(floating))
        table_index = <Py_ssize_t*> thread_buffer(4 * n_entries * sizeof(Py_ssize_t) + n_entries)
        if col == NULL or table_index == NULL:
            out_of_memory[0] = 1
        for task in prange(batch * n_chunks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            if col == NULL or table_index == NULL:
                continue
            acc = col + col_size
            table_weight = acc + k_per_group * chunk
            modulation = table_weight + 4 * n_entries
            inside = <unsigned char*> (table_index + 4 * n_entries)
            n = task // n_chunks
            p_first = (task % n_chunks) * chunk
            p_count = min(chunk, n_positions - p_first)
            for og in range(offset_groups):
                _sample_table(offset, mask, has_mask, n, og, p_first, p_count, height, width,
                              x_step_h, x_step_w, kh, kw, sh, sw, ph, pw, dh, dw,
                              table_index, table_weight, inside, modulation)
                for c in range(og * c_per_offset_group, (og + 1) * c_per_offset_group):
                    _sample_columns(col + c * n_taps * p_count, &x[n, c, 0, 0],
                                    n_taps * p_count, table_index, table_weight, inside,
                                    modulation, has_mask)
            for g in range(groups):
                gemm(c'N', c'N', p_count, k_per_group, c_per_group * n_taps,
                     col + g * c_per_group * n_taps * p_count, p_count,
                     &w[g * k_per_group, 0], c_per_group * n_taps, acc, p_count)
                _store(out, acc, bias, n, g * k_per_group, k_per_group, p_first, p_count)
        free(col)
        free(table_index)
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError(
            f"deform_conv2d: could not allocate the buffers of {chunk} output positions "
            f"per thread")
