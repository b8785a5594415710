"""The built-in algorithms: for each kernel, which problems it supports and how it is called.

Importing this module registers them (``pyconvfast._api`` does so). Each ``run`` receives the
5-D channels-first views described in :mod:`pyconvfast._registry`.
"""

import functools
import math

import numpy as np

from pyconvfast import _fft
from pyconvfast._lib.depthwise.kernel import ORDERS as DEPTHWISE_ORDERS
from pyconvfast._lib.depthwise.kernel import blocked_work_elements as conv_depthwise_blocked_elements
from pyconvfast._lib.depthwise.kernel import conv_depthwise
from pyconvfast._lib.direct.generic import conv_direct
from pyconvfast._lib.direct.blocked import conv_direct_blocked
from pyconvfast._lib.direct.blocked import pack_weights as direct_pack_weights
from pyconvfast._lib.gemm_lowering.im2col import conv_im2col, conv_pointwise_gemm, pointwise_form
from pyconvfast._lib.gemm_lowering.im2col import work_elements as im2col_work_elements
from pyconvfast._lib.winograd.kernel import conv_winograd, winograd_weights
from pyconvfast._lib.winograd.kernel import work_layout as winograd_work_layout
from pyconvfast._kernel_args import bias_or_empty, tap_tables
from pyconvfast._padding import tap_table
from pyconvfast._registry import Algorithm, register
from pyconvfast._threads import blas_threads
from pyconvfast._workspace import aligned_empty, workspace_bytes
from pyconvfast._workspace import pool as workspace_pool


# Output channels per group from which ``direct`` runs the channel-blocked kernel
# (_lib/direct_blocked.pyx) rather than the generic loop (_lib/direct.pyx): its vectors hold 16
# float32 or 8 float64 output channels of one group. Problems with one input channel per group
# keep the generic loop, whose summation order (no fused multiply-add) ``depthwise`` reproduces
# bit for bit.
DIRECT_BLOCKED_MIN_CHANNELS = 4


def _direct_blocked_applies(problem):
    return (problem.c_out // problem.groups >= DIRECT_BLOCKED_MIN_CHANNELS
            and problem.c_in // problem.groups >= 2
            and problem.dtype in ("float32", "float64"))


def _direct_prepare(problem, weight):
    """(packed, weight): the weight packed in channel blocks where the blocked kernel applies
    (else None), and the weight itself for the generic loop."""
    packed = direct_pack_weights(weight, problem.groups, aligned_empty) \
        if _direct_blocked_applies(problem) else None
    return packed, weight


def _item_strides(x, out):
    """Whether every stride of both arrays (of one dtype) is a whole number of items."""
    return not any(s % x.itemsize for s in x.strides + out.strides)


def _run_direct(problem, x, prepared, bias, out, n_threads, params):
    packed, weight = prepared
    bias = bias_or_empty(bias, x.dtype)
    if packed is not None and _item_strides(x, out):
        geometry = problem.as_3d()
        conv_direct_blocked(x, packed, problem.c_out, bias, out, *tap_tables(problem),
                            geometry["stride"][2], geometry["dilation"][2],
                            geometry["pad_before"][2], n_threads)
    else:
        conv_direct(x, weight, bias, out, *tap_tables(problem), n_threads)


register(Algorithm(
    name="direct",
    summary="any stride, dilation, padding mode and groups; channel-blocked SIMD register tiles "
            f"from {DIRECT_BLOCKED_MIN_CHANNELS} output channels per group",
    supports=lambda problem: None,
    run=_run_direct,
    prepare=_direct_prepare,
))


# --- im2col + BLAS ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def im2col_chunk(problem, n_threads, itemsize, max_chunk=None):
    """Output positions lowered at once by one im2col task.

    As many as each thread's share of the workspace bound allows (``max_chunk``, a tuning
    parameter, can cap it lower), and few enough that every thread gets a task.
    """
    n_positions = math.prod(problem.out_size)
    n_taps = problem.c_in // problem.groups * math.prod(problem.kernel)
    bytes_per_position = (n_taps + problem.c_out // problem.groups) * itemsize
    budget = workspace_bytes() // n_threads
    chunk = min(n_positions, max(1, budget // bytes_per_position), max_chunk or n_positions)
    images = problem.batch * problem.groups
    if images < n_threads:
        chunk = min(chunk, -(-n_positions // -(-n_threads // images)))
    return chunk


def _im2col_weight_matrix(problem, weight):
    return np.ascontiguousarray(weight).reshape(problem.c_out, -1)


def _is_pointwise(problem):
    """1x1 kernel, stride 1, no padding: the input is already its own column matrix."""
    n = problem.n_spatial
    return (problem.kernel == (1,) * n and problem.stride == (1,) * n
            and problem.pad_before == (0,) * n and problem.pad_after == (0,) * n)


# For a 1x1 stride-1 unpadded problem whose arrays flatten (any contiguous NCHW or NHWC array
# does), im2col skips the lowering and runs its GEMMs on x and out themselves. "split": the
# positions are cut into tasks of an OpenMP loop, each calling single-threaded BLAS (the
# default, measured faster than one multi-threaded BLAS call per image on ResNet-50's 1x1
# layers: bench/pointwise.py); "blas": one BLAS call per (sample, group) with BLAS's own
# threads; "lower": the general lowering path.
POINTWISE_MODES = ("split", "blas", "lower")


def _pointwise_chunks(problem, n_threads):
    """Tasks per (sample, group): a multiple of the thread count in all."""
    images = problem.batch * problem.groups
    return max(1, min(n_threads // math.gcd(images, n_threads),
                      math.prod(problem.out_size) // 16))


_BLAS_WARM_TEAMS = set()


def warm_blas_in_threads(n_threads):
    """Once per process and team size: one small GEMM from each of ``n_threads`` OpenMP threads.

    OpenBLAS sets up a thread's buffers on its first call from that thread, which made the
    first 1x1 layer of a process (ResNet-50's layer1.0.conv1, the first to call BLAS from the
    OpenMP threads) take 3.8x its steady time, against the 3x allowed for a first call on a
    warm cache. Called from the first convolution of the process, which already pays for
    reading the tuning cache, it costs about 0.35 ms.
    """
    if n_threads < 2 or n_threads in _BLAS_WARM_TEAMS:
        return
    _BLAS_WARM_TEAMS.add(n_threads)
    x = np.full((1, 64, 1, 16 * n_threads, 16), 0.5, dtype=np.float32)  # (N, C, D, H, W)
    matrix = np.full((64, 64), 0.5, dtype=np.float32)
    out = np.empty_like(x)
    form = pointwise_form(x.strides, out.strides, x.shape[2:], 64, 64, x.itemsize)
    with blas_threads.limit(1):
        conv_pointwise_gemm(x, matrix, np.empty(0, np.float32), out, 1, form, n_threads,
                            n_threads)


def _im2col_param_space(problem):
    """Chunk sizes to try: the default (largest the workspace allows), then smaller ones; for
    1x1 problems, the GEMM-on-the-arrays modes."""
    n_positions = math.prod(problem.out_size)
    space = [{}] + [{"max_chunk": chunk} for chunk in (256, 1024, 4096) if chunk < n_positions]
    if _is_pointwise(problem):
        space += [{"pointwise": mode} for mode in POINTWISE_MODES[1:]]
    return space


def _run_im2col(problem, x, matrix, bias, out, n_threads, params):
    params = dict(params)
    mode = params.pop("pointwise", "split")
    if mode not in POINTWISE_MODES:
        raise ValueError(f"im2col: pointwise must be one of {POINTWISE_MODES}, got {mode!r}")
    if mode != "lower" and _is_pointwise(problem):
        form = pointwise_form(x.strides, out.strides, x.shape[2:], matrix.shape[1],
                              problem.c_out // problem.groups, x.itemsize)
        if form:
            bias = bias_or_empty(bias, x.dtype)
            if mode == "blas":
                with blas_threads.limit(n_threads):
                    conv_pointwise_gemm(x, matrix, bias, out, problem.groups, form, 1, 1)
            else:
                with blas_threads.limit(1):
                    conv_pointwise_gemm(x, matrix, bias, out, problem.groups, form,
                                        _pointwise_chunks(problem, n_threads), n_threads)
            return
    chunk = im2col_chunk(problem, n_threads, x.itemsize, **params)
    with blas_threads.limit(1):
        lowered_gemm(x, matrix, bias_or_empty(bias, x.dtype), out, tap_tables(problem),
                     problem.groups, chunk, n_threads)


def lowered_gemm(x, matrix, bias, out, tables, groups, chunk, n_threads):
    """Run the im2col kernel with column buffers borrowed from the workspace pool.

    The one entry to ``conv_im2col`` (also used by the sub-pixel transposed convolution and
    resize-convolution): ``x``/``out`` 5-D views, ``matrix`` ``(C_out, C_in/groups * taps)``,
    ``bias`` contiguous (or empty), ``tables`` the three tap tables, ``chunk`` output positions per
    GEMM. The caller limits BLAS to one thread.
    """
    buffer, work = workspace_pool.borrow(
        n_threads, im2col_work_elements(matrix.shape[1], out.shape[1] // groups, chunk), x.dtype)
    try:
        conv_im2col(x, matrix, bias, out, *tables, groups, chunk, work, n_threads)
    finally:
        workspace_pool.give_back(buffer)


def positions_chunk(n_positions, n_taps, c_out_per_group, images, n_threads, itemsize):
    """Output positions per GEMM for a lowering of ``n_taps`` columns: as many as the workspace
    bound allows per thread, but small enough that ``images`` (samples x groups) give every one
    of ``n_threads`` threads work."""
    bytes_per_position = (n_taps + c_out_per_group) * itemsize
    chunk = min(n_positions, max(1, workspace_bytes() // n_threads // bytes_per_position))
    if images < n_threads:
        chunk = min(chunk, -(-n_positions // -(-n_threads // images)))
    return chunk


register(Algorithm(
    name="im2col",
    summary="lowering + BLAS GEMM: dense layers with many channels, any stride, dilation, padding",
    supports=lambda problem: None,
    run=_run_im2col,
    prepare=_im2col_weight_matrix,
    param_space=_im2col_param_space,
))


# --- depthwise ----------------------------------------------------------------------------------

def _depthwise_supports(problem):
    per_group = problem.c_in // problem.groups
    if per_group != 1:
        return f"needs one input channel per group (groups == C_in), got C_in // groups = {per_group}"
    return None


def _depthwise_weights(problem, weight):
    """(w_taps, w_packed): the weight as (C_out, taps) rows for the channels-first loop order,
    and tap-major with each tap's output channels grouped by multiplier index,
    ``w_packed[t, j * C_in + c] = w_taps[c * m + j, t]``, for the channels-last one."""
    c_out, c_in = problem.c_out, problem.c_in
    w_taps = np.ascontiguousarray(weight.reshape(c_out, -1))
    n_taps = w_taps.shape[1]
    w_packed = np.ascontiguousarray(
        w_taps.T.reshape(n_taps, c_in, c_out // c_in).transpose(0, 2, 1)
    ).reshape(n_taps, c_out)
    return w_taps, w_packed


# Channels-last inputs with fewer channels than this use the channels-first loop order: the
# channels loop would be too short to vectorize.
DEPTHWISE_MIN_CHANNELS_LAST = 4
# Channels-first planes of at most this many output (and input) positions are staged in blocks
# of channels ("blocked"); larger planes run row by row. Measured (float32, one thread, 3x3):
# blocked beats rows 2.7x on 7x7 planes and 1.25x on 14x14, loses 2x on 28x28 and 4x on a
# stride-2 56x56 input (staging costs per input element, the kernel per output).
DEPTHWISE_BLOCKED_MAX_PLANE = 256
DEPTHWISE_BLOCKED_MAX_INPUT_PLANE = 512
DEPTHWISE_BLOCKED_MAX_ELEMENTS = 1 << 16


def _depthwise_loop_order(problem, x, params):
    """The kernel's loop order: "pixels" (channels innermost, for a unit channel stride),
    "blocked" (small channels-first planes) or "rows"; ``params["order"]`` forces one where the
    strides allow it."""
    geometry = problem.as_3d()
    unit_channels = x.strides[1] == x.itemsize
    blocked_fits = conv_depthwise_blocked_elements(
        *geometry["in_size"], *geometry["out_size"], problem.c_out // problem.c_in
    ) <= DEPTHWISE_BLOCKED_MAX_ELEMENTS
    order = params.get("order")
    if order is None:
        if (unit_channels and problem.c_in >= DEPTHWISE_MIN_CHANNELS_LAST
                and abs(x.strides[4]) > x.itemsize):
            order = "pixels"
        elif (blocked_fits and problem.c_in >= DEPTHWISE_MIN_CHANNELS_LAST
                and math.prod(geometry["out_size"]) <= DEPTHWISE_BLOCKED_MAX_PLANE
                and math.prod(geometry["in_size"]) <= DEPTHWISE_BLOCKED_MAX_INPUT_PLANE):
            order = "blocked"
        else:
            order = "rows"
    if order == "pixels" and not unit_channels:
        order = "blocked"
    if order == "blocked" and not blocked_fits:
        order = "rows"
    return order


def _depthwise_param_space(problem):
    """The loop order chosen from the strides and sizes first, then each one forced."""
    return [{}] + [{"order": order} for order in DEPTHWISE_ORDERS]


def _run_depthwise(problem, x, prepared, bias, out, n_threads, params):
    w_taps, w_packed = prepared
    geometry = problem.as_3d()
    conv_depthwise(
        x, w_taps, w_packed, bias_or_empty(bias, x.dtype), out, *tap_tables(problem),
        geometry["stride"], geometry["dilation"], geometry["pad_before"],
        _depthwise_loop_order(problem, x, params), n_threads,
    )


register(Algorithm(
    name="depthwise",
    summary="one input channel per group (groups == C_in, any channel multiplier): "
            "SIMD over output columns, or over channels for channels-last inputs",
    supports=_depthwise_supports,
    run=_run_depthwise,
    prepare=_depthwise_weights,
    param_space=_depthwise_param_space,
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
        u = aligned_empty(((m + 2) ** 2,) + weight.shape[:2], weight.dtype)
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


@functools.lru_cache(maxsize=512)
def _winograd_lines(problem, m):
    """Per axis, the input index of every padded position a tile can read (-1 for a zero).

    Tile row ``th`` reads positions ``th*m .. th*m + m + 1``; the kernel reads whole groups
    of m positions, up to ``(tiles + 1) * m``. Positions past the last output's window feed
    only outputs that are cut off, so any valid index does for them.
    """
    lines = []
    for size, out, pad in zip(problem.in_size, problem.out_size, problem.pad_before):
        line = np.ascontiguousarray(
            tap_table(size, (-(-out // m) + 1) * m, 1, 1, 1, pad, problem.padding_mode)[:, 0])
        line.flags.writeable = False  # built once per problem, shared by every call
        lines.append(line)
    return tuple(lines)


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
        bias = bias_or_empty(bias, x.dtype)
        block, tasks_in_parallel = _winograd_schedule(problem, m, n_threads, x.itemsize, **params)
        line_h, line_w = _winograd_lines(problem, m)
        # Every GEMM is small and runs inside an OpenMP thread: BLAS's own threads would only
        # oversubscribe the cores.
        buffer, work = workspace_pool.borrow(
            *winograd_work_layout(m, problem.c_in // problem.groups,
                                  problem.c_out // problem.groups, block, tasks_in_parallel,
                                  n_threads, x.itemsize), x.dtype)
        try:
            with blas_threads.limit(1):
                conv_winograd(m, x, u, bias, out, line_h, line_w, problem.pad_before[1],
                              problem.groups, block, tasks_in_parallel, work, n_threads)
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
        accurate=False,
    ))


# --- FFT (overlap-save) ---------------------------------------------------------------------------
# Stride 1, any dilation, padding mode, groups; kernel: _fft.py (scipy.fft + batched complex GEMM).

register(Algorithm(
    name="fft",
    summary="real FFTs in overlap-save blocks (scipy.fft) with a complex GEMM per frequency: "
            "stride-1 layers with large kernels",
    supports=_fft.supports,
    run=_fft.run,
    prepare=_fft.prepare,
    param_space=_fft.param_space,
    accurate=False,
))


# --- grouped (its own module) --------------------------------------------------------------------
import pyconvfast._algorithms_grouped  # noqa: F401  (registers "grouped")
