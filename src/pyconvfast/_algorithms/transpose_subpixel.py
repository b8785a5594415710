"""``transpose_subpixel``: the sub-pixel decomposition of a transposed convolution, stride^d
stride-1 convolutions with sub-kernels, each run by im2col + GEMM into its strided phase of the
output. See :mod:`pyconvfast._algorithms.transpose_taps`.
"""

import functools
import math

import numpy as np

from pyconvfast._core.kernel_args import bias_or_empty
from pyconvfast._core.threads import blas_threads
from pyconvfast._algorithms.im2col import lowered_gemm, positions_chunk
from pyconvfast._algorithms.registry import Algorithm, register
from pyconvfast._algorithms.transpose_taps import (KIND, forward_weight, only_transposed,
                                                   subpixel_phases)

@functools.lru_cache(maxsize=256)
def _subpixel_axes(problem):
    geometry = problem.as_3d()
    return tuple(
        subpixel_phases(*args) for args in zip(*(geometry[name] for name in (
            "in_size", "out_size", "kernel", "stride", "dilation", "pad_before")))
    )


def _subpixel_prepare(problem, weight):
    """Per phase (rd, rh, rw): its three tap tables and its sub-kernel as an im2col matrix
    (None when no tap reaches the phase: its outputs are the bias alone)."""
    forward = forward_weight(problem, weight)
    phases = []
    axes = _subpixel_axes(problem)
    for (rd, td, tab_d), (rh, th, tab_h), (rw, tw, tab_w) in (
        (a, b, c) for a in axes[0] for b in axes[1] for c in axes[2]
    ):
        if td and th and tw:
            sub = forward[:, :, list(td)][:, :, :, list(th)][:, :, :, :, list(tw)]
            matrix = np.ascontiguousarray(sub).reshape(problem.c_out, -1)
        else:
            matrix = None
        phases.append(((rd, rh, rw), (tab_d, tab_h, tab_w), matrix))
    return phases


def _run_subpixel(problem, x, phases, bias, out, n_threads, params):
    stride = problem.as_3d()["stride"]
    bias = bias_or_empty(bias, x.dtype)
    with blas_threads.limit(1):
        for (rd, rh, rw), tables, matrix in phases:
            view = out[:, :, rd::stride[0], rh::stride[1], rw::stride[2]]
            if matrix is None:
                view[...] = bias.reshape(-1, 1, 1, 1) if bias.size else 0
                continue
            n_positions = math.prod(view.shape[2:])
            chunk = positions_chunk(n_positions, matrix.shape[1], problem.c_out // problem.groups,
                                    problem.batch * problem.groups, n_threads, x.itemsize)
            lowered_gemm(x, matrix, bias, view, tables, problem.groups, chunk, n_threads)


def _subpixel_supports(problem):
    reason = only_transposed(problem)
    if reason is None and max(problem.stride) == 1:
        return "needs a stride > 1 on some axis (at stride 1 there is a single phase: use " \
               "transpose_gemm or transpose_direct)"
    return reason


register(Algorithm(
    name="transpose_subpixel",
    summary="sub-pixel decomposition: stride^d stride-1 convolutions with sub-kernels, "
            "each by im2col + GEMM into its phase of the output",
    supports=_subpixel_supports,
    run=_run_subpixel,
    prepare=_subpixel_prepare,
    kind=KIND,
))
