"""``im2col``: lower the input's windows into column matrices and multiply them by the weight
with BLAS (:mod:`pyconvfast._lib.gemm_lowering.im2col`); 1x1 stride-1 layers multiply the
arrays themselves.

:func:`lowered_gemm` is the one entry to the lowering kernel, also used by the sub-pixel
transposed convolution and by resize-convolution.
"""

import functools
import math

import numpy as np

from pyconvfast._lib.gemm_lowering.im2col import conv_im2col, conv_pointwise_gemm, pointwise_form
from pyconvfast._lib.gemm_lowering.im2col import work_elements as im2col_work_elements
from pyconvfast._core.kernel_args import bias_or_empty, tap_tables
from pyconvfast._core.threads import blas_threads
from pyconvfast._core.workspace import work_chunk, workspace_bytes
from pyconvfast._core.workspace import pool as workspace_pool
from pyconvfast._algorithms.registry import Algorithm, any_problem, register

@functools.lru_cache(maxsize=512)
def im2col_chunk(problem, n_threads, itemsize, max_chunk=None):
    """Output positions lowered at once by one im2col task (:func:`positions_chunk` for the
    problem; ``max_chunk``, a tuning parameter, can cap it lower)."""
    return positions_chunk(math.prod(problem.out_size),
                           problem.c_in // problem.groups * math.prod(problem.kernel),
                           problem.c_out // problem.groups, problem.batch * problem.groups,
                           n_threads, itemsize, max_chunk)


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


_BLAS_WARM_TEAMS: set[int] = set()


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


def positions_chunk(n_positions, n_taps, c_out_per_group, images, n_threads, itemsize,
                    max_chunk=None):
    """Output positions per GEMM for a lowering of ``n_taps`` columns: as many as the workspace
    bound allows per thread (at most ``max_chunk``), but small enough that ``images`` (samples x
    groups) give every one of ``n_threads`` threads work
    (:func:`~pyconvfast._core.workspace.work_chunk`)."""
    return work_chunk(n_positions, (n_taps + c_out_per_group) * itemsize,
                      workspace_bytes() // n_threads, cap=max_chunk, units=images,
                      min_tasks=n_threads)


register(Algorithm(
    name="im2col",
    summary="lowering + BLAS GEMM: dense layers with many channels, any stride, dilation, padding",
    supports=any_problem,
    run=_run_im2col,
    prepare=_im2col_weight_matrix,
    param_space=_im2col_param_space,
))

