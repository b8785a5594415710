"""Convolutions computed as a chain of cheaper passes: two 1-D passes for a rank-1 (spatially
separable) kernel, and the pointwise + vertical + horizontal passes of a flattened layer.

Everything here works on the 5-D channels-first views of :mod:`pyconvfast._algorithms.registry`
and runs the registered kernels (``depthwise`` for every 1-D pass, the heuristic's choice for the
grouped passes), so it never parses arguments. Padding by index arithmetic commutes with these
passes: the pass along W pads W (and reads every input row), the pass along H pads H of the
intermediate, which has the input's rows; a padded row of the intermediate is the 1-D pass of the
padded input row, for every padding mode (zeros included: a zero row passes to zero).
"""

import numpy as np

from pyconvfast._algorithms import registry
from pyconvfast.tuning import heuristic
from pyconvfast._core.problem import ConvProblem


def _problem_1d(batch, c_in, c_out, groups, in_size, axis, kernel, stride, dilation, pad,
                padding_mode, dtype, has_bias):
    """A 2-D problem whose kernel has ``kernel`` taps along ``axis`` (0: H, 1: W) and one along
    the other axis; ``pad`` is the (before, after) pair of that axis."""
    def along(value, other):
        return (value, other) if axis == 0 else (other, value)
    return ConvProblem(
        batch=batch, c_in=c_in, c_out=c_out, groups=groups, in_size=tuple(in_size),
        kernel=along(kernel, 1), stride=along(stride, 1), dilation=along(dilation, 1),
        pad_before=along(pad[0], 0), pad_after=along(pad[1], 0), padding_mode=padding_mode,
        dtype=dtype, layout="NCHW", has_bias=has_bias,
    )


def _run(name, problem, x5, weight5, bias, out5, n_threads):
    algorithm = registry.get(name)
    algorithm.run(problem, x5, algorithm.prepare(problem, weight5), bias, out5, n_threads, {})


def _empty_like_layout(x5, shape):
    """A new 5-D (N, C, D, H, W) array view, channels-last in memory when ``x5``'s channel axis
    has unit stride (so that the next pass reads it the way it read ``x5``)."""
    n, c, d, h, w = shape
    if x5.shape[1] > 1 and x5.strides[1] == x5.itemsize:
        return np.moveaxis(np.empty((n, d, h, w, c), dtype=x5.dtype), -1, 1)
    return np.empty(shape, dtype=x5.dtype)


def depthwise_pass(x5, taps, out5, axis, stride, dilation, pad, padding_mode, bias, n_threads):
    """One 1-D depthwise pass along ``axis`` (0: H, 1: W) of a 2-D problem.

    Parameters
    ----------
    x5 : (N, C, 1, H, W) view
    taps : (C * m, k) array, output channel ``j`` reads input channel ``j // m``
    out5 : (N, C * m, 1, H', W') view, written
    """
    batch, channels = x5.shape[:2]
    c_out, k = taps.shape
    problem = _problem_1d(batch, channels, c_out, channels, x5.shape[3:], axis, k, stride,
                          dilation, pad, padding_mode, x5.dtype.name, bias is not None)
    shape = (c_out, 1, 1) + ((k, 1) if axis == 0 else (1, k))
    _run("depthwise", problem, x5, taps.reshape(shape), bias, out5, n_threads)


def two_pass(x5, column, row, bias, out5, *, groups, stride, dilation, pad_before, pad_after,
             padding_mode, n_threads):
    """The 2-D convolution with ``weight[k, c, r, s] = column[k, c, r] * row[k, c, s]`` as a
    pass along W then a pass along H: ``K * C/groups * (R + S)`` multiply-adds per output
    position instead of ``K * C/groups * R * S``.

    Parameters
    ----------
    x5 : (N, C, 1, H, W) view
    column : (K, C // groups, R) array; row : (K, C // groups, S) array (already flipped for
        true convolution)
    bias : (K,) contiguous array or None
    out5 : (N, K, 1, H_out, W_out) view, written
    stride, dilation, pad_before, pad_after : pairs (H, W)

    The pass along W is one depthwise call with channel multiplier ``K // groups``: every input
    channel ``c`` of group ``g`` is filtered by the row of each of the group's outputs ``k``,
    giving the intermediate channel ``c * (K // groups) + k % (K // groups)``. With one input
    channel per group that channel is ``k`` itself and the pass along H is one more depthwise
    call. Otherwise, for each ``kk < K // groups``, the channels ``kk::K // groups`` of the
    intermediate are a grouped convolution (``groups`` groups of ``C // groups`` channels, an
    ``R x 1`` kernel) that sums over ``c`` and lands in the output channels ``kk::K // groups``.
    """
    batch, channels, _, h_in, _ = x5.shape
    c_out, per_group, n_rows = column.shape
    n_cols = row.shape[2]
    k_per_group = c_out // groups
    w_out = out5.shape[4]
    # Row taps of the depthwise pass: channel (g * Cg + c) * Kg + kk holds row[g * Kg + kk, c].
    row_taps = np.ascontiguousarray(
        row.reshape(groups, k_per_group, per_group, n_cols).transpose(0, 2, 1, 3)
    ).reshape(channels * k_per_group, n_cols)
    mid = _empty_like_layout(x5, (batch, channels * k_per_group, 1, h_in, w_out))
    depthwise_pass(x5, row_taps, mid, 1, stride[1], dilation[1], (pad_before[1], pad_after[1]),
                   padding_mode, None, n_threads)
    pad_h = (pad_before[0], pad_after[0])
    if per_group == 1:
        depthwise_pass(mid, np.ascontiguousarray(column.reshape(c_out, n_rows)), out5, 0,
                       stride[0], dilation[0], pad_h, padding_mode, bias, n_threads)
        return
    problem = _problem_1d(batch, channels, groups, groups, (h_in, w_out), 0, n_rows, stride[0],
                          dilation[0], pad_h, padding_mode, x5.dtype.name, bias is not None)
    name = heuristic.choose(problem)
    for kk in range(k_per_group):
        weight = column[kk::k_per_group].reshape(groups, per_group, 1, n_rows, 1)
        part_bias = None if bias is None else np.ascontiguousarray(bias[kk::k_per_group])
        _run(name, problem, mid[:, kk::k_per_group], weight, part_bias,
             out5[:, kk::k_per_group], n_threads)


def three_pass(x5, lateral, vertical, horizontal, bias, out5, *, stride, dilation, pad_before,
               pad_after, padding_mode, n_threads):
    """The flattened convolution ``weight[k, c, r, s] = lateral[k, c] * vertical[k, r] *
    horizontal[k, s]``: a pointwise (1x1) convolution over the channels, then a depthwise pass
    along H and one along W, ``K * (C + R + S)`` multiply-adds per output position.

    Parameters
    ----------
    x5 : (N, C, 1, H, W) view
    lateral : (K, C); vertical : (K, R); horizontal : (K, S) arrays (already flipped for true
        convolution)
    bias : (K,) contiguous array or None, added by the last pass
    out5 : (N, K, 1, H_out, W_out) view, written
    """
    batch, channels, _, h_in, w_in = x5.shape
    c_out = lateral.shape[0]
    h_out = out5.shape[3]
    pointwise = ConvProblem(
        batch=batch, c_in=channels, c_out=c_out, groups=1, in_size=(h_in, w_in), kernel=(1, 1),
        stride=(1, 1), dilation=(1, 1), pad_before=(0, 0), pad_after=(0, 0),
        padding_mode="zeros", dtype=x5.dtype.name, layout="NCHW",
    )
    mixed = _empty_like_layout(x5, (batch, c_out, 1, h_in, w_in))
    _run(heuristic.choose(pointwise), pointwise, x5, lateral.reshape(c_out, channels, 1, 1, 1),
         None, mixed, n_threads)
    tall = _empty_like_layout(x5, (batch, c_out, 1, h_out, w_in))
    depthwise_pass(mixed, np.ascontiguousarray(vertical), tall, 0, stride[0], dilation[0],
                   (pad_before[0], pad_after[0]), padding_mode, None, n_threads)
    depthwise_pass(tall, np.ascontiguousarray(horizontal), out5, 1, stride[1], dilation[1],
                   (pad_before[1], pad_after[1]), padding_mode, bias, n_threads)
