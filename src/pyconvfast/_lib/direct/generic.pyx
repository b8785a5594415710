"""The ``direct`` algorithm: a straightforward, exact-order convolution loop.

Every problem is seen as 3-D: (N, C, D, H, W) activations and (K, C/groups, KD, KH, KW) weights,
1-D and 2-D problems having singleton leading spatial axes. Arrays are read through their strides,
so channels-last and negatively strided views need no copy. Padding of every mode is done by
per-axis tap tables (see ``pyconvfast._core.padding``): ``table[o, t]`` is the input index read by
output ``o`` at kernel tap ``t``, or -1 where the tap falls on a zero.

Each (sample, output channel) pair is one task of a static ``prange``; the task accumulates its
whole output plane in a private buffer in the fixed order (input channel, kd, kh, kw), so the
result is bitwise the same for every thread count.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from libc.stdlib cimport free
from pyconvfast._lib.common.buffers cimport thread_buffer

from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end


cdef void _accumulate_plane(
    floating* acc,
    const floating[:, :, :, :, :] x,
    const floating[:, :, :, :, :] w,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t n,
    Py_ssize_t k,
    Py_ssize_t c_first,
) noexcept nogil:
    """acc[od, oh, ow] += sum over (ci, kd, kh, kw) of x[n, c_first + ci, ...] * w[k, ci, ...]."""
    cdef Py_ssize_t c_per_group = w.shape[1]
    cdef Py_ssize_t kd_size = w.shape[2], kh_size = w.shape[3], kw_size = w.shape[4]
    cdef Py_ssize_t d_out = taps_d.shape[0], h_out = taps_h.shape[0], w_out = taps_w.shape[0]
    # x's last axis as a raw element stride: numpy may give it any sign, or 0 for broadcasts.
    cdef Py_ssize_t x_step = x.strides[4] // <Py_ssize_t> sizeof(floating)
    cdef Py_ssize_t ci, kd, kh, kw, od, oh, ow, i_d, i_h, i_w
    cdef floating weight
    cdef floating* acc_row
    cdef const floating* x_row
    for ci in range(c_per_group):
        for kd in range(kd_size):
            for od in range(d_out):
                i_d = taps_d[od, kd]
                if i_d < 0:
                    continue
                for kh in range(kh_size):
                    for oh in range(h_out):
                        i_h = taps_h[oh, kh]
                        if i_h < 0:
                            continue
                        acc_row = acc + (od * h_out + oh) * w_out
                        x_row = &x[n, c_first + ci, i_d, i_h, 0]
                        for kw in range(kw_size):
                            weight = w[k, ci, kd, kh, kw]
                            for ow in range(w_out):
                                i_w = taps_w[ow, kw]
                                if i_w >= 0:
                                    acc_row[ow] += weight * x_row[i_w * x_step]


def conv_direct(
    const floating[:, :, :, :, :] x,
    const floating[:, :, :, :, :] w,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    int n_threads,
):
    """Direct convolution of validated 5-D views into ``out``.

    Parameters
    ----------
    x : (N, C_in, D, H, W) float32 or float64 array view, any strides
    w : (C_out, C_in // groups, KD, KH, KW) array view of the same dtype, any strides
    bias : (C_out,) or (0,) contiguous array; empty means no bias
    out : (N, C_out, D_out, H_out, W_out) writable array view, any strides
    taps_d, taps_h, taps_w : (out_size, kernel_size) int64 tap tables, -1 for a zero tap
    n_threads : int, OpenMP team size
    """
    cdef Py_ssize_t batch = out.shape[0], c_out = out.shape[1]
    cdef Py_ssize_t d_out = out.shape[2], h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t plane = d_out * h_out * w_out
    cdef Py_ssize_t c_per_group = w.shape[1]
    cdef Py_ssize_t groups = x.shape[1] // c_per_group
    cdef Py_ssize_t k_per_group = c_out // groups
    cdef bint has_bias = bias.shape[0] > 0
    cdef Py_ssize_t task, n, k, p, od, oh, ow
    cdef floating* acc
    cdef floating shift
    cdef unsigned int fp_saved
    # An array, not a scalar: Cython makes scalars assigned in a parallel block thread-private.
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        acc = <floating*> thread_buffer(plane * sizeof(floating))
        if acc == NULL:
            out_of_memory[0] = 1
        for task in prange(batch * c_out, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            if acc == NULL:
                continue
            n = task // c_out
            k = task % c_out
            for p in range(plane):
                acc[p] = 0
            _accumulate_plane(acc, x, w, taps_d, taps_h, taps_w, n, k,
                              (k // k_per_group) * c_per_group)
            shift = bias[k] if has_bias else 0
            p = 0
            for od in range(d_out):
                for oh in range(h_out):
                    for ow in range(w_out):
                        out[n, k, od, oh, ow] = acc[p] + shift
                        p = p + 1
        free(acc)
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError(f"direct: could not allocate a {plane}-element work buffer per thread")
