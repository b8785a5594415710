"""Winograd F(m x m, r x r) convolution: F(2x2, 3x3), F(4x4, 3x3), F(2x2, 5x5) (Lavin & Gray,
2015); dilated layers by phases.

The output plane is cut into m x m tiles, each computed from an alpha x alpha input tile
(alpha = m + r - 1). In the transformed domain an r x r convolution of one tile is an elementwise
product, and summing over input channels turns the alpha^2 elementwise products into alpha^2
independent matrix products:

    V[xi][c, t] = (B^T d_{c,t} B)[xi]           input transform (gather + transform)
    M[xi][k, t] = sum_c U[xi][k, c] V[xi][c, t]  alpha^2 GEMMs through BLAS
    y_{k,t}     = A^T M_{k,t} A + bias[k]        output transform, partial tiles clipped

``U[xi] = (G g G^T)[xi]`` is computed once per weight, by ``winograd_weights`` (the algorithm's
``prepare``). The transforms themselves are the straight-line C in ``winograd/transforms*.h``.
Their rounding is relative to the magnitudes of whole tiles: measured on standard-normal float32
data, max |error| / (|x| (*) |w|) is <= 4e-7 (F(2x2, 3x3)), <= 1e-5 (F(4x4, 3x3)) and <= 3e-6
(F(2x2, 5x5)) from 3 input channels per group on (docs/guide/algorithms.rst).

A layer dilated by (d_h, d_w) is d_h * d_w dense convolutions, one per phase: see
:func:`conv_winograd`. Tiles of all samples (and phases) of one group are numbered together,
(phase, sample, tile row, tile column), so the small planes of a batch share GEMMs. A task is
(group, block of ``block`` consecutive tiles); its V and M buffers hold
``alpha^2 * (C_g + K_g) * block`` elements, which the caller keeps under the workspace bound.
Input rows are read through the padding tables (``line_h``, ``line_w`` of each phase: the
input index of every padded position, -1 for a zero), so every padding mode works without a
padded copy.

Parallelism: with ``tasks_in_parallel``, a static ``prange`` runs tasks on threads, each with
private buffers and single-threaded BLAS. Otherwise the tasks run in turn and each step is a
``prange`` (over input channels, over the alpha^2 GEMMs, over output channels), again with
single-threaded BLAS. Both ways do the same arithmetic on the same GEMM shapes, so the result
is bitwise the same for every thread count (tested). Every parallel region flushes subnormals
to zero in each of its threads and restores their floating-point state after (``fpstate.h``).
The buffers are slices of a work array the caller passes in and keeps between calls
(``pyconvfast._core.workspace``), laid out as :func:`work_layout` says.
"""

from cython cimport floating
import numpy as np
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from libc.stddef cimport ptrdiff_t
from pyconvfast._lib.common.gemm cimport gemm

from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from pyconvfast._lib.common.openmp_helpers cimport pcf_omp_thread_num


cdef extern from "winograd/transforms.h" nogil:
    ptrdiff_t WG_EXTRA(int m, int r)
    ptrdiff_t WG_SCRATCH(int m, int r)
    void wg_input_channel_f32(int m, int r, float* v, ptrdiff_t vs, const float* x_c,
                              ptrdiff_t x_sn, ptrdiff_t x_sh, ptrdiff_t x_sw,
                              const ptrdiff_t* line_h, const ptrdiff_t* line_w,
                              ptrdiff_t col_first, ptrdiff_t col_stop, ptrdiff_t col_step,
                              ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                              ptrdiff_t t_first, ptrdiff_t n_tiles, float* scratch)
    void wg_input_channel_f64(int m, int r, double* v, ptrdiff_t vs, const double* x_c,
                              ptrdiff_t x_sn, ptrdiff_t x_sh, ptrdiff_t x_sw,
                              const ptrdiff_t* line_h, const ptrdiff_t* line_w,
                              ptrdiff_t col_first, ptrdiff_t col_stop, ptrdiff_t col_step,
                              ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                              ptrdiff_t t_first, ptrdiff_t n_tiles, double* scratch)
    void wg_output_channel_f32(int m, int r, float* out_k, ptrdiff_t out_sn, ptrdiff_t out_sh,
                               ptrdiff_t out_sw, ptrdiff_t h_out, ptrdiff_t w_out,
                               const float* mm, ptrdiff_t ms, float bias,
                               ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                               ptrdiff_t t_first, ptrdiff_t n_tiles, float* scratch)
    void wg_output_channel_f64(int m, int r, double* out_k, ptrdiff_t out_sn, ptrdiff_t out_sh,
                               ptrdiff_t out_sw, ptrdiff_t h_out, ptrdiff_t w_out,
                               const double* mm, ptrdiff_t ms, double bias,
                               ptrdiff_t tiles_w, ptrdiff_t tiles_per_image,
                               ptrdiff_t t_first, ptrdiff_t n_tiles, double* scratch)
    void wg_weight_filters_f32(int m, int r, const float* w, ptrdiff_t sc, ptrdiff_t sr,
                               ptrdiff_t ss, ptrdiff_t n, float* u, ptrdiff_t us)
    void wg_weight_filters_f64(int m, int r, const double* w, ptrdiff_t sc, ptrdiff_t sr,
                               ptrdiff_t ss, ptrdiff_t n, double* u, ptrdiff_t us)


cdef inline bint _valid_tile(int m, int r) noexcept nogil:
    return (r == 3 and (m == 2 or m == 4)) or (r == 5 and m == 2)


cdef struct Geometry:
    int m, r
    Py_ssize_t alpha, block
    Py_ssize_t c_per_group, k_per_group, c_out
    # distance between the alpha^2 matrices V[xi] (M[xi]): C_g * block (K_g * block) and a
    # cache line more, so that the alpha^2 rows a transform writes do not share cache sets
    Py_ssize_t v_stride, m_stride
    # strides in elements (any sign); the output strides are those of one phase (the view
    # out[..., p::d_h, q::d_w]), and col_step is the dilation along W (input columns between
    # consecutive positions of a phase's row)
    Py_ssize_t x_sn, x_sc, x_sh, x_sw, col_step
    Py_ssize_t out_sn, out_sk, out_sh, out_sw


cdef struct Phase:
    # One phase (p, q) of the output: the outputs (p + d_h * i, q + d_w * j), a dense
    # convolution of the input positions (p - pad_top + d_h * i', q - pad_left + d_w * j').
    # Without dilation, the single phase is the whole plane.
    Py_ssize_t out_offset, h_out, w_out, tiles_w, tiles_per_image
    # its tiles (all samples) are [tile_first, tile_first + n_tiles) of the numbering of all
    # phases' tiles one after the other, which the blocks cut
    Py_ssize_t tile_first, n_tiles
    # padding tables: input index of every padded row / column position of the phase, -1 for
    # a zero; positions [col_first, col_stop) lie inside the input
    const ptrdiff_t* line_h
    const ptrdiff_t* line_w
    Py_ssize_t col_first, col_stop


cdef inline void _input_channel(const Geometry* geo, const Phase* ph, floating* v,
                                const floating* x_c, Py_ssize_t t_first, Py_ssize_t n_tiles,
                                floating* scratch) noexcept nogil:
    """V[xi][c, t] for one input channel (``v`` points at row c of V[0])."""
    cdef ptrdiff_t vs = geo.v_stride
    if floating is float:
        wg_input_channel_f32(geo.m, geo.r, v, vs, x_c, geo.x_sn, geo.x_sh, geo.x_sw, ph.line_h,
                             ph.line_w, ph.col_first, ph.col_stop, geo.col_step, ph.tiles_w,
                             ph.tiles_per_image, t_first, n_tiles, scratch)
    else:
        wg_input_channel_f64(geo.m, geo.r, v, vs, x_c, geo.x_sn, geo.x_sh, geo.x_sw, ph.line_h,
                             ph.line_w, ph.col_first, ph.col_stop, geo.col_step, ph.tiles_w,
                             ph.tiles_per_image, t_first, n_tiles, scratch)


cdef inline void _output_channel(const Geometry* geo, const Phase* ph, floating* out_k,
                                 const floating* mm, floating bias, Py_ssize_t t_first,
                                 Py_ssize_t n_tiles, floating* scratch) noexcept nogil:
    """One output channel of a phase from M[xi][k, t] (``mm`` points at row k of M[0])."""
    cdef ptrdiff_t ms = geo.m_stride
    if floating is float:
        wg_output_channel_f32(geo.m, geo.r, out_k, geo.out_sn, geo.out_sh, geo.out_sw,
                              ph.h_out, ph.w_out, mm, ms, bias, ph.tiles_w,
                              ph.tiles_per_image, t_first, n_tiles, scratch)
    else:
        wg_output_channel_f64(geo.m, geo.r, out_k, geo.out_sn, geo.out_sh, geo.out_sw,
                              ph.h_out, ph.w_out, mm, ms, bias, ph.tiles_w,
                              ph.tiles_per_image, t_first, n_tiles, scratch)


cdef void _input_block(const Geometry* geo, const Phase* phases, floating* v,
                       const floating* x_c, Py_ssize_t t_first, Py_ssize_t n_tiles,
                       floating* scratch) noexcept nogil:
    """V[xi][c, t] for one input channel and the tiles [t_first, t_first + n_tiles) of the
    numbering of all phases: each phase's share, from its own tables."""
    cdef Py_ssize_t i = 0, done = 0, first, count
    while phases[i].tile_first + phases[i].n_tiles <= t_first:
        i += 1
    while done < n_tiles:
        first = t_first + done - phases[i].tile_first
        count = min(n_tiles - done, phases[i].n_tiles - first)
        _input_channel(geo, &phases[i], v + done, x_c, first, count, scratch)
        done += count
        i += 1


cdef void _output_block(const Geometry* geo, const Phase* phases, floating* out_k,
                        const floating* mm, floating bias, Py_ssize_t t_first,
                        Py_ssize_t n_tiles, floating* scratch) noexcept nogil:
    """One output channel of the tiles [t_first, t_first + n_tiles) of all phases, each
    into its strided view of ``out_k``."""
    cdef Py_ssize_t i = 0, done = 0, first, count
    while phases[i].tile_first + phases[i].n_tiles <= t_first:
        i += 1
    while done < n_tiles:
        first = t_first + done - phases[i].tile_first
        count = min(n_tiles - done, phases[i].n_tiles - first)
        _output_channel(geo, &phases[i], out_k + phases[i].out_offset, mm + done, bias, first,
                        count, scratch)
        done += count
        i += 1


cdef void _run_block(
    const Geometry* geo, const Phase* phases, floating* v, floating* mm, floating* scratch,
    const floating* x0, const floating* u, const floating[::1] bias, floating* out0,
    Py_ssize_t g, Py_ssize_t t_first, Py_ssize_t n_tiles, int n_threads,
) noexcept nogil:
    """Tiles [t_first, t_first + n_tiles) of group g, numbered over all phases (a block may
    span several: the GEMMs stay as wide as a dense layer's): transform, multiply, transform
    back.

    With ``n_threads > 1`` each step is a prange and ``scratch`` holds one
    ``WG_SCRATCH(m, r)`` area per thread; else all runs on the calling thread.
    """
    cdef Py_ssize_t block = geo.block, c_g = geo.c_per_group, k_g = geo.k_per_group
    cdef Py_ssize_t a2 = geo.alpha * geo.alpha
    cdef Py_ssize_t scratch_size = WG_SCRATCH(geo.m, geo.r)
    cdef Py_ssize_t c, xi, k
    cdef floating shift
    cdef unsigned int fp_saved
    if n_threads == 1:
        for c in range(c_g):
            _input_block(geo, phases, v + c * block, x0 + (g * c_g + c) * geo.x_sc, t_first,
                         n_tiles, scratch)
        for xi in range(a2):
            gemm(c'N', c'N', n_tiles, k_g, c_g, v + xi * geo.v_stride, block,
                 u + (xi * geo.c_out + g * k_g) * c_g, c_g, mm + xi * geo.m_stride, block)
        for k in range(k_g):
            shift = bias[g * k_g + k] if bias.shape[0] > 0 else 0
            _output_block(geo, phases, out0 + (g * k_g + k) * geo.out_sk, mm + k * block, shift,
                          t_first, n_tiles, scratch)
    else:
        # One parallel region per step (each ends in a join), flushing in every thread.
        with parallel(num_threads=n_threads):
            fp_saved = pcf_flush_subnormals_begin()
            for c in prange(c_g, schedule="static"):
                _input_block(geo, phases, v + c * block, x0 + (g * c_g + c) * geo.x_sc, t_first,
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
                _output_block(geo, phases, out0 + (g * k_g + k) * geo.out_sk, mm + k * block,
                              shift, t_first, n_tiles,
                              scratch + pcf_omp_thread_num() * scratch_size)
            pcf_flush_subnormals_end(fp_saved)


def work_layout(int m, int r, Py_ssize_t c_per_group, Py_ssize_t k_per_group, Py_ssize_t block,
                bint tasks_in_parallel, int n_threads, Py_ssize_t itemsize):
    """(slices, elements per slice) of the ``work`` array of :func:`conv_winograd`.

    With ``tasks_in_parallel`` every thread has a slice of V, M and scratch; otherwise one slice
    holds V, M and every thread's scratch.
    """
    cdef Py_ssize_t a2 = (m + r - 1) * (m + r - 1)
    cdef Py_ssize_t v_size = a2 * (c_per_group * block + 64 // itemsize)
    cdef Py_ssize_t m_size = a2 * (k_per_group * block + 64 // itemsize)
    if tasks_in_parallel:
        return n_threads, v_size + m_size + WG_SCRATCH(m, r)
    return 1, v_size + m_size + n_threads * WG_SCRATCH(m, r)


def conv_winograd(
    int m,
    int r,
    const floating[:, :, :, :, :] x,
    const floating[:, :, ::1] u,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] lines_h,
    const Py_ssize_t[:, ::1] lines_w,
    const Py_ssize_t[:, ::1] cols,
    Py_ssize_t groups,
    Py_ssize_t block,
    bint tasks_in_parallel,
    floating[::1] work,
    int n_threads,
):
    """Winograd F(m x m, r x r) convolution of validated views into ``out``, by phases.

    A convolution dilated by (d_h, d_w) is d_h * d_w dense convolutions, one per phase (p, q):
    the outputs ``out[..., p::d_h, q::d_w]`` from the input positions ``p - pad_top + d_h * i``
    (rows) and ``q - pad_left + d_w * j`` (columns). Each phase reads the input in place
    through its own padding tables and writes its strided view of ``out``. The tiles of all
    phases are numbered one phase after the other (each phase's by sample, tile row, tile
    column), and the tasks (group, block of ``block`` consecutive tiles) cut that numbering,
    so a block may span phases and all phases run in one parallel region. Without dilation
    there is one phase.

    Parameters
    ----------
    m, r : (2, 3), (4, 3) or (2, 5)
        Output tile size and kernel size.
    x : (N, C_in, 1, H, W) array view, any strides
    u : (alpha^2, C_out, C_in // groups) C-contiguous transformed weight, alpha = m + r - 1
    bias : (C_out,) or (0,) contiguous
    out : (N, C_out, 1, H_out, W_out) writable view, any strides
    lines_h, lines_w : (d_h, L_h) and (d_w, L_w): row p (q) is the input index of every padded
        position of phase p (q), -1 for a zero, for every position in
        ``[0, (tiles + WG_EXTRA(m, r)) * m)`` of phase 0 (the largest): input tile row ``i`` of
        tile row ``th`` of phase p is ``lines_h[p, th*m + i]``
    cols : (d_w, 2) ``[col_first, col_stop)``: the positions of phase q inside the input
        (consecutive positions read columns d_w apart there, whatever the padding mode)
    groups : number of channel groups
    block : tiles per task (bounds the buffers)
    tasks_in_parallel : True: prange over tasks; False: tasks in turn, each step a prange
    work : scratch memory, as :func:`work_layout` says (slices split it evenly)
    n_threads : OpenMP team size (BLAS must be limited to 1 thread by the caller)
    """
    if not _valid_tile(m, r):
        raise ValueError(f"winograd: unsupported tile F({m}x{m}, {r}x{r})")
    cdef Py_ssize_t d_h = lines_h.shape[0], d_w = lines_w.shape[0]
    if d_h < 1 or d_w < 1 or cols.shape[0] != d_w or cols.shape[1] != 2:
        raise ValueError("winograd: padding tables and column ranges do not match")
    cdef Geometry geo
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t batch = out.shape[0]
    cdef Py_ssize_t extra = WG_EXTRA(m, r)
    geo.m = m
    geo.r = r
    geo.alpha = m + r - 1
    geo.c_out = out.shape[1]
    geo.c_per_group = u.shape[2]
    geo.k_per_group = geo.c_out // groups
    geo.block = block
    geo.v_stride = geo.c_per_group * block + 64 // itemsize
    geo.m_stride = geo.k_per_group * block + 64 // itemsize
    geo.x_sn, geo.x_sc = x.strides[0] // itemsize, x.strides[1] // itemsize
    geo.x_sh, geo.x_sw = x.strides[3] // itemsize, x.strides[4] // itemsize
    geo.col_step = d_w
    geo.out_sn, geo.out_sk = out.strides[0] // itemsize, out.strides[1] // itemsize
    geo.out_sh, geo.out_sw = d_h * out.strides[3] // itemsize, d_w * out.strides[4] // itemsize
    cdef Py_ssize_t h_out = out.shape[3], w_out = out.shape[4]
    # phase 0 holds the most outputs along each axis
    if (lines_h.shape[1] < ((h_out + d_h - 1) // d_h + m - 1) // m * m + extra * m
            or lines_w.shape[1] < ((w_out + d_w - 1) // d_w + m - 1) // m * m + extra * m):
        raise ValueError("winograd: padding tables too short for the tiles")

    cdef Py_ssize_t n_phases = d_h * d_w
    # (numpy's allocation is aligned for any scalar, and freed with the function's frame)
    cdef unsigned char[::1] phase_bytes = np.empty(n_phases * sizeof(Phase), dtype=np.uint8)
    cdef Phase* phases = <Phase*> &phase_bytes[0]
    cdef Phase* ph
    cdef Py_ssize_t i, p, q, total_tiles = 0
    for i in range(n_phases):
        p, q = i // d_w, i % d_w
        ph = &phases[i]
        ph.out_offset = p * (out.strides[3] // itemsize) + q * (out.strides[4] // itemsize)
        ph.h_out = (h_out - p + d_h - 1) // d_h if h_out > p else 0
        ph.w_out = (w_out - q + d_w - 1) // d_w if w_out > q else 0
        ph.tiles_w = (ph.w_out + m - 1) // m
        ph.tiles_per_image = ((ph.h_out + m - 1) // m) * ph.tiles_w
        ph.n_tiles = batch * ph.tiles_per_image
        ph.tile_first = total_tiles
        total_tiles += ph.n_tiles
        ph.line_h = <const ptrdiff_t*> &lines_h[p, 0]
        ph.line_w = <const ptrdiff_t*> &lines_w[q, 0]
        ph.col_first = cols[q, 0]
        ph.col_stop = cols[q, 1]

    cdef Py_ssize_t a2 = geo.alpha * geo.alpha
    cdef Py_ssize_t v_size = a2 * geo.v_stride
    cdef Py_ssize_t m_size = a2 * geo.m_stride
    cdef Py_ssize_t n_blocks = (total_tiles + block - 1) // block
    cdef Py_ssize_t task, g, t_first
    cdef const floating* x0 = &x[0, 0, 0, 0, 0]
    cdef const floating* u0 = &u[0, 0, 0]
    cdef floating* out0 = &out[0, 0, 0, 0, 0]
    cdef floating* buffer
    cdef unsigned int fp_saved
    n_slices, slice_elements = work_layout(m, r, geo.c_per_group, geo.k_per_group, block,
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
                _run_block(&geo, phases, buffer, buffer + v_size, buffer + v_size + m_size, x0,
                           u0, bias, out0, g, t_first, min(block, total_tiles - t_first), 1)
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
                _run_block(&geo, phases, buffer, buffer + v_size, buffer + v_size + m_size, x0,
                           u0, bias, out0, g, t_first, min(block, total_tiles - t_first),
                           n_threads)
            pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)


def winograd_weights(int m, const floating[:, :, :, :] w, floating[:, :, ::1] u, int n_threads):
    """U[xi, k, c] = (G w[k, c] G^T)[xi], in a wider type, rounded once.

    Parameters
    ----------
    m : 2 or 4 (2 only for a 5x5 kernel)
    w : (C_out, C_in // groups, r, r) weight view, any strides, r = 3 or 5
    u : (alpha^2, C_out, C_in // groups) C-contiguous output, alpha = m + r - 1
    n_threads : OpenMP team size
    """
    cdef int r = w.shape[2]
    if w.shape[3] != r or not _valid_tile(m, r):
        raise ValueError(f"winograd: unsupported tile F({m}x{m}, {r}x{w.shape[3]})")
    if u.shape[0] != (m + r - 1) * (m + r - 1):
        raise ValueError(f"winograd: u holds {u.shape[0]} matrices, needs {(m + r - 1) ** 2}")
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
            wg_weight_filters_f32(m, r, w0 + k * sk, sc, sr, ss, c_per_group,
                                  u0 + k * c_per_group, us)
        else:
            wg_weight_filters_f64(m, r, w0 + k * sk, sc, sr, ss, c_per_group,
                                  u0 + k * c_per_group, us)
