"""The built-in algorithms: for each kernel, which problems it supports and how it is called.

Importing this module registers them (``pyconvfast._api`` does so). Each ``run`` receives the
5-D channels-first views described in :mod:`pyconvfast._registry`.
"""

import os

import numpy as np

from pyconvfast._lib.direct import conv_direct
from pyconvfast._lib.im2col import conv_im2col
from pyconvfast._lib.winograd import conv_winograd, winograd_weights
from pyconvfast._padding import tap_table
from pyconvfast._registry import Algorithm, register
from pyconvfast._threads import blas_threads


def _tap_tables(problem):
    geometry = problem.as_3d()
    return [
        tap_table(i, o, k, s, d, p, problem.padding_mode)
        for i, o, k, s, d, p in zip(
            geometry["in_size"], geometry["out_size"], geometry["kernel"],
            geometry["stride"], geometry["dilation"], geometry["pad_before"],
        )
    ]


def _bias_or_empty(bias, dtype):
    return np.empty(0, dtype=dtype) if bias is None else bias


def _run_direct(problem, x, weight, bias, out, n_threads, params):
    conv_direct(x, weight, _bias_or_empty(bias, x.dtype), out, *_tap_tables(problem), n_threads)


register(Algorithm(
    name="direct",
    summary="exact-order loop over every problem: any stride, dilation, padding mode and groups",
    supports=lambda problem: None,
    run=_run_direct,
))


# --- im2col + BLAS ------------------------------------------------------------------------------

def workspace_bytes():
    """The bound on im2col's column buffers, all threads together.

    ``PYCONVFAST_WORKSPACE_MB`` sets it in MiB (default 128).
    """
    text = os.environ.get("PYCONVFAST_WORKSPACE_MB", "128")
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = float("nan")
    if not 0 < megabytes < 2**40:
        raise ValueError(f"PYCONVFAST_WORKSPACE_MB must be a positive number of MiB, got {text!r}")
    return int(megabytes * 2**20)


def _im2col_schedule(problem, n_threads, itemsize, max_rows=None):
    """(rows_per_chunk, tasks_in_parallel) for a problem on ``n_threads`` threads.

    A row is one (od, oh) line of W_out outputs. Tasks (sample, group, chunk of rows) run one per
    thread when there are enough of them; else they run in turn, each GEMM on BLAS's threads.
    ``max_rows`` (a tuning parameter) caps the chunk below what the workspace bound allows.
    """
    geometry = problem.as_3d()
    d_out, h_out, w_out = geometry["out_size"]
    n_rows = d_out * h_out
    n_taps = problem.c_in // problem.groups * int(np.prod(problem.kernel))
    k_per_group = problem.c_out // problem.groups
    row_bytes = (n_taps + k_per_group) * w_out * itemsize
    images = problem.batch * problem.groups
    tasks_in_parallel = n_threads > 1 and images * n_rows >= n_threads
    budget = workspace_bytes() // (n_threads if tasks_in_parallel else 1)
    rows = max(1, min(n_rows, budget // row_bytes, max_rows or n_rows))
    if tasks_in_parallel and images < n_threads:
        # Split each image into enough chunks that every thread has work.
        rows = min(rows, -(-n_rows // -(-n_threads // images)))
    return rows, tasks_in_parallel


def _im2col_weight_matrix(problem, weight):
    return np.ascontiguousarray(weight).reshape(problem.c_out, -1)


def _im2col_param_space(problem):
    """Chunk heights to try: the default (largest the workspace allows), then smaller ones."""
    n_rows = int(np.prod(problem.as_3d()["out_size"][:2]))
    return [{}] + [{"max_rows": rows} for rows in (1, 4, 16, 64) if rows < n_rows]


def _run_im2col(problem, x, matrix, bias, out, n_threads, params):
    rows, tasks_in_parallel = _im2col_schedule(problem, n_threads, x.itemsize, **params)
    with blas_threads.limit(1 if tasks_in_parallel else n_threads):
        conv_im2col(x, matrix, _bias_or_empty(bias, x.dtype), out, *_tap_tables(problem),
                    problem.groups, rows, tasks_in_parallel, n_threads)


register(Algorithm(
    name="im2col",
    summary="lowering + BLAS GEMM: dense layers with many channels, any stride, dilation, padding",
    supports=lambda problem: None,
    run=_run_im2col,
    prepare=_im2col_weight_matrix,
    param_space=_im2col_param_space,
))


# --- Winograd F(m x m, 3 x 3) -------------------------------------------------------------------
# 2-D, 3x3 kernel, stride 1, dilation 1; any padding and padding mode, groups, flip, both layouts
# and dtypes. Kernel: _lib/winograd.pyx. Measured error, max |got - ref| / (|x| (*) |w| + |b|)
# on standard-normal float32 data: F(2x2) <= 4e-7 from 3 input channels per group (1.5e-7 from
# 13 to 512), 1.8e-6 with a single one; F(4x4) <= 1e-5 from 3 (2e-6 from 13 to 512), 2.9e-5 with
# a single one. float64: about 2**-29 times these. Results are bitwise the same for every
# n_threads (for a given block size: the default, or a param_space entry, under the workspace
# bound). F(2x2) is exact on small integers; F(4x4) is not (its G holds 1/6 and 1/24).

# Default tiles per task. Measured (bench/winograd.py, 2 threads): 32 to 128 tiles are within a
# few percent of each other on the ResNet layers; fewer make the GEMMs too thin to amortize
# BLAS's packing of U, more spill V and M out of L2.
_WINOGRAD_BLOCK = 64


def _winograd_supports(problem):
    if problem.n_spatial != 2:
        return f"2-D only, got a {problem.n_spatial}-D convolution"
    if problem.kernel != (3, 3):
        return f"needs a 3x3 kernel, got {problem.kernel[0]}x{problem.kernel[1]}"
    if problem.stride != (1, 1):
        return f"needs stride 1, got stride={problem.stride}"
    if problem.dilation != (1, 1):
        return f"needs dilation 1, got dilation={problem.dilation}"
    return None


def _winograd_prepare(m):
    def prepare(problem, weight):
        """(U, weight): U[xi, k, c] = (G g_kc G^T)[xi], (alpha^2, C_out, C_in // groups)
        C-contiguous, computed in a wider type and rounded once; the weight itself is kept for
        the outputs computed directly."""
        u = np.empty(((m + 2) ** 2,) + weight.shape[:2], dtype=weight.dtype)
        winograd_weights(m, weight[:, :, 0], u, 1)
        return u, np.ascontiguousarray(weight)
    return prepare


def _thin_windows(taps):
    """(start, stop) ranges of outputs, along one axis, whose window holds at most one input
    sample, the rest being zero padding: the first and last outputs when padding >= 2.

    Winograd's error is bounded by the magnitude of the whole input tile, not of each output's
    own window. Where that window is (nearly) all zero padding, the output is (nearly) zero
    while its tile may hold real data, so its error would be large relative to the output's own
    scale; an output whose window is all padding would not even come out as exactly the bias.
    These few outputs are computed directly instead.
    """
    thin = (taps >= 0).sum(axis=1) <= 1
    if thin.all():
        return [(0, len(thin))]
    head, tail = int(np.argmin(thin)), int(np.argmin(thin[::-1]))
    return [(a, b) for a, b in ((0, head), (len(thin) - tail, len(thin))) if b > a]


def _winograd_lines(problem, m):
    """Per axis, the input index of every padded position a tile can read (-1 for a zero).

    Tile row ``th`` reads positions ``th*m .. th*m + m + 1``; the kernel reads whole groups
    of m positions, up to ``(tiles + 1) * m``. Positions past the last output's window feed
    only outputs that are cut off, so any valid index does for them.
    """
    return [
        np.ascontiguousarray(
            tap_table(size, (-(-out // m) + 1) * m, 1, 1, 1, pad, problem.padding_mode)[:, 0])
        for size, out, pad in zip(problem.in_size, problem.out_size, problem.pad_before)
    ]


def _winograd_schedule(problem, m, n_threads, itemsize, block=None):
    """(tiles per task, tasks_in_parallel) for a problem on ``n_threads`` threads.

    The block size depends on the problem and the workspace bound only, never on the thread
    count, so every thread count runs the same GEMMs (and gets the same bits). Tasks run one
    per thread when there are enough of them for every thread's buffers to fit the bound and
    to keep the threads evenly busy; otherwise each task's phases are split among threads.
    """
    alpha2 = (m + 2) ** 2
    h_out, w_out = problem.out_size
    n_tiles = problem.batch * -(-h_out // m) * -(-w_out // m)
    c_g, k_g = problem.c_in // problem.groups, problem.c_out // problem.groups
    tile_bytes = alpha2 * (c_g + k_g) * itemsize
    block = max(1, min(block or _WINOGRAD_BLOCK, n_tiles, workspace_bytes() // tile_bytes))
    n_tasks = problem.groups * -(-n_tiles // block)
    tasks_in_parallel = (
        n_threads > 1
        and n_threads * block * tile_bytes <= workspace_bytes()
        and (n_tasks >= 4 * n_threads or n_tasks % n_threads == 0)
    )
    return block, tasks_in_parallel


def _winograd_param_space(problem, m):
    """Tiles per task to try: the default, then smaller and larger blocks."""
    h_out, w_out = problem.out_size
    n_tiles = problem.batch * -(-h_out // m) * -(-w_out // m)
    return [{}] + [{"block": block} for block in (16, 32, 128, 256) if block < n_tiles]


def _run_winograd(m):
    def run(problem, x, prepared, bias, out, n_threads, params):
        u, weight = prepared
        bias = _bias_or_empty(bias, x.dtype)
        block, tasks_in_parallel = _winograd_schedule(problem, m, n_threads, x.itemsize, **params)
        line_h, line_w = _winograd_lines(problem, m)
        # Every GEMM is small and runs inside an OpenMP thread: BLAS's own threads would only
        # oversubscribe the cores.
        with blas_threads.limit(1):
            conv_winograd(m, x, u, bias, out, line_h, line_w, problem.pad_before[1],
                          problem.groups, block, tasks_in_parallel, n_threads)
        if problem.padding_mode == "zeros":
            taps_d, taps_h, taps_w = _tap_tables(problem)
            for start, stop in _thin_windows(taps_h):
                conv_direct(x, weight, bias, out[:, :, :, start:stop], taps_d,
                            taps_h[start:stop], taps_w, n_threads)
            for start, stop in _thin_windows(taps_w):
                conv_direct(x, weight, bias, out[:, :, :, :, start:stop], taps_d, taps_h,
                            taps_w[start:stop], n_threads)
    return run


for _m, _summary in (
    (2, "Winograd F(2x2, 3x3): 2-D 3x3 stride-1 layers, 2.25x fewer multiplies than direct; "
        "float32 error <= 4e-7 x (|x| (*) |w|) from 3 input channels (1.8e-6 with 1)"),
    (4, "Winograd F(4x4, 3x3): 2-D 3x3 stride-1 layers with many channels and tiles, 4x fewer "
        "multiplies; float32 error <= 1e-5 x (|x| (*) |w|) from 3 input channels (3e-5 with 1)"),
):
    register(Algorithm(
        name=f"winograd_f{_m}x{_m}_3x3",
        summary=_summary,
        supports=_winograd_supports,
        run=_run_winograd(_m),
        prepare=_winograd_prepare(_m),
        param_space=lambda problem, m=_m: _winograd_param_space(problem, m),
    ))
