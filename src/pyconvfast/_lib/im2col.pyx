"""The ``im2col`` algorithm: lower input windows to columns, then one GEMM per (sample, group).

For a chunk of output rows, the lowering writes ``col[r, p]``, ``r`` running over the
``(c, kd, kh, kw)`` taps of one group and ``p`` over the chunk's output positions, with padding
applied through the tap tables (as in ``direct``). Then BLAS computes
``acc[Kg, P] = W_g[Kg, C_g*T] @ col[C_g*T, P]`` and the result is copied, bias added, into the
strided output. Chunks keep each thread's column buffer under the workspace bound.

A 1x1 convolution with stride 1 and no padding whose input is a (channels x positions) matrix
with one unit stride skips the lowering: the GEMM reads the input in place.

Parallelism: with at least as many (sample, group, chunk) tasks as threads, a static ``prange``
runs tasks on threads, each calling single-threaded BLAS (the caller limits BLAS to 1 thread).
Otherwise tasks run one after another, the lowering in a ``prange`` and the GEMM on BLAS's own
threads (the caller sets BLAS to ``n_threads``).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void _gemm(
    char* trans_a, int m, int n, int k, const floating* a, int lda,
    const floating* b, int ldb, floating* c, int ldc,
) noexcept nogil:
    """Column-major ``C[m, n] = op(A)[m, k] @ B[k, n]`` (B not transposed)."""
    cdef char trans_b = b"N"
    cdef floating one = 1, zero = 0
    if floating is float:
        sgemm(trans_a, &trans_b, &m, &n, &k, &one, <float*> a, &lda, <float*> b, &ldb, &zero, c, &ldc)
    else:
        dgemm(trans_a, &trans_b, &m, &n, &k, &one, <double*> a, &lda, <double*> b, &ldb, &zero, c, &ldc)


cdef void _lower_rows(
    floating* col,
    const floating[:, :, :, :, :] x,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t n, Py_ssize_t c_first, Py_ssize_t c_per_group,
    Py_ssize_t row_first, Py_ssize_t row_count,
    Py_ssize_t r_first, Py_ssize_t r_stop,
) noexcept nogil:
    """Fill ``col[r, :]`` for taps ``r`` in [r_first, r_stop) and output rows (od, oh) in
    [row_first, row_first + row_count), flattened as od * H_out + oh."""
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1], kw_size = taps_w.shape[1]
    cdef Py_ssize_t h_out = taps_h.shape[0], w_out = taps_w.shape[0]
    cdef Py_ssize_t n_cols = row_count * w_out
    cdef Py_ssize_t x_step = x.strides[4] // <Py_ssize_t> sizeof(floating)
    cdef Py_ssize_t r, rest, ci, kd, kh, kw, row, od, oh, ow, i_d, i_h, i_w
    cdef floating* dst
    cdef const floating* x_row
    for r in range(r_first, r_stop):
        kw = r % kw_size
        rest = r // kw_size
        kh = rest % kh_size
        rest = rest // kh_size
        kd = rest % kd_size
        ci = rest // kd_size
        for row in range(row_count):
            od = (row_first + row) // h_out
            oh = (row_first + row) % h_out
            dst = col + r * n_cols + row * w_out
            i_d = taps_d[od, kd]
            i_h = taps_h[oh, kh]
            if i_d < 0 or i_h < 0:
                for ow in range(w_out):
                    dst[ow] = 0
                continue
            x_row = &x[n, c_first + ci, i_d, i_h, 0]
            for ow in range(w_out):
                i_w = taps_w[ow, kw]
                dst[ow] = x_row[i_w * x_step] if i_w >= 0 else 0


cdef void _store(
    floating[:, :, :, :, :] out, const floating* acc, const floating[::1] bias,
    Py_ssize_t n, Py_ssize_t k_first, Py_ssize_t k_count,
    Py_ssize_t row_first, Py_ssize_t row_count,
) noexcept nogil:
    """out[n, k_first + k, rows] = acc[k, :] + bias[k_first + k]."""
    cdef Py_ssize_t h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t n_cols = row_count * w_out
    cdef Py_ssize_t k, row, od, oh, ow
    cdef floating shift
    cdef const floating* src
    for k in range(k_count):
        shift = bias[k_first + k] if bias.shape[0] > 0 else 0
        for row in range(row_count):
            od = (row_first + row) // h_out
            oh = (row_first + row) % h_out
            src = acc + k * n_cols + row * w_out
            for ow in range(w_out):
                out[n, k_first + k, od, oh, ow] = src[ow] + shift


cdef void _run_task(
    floating* col, floating* acc,
    const floating[:, :, :, :, :] x, const floating[:, ::1] w, const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t groups, Py_ssize_t n, Py_ssize_t g, Py_ssize_t row_first, Py_ssize_t row_count,
    int lower_in_parallel, int n_threads,
) noexcept nogil:
    """Lower, multiply and store one (sample n, group g, chunk of output rows) task."""
    cdef Py_ssize_t k_per_group = w.shape[0] // groups
    cdef Py_ssize_t n_taps = w.shape[1]
    cdef Py_ssize_t c_per_group = x.shape[1] // groups
    cdef Py_ssize_t n_cols = row_count * taps_w.shape[0]
    cdef Py_ssize_t r, r_block
    if lower_in_parallel:
        r_block = (n_taps + n_threads - 1) // n_threads
        for r in prange(0, n_taps, r_block, num_threads=n_threads, schedule="static"):
            _lower_rows(col, x, taps_d, taps_h, taps_w, n, g * c_per_group, c_per_group,
                        row_first, row_count, r, min(r + r_block, n_taps))
    else:
        _lower_rows(col, x, taps_d, taps_h, taps_w, n, g * c_per_group, c_per_group,
                    row_first, row_count, 0, n_taps)
    _gemm(b"N", <int> n_cols, <int> k_per_group, <int> n_taps, col, <int> n_cols,
          &w[g * k_per_group, 0], <int> n_taps, acc, <int> n_cols)
    _store(out, acc, bias, n, g * k_per_group, k_per_group, row_first, row_count)


def conv_im2col(
    const floating[:, :, :, :, :] x,
    const floating[:, ::1] w,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t groups,
    Py_ssize_t rows_per_chunk,
    bint tasks_in_parallel,
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
    rows_per_chunk : output rows (od, oh) lowered at once; bounds the column buffer
    tasks_in_parallel : True: prange over tasks with 1-thread BLAS; False: serial tasks
    n_threads : OpenMP team size
    """
    cdef Py_ssize_t batch = out.shape[0]
    cdef Py_ssize_t n_taps = w.shape[1]
    cdef Py_ssize_t k_per_group = w.shape[0] // groups
    cdef Py_ssize_t n_rows = out.shape[2] * out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t n_chunks = (n_rows + rows_per_chunk - 1) // rows_per_chunk
    cdef Py_ssize_t col_size = n_taps * rows_per_chunk * w_out
    cdef Py_ssize_t acc_size = k_per_group * rows_per_chunk * w_out
    cdef Py_ssize_t task, n, g, chunk, row_first
    cdef floating* col
    cdef floating* acc
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    if tasks_in_parallel:
        with nogil, parallel(num_threads=n_threads):
            col = <floating*> malloc((col_size + acc_size) * sizeof(floating))
            if col == NULL:
                out_of_memory[0] = 1
            for task in prange(batch * groups * n_chunks, schedule="static"):
                if col == NULL:
                    continue
                chunk = task % n_chunks
                g = (task // n_chunks) % groups
                n = task // (n_chunks * groups)
                row_first = chunk * rows_per_chunk
                _run_task(col, col + col_size, x, w, bias, out, taps_d, taps_h, taps_w, groups, n, g,
                          row_first, min(rows_per_chunk, n_rows - row_first), 0, 1)
            free(col)
    else:
        col = <floating*> malloc((col_size + acc_size) * sizeof(floating))
        if col == NULL:
            raise MemoryError(f"im2col: could not allocate {col_size + acc_size} elements")
        with nogil:
            for task in range(batch * groups * n_chunks):
                chunk = task % n_chunks
                g = (task // n_chunks) % groups
                n = task // (n_chunks * groups)
                row_first = chunk * rows_per_chunk
                _run_task(col, col + col_size, x, w, bias, out, taps_d, taps_h, taps_w, groups, n, g,
                          row_first, min(rows_per_chunk, n_rows - row_first), 1, n_threads)
        free(col)
    if out_of_memory[0]:
        raise MemoryError(f"im2col: could not allocate {col_size + acc_size} elements per thread")
