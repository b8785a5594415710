"""The fast path of the ``direct`` algorithm: channel-blocked weights and register tiles.

The weight is packed once (:func:`pack_weights`) into blocks of 64 bytes of output channels (16
float32 or 8 float64), ``[group][block][input channel][kd][kh][kw][channel in block]``. The input
is read in place through its strides, in any layout: a register tile broadcasts one input value
and multiplies it by whole vectors of output channels, for several output pixels of a row at
once (``blocked_simd.h``: 2 blocks x 12 pixels with AVX-512F, 1 block x 6 pixels with
AVX2 + FMA, a small tile on the SSE2 baseline: the rows of :data:`VARIANTS`, the one of the SIMD
level of :mod:`pyconvfast._lib.cpu.levels` used). Padding of every mode and
every stride and dilation go through the tap tables of ``pyconvfast._core.padding``: along D and H
whole input rows are chosen per tap; along W, with zero padding, each row is cut into *full
tiles* (:func:`full_tile_widths`) whose border pixels skip their taps on the padding one by one,
and with the other modes (or ``tiles="split"``) the interior columns need no table and the few
border columns use it in tiles of their own; no padded copy of the input is ever made.

A task is one (sample, group, tile of output channels, block of output rows); tasks are split
among the threads by a static ``prange``. Each output is summed in the order (input channel, kd,
kh, kw) from +0, taps on the zero padding skipped, and the bias added last, whatever the task
split: results are bitwise the same for every thread count (on one CPU: the AVX2 and AVX-512
levels use fused multiply-adds, the baseline does not).
"""
import time

import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from pyconvfast._lib.cpu.levels cimport PCF_N_LEVELS, bind_level, pcf_cpu_level

from pyconvfast._lib.cpu.levels import SIMD_LEVELS, Variant

cdef extern from "direct/blocked_simd.h" nogil:
    ctypedef struct pcf_db_args:
        const void* x
        Py_ssize_t x_sn, x_sc, x_sd, x_sh, x_sw
        const void* wp
        Py_ssize_t c_g, k_g, n_blk
        Py_ssize_t kd_n, kh_n, kw_n
        const Py_ssize_t* taps_d
        const Py_ssize_t* taps_h
        const Py_ssize_t* taps_w
        Py_ssize_t h_out, w_out
        Py_ssize_t stride_w, dilation_w, pad_w
        Py_ssize_t w_lo, w_hi
        int full
        Py_ssize_t c_chunk
        void* out
        Py_ssize_t o_sn, o_sk, o_sd, o_sh, o_sw
        const void* bias
    int pcf_db_task_f32(const pcf_db_args* a, Py_ssize_t n, Py_ssize_t g, Py_ssize_t k_tile,
                        Py_ssize_t row0, Py_ssize_t row1)
    int pcf_db_task_f64(const pcf_db_args* a, Py_ssize_t n, Py_ssize_t g, Py_ssize_t k_tile,
                        Py_ssize_t row0, Py_ssize_t row1)
    float pcf_db_fma_loop_f32(long iters, float seed)
    double pcf_db_fma_loop_f64(long iters, double seed)
    ctypedef struct pcf_db_variant:
        const char* name
        int mb, p, pf
    const pcf_db_variant pcf_db_variants[]
    int pcf_db_tile_blocks()
    int pcf_db_vector_bytes()


bind_level()

VARIANTS = tuple(Variant("direct_blocked", SIMD_LEVELS[i], pcf_db_variants[i].name.decode())
                 for i in range(PCF_N_LEVELS))
"""The variant table (``pcf_db_variants``): one register tile per SIMD level, named
``<level>_<channel blocks>x<pixels>``."""

# Tasks wanted per thread before rows are split into blocks (to balance the threads).
cdef Py_ssize_t TASKS_PER_THREAD = 4


def active_variant():
    """The row of :data:`VARIANTS` this kernel runs now (the SIMD level in use)."""
    return VARIANTS[pcf_cpu_level()]


def channel_block(dtype):
    """Output channels per packed block: 64 bytes of ``dtype`` (16 float32, 8 float64)."""
    return 64 // np.dtype(dtype).itemsize


def pack_weights(weight, Py_ssize_t groups, empty=np.empty):
    """The weight packed for the kernel.

    Parameters
    ----------
    weight : (C_out, C_in // groups, KD, KH, KW) float32 or float64 array, any strides
    groups : int
    empty : callable, default np.empty
        ``empty(shape, dtype)`` allocates the result (the caller's aligned allocator).

    Returns
    -------
    ndarray, shape (groups, n_blocks, C_in // groups, KD * KH * KW, block), C-contiguous
        ``packed[g, b, c, t, j]`` is ``weight[g * k_g + b * block + j, c, t]`` (``k_g`` output
        channels per group, taps in (kd, kh, kw) order), zero past ``k_g``.
    """
    block = channel_block(weight.dtype)
    c_out, c_g = weight.shape[:2]
    k_g = c_out // groups
    n_blocks = -(-k_g // block)
    taps = weight.reshape(groups, k_g, c_g, -1)
    padded = np.zeros((groups, n_blocks * block, c_g, taps.shape[3]), dtype=weight.dtype)
    padded[:, :k_g] = taps
    blocked = padded.reshape(groups, n_blocks, block, c_g, -1).transpose(0, 1, 3, 4, 2)
    packed = empty(blocked.shape, weight.dtype)
    packed[...] = blocked
    return packed


cdef void _interior(Py_ssize_t size_in, Py_ssize_t size_out, Py_ssize_t kernel, Py_ssize_t stride,
                    Py_ssize_t dilation, Py_ssize_t pad, Py_ssize_t* lo,
                    Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the outputs of one axis whose taps o*stride - pad + t*dilation are all inside
    [0, size_in), so that every padding mode reads them unchanged (hi == lo if none)."""
    cdef Py_ssize_t last = size_in - 1 + pad - (kernel - 1) * dilation
    lo[0] = min((pad + stride - 1) // stride, size_out)
    hi[0] = max(min(last // stride + 1 if last >= 0 else 0, size_out), lo[0])


AUTO_FULL_MAX_WIDTH = (0, 10, None)
"""``tiles="auto"``: the widest rows (output columns) that run full tiles, per SIMD level
(baseline, AVX2, AVX-512F; None: every row), the split tiling above. Measured
(``bench/direct_tiles.py`` and 256-channel 3x3 rows of 7 to 224 columns, one thread, AMD EPYC
Zen 4): with AVX-512F full tiles are faster at every width (1.4x at 7 columns, 1.05-1.15x at 14
to 56, about even from 112); with AVX2 (tiles of 6 pixels, masked by a vector AND) only at 7
columns (1.1x), 0.93-1.02x from 14; on the baseline (2-pixel tiles either way) the same."""


def row_tiles(Py_ssize_t w_out):
    """The tiling ``tiles="auto"`` picks for rows of ``w_out`` output columns at the SIMD level
    in use: ``"full"`` or ``"split"`` (:data:`AUTO_FULL_MAX_WIDTH`)."""
    widest = AUTO_FULL_MAX_WIDTH[pcf_cpu_level()]
    return "full" if widest is None or w_out <= widest else "split"


def full_tile_pixels():
    """The widest full tile at the SIMD level in use: a few pixels narrower than the
    variant's split tiles (12, 6, 2), as the masked FMAs of border pixels need registers."""
    return pcf_db_variants[pcf_cpu_level()].pf


def full_tile_widths(Py_ssize_t w_out, Py_ssize_t border=1):
    """The widths of the full tiles of a row of ``w_out`` columns, ``border`` of them at each end
    reading the padding, at the SIMD level in use (as ``blocked_simd.h`` cuts it).

    With ``pf`` (:func:`full_tile_pixels`: 10 with AVX-512F, 5 with AVX2, 2 on the baseline)
    and ``p`` the variant's pixels (12, 6, 2): a row of at least ``2 * pf + p`` columns whose
    border is within ``pf`` of each end takes a tile of ``pf`` at each end and tiles of up to
    ``p`` between (as equal as they can be, the wider ones first); any other row takes
    ``ceil(w_out / pf)`` tiles as equal as they can be. E.g. AVX-512F: 7 -> (7,), 14 -> (7, 7),
    24 -> (8, 8, 8), 28 -> (10, 9, 9), 56 -> (10, 12, 12, 12, 10).
    """
    cdef int pf = pcf_db_variants[pcf_cpu_level()].pf, p = pcf_db_variants[pcf_cpu_level()].p
    if w_out <= 0:
        return ()
    wide = w_out - 2 * pf >= p and border <= pf
    span, width = (w_out - 2 * pf, p) if wide else (w_out, pf)
    n_span = (span + width - 1) // width
    widths = tuple(span // n_span + (i < span % n_span) for i in range(n_span))
    return (pf,) + widths + (pf,) if wide else widths


cdef bint _linear_taps(const Py_ssize_t[:, ::1] taps, Py_ssize_t size_in, Py_ssize_t stride,
                       Py_ssize_t dilation, Py_ssize_t pad) noexcept:
    """Whether tap (o, t) of the table is column o*stride - pad + t*dilation, or -1 where that
    falls outside [0, size_in): zero padding, which a full tile skips per pixel."""
    cdef Py_ssize_t o, t, col
    for o in range(taps.shape[0]):
        for t in range(taps.shape[1]):
            col = o * stride - pad + t * dilation
            if taps[o, t] != (col if 0 <= col < size_in else -1):
                return False
    return True


def conv_direct_blocked(
    const floating[:, :, :, :, :] x,
    const floating[:, :, :, :, ::1] packed,
    Py_ssize_t c_out,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t stride_w,
    Py_ssize_t dilation_w,
    Py_ssize_t pad_w,
    int n_threads,
    tiles="auto",
    Py_ssize_t c_chunk=0,
):
    """Direct convolution of validated 5-D views into ``out``, with weights from
    :func:`pack_weights`.

    Parameters
    ----------
    x : (N, C_in, D, H, W) float32 or float64 array view; strides multiples of the item size
    packed : (groups, n_blocks, C_in // groups, taps, block) array of the same dtype
    c_out : int, output channels
    bias : (C_out,) or (0,) contiguous array; empty means no bias
    out : (N, C_out, D_out, H_out, W_out) writable array view; strides multiples of the item size
    taps_d, taps_h, taps_w : (out_size, kernel_size) int64 tap tables, -1 for a zero tap
    stride_w, dilation_w, pad_w : int, the W axis's geometry (the interior needs no table)
    n_threads : int, OpenMP team size
    tiles : {"auto", "full", "split"}
        ``"full"``: each output row in tiles of equal width (up to the variant's pixels), border
        pixels included, their taps on the zero padding skipped per pixel; ``"split"``: the
        interior columns in tiles of up to the variant's pixels and the border columns in
        separate tiles that read the W tap table; ``"auto"``: by the row width and the SIMD
        level (:func:`row_tiles`). Both give bitwise the
        same result. Padding modes other than zeros (a W tap table that is not
        ``o*stride - pad + t*dilation`` or -1) always split.
    c_chunk : int
        Full tiles: input channels per chunk (a task's tiles add one chunk's products before
        the next chunk, so that its weights stay in L1); -1 picks it from the kernel size,
        0 takes all channels at once. The result does not depend on it.
    """
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t batch = out.shape[0], groups = packed.shape[0]
    cdef Py_ssize_t d_out = out.shape[2], h_out = out.shape[3], w_out = out.shape[4]
    cdef pcf_db_args a
    cdef Py_ssize_t n_rows = d_out * h_out, n_ktiles, n_rowblocks, rows_per_block, n_tasks
    cdef Py_ssize_t task, rest, n, g, k_tile, row0, tile_blocks
    cdef int failed[1]
    cdef int i
    if batch == 0 or c_out == 0 or n_rows * w_out == 0:
        return
    for i in range(5):
        if x.strides[i] % itemsize or out.strides[i] % itemsize:
            raise ValueError("conv_direct_blocked: strides must be multiples of the item size")
    a.x = &x[0, 0, 0, 0, 0]
    a.x_sn, a.x_sc = x.strides[0] // itemsize, x.strides[1] // itemsize
    a.x_sd, a.x_sh, a.x_sw = (x.strides[2] // itemsize, x.strides[3] // itemsize,
                              x.strides[4] // itemsize)
    a.wp = &packed[0, 0, 0, 0, 0]
    a.c_g, a.k_g, a.n_blk = packed.shape[2], c_out // groups, packed.shape[1]
    a.kd_n, a.kh_n, a.kw_n = taps_d.shape[1], taps_h.shape[1], taps_w.shape[1]
    a.taps_d, a.taps_h, a.taps_w = &taps_d[0, 0], &taps_h[0, 0], &taps_w[0, 0]
    a.h_out, a.w_out = h_out, w_out
    a.stride_w, a.dilation_w, a.pad_w = stride_w, dilation_w, pad_w
    _interior(x.shape[4], w_out, a.kw_n, stride_w, dilation_w, pad_w, &a.w_lo, &a.w_hi)
    a.out = &out[0, 0, 0, 0, 0]
    a.o_sn, a.o_sk = out.strides[0] // itemsize, out.strides[1] // itemsize
    a.o_sd, a.o_sh, a.o_sw = (out.strides[2] // itemsize, out.strides[3] // itemsize,
                              out.strides[4] // itemsize)
    a.bias = &bias[0] if bias.shape[0] > 0 else NULL
    if tiles not in ("auto", "full", "split"):
        raise ValueError(f"tiles must be 'auto', 'full' or 'split', got {tiles!r}")
    if tiles == "auto":
        tiles = row_tiles(w_out)
    a.full = tiles == "full" and _linear_taps(taps_w, x.shape[4], stride_w, dilation_w, pad_w)
    a.c_chunk = c_chunk

    tile_blocks = pcf_db_tile_blocks()
    n_ktiles = (a.n_blk + tile_blocks - 1) // tile_blocks
    n_tasks = batch * groups * n_ktiles
    n_rowblocks = 1
    if n_tasks < TASKS_PER_THREAD * n_threads:
        n_rowblocks = min(n_rows, (TASKS_PER_THREAD * n_threads + n_tasks - 1) // n_tasks)
    rows_per_block = (n_rows + n_rowblocks - 1) // n_rowblocks
    n_rowblocks = (n_rows + rows_per_block - 1) // rows_per_block
    n_tasks = n_tasks * n_rowblocks
    failed[0] = 0
    cdef unsigned int fp_saved
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        for task in prange(n_tasks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            # Row blocks innermost: a thread's consecutive tasks share their weights.
            row0 = (task % n_rowblocks) * rows_per_block
            rest = task // n_rowblocks
            k_tile = rest % n_ktiles
            rest = rest // n_ktiles
            g = rest % groups
            n = rest // groups
            if floating is float:
                if pcf_db_task_f32(&a, n, g, k_tile, row0, min(row0 + rows_per_block, n_rows)):
                    failed[0] = 1
            else:
                if pcf_db_task_f64(&a, n, g, k_tile, row0, min(row0 + rows_per_block, n_rows)):
                    failed[0] = 1
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)
    if failed[0]:
        raise MemoryError("direct: could not allocate a task's row list")


# The FMA loop's result goes here, so that the compiler cannot drop the loop.
cdef double _sink = 0


cdef double _fma_loop(bint single, long iters) noexcept nogil:
    if single:
        return pcf_db_fma_loop_f32(iters, 1.0)
    return pcf_db_fma_loop_f64(iters, 1.0)


def fma_peak_gflops(dtype=np.float32, double seconds=0.2):
    """The measured fused multiply-add peak of one core, in GFLOP/s.

    Runs a loop of independent vector FMAs (the current SIMD level's widest vectors, ten
    accumulators) on the calling thread for about ``seconds`` of its CPU time (so that other
    processes sharing the core do not lower it), best of five, and counts each multiply-add as
    two floating-point operations. On the SSE2 baseline the multiply and the add
    are separate instructions.

    Parameters
    ----------
    dtype : {numpy.float32, numpy.float64}
    seconds : float
        Time of each of the five measurements.

    Returns
    -------
    float
        GFLOP/s of one core.

    Examples
    --------
    >>> from pyconvfast._lib.direct.blocked import fma_peak_gflops
    >>> fma_peak_gflops(seconds=0.01) > 1
    True
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    cdef long iters = 1000
    cdef double elapsed = 0, best = 0, start
    cdef int lanes = pcf_db_vector_bytes() // dtype.itemsize
    cdef bint single = dtype == np.float32
    global _sink
    while True:
        start = time.thread_time()
        with nogil:
            _sink += _fma_loop(single, iters)
        elapsed = time.thread_time() - start
        if elapsed >= seconds / 4 or iters > (1 << 40):
            break
        iters *= 4
    iters = max(1000, <long> (iters * seconds / elapsed))
    for _ in range(5):
        start = time.thread_time()
        with nogil:
            _sink += _fma_loop(single, iters)
        elapsed = time.thread_time() - start
        best = max(best, 2.0 * 10 * lanes * iters / elapsed / 1e9)
    return best
