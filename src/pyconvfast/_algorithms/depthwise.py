"""``depthwise``: one input channel per group (any channel multiplier), the SIMD loops of
:mod:`pyconvfast._lib.depthwise.kernel` over output columns, channel blocks or channels, and the
channels-first FMA loops ("chw") for 2-D 3x3 and 5x5 kernels with zero padding."""

import math

import numpy as np

from pyconvfast._lib.depthwise.kernel import ORDERS as DEPTHWISE_ORDERS
from pyconvfast._lib.depthwise.kernel import (
    blocked_work_elements as conv_depthwise_blocked_elements)
from pyconvfast._lib.depthwise.kernel import chw_applies
from pyconvfast._lib.depthwise.kernel import conv_depthwise
from pyconvfast._core.kernel_args import bias_or_empty, tap_tables
from pyconvfast._algorithms.registry import Algorithm, register

def _depthwise_supports(problem):
    per_group = problem.c_in // problem.groups
    if per_group != 1:
        return (f"needs one input channel per group (groups == C_in), "
                f"got C_in // groups = {per_group}")
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


def _chw_fits(problem, x):
    """Whether the "chw" loop order can run this problem on the 5-D view x."""
    geometry = problem.as_3d()
    return problem.padding_mode == "zeros" and chw_applies(
        x.shape, x.strides, x.itemsize, geometry["kernel"], geometry["stride"],
        geometry["dilation"])


def _depthwise_loop_order(problem, x, params):
    """The kernel's loop order: "pixels" (channels innermost, for a unit channel stride),
    "chw" (channels-first 2-D 3x3 and 5x5 with zero padding), "blocked" (other small
    channels-first planes) or "rows"; ``params["order"]`` forces one where the strides and the
    geometry allow it."""
    geometry = problem.as_3d()
    unit_channels = x.strides[1] == x.itemsize
    chw_fits = _chw_fits(problem, x)
    blocked_fits = conv_depthwise_blocked_elements(
        *geometry["in_size"], *geometry["out_size"], problem.c_out // problem.c_in
    ) <= DEPTHWISE_BLOCKED_MAX_ELEMENTS
    order = params.get("order")
    if order is None:
        if (unit_channels and problem.c_in >= DEPTHWISE_MIN_CHANNELS_LAST
                and abs(x.strides[4]) > x.itemsize):
            order = "pixels"
        elif chw_fits:
            # Faster than "blocked" and "rows" on every MobileNetV2 depthwise layer, 7x7 planes
            # included (bench/depthwise_chw.py; docs/guide/algorithms.rst has the numbers).
            order = "chw"
        elif (blocked_fits and problem.c_in >= DEPTHWISE_MIN_CHANNELS_LAST
                and math.prod(geometry["out_size"]) <= DEPTHWISE_BLOCKED_MAX_PLANE
                and math.prod(geometry["in_size"]) <= DEPTHWISE_BLOCKED_MAX_INPUT_PLANE):
            order = "blocked"
        else:
            order = "rows"
    if order == "chw" and not chw_fits:
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
