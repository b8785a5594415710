"""The ``im2col`` algorithm: lower input windows to columns, then one GEMM per task.

A task is (sample, group, chunk of output positions), positions being the flattened
(od, oh, ow) of the output. The lowering writes ``col[r, j]``, ``r`` running over the
``(c, kd, kh, kw)`` taps of one group and ``j`` over the chunk's positions, with padding applied
through the tap tables (as in ``direct``). BLAS then computes
``acc[Kg, P] = W_g[Kg, C_g*T] @ col[C_g*T, P]`` and the result is copied, bias added, into the
strided output. Chunks keep each thread's buffers under the workspace bound, and are cut small
enough that every thread has a task even for one sample of a 1-D signal. The buffers are one
slice per thread of a work array the caller passes in (``pyconvfast._workspace``: kept from
call to call, so that steady calls touch no fresh page).

Tasks run on a static ``prange``, each thread calling single-threaded BLAS (the caller limits
BLAS to one thread around the call), so OpenMP and BLAS threads never multiply; and BLAS
then runs in our threads, with their flush-to-zero state (``fpstate.h``).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from scipy.linalg.cython_blas cimport dgemm, sgemm

from pyconvfast._lib.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from pyconvfast._lib.openmp_helpers cimport pcf_omp_thread_num


cdef inline void _gemm(
    int m, int n, int k, const floating* a, int lda, const floating* b, int ldb,
    floating* c, int ldc,
) noexcept nogil:
    """Column-major ``C[m, n] = A[m, k] @ B[k, n]``, neither transposed."""
    cdef char no_transpose = b"N"
    cdef floating one = 1, zero = 0
    if floating is float:
        sgemm(&no_transpose, &no_transpose, &m, &n, &k, &one, <float*> a, &lda, <float*> b,
              &ldb, &zero, c, &ldc)
    else:
        dgemm(&no_transpose, &no_transpose, &m, &n, &k, &one, <double*> a, &lda, <double*> b,
              &ldb, &zero, c, &ldc)


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
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        col = &work[0] + pcf_omp_thread_num() * work_stride
        for task in prange(batch * groups * n_chunks, schedule="static"):
            p_first = (task % n_chunks) * chunk
            p_count = min(chunk, n_positions - p_first)
            g = (task // n_chunks) % groups
            n = task // (n_chunks * groups)
            _lower(col, x, taps_d, taps_h, taps_w, n, g * c_per_group, n_taps, p_first, p_count)
            _gemm(<int> p_count, <int> k_per_group, <int> n_taps, col, <int> p_count,
                  &w[g * k_per_group, 0], <int> n_taps, col + col_size, <int> p_count)
            _store(out, col + col_size, bias, n, g * k_per_group, k_per_group, p_first, p_count)
        pcf_flush_subnormals_end(fp_saved)


def work_elements(Py_ssize_t n_taps, Py_ssize_t k_per_group, Py_ssize_t chunk):
    """Elements of one thread's slice of ``work``: the columns and the GEMM's result."""
    return (n_taps + k_per_group) * chunk
