"""The ``im2col`` algorithm: lower input windows to columns, then one GEMM per task.

A task is (sample, group, chunk of output positions), positions being the flattened
(od, oh, ow) of the output. The lowering writes ``col[r, j]``, ``r`` running over the
``(c, kd, kh, kw)`` taps of one group and ``j`` over the chunk's positions, with padding applied
through the tap tables (as in ``direct``). BLAS then computes
``acc[Kg, P] = W_g[Kg, C_g*T] @ col[C_g*T, P]`` and the result is copied, bias added, into the
strided output. Chunks keep each thread's buffers under the workspace bound, and are cut small
enough that every thread has a task even for one sample of a 1-D signal. The buffers are one
slice per thread of a work array the caller passes in (``pyconvfast._core.workspace``: kept from
call to call, so that steady calls touch no fresh page).

Tasks run on a static ``prange``, each thread calling single-threaded BLAS (the caller limits
BLAS to one thread around the call), so OpenMP and BLAS threads never multiply; and BLAS
then runs in our threads, with their flush-to-zero state (``fpstate.h``).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from pyconvfast._lib.common.gemm cimport INT_MAX, gemm

from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from pyconvfast._lib.common.openmp_helpers cimport pcf_omp_thread_num


cdef void _lower(
    floating* col,
    const floating[:, :, :, :, :] x,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t n, Py_ssize_t c_first, Py_ssize_t n_taps,
    Py_ssize_t p_first, Py_ssize_t p_count,
) noexcept nogil:
    """Fill ``col[r, j]`` for every tap ``r`` and positions ``p_first + j``, j < p_count."""
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t h_out = taps_h.shape[0], w_out = taps_w.shape[0]
    cdef Py_ssize_t x_step = x.strides[4] // <Py_ssize_t> sizeof(floating)
    cdef Py_ssize_t r, rest, ci, kd, kh, kw, p, row, od, oh, ow, ow_stop, i_d, i_h, i_w
    cdef floating* dst
    cdef const floating* x_row
    for r in range(n_taps):
        kw = r % kw_size
        rest = r // kw_size
        kh = rest % kh_size
        rest = rest // kh_size
        kd = rest % kd_size
        ci = rest // kd_size
        dst = col + r * p_count
        p = p_first
        while p < p_first + p_count:
            # One segment: the part of an output row (od, oh) that lies in the chunk.
            row = p // w_out
            ow = p % w_out
            ow_stop = min(w_out, ow + p_first + p_count - p)
            od = row // h_out
            oh = row % h_out
            i_d = taps_d[od, kd]
            i_h = taps_h[oh, kh]
            if i_d < 0 or i_h < 0:
                while ow < ow_stop:
                    dst[0] = 0
                    dst += 1
                    ow += 1
            else:
                x_row = &x[n, c_first + ci, i_d, i_h, 0]
                while ow < ow_stop:
                    i_w = taps_w[ow, kw]
                    dst[0] = x_row[i_w * x_step] if i_w >= 0 else 0
                    dst += 1
                    ow += 1
            p = row * w_out + ow_stop


cdef void _store(
    floating[:, :, :, :, :] out, const floating* acc, const floating[::1] bias,
    Py_ssize_t n, Py_ssize_t k_first, Py_ssize_t k_count, Py_ssize_t p_first, Py_ssize_t p_count,
) noexcept nogil:
    """out[n, k_first + k, position p_first + j] = acc[k, j] + bias[k_first + k]."""
    cdef Py_ssize_t h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t k, j, p, od, oh, ow
    cdef floating shift
    for k in range(k_count):
        shift = bias[k_first + k] if bias.shape[0] > 0 else 0
        p = p_first
        od = p // (h_out * w_out)
        oh = (p // w_out) % h_out
        ow = p % w_out
        for j in range(p_count):
            out[n, k_first + k, od, oh, ow] = acc[k * p_count + j] + shift
            ow += 1
            if ow == w_out:
                ow = 0
                oh += 1
                if oh == h_out:
                    oh = 0
                    od += 1


def conv_im2col(
    const floating[:, :, :, :, :] x,
    const floating[:, ::1] w,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t groups,
    Py_ssize_t chunk,
    floating[::1] work,
    int n_threads,
):
    """im2col + GEMM convolution of validated views into ``out``.

    Parameters
    ----------
    x : (N, C_in, D, H, W) array view, any strides
    w : (C_out, C_in // groups * KD * KH * KW) C-contiguous weight matrix
    bias : (C_out,) or (0,) contiguous
    out : (N, C_out, D_out, H_out, W_out) writable view, any strides
    taps_d, taps_h, taps_w : tap tables, -1 for a zero tap
    groups : number of channel groups
    chunk : output positions lowered at once by one task (bounds the buffers)
    work : n_threads slices of ``work.shape[0] // n_threads`` elements (at least
        ``work_elements(w.shape[1], w.shape[0] // groups, chunk)`` each), one per thread
    n_threads : OpenMP team size; BLAS must be single-threaded during the call
    """
    cdef Py_ssize_t batch = out.shape[0]
    cdef Py_ssize_t n_taps = w.shape[1]
    cdef Py_ssize_t k_per_group = w.shape[0] // groups
    cdef Py_ssize_t c_per_group = x.shape[1] // groups
    cdef Py_ssize_t n_positions = out.shape[2] * out.shape[3] * out.shape[4]
    cdef Py_ssize_t n_chunks = (n_positions + chunk - 1) // chunk
    cdef Py_ssize_t col_size = n_taps * chunk
    cdef Py_ssize_t task, n, g, p_first, p_count
    cdef Py_ssize_t work_stride = work.shape[0] // max(n_threads, 1)
    cdef floating* col
    cdef unsigned int fp_saved
    if n_threads < 1 or work_stride < work_elements(n_taps, k_per_group, chunk):
        raise ValueError(
            f"im2col: work holds {work.shape[0]} elements, needs "
            f"{work_elements(n_taps, k_per_group, chunk)} for each of {n_threads} threads")
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        col = &work[0] + pcf_omp_thread_num() * work_stride
        for task in prange(batch * groups * n_chunks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            p_first = (task % n_chunks) * chunk
            p_count = min(chunk, n_positions - p_first)
            g = (task // n_chunks) % groups
            n = task // (n_chunks * groups)
            _lower(col, x, taps_d, taps_h, taps_w, n, g * c_per_group, n_taps, p_first, p_count)
            gemm(c'N', c'N', p_count, k_per_group, n_taps, col, p_count, &w[g * k_per_group, 0],
                 n_taps, col + col_size, p_count)
            _store(out, col + col_size, bias, n, g * k_per_group, k_per_group, p_first, p_count)
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)


def work_elements(Py_ssize_t n_taps, Py_ssize_t k_per_group, Py_ssize_t chunk):
    """Elements of one thread's slice of ``work``: the columns and the GEMM's result."""
    return (n_taps + k_per_group) * chunk


# --- 1x1, stride 1, no padding: GEMM straight on the arrays, no lowering ------------------------

def pointwise_form(x_strides, out_strides, size, Py_ssize_t c_per_group,
                   Py_ssize_t k_per_group, Py_ssize_t itemsize):
    """How a 1x1 stride-1 unpadded problem maps onto GEMM without copying: 1, 2, or 0 (no way).

    ``size`` is the spatial (D, H, W); strides are in bytes, of the 5-D channels-first views.
    The spatial axes must flatten to one position axis of stride ``s`` in both arrays. Form 1
    (channels-first memory): ``s`` is one element and each channel's positions are a matrix
    column, ``out[k, :] = sum_c w[k, c] x[c, :]``. Form 2 (channels-last): channels are
    contiguous and each position's channels are a column, ``out[:, p] = W @ x[:, p]``.

    The strides between the matrix columns (channel strides in form 1, position steps in form 2)
    are BLAS leading dimensions, 32-bit ints: where one exceeds ``INT_MAX`` elements (an array
    in a large memory-mapped file) the answer is 0, and the lowering path copies each chunk of
    positions into its column buffer instead.
    """
    cdef Py_ssize_t n_positions = size[0] * size[1] * size[2]
    cdef Py_ssize_t x_step = _position_step(x_strides[2], x_strides[3], x_strides[4],
                                            size[0], size[1], size[2], itemsize)
    cdef Py_ssize_t out_step = _position_step(out_strides[2], out_strides[3], out_strides[4],
                                              size[0], size[1], size[2], itemsize)
    if x_step <= 0 or out_step <= 0 or x_strides[0] < 0 or out_strides[0] < 0:
        return 0
    if (x_step == 1 and out_step == 1 and x_strides[1] >= n_positions * itemsize
            and out_strides[1] >= n_positions * itemsize and x_strides[1] % itemsize == 0
            and out_strides[1] % itemsize == 0 and x_strides[1] // itemsize <= INT_MAX
            and out_strides[1] // itemsize <= INT_MAX):
        return 1
    if (x_strides[1] == itemsize and out_strides[1] == itemsize and x_step >= c_per_group
            and out_step >= k_per_group and x_step <= INT_MAX and out_step <= INT_MAX):
        return 2
    return 0


cdef Py_ssize_t _position_step(Py_ssize_t s_d, Py_ssize_t s_h, Py_ssize_t s_w, Py_ssize_t d,
                               Py_ssize_t h, Py_ssize_t w, Py_ssize_t itemsize) noexcept nogil:
    """The element step between flattened (d, h, w) positions, or -1 if they do not flatten;
    1 for a single position (any step does)."""
    cdef Py_ssize_t strides[3]
    cdef Py_ssize_t sizes[3]
    cdef Py_ssize_t step = -1, expected = -1, axis
    strides[0], strides[1], strides[2] = s_d, s_h, s_w
    sizes[0], sizes[1], sizes[2] = d, h, w
    # the innermost axis of size > 1 sets the step; every outer one must continue it
    for axis in range(2, -1, -1):
        if sizes[axis] == 1:
            continue
        if strides[axis] % itemsize:
            return -1
        if expected == -1:
            step = strides[axis] // itemsize
            expected = step * sizes[axis]
        elif strides[axis] // itemsize != expected:
            return -1
        else:
            expected = expected * sizes[axis]
    if expected == -1:
        return 1
    return step


def conv_pointwise_gemm(
    const floating[:, :, :, :, :] x,
    const floating[:, ::1] w,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    Py_ssize_t groups,
    int form,
    Py_ssize_t n_chunks,
    int n_threads,
):
    """1x1 stride-1 unpadded convolution as GEMMs on ``x`` and ``out`` themselves.

    Parameters
    ----------
    x : (N, C_in, D, H, W) view whose spatial axes flatten (:func:`pointwise_form`)
    w : (C_out, C_in // groups) C-contiguous weight matrix
    bias : (C_out,) or (0,) contiguous
    out : (N, C_out, D, H, W) writable view, same flattening
    groups : number of channel groups
    form : 1 or 2, from :func:`pointwise_form`
    n_chunks : the positions of each (sample, group) are cut into this many tasks
    n_threads : OpenMP team size; with 1, BLAS may run its own threads inside (the caller sets
        them), otherwise BLAS must be single-threaded during the call
    """
    if form != 1 and form != 2:
        raise ValueError(f"pointwise: form must be 1 or 2, got {form}")
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t batch = out.shape[0]
    cdef Py_ssize_t c_g = w.shape[1], k_g = w.shape[0] // groups
    cdef Py_ssize_t n_positions = out.shape[2] * out.shape[3] * out.shape[4]
    cdef Py_ssize_t chunk = (n_positions + n_chunks - 1) // n_chunks
    n_chunks = (n_positions + chunk - 1) // chunk
    cdef Py_ssize_t x_sn = x.strides[0] // itemsize, x_sc = x.strides[1] // itemsize
    cdef Py_ssize_t o_sn = out.strides[0] // itemsize, o_sk = out.strides[1] // itemsize
    cdef Py_ssize_t x_sp = 1, o_sp = 1
    if form == 2:
        x_sp = max(c_g, _position_step(x.strides[2], x.strides[3], x.strides[4], x.shape[2],
                                       x.shape[3], x.shape[4], itemsize))
        o_sp = max(k_g, _position_step(out.strides[2], out.strides[3], out.strides[4],
                                       out.shape[2], out.shape[3], out.shape[4], itemsize))
    cdef const floating* x0 = &x[0, 0, 0, 0, 0]
    cdef floating* o0 = &out[0, 0, 0, 0, 0]
    cdef bint has_bias = bias.shape[0] > 0
    cdef Py_ssize_t task, n, g, p0, count, k, p
    cdef const floating* xt
    cdef floating* ot
    cdef floating shift
    cdef unsigned int fp_saved
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        for task in prange(batch * groups * n_chunks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            p0 = (task % n_chunks) * chunk
            count = min(chunk, n_positions - p0)
            g = (task // n_chunks) % groups
            n = task // (n_chunks * groups)
            if form == 1:
                # out^T[p, k] = x^T[p, c] @ W^T[c, k]: column-major x (P x C, ld x_sc)
                xt = x0 + n * x_sn + g * c_g * x_sc + p0
                ot = o0 + n * o_sn + g * k_g * o_sk + p0
                gemm(c'N', c'N', count, k_g, c_g, xt, x_sc, &w[g * k_g, 0], c_g, ot, o_sk)
                if has_bias:
                    for k in range(k_g):
                        shift = bias[g * k_g + k]
                        for p in range(count):
                            ot[k * o_sk + p] += shift
            else:
                # out[k, p] = W[k, c] @ x[c, p]: column-major x (C x P, ld x_sp), W^T stored
                xt = x0 + n * x_sn + g * c_g + p0 * x_sp
                ot = o0 + n * o_sn + g * k_g + p0 * o_sp
                gemm(c'T', c'N', k_g, count, c_g, &w[g * k_g, 0], c_g, xt, x_sp, ot, o_sp)
                if has_bias:
                    for p in range(count):
                        for k in range(k_g):
                            ot[p * o_sp + k] += bias[g * k_g + k]
        pcf_flush_subnormals_end(fp_saved)
