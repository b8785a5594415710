"""Winograd F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5) (:mod:`pyconvfast._lib.winograd.kernel`):
2-D stride-1 layers, dilated ones included, with 2.25x, 4x and 2.8x fewer multiplies than a
direct convolution, at a larger rounding error (not ``accurate``).
"""

import functools

import numpy as np

from pyconvfast._lib.direct.generic import conv_direct
from pyconvfast._lib.winograd.kernel import conv_winograd, winograd_weights
from pyconvfast._lib.winograd.kernel import work_layout as winograd_work_layout
from pyconvfast._core.kernel_args import bias_or_empty, tap_tables
from pyconvfast._core.padding import tap_table
from pyconvfast._core.threads import blas_threads
from pyconvfast._core.workspace import aligned_empty, workspace_bytes
from pyconvfast._core.workspace import pool as workspace_pool
from pyconvfast._algorithms.registry import Algorithm, register

# --- Winograd F(m x m, r x r) ---------------------------------------------------------------
# 2-D, r x r kernel, stride 1, any dilation; any padding and padding mode, groups, flip, both
# layouts and dtypes. Kernel: _lib/winograd/kernel.pyx. A layer dilated by (d_h, d_w) runs as
# d_h * d_w dense convolutions, one per phase (p, q): the outputs out[..., p::d_h, q::d_w] from
# the input samples (p - pad_top + d_h * i, q - pad_left + d_w * j) (TensorFlow's
# space-to-batch idea), each read in place through its own padding tables and written into its
# strided view of out; the tiles of all phases are numbered together and cut into blocks (a
# block may span phases, keeping the GEMMs wide), all in one parallel region. Every output is
# then computed by the same tile arithmetic as a dense layer's, so the error is the same.
# Measured error, max |got - ref| / (|x| (*) |w| + |b|) on standard-normal float32 data:
# F(2x2, 3x3) <= 4e-7 from 3 input channels per group (1.5e-7 from 13 to 512), 1.8e-6 with a
# single one; F(4x4, 3x3) <= 1e-5 from 3 (2e-6 from 13 to 512), 2.9e-5 with a single one;
# F(2x2, 5x5) <= 3e-6 from 3 (2e-6 from 13 to 256), 9.1e-6 with a single one (1.0e-5 at
# dilation 2) (bench/winograd_error.py; docs/guide/algorithms.rst). float64: about 2**-29
# times these. Results are bitwise the same for every n_threads (for a given block size: the
# default, or a param_space entry, under the workspace bound). F(2x2, 3x3) is exact on small
# integers; the others are not (their G holds 1/6 and 1/24).

# Default tiles per task. Measured (bench/winograd.py, 2 threads): 32 to 128 tiles are within a
# few percent of each other on the ResNet layers; fewer make the GEMMs too thin to amortize
# BLAS's packing of U, more spill V and M out of L2.
_WINOGRAD_BLOCK = 64


def _winograd_supports(r, problem):
    if problem.n_spatial != 2:
        return f"2-D only, got a {problem.n_spatial}-D convolution"
    if problem.kernel != (r, r):
        return f"needs a {r}x{r} kernel, got {problem.kernel[0]}x{problem.kernel[1]}"
    if problem.stride != (1, 1):
        return f"needs stride 1, got stride={problem.stride}"
    return None


def _winograd_prepare(m, problem, weight):
    """(U, weight): U[xi, k, c] = (G g_kc G^T)[xi], (alpha^2, C_out, C_in // groups)
    C-contiguous, computed in a wider type and rounded once; the weight itself is kept for
    the outputs computed directly."""
    alpha = m + problem.kernel[0] - 1
    u = aligned_empty((alpha * alpha,) + weight.shape[:2], weight.dtype)
    winograd_weights(m, weight[:, :, 0], u, 1)
    return u, np.ascontiguousarray(weight)


def _thin_windows(taps):
    """(start, stop) ranges of outputs, along one axis, whose window holds at most one input
    sample, the rest being zero padding: the first and last outputs when padding >= 2.

    Winograd's error is bounded by the magnitude of the whole input tile, not of each output's
    own window. Where that window is (nearly) all zero padding, the output is (nearly) zero
    while its tile may hold real data, so its error would be large relative to the output's own
    scale; an output whose window is all padding would not even come out as exactly the bias.
    These few outputs are computed directly instead. The taps include the dilation, and the
    count of taps inside the input rises then falls along the axis, so these outputs are a head
    and a tail of it for a dilated layer too (the phases being cut from the same outputs).
    """
    thin = (taps >= 0).sum(axis=1) <= 1
    if thin.all():
        return [(0, len(thin))]
    head, tail = int(np.argmin(thin)), int(np.argmin(thin[::-1]))
    return [(a, b) for a, b in ((0, head), (len(thin) - tail, len(thin))) if b > a]


def _phase_sizes(size, dilation):
    """Outputs of each phase along one axis: phase p holds outputs p, p + d, ... < size."""
    return [len(range(p, size, dilation)) for p in range(dilation)]


def _phase_tiles(problem, m):
    """Tiles of every phase (all samples together), in the kernel's order of phases."""
    (d_h, d_w), (h_out, w_out) = problem.dilation, problem.out_size
    return [problem.batch * -(-h // m) * -(-w // m) for h in _phase_sizes(h_out, d_h)
            for w in _phase_sizes(w_out, d_w)]


@functools.lru_cache(maxsize=512)
def _winograd_lines(problem, m):
    """Per axis, the input index of every padded position a tile of each phase can read (-1 for
    a zero), as a (dilation, positions) array; and, for the columns, the (dilation, 2) range
    ``[first, stop)`` of positions of each phase that lie inside the input.

    Position ``t`` of phase ``p`` is the padded position ``p + d*t``, input sample
    ``p - pad_before + d*t`` before the padding mode maps it. Tile row ``th`` reads positions
    ``th*m .. th*m + alpha - 1``; the kernel reads whole groups of m positions, up to
    ``(tiles + extra) * m`` with ``extra = ceil((r - 1) / m)``. Positions past the last
    output's window feed only outputs that are cut off, so any valid index does for them.
    """
    extra = -(-(problem.kernel[0] - 1) // m)
    lines = []
    for size, out, pad, d in zip(problem.in_size, problem.out_size, problem.pad_before,
                                 problem.dilation):
        positions = (-(-_phase_sizes(out, d)[0] // m) + extra) * m  # phase 0 is the largest
        line = np.stack([tap_table(size, positions, 1, d, 1, pad - p, problem.padding_mode)[:, 0]
                         for p in range(d)])
        line.flags.writeable = False  # built once per problem, shared by every call
        lines.append(line)
    size, pad, d = problem.in_size[1], problem.pad_before[1], problem.dilation[1]
    cols = np.array([(-((q - pad) // d), -((q - pad - size) // d)) for q in range(d)],
                    dtype=np.intp)
    cols.flags.writeable = False
    return lines[0], lines[1], cols


def _winograd_schedule(problem, m, n_threads, itemsize, block=None):
    """(tiles per task, tasks_in_parallel) for a problem on ``n_threads`` threads.

    The block size (``block`` or the default, cut to blocks of even size) depends on the
    problem and the workspace bound only, never on the thread count, so every thread count runs
    the same GEMMs (and gets the same bits). Tasks run one per thread when there are enough of
    them for every thread's buffers to fit the bound and to keep the threads evenly busy;
    otherwise each task's steps are split among threads.
    """
    alpha2 = (m + problem.kernel[0] - 1) ** 2
    n_tiles = sum(_phase_tiles(problem, m))
    c_g, k_g = problem.c_in // problem.groups, problem.c_out // problem.groups
    tile_bytes = alpha2 * (c_g + k_g) * itemsize
    block = max(1, min(block or _WINOGRAD_BLOCK, n_tiles, workspace_bytes() // tile_bytes))
    # Blocks of even size: 196 tiles in blocks of 64 left a last block of 4, and 2 threads
    # one 128 tiles, the other 68.
    n_blocks = -(-n_tiles // block)
    block = -(-n_tiles // n_blocks)
    n_tasks = problem.groups * n_blocks
    tasks_in_parallel = (
        n_threads > 1
        and n_threads * block * tile_bytes <= workspace_bytes()
        and (n_tasks >= 4 * n_threads or n_tasks % n_threads == 0)
    )
    return block, tasks_in_parallel


def _winograd_param_space(problem, m):
    """Tiles per task to try: the default, then smaller and larger blocks."""
    n_tiles = sum(_phase_tiles(problem, m))
    return [{}] + [{"block": block} for block in (16, 32, 128, 256) if block < n_tiles]


def _run_winograd(m, problem, x, prepared, bias, out, n_threads, params):
    u, weight = prepared
    r = problem.kernel[0]
    bias = bias_or_empty(bias, x.dtype)
    block, tasks_in_parallel = _winograd_schedule(problem, m, n_threads, x.itemsize, **params)
    lines_h, lines_w, cols = _winograd_lines(problem, m)
    # Every GEMM is small and runs inside an OpenMP thread: BLAS's own threads would only
    # oversubscribe the cores.
    buffer, work = workspace_pool.borrow(
        *winograd_work_layout(m, r, problem.c_in // problem.groups,
                              problem.c_out // problem.groups, block, tasks_in_parallel,
                              n_threads, x.itemsize), x.dtype)
    try:
        with blas_threads.limit(1):
            conv_winograd(m, r, x, u, bias, out, lines_h, lines_w, cols, problem.groups, block,
                          tasks_in_parallel, work, n_threads)
    finally:
        workspace_pool.give_back(buffer)
    if problem.padding_mode == "zeros":
        taps_d, taps_h, taps_w = tap_tables(problem)
        for start, stop in _thin_windows(taps_h):
            conv_direct(x, weight, bias, out[:, :, :, start:stop], taps_d,
                        taps_h[start:stop], taps_w, n_threads)
        for start, stop in _thin_windows(taps_w):
            conv_direct(x, weight, bias, out[:, :, :, :, start:stop], taps_d, taps_h,
                        taps_w[start:stop], n_threads)


for _m, _r, _summary in (
    (2, 3, "Winograd F(2x2, 3x3): 2-D 3x3 stride-1 layers (dilated ones by phases), 2.25x "
           "fewer multiplies than direct; float32 error <= 4e-7 x (|x| (*) |w|) from 3 input "
           "channels (1.8e-6 with 1)"),
    (4, 3, "Winograd F(4x4, 3x3): 2-D 3x3 stride-1 layers (dilated ones by phases) with many "
           "channels and tiles, 4x fewer multiplies; float32 error <= 1e-5 x (|x| (*) |w|) "
           "from 3 input channels (3e-5 with 1)"),
    (2, 5, "Winograd F(2x2, 5x5): 2-D 5x5 stride-1 layers (dilated ones by phases), 2.8x "
           "fewer multiplies than direct; float32 error <= 3e-6 x (|x| (*) |w|) from 3 input "
           "channels (1e-5 with 1)"),
):
    register(Algorithm(
        name=f"winograd_f{_m}x{_m}_{_r}x{_r}",
        summary=_summary,
        supports=functools.partial(_winograd_supports, _r),
        run=functools.partial(_run_winograd, _m),
        prepare=functools.partial(_winograd_prepare, _m),
        param_space=functools.partial(_winograd_param_space, m=_m),
        accurate=False,
    ))


# --- FFT (overlap-save) ---------------------------------------------------------------------------
