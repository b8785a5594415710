"""The built-in algorithms: for each kernel, which problems it supports and how it is called.

Importing this module registers them (``pyconvfast._api`` does so). Each ``run`` receives the
5-D channels-first views described in :mod:`pyconvfast._registry`.
"""

import functools
import math
import os

import numpy as np

from pyconvfast._lib.depthwise import ORDERS as DEPTHWISE_ORDERS
from pyconvfast._lib.depthwise import blocked_work_elements as conv_depthwise_blocked_elements
from pyconvfast._lib.depthwise import conv_depthwise
from pyconvfast._lib.direct import conv_direct
from pyconvfast._lib.im2col import conv_im2col
from pyconvfast._padding import tap_table
from pyconvfast._registry import Algorithm, register
from pyconvfast._threads import blas_threads


@functools.lru_cache(maxsize=512)
def _tap_tables(problem):
    """The (depth, height, width) tap tables of a problem, built once per problem (read-only)."""
    geometry = problem.as_3d()
    tables = []
    for i, o, k, s, d, p in zip(
        geometry["in_size"], geometry["out_size"], geometry["kernel"],
        geometry["stride"], geometry["dilation"], geometry["pad_before"],
    ):
        table = tap_table(i, o, k, s, d, p, problem.padding_mode)
        table.flags.writeable = False
        tables.append(table)
    return tuple(tables)


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


def _im2col_param_space(problem):
    """Chunk sizes to try: the default (largest the workspace allows), then smaller ones."""
    n_positions = math.prod(problem.out_size)
    return [{}] + [{"max_chunk": chunk} for chunk in (256, 1024, 4096) if chunk < n_positions]


def _run_im2col(problem, x, matrix, bias, out, n_threads, params):
    chunk = im2col_chunk(problem, n_threads, x.itemsize, **params)
    with blas_threads.limit(1):
        conv_im2col(x, matrix, _bias_or_empty(bias, x.dtype), out, *_tap_tables(problem),
                    problem.groups, chunk, n_threads)


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
        x, w_taps, w_packed, _bias_or_empty(bias, x.dtype), out, *_tap_tables(problem),
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
