"""Winograd F(m x m, 3 x 3) convolution, m = 2 or 4 (Lavin & Gray, 2015).

The output plane is cut into m x m tiles, each computed from an alpha x alpha input tile
(alpha = m + 2). In the transformed domain a 3x3 convolution of one tile is an elementwise
product, and summing over input channels turns the alpha^2 elementwise products into alpha^2
independent matrix products:

    V[xi][c, t] = (B^T d_{c,t} B)[xi]           input transform (gather + transform)
    M[xi][k, t] = sum_c U[xi][k, c] V[xi][c, t]  alpha^2 GEMMs through BLAS
    y_{k,t}     = A^T M_{k,t} A + bias[k]        output transform, partial tiles clipped

``U[xi] = (G g G^T)[xi]`` is computed once per weight, by ``winograd_weights`` (the algorithm's
``prepare``). The transforms themselves are the straight-line C in ``winograd/transforms*.h``.
Their rounding is relative to the magnitudes of whole tiles: measured on standard-normal float32
data, max |error| / (|x| (*) |w|) is <= 4e-7 (F2) and <= 1e-5 (F4) from 3 input channels per
group on (docs/guide/algorithms.rst).

Tiles of all samples of one group are numbered together, (sample, tile row, tile column), so
the small planes of a batch share GEMMs. A task is (group, block of ``block`` consecutive
tiles); its V and M buffers hold ``alpha^2 * (C_g + K_g) * block`` elements, which the caller
keeps under the workspace bound. Input rows are read through the padding tables (``line_h``,
``line_w``: the input index of every padded position, -1 for a zero), so every padding mode
works without a padded copy.

Parallelism: with ``tasks_in_parallel``, a static ``prange`` runs tasks on threads, each with
private buffers and single-threaded BLAS. Otherwise the tasks run in turn and each phase is a
``prange`` (over input channels, over the alpha^2 GEMMs, over output channels), again with
single-threaded BLAS. Both ways do the same arithmetic on the same GEMM shapes, so the result
is bitwise the same for every thread count (tested). Every parallel region flushes subnormals
to zero in each of its threads and restores their floating-point state after (``fpstate.h``).
The buffers are slices of a work array the caller passes in and keeps between calls
(``pyconvfast._core.workspace``), laid out as :func:`work_layout` says.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from libc.stddef cimport ptrdiff_t
from pyconvfast._lib.common.gemm cimport gemm

from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from pyconvfast._lib.common.openmp_helpers cimport pcf_omp_thread_num


cdef extern from "winograd/transforms.h" nogil:
    ptrdiff_t WG_SCRATCH(int m)
    void wg_input_channel_f32(int m, float* v, ptrdiff_t vs, const float* x_c,
                              ptrdiff_t x_sn, ptrdiff_t x_sh, ptrdiff_t x_sw,
                              const ptrdiff_t* line_h, const ptrdiff_t* line_w,
                              ptrdiff_t col_first, ptrdiff_t col_stop,
                              ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                              ptrdiff_t t_first, ptrdiff_t n_tiles, float* scratch)
    void wg_input_channel_f64(int m, double* v, ptrdiff_t vs, const double* x_c,
                              ptrdiff_t x_sn, ptrdiff_t x_sh, ptrdiff_t x_sw,
                              const ptrdiff_t* line_h, const ptrdiff_t* line_w,
                              ptrdiff_t col_first, ptrdiff_t col_stop,
                              ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                              ptrdiff_t t_first, ptrdiff_t n_tiles, double* scratch)
    void wg_output_channel_f32(int m, float* out_k, ptrdiff_t out_sn, ptrdiff_t out_sh,
                               ptrdiff_t out_sw, ptrdiff_t h_out, ptrdiff_t w_out,
                               const float* mm, ptrdiff_t ms, float bias,
                               ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                               ptrdiff_t t_first, ptrdiff_t n_tiles, float* scratch)
    void wg_output_channel_f64(int m, double* out_k, ptrdiff_t out_sn, ptrdiff_t out_sh,
                               ptrdiff_t out_sw, ptrdiff_t h_out, ptrdiff_t w_out,
                               const double* mm, ptrdiff_t ms, double bias,
                               ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                               ptrdiff_t t_first, ptrdiff_t n_tiles, double* scratch)
    void wg_weight_filters_f32(int m, const float* w, ptrdiff_t sc, ptrdiff_t sr, ptrdiff_t ss,
                               ptrdiff_t n, float* u, ptrdiff_t us)
    void wg_weight_filters_f64(int m, const double* w, ptrdiff_t sc, ptrdiff_t sr, ptrdiff_t ss,
                               ptrdiff_t n, double* u, ptrdiff_t us)


cdef struct Geometry:
    int m
    Py_ssize_t alpha, tiles_w, tiles_per_image, block
    Py_ssize_t c_per_group, k_per_group, c_out
    # distance between the alpha^2 matrices V[xi] (M[xi]): C_g * block (K_g * block) and a
    # cache line more, so that the alpha^2 rows a transform writes do not share cache sets
    Py_ssize_t v_stride, m_stride
    # strides in elements (any sign), and the output plane
    Py_ssize_t x_sn, x_sc, x_sh, x_sw
    Py_ssize_t out_sn, out_sk, out_sh, out_sw, h_out, w_out
    # padding tables: input index of every padded row / column position, -1 for a zero;
    # positions [col_first, col_stop) are the input's columns q - col_first
    const ptrdiff_t* line_h
    const ptrdiff_t* line_w
    Py_ssize_t col_first, col_stop


cdef inline void _input_channel(const Geometry* geo, floating* v, const floating* x_c,
                                Py_ssize_t t_first, Py_ssize_t n_tiles,
                                floating* scratch) noexcept nogil:
    """V[xi][c, t] for one input channel (``v`` points at row c of V[0])."""
    cdef ptrdiff_t vs = geo.v_stride
    if floating is float:
        wg_input_channel_f32(geo.m, v, vs, x_c, geo.x_sn, geo.x_sh, geo.x_sw, geo.line_h,
                             geo.line_w, geo.col_first, geo.col_stop, geo.tiles_w,
                             geo.tiles_per_image, t_first, n_tiles, scratch)
    else:
        wg_input_channel_f64(geo.m, v, vs, x_c, geo.x_sn, geo.x_sh, geo.x_sw, geo.line_h,
                             geo.line_w, geo.col_first, geo.col_stop, geo.tiles_w,
                             geo.tiles_per_image, t_first, n_tiles, scratch)


cdef inline void _output_channel(const Geometry* geo, floating* out_k, const floating* mm,
                                 floating bias, Py_ssize_t t_first, Py_ssize_t n_tiles,
                                 floating* scratch) noexcept nogil:
    """One output channel from M[xi][k, t] (``mm`` points at row k of M[0])."""
    cdef ptrdiff_t ms = geo.m_stride
    if floating is float:
        wg_output_channel_f32(geo.m, out_k, geo.out_sn, geo.out_sh, geo.out_sw, geo.h_out,
                              geo.w_out, mm, ms, bias, geo.tiles_w, geo.tiles_per_image,
                              t_first, n_tiles, scratch)
    else:
        wg_output_channel_f64(geo.m, out_k, geo.out_sn, geo.out_sh, geo.out_sw, geo.h_out,
                              geo.w_out, mm, ms, bias, geo.tiles_w, geo.tiles_per_image,
                              t_first, n_tiles, scratch)


cdef void _run_block(
    const Geometry* geo, floating* v, floating* mm, floating* scratch,
    const floating* x0, const floating* u, const floating[::1] bias, floating* out0,
    Py_ssize_t g, Py_ssize_t t_first, Py_ssize_t n_tiles, int n_threads,
) noexcept nogil:
    """Tiles [t_first, t_first + n_tiles) of group g: transform, multiply, transform back.

    With ``n_threads > 1`` each phase is a prange and ``scratch`` holds one
    ``WG_SCRATCH(m)`` area per thread; else all runs on the calling thread.
    """
    cdef Py_ssize_t block = geo.block, c_g = geo.c_per_group, k_g = geo.k_per_group
    cdef Py_ssize_t a2 = geo.alpha * geo.alpha
    cdef Py_ssize_t scratch_size = WG_SCRATCH(geo.m)
    cdef Py_ssize_t c, xi, k
    cdef floating shift
    cdef unsigned int fp_saved
    if n_threads == 1:
        for c in range(c_g):
            _input_channel(geo, v + c * block, x0 + (g * c_g + c) * geo.x_sc, t_first, n_tiles,
                           scratch)
        for xi in range(a2):
            gemm(c'N', c'N', n_tiles, k_g, c_g, v + xi * geo.v_stride, block,
                 u + (xi * geo.c_out + g * k_g) * c_g, c_g, mm + xi * geo.m_stride, block)
        for k in range(k_g):
            shift = bias[g * k_g + k] if bias.shape[0] > 0 else 0
            _output_channel(geo, out0 + (g * k_g + k) * geo.out_sk, mm + k * block, shift,
                            t_first, n_tiles, scratch)
    else:
        # One parallel region per phase (each ends in a join), flushing in every thread.
        with parallel(num_threads=n_threads):
            fp_saved = pcf_flush_subnormals_begin()
            for c in prange(c_g, schedule="static"):
                _input_channel(geo, v + c * block, x0 + (g * c_g + c) * geo.x_sc, t_first,
                               n_tiles, scratch + pcf_omp_thread_num() * scratch_size)
            pcf_flush_subnormals_end(fp_saved)
        with parallel(num_threads=n_threads):
            fp_saved = pcf_flush_subnormals_begin()
            for xi in prange(a2, schedule="static"):
                gemm(c'N', c'N', n_tiles, k_g, c_g, v + xi * geo.v_stride, block,
                     u + (xi * geo.c_out + g * k_g) * c_g, c_g, mm + xi * geo.m_stride, block)
            pcf_flush_subnormals_end(fp_saved)
        with parallel(num_threads=n_threads):
            fp_saved = pcf_flush_subnormals_begin()
            for k in prange(k_g, schedule="static"):
                shift = bias[g * k_g + k] if bias.shape[0] > 0 else 0
                _output_channel(geo, out0 + (g * k_g + k) * geo.out_sk, mm + k * block, shift,
                                t_first, n_tiles, scratch + pcf_omp_thread_num() * scratch_size)
            pcf_flush_subnormals_end(fp_saved)


def work_layout(int m, Py_ssize_t c_per_group, Py_ssize_t k_per_group, Py_ssize_t block,
                bint tasks_in_parallel, int n_threads, Py_ssize_t itemsize):
    """(slices, elements per slice) of the ``work`` array of :func:`conv_winograd`.

    With ``tasks_in_parallel`` every thread has a slice of V, M and scratch; otherwise one slice
    holds V, M and every thread's scratch.
    """
    cdef Py_ssize_t a2 = (m + 2) * (m + 2)
    cdef Py_ssize_t v_size = a2 * (c_per_group * block + 64 // itemsize)
    cdef Py_ssize_t m_size = a2 * (k_per_group * block + 64 // itemsize)
    if tasks_in_parallel:
        return n_threads, v_size + m_size + WG_SCRATCH(m)
    return 1, v_size + m_size + n_threads * WG_SCRATCH(m)


def conv_winograd(
    int m,
    const floating[:, :, :, :, :] x,
    const floating[:, :, ::1] u,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[::1] line_h,
    const Py_ssize_t[::1] line_w,
    Py_ssize_t pad_left,
    Py_ssize_t groups,
    Py_ssize_t block,
    bint tasks_in_parallel,
    floating[::1] work,
    int n_threads,
):
    """Winograd F(m x m, 3 x 3) convolution of validated views into ``out``.

    Parameters
    ----------
    m : 2 or 4
        Output tile size.
    x : (N, C_in, 1, H, W) array view, any strides
    u : (alpha^2, C_out, C_in // groups) C-contiguous transformed weight
    bias : (C_out,) or (0,) contiguous
    out : (N, C_out, 1, H_out, W_out) writable view, any strides
    line_h, line_w : input index of padded position ``q`` (-1 for a zero), for every ``q`` in
        ``[0, (tiles + 1) * m)``: input tile row ``i`` of tile row ``th`` is
        ``line_h[th*m + i]``
    pad_left : padding before the first column (position q >= pad_left of a row inside the
        input reads column q - pad_left, whatever the padding mode)
    groups : number of channel groups
    block : tiles per task (bounds the buffers)
    tasks_in_parallel : True: prange over tasks; False: tasks in turn, each phase a prange
    work : scratch memory, as :func:`work_layout` says (slices split it evenly)
    n_threads : OpenMP team size (BLAS must be limited to 1 thread by the caller)
    """
    if m != 2 and m != 4:
        raise ValueError(f"winograd: unsupported tile size m={m}")
    cdef Geometry geo
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t batch = out.shape[0]
    geo.m = m
    geo.alpha = m + 2
    geo.c_out = out.shape[1]
    geo.c_per_group = u.shape[2]
    geo.k_per_group = geo.c_out // groups
    geo.h_out = out.shape[3]
    geo.w_out = out.shape[4]
    geo.tiles_w = (geo.w_out + m - 1) // m
    geo.tiles_per_image = ((geo.h_out + m - 1) // m) * geo.tiles_w
    geo.block = block
    geo.v_stride = geo.c_per_group * block + 64 // itemsize
    geo.m_stride = geo.k_per_group * block + 64 // itemsize
    geo.x_sn, geo.x_sc = x.strides[0] // itemsize, x.strides[1] // itemsize
    geo.x_sh, geo.x_sw = x.strides[3] // itemsize, x.strides[4] // itemsize
    geo.out_sn, geo.out_sk = out.strides[0] // itemsize, out.strides[1] // itemsize
    geo.out_sh, geo.out_sw = out.strides[3] // itemsize, out.strides[4] // itemsize
    if (line_h.shape[0] < ((geo.h_out + m - 1) // m + 1) * m
            or line_w.shape[0] < (geo.tiles_w + 1) * m):
        raise ValueError("winograd: padding tables too short for the tiles")
    geo.line_h = <const ptrdiff_t*> &line_h[0]
    geo.line_w = <const ptrdiff_t*> &line_w[0]
    geo.col_first = pad_left
    geo.col_stop = pad_left + x.shape[4]

    cdef Py_ssize_t a2 = geo.alpha * geo.alpha
    cdef Py_ssize_t total_tiles = batch * geo.tiles_per_image
    cdef Py_ssize_t n_blocks = (total_tiles + block - 1) // block
    cdef Py_ssize_t v_size = a2 * geo.v_stride
    cdef Py_ssize_t m_size = a2 * geo.m_stride
    cdef Py_ssize_t scratch_size = WG_SCRATCH(m)
    cdef Py_ssize_t task, g, t_first
    cdef const floating* x0 = &x[0, 0, 0, 0, 0]
    cdef const floating* u0 = &u[0, 0, 0]
    cdef floating* out0 = &out[0, 0, 0, 0, 0]
    cdef floating* buffer
    cdef unsigned int fp_saved
    n_slices, slice_elements = work_layout(m, geo.c_per_group, geo.k_per_group, block,
                                           tasks_in_parallel, n_threads, itemsize)
    cdef Py_ssize_t work_stride = work.shape[0] // n_slices
    if work_stride < slice_elements:
        raise ValueError(f"winograd: work holds {work.shape[0]} elements, needs "
                         f"{n_slices} slices of {slice_elements}")
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    if tasks_in_parallel:
        with nogil, parallel(num_threads=n_threads):
            fp_saved = pcf_flush_subnormals_begin()
            buffer = &work[0] + pcf_omp_thread_num() * work_stride
            for task in prange(groups * n_blocks, schedule="static"):
                if pcf_interrupted(&stop):
                    continue
                g = task // n_blocks
                t_first = (task % n_blocks) * block
                _run_block(&geo, buffer, buffer + v_size, buffer + v_size + m_size, x0, u0, bias,
                           out0, g, t_first, min(block, total_tiles - t_first), 1)
            pcf_flush_subnormals_end(fp_saved)
    else:
        buffer = &work[0]
        with nogil:
            fp_saved = pcf_flush_subnormals_begin()
            for task in range(groups * n_blocks):
                if pcf_interrupted(&stop):
                    break
                g = task // n_blocks
                t_first = (task % n_blocks) * block
                _run_block(&geo, buffer, buffer + v_size, buffer + v_size + m_size, x0, u0, bias,
                           out0, g, t_first, min(block, total_tiles - t_first), n_threads)
            pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)


def winograd_weights(int m, const floating[:, :, :, :] w, floating[:, :, ::1] u, int n_threads):
    """U[xi, k, c] = (G w[k, c] G^T)[xi], in a wider type, rounded once.

    Parameters
    ----------
    m : 2 or 4
    w : (C_out, C_in // groups, 3, 3) weight view, any strides
    u : (alpha^2, C_out, C_in // groups) C-contiguous output
    n_threads : OpenMP team size
    """
    if m != 2 and m != 4:
        raise ValueError(f"winograd: unsupported tile size m={m}")
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t c_out = w.shape[0], c_per_group = w.shape[1]
    cdef Py_ssize_t sk = w.strides[0] // itemsize, sc = w.strides[1] // itemsize
    cdef Py_ssize_t sr = w.strides[2] // itemsize, ss = w.strides[3] // itemsize
    cdef Py_ssize_t us = c_out * c_per_group
    cdef const floating* w0 = &w[0, 0, 0, 0]
    cdef floating* u0 = &u[0, 0, 0]
    cdef Py_ssize_t k
    for k in prange(c_out, nogil=True, num_threads=n_threads, schedule="static"):
        if floating is float:
            wg_weight_filters_f32(m, w0 + k * sk, sc, sr, ss, c_per_group,
                                  u0 + k * c_per_group, us)
        else:
            wg_weight_filters_f64(m, w0 + k * sk, sc, sr, ss, c_per_group,
                                  u0 + k * c_per_group, us)
