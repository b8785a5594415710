"""The factored convolutions: ``spatially_separable_conv2d`` (rank-1 kernels, two 1-D passes)
and ``flattened_conv2d`` (pointwise, vertical and horizontal passes).

Each validates its factors, builds the :class:`~pyconvfast._core.problem.ConvProblem` of the dense
convolution it equals (so that geometry, padding, layout and ``out=`` behave exactly as in
:func:`pyconvfast.conv2d`), and runs the passes of :mod:`pyconvfast._algorithms.passes`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyconvfast._core.kernel_args import tap_tables
from pyconvfast import _api
from pyconvfast._algorithms import passes
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast._core.workspace import work_chunk
from pyconvfast._typing import (
    ArrayLike, FloatArray, Ints, Layout2d, Padding, PaddingMode, Precision,
)


def _factor_array(name: str, value: ArrayLike, ndim: int, meaning: str,
                  dtype: np.dtype[Any]) -> FloatArray:
    array = _api._as_float_array(name, value)
    if array.dtype != dtype:
        raise TypeError(f"x is {dtype} but {name} is {array.dtype}; cast one to the other's dtype")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {meaning}, got {name}.shape={array.shape}")
    if min(array.shape) < 1:
        raise ValueError(f"{name} must have no empty axis, got {name}.shape={array.shape}")
    return array


def _flip_last(array: FloatArray, flip: bool) -> FloatArray:
    return array[..., ::-1] if flip else array


def _prepared_call(x: FloatArray, weight_shape: tuple[int, ...], bias: ArrayLike | None,
                   factors: dict[str, FloatArray], geometry: dict[str, Any],
                   out: FloatArray | None, n_threads: int | None,
                   ) -> tuple[FloatArray, FloatArray | None, FloatArray, FloatArray, Any, int]:
    """(x5, bias, out, out5, problem, n_threads): the checks and views shared by both."""
    try:
        problem = _api.cached_problem(x.shape, weight_shape, n_spatial=2,
                                      has_bias=bias is not None, dtype=x.dtype, **geometry)
    except ValueError as error:
        shapes = ", ".join(f"{name}.shape={array.shape}" for name, array in factors.items())
        raise ValueError(f"{error} [the factors {shapes} make a weight of shape "
                         f"{weight_shape}]") from None
    bias = _api.checked_bias(bias, problem, x.dtype)
    n_threads = resolve_n_threads(n_threads)
    out = _api.output_array(out, problem, x.dtype, {"x": x, **factors, "bias": bias})
    return (_api._channels_first_5d(x, problem), bias, out,
            _api._channels_first_5d(out, problem), problem, n_threads)


def spatially_separable_conv2d(x: ArrayLike, column: ArrayLike, row: ArrayLike,
                               bias: ArrayLike | None = None, *, groups: int = 1,
                               stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1,
                               padding_mode: PaddingMode = "zeros", flip: bool = False,
                               layout: Layout2d = "NCHW", out: FloatArray | None = None,
                               n_threads: int | None = None,
                               precision: Precision | None = None) -> FloatArray:
    """2-D convolution with a rank-1 kernel given by its factors, as two 1-D passes.

    Equals ``conv2d(x, weight, ...)`` with ``weight[k, c, r, s] = column[k, c, r] * row[k, c, s]``
    (cross-correlation, PyTorch's conventions), computed as a pass along W (the rows) and a
    pass along H (the columns): ``K * C/groups * (R + S)`` multiply-adds per output position
    instead of ``K * C/groups * R * S``. Both passes run the SIMD ``depthwise`` kernel; with
    several input channels per group, the pass along H also sums over them (a grouped
    convolution per output channel of a group). Every padding mode is exact: padding by index
    arithmetic commutes with the passes.

    Parameters
    ----------
    x : ndarray of float32 or float64, shape ``(N, C, H, W)``
        ``(N, H, W, C)`` with ``layout="NHWC"``; drop ``N`` for an unbatched input.
    column : ndarray, shape ``(K, C // groups, R)``
        The vertical factor of each ``(k, c)`` kernel; same dtype as ``x``.
    row : ndarray, shape ``(K, C // groups, S)``
        The horizontal factor of each ``(k, c)`` kernel.
    bias : ndarray, shape ``(K,)``, optional
    groups, stride, padding, dilation, padding_mode, flip, layout, out, n_threads, precision
        As for :func:`conv2d` (``flip=True`` reverses both factors: true convolution).

    Returns
    -------
    ndarray, shape ``(N, K, H_out, W_out)`` (or ``(N, H_out, W_out, K)`` with ``layout="NHWC"``)
        Same dtype, layout and batching as ``x``; sizes as :func:`conv_output_shape` gives for
        the weight shape ``(K, C // groups, R, S)``.

    Raises
    ------
    TypeError
        Non-float or mixed dtypes; a float or bool where an int is needed.
    ValueError
        ``column`` and ``row`` of other shapes than the above or disagreeing on ``K`` or
        ``C // groups``, and every geometry error of :func:`conv2d`.

    See Also
    --------
    separate_kernel : the factors of a rank-1 weight.

    Examples
    --------
    A 7x7 Gaussian blur of a 3-channel image, each channel on its own (``groups=3``):

    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> g = np.exp(-0.5 * (np.arange(7) - 3.0) ** 2 / 1.5**2)
    >>> g = (g / g.sum()).astype(np.float32)
    >>> column = row = np.tile(g, (3, 1, 1))                     # (3, 1, 7)
    >>> image = np.ones((3, 64, 64), dtype=np.float32)
    >>> blurred = pcf.spatially_separable_conv2d(image, column, row, groups=3, padding="same",
    ...                                          padding_mode="reflect")
    >>> blurred.shape, bool(np.allclose(blurred, 1.0, atol=1e-6))
    ((3, 64, 64), True)
    >>> dense = column[:, :, :, None] * row[:, :, None, :]       # (3, 1, 7, 7)
    >>> ref = pcf.conv2d(image, dense, groups=3, padding="same", padding_mode="reflect")
    >>> bool(np.allclose(blurred, ref, atol=1e-6))
    True
    """
    x = _api._as_float_array("x", x)
    column = _factor_array("column", column, 3, "(K, C // groups, R)", x.dtype)
    row = _factor_array("row", row, 3, "(K, C // groups, S)", x.dtype)
    if column.shape[:2] != row.shape[:2]:
        raise ValueError(
            f"column and row must agree on (K, C // groups), got column.shape={column.shape} "
            f"and row.shape={row.shape}")
    weight_shape = column.shape + row.shape[2:]
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
                    "padding_mode": padding_mode, "flip": flip, "layout": layout,
                    "precision": precision}
    x5, bias, out, out5, problem, n_threads = _prepared_call(
        x, weight_shape, bias, {"column": column, "row": row}, geometry, out, n_threads)
    if problem.batch:
        passes.two_pass(
            x5, _flip_last(column, problem.flip), _flip_last(row, problem.flip), bias, out5,
            groups=problem.groups, stride=problem.stride, dilation=problem.dilation,
            pad_before=problem.pad_before, pad_after=problem.pad_after,
            padding_mode=problem.padding_mode, n_threads=n_threads)
    return out


def flattened_conv2d(x: ArrayLike, lateral: ArrayLike, vertical: ArrayLike,
                     horizontal: ArrayLike, bias: ArrayLike | None = None, *, stride: Ints = 1,
                     padding: Padding = 0, dilation: Ints = 1,
                     padding_mode: PaddingMode = "zeros", flip: bool = False,
                     layout: Layout2d = "NCHW", out: FloatArray | None = None,
                     n_threads: int | None = None,
                     precision: Precision | None = None) -> FloatArray:
    """2-D convolution of a flattened layer: a pointwise, a vertical and a horizontal pass.

    Equals ``conv2d(x, weight, ...)`` with ``weight[k, c, r, s] = lateral[k, c] * vertical[k, r]
    * horizontal[k, s]`` (Jin, Dundar & Culurciello, "Flattened convolutional neural networks
    for feedforward acceleration", 2014): a 1x1 convolution over the channels (GEMM), then a
    depthwise pass along H and one along W per output channel, ``K * (C + R + S)`` multiply-adds
    per output position instead of ``K * C * R * S``. Every padding mode is exact.

    Parameters
    ----------
    x : ndarray of float32 or float64, shape ``(N, C, H, W)``
        ``(N, H, W, C)`` with ``layout="NHWC"``; drop ``N`` for an unbatched input.
    lateral : ndarray, shape ``(K, C)``
        The channel mix of each output channel; same dtype as ``x``.
    vertical : ndarray, shape ``(K, R)``
    horizontal : ndarray, shape ``(K, S)``
    bias : ndarray, shape ``(K,)``, optional
    stride, padding, dilation, padding_mode, flip, layout, out, n_threads, precision
        As for :func:`conv2d` (no groups; ``flip=True`` reverses ``vertical`` and
        ``horizontal``).

    Returns
    -------
    ndarray, shape ``(N, K, H_out, W_out)`` (or ``(N, H_out, W_out, K)`` with ``layout="NHWC"``)
        Same dtype, layout and batching as ``x``; sizes as :func:`conv_output_shape` gives for
        the weight shape ``(K, C, R, S)``.

    Raises
    ------
    TypeError
        Non-float or mixed dtypes; a float or bool where an int is needed.
    ValueError
        Factors of other shapes than the above or disagreeing on ``K``; ``lateral`` not
        matching the channels of ``x``; every geometry error of :func:`conv2d`.

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 16, 20, 20))
    >>> lateral, vertical, horizontal = (rng.standard_normal(s) for s in ((8, 16), (8, 5), (8, 5)))
    >>> y = pcf.flattened_conv2d(x, lateral, vertical, horizontal, padding=2)
    >>> y.shape
    (2, 8, 20, 20)
    >>> weight = (lateral[:, :, None, None] * vertical[:, None, :, None]
    ...           * horizontal[:, None, None, :])                # (8, 16, 5, 5)
    >>> bool(np.allclose(y, pcf.conv2d(x, weight, padding=2)))
    True
    """
    x = _api._as_float_array("x", x)
    lateral = _factor_array("lateral", lateral, 2, "(K, C)", x.dtype)
    vertical = _factor_array("vertical", vertical, 2, "(K, R)", x.dtype)
    horizontal = _factor_array("horizontal", horizontal, 2, "(K, S)", x.dtype)
    if not lateral.shape[0] == vertical.shape[0] == horizontal.shape[0]:
        raise ValueError(
            f"lateral, vertical and horizontal must have the same K (first axis), got "
            f"lateral.shape={lateral.shape}, vertical.shape={vertical.shape}, "
            f"horizontal.shape={horizontal.shape}")
    weight_shape = lateral.shape + vertical.shape[1:] + horizontal.shape[1:]
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": 1,
                    "padding_mode": padding_mode, "flip": flip, "layout": layout,
                    "precision": precision}
    x5, bias, out, out5, problem, n_threads = _prepared_call(
        x, weight_shape, bias,
        {"lateral": lateral, "vertical": vertical, "horizontal": horizontal},
        geometry, out, n_threads)
    if problem.batch:
        passes.three_pass(
            x5, np.ascontiguousarray(lateral), _flip_last(vertical, problem.flip),
            _flip_last(horizontal, problem.flip), bias, out5, stride=problem.stride,
            dilation=problem.dilation, pad_before=problem.pad_before,
            pad_after=problem.pad_after, padding_mode=problem.padding_mode,
            n_threads=n_threads)
    return out


# Bytes of the depthwise tile each thread keeps (C * m channels x rows x W_out): about half of a
# typical 512 KiB - 2 MiB L2, so that the tile is still there when the GEMM reads it.
SEPARABLE_TILE_BYTES = 256 * 1024


def separable_tile_rows(c_mid: int, h_out: int, w_out: int, batch: int, itemsize: int,
                        n_threads: int) -> int:
    """Output rows per task of the fused kernel: as many as fit :data:`SEPARABLE_TILE_BYTES`,
    then fewer until every thread has a task (:func:`~pyconvfast._core.workspace.work_chunk`)."""
    return work_chunk(h_out, itemsize * c_mid * w_out, SEPARABLE_TILE_BYTES, units=batch,
                      min_tasks=n_threads)


def separable_conv2d(x: ArrayLike, depthwise: ArrayLike, pointwise: ArrayLike,
                     bias: ArrayLike | None = None, *, depthwise_bias: ArrayLike | None = None,
                     stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1,
                     padding_mode: PaddingMode = "zeros", flip: bool = False,
                     layout: Layout2d = "NCHW", out: FloatArray | None = None,
                     n_threads: int | None = None,
                     precision: Precision | None = None) -> FloatArray:
    """Depthwise-separable 2-D convolution (MobileNet, Xception), fused into one kernel.

    A depthwise convolution (``groups=C``, channel multiplier ``m``) followed by a pointwise
    (1x1) convolution, ``conv2d(conv2d(x, depthwise, groups=C, ...), pointwise)``, computed
    tile by tile: each task computes the depthwise result of a few output rows for all
    ``C * m`` channels into a per-thread buffer that stays in cache, then multiplies it by the
    pointwise weight (one single-threaded BLAS GEMM per tile) straight into ``out``. The
    ``(N, C * m, H_out, W_out)`` intermediate is never written to memory.

    Parameters
    ----------
    x : ndarray of float32 or float64, shape ``(N, C, H, W)``
        ``(N, H, W, C)`` with ``layout="NHWC"``; drop ``N`` for an unbatched input.
    depthwise : ndarray, shape ``(C * m, 1, R, S)``
        The depthwise filters; channel ``j`` reads input channel ``j // m``. Same dtype as ``x``.
    pointwise : ndarray, shape ``(K, C * m, 1, 1)``
        The pointwise filters.
    bias : ndarray, shape ``(K,)``, optional
        Added to the output (the pointwise convolution's bias).
    depthwise_bias : ndarray, shape ``(C * m,)``, optional
        The depthwise convolution's bias. There is no nonlinearity between the two
        convolutions here, so it is folded into the output bias,
        ``bias + pointwise[:, :, 0, 0] @ depthwise_bias`` (computed in float64 and rounded
        once); a network with an activation between them needs two calls.
    stride, padding, dilation, padding_mode, flip, layout, out, n_threads, precision
        As for :func:`conv2d`, for the depthwise convolution (the pointwise one has none);
        ``flip=True`` flips the depthwise kernels (true convolution).

    Returns
    -------
    ndarray, shape ``(N, K, H_out, W_out)`` (or ``(N, H_out, W_out, K)`` with ``layout="NHWC"``)
        Same dtype, layout and batching as ``x``; ``H_out, W_out`` those of the depthwise
        convolution.

    Raises
    ------
    TypeError
        Non-float or mixed dtypes; a float or bool where an int is needed.
    ValueError
        Weights of other shapes than the above (``depthwise.shape[0]`` not a multiple of
        ``C``, ``pointwise`` not 1x1 or not matching ``C * m``); every geometry error of
        :func:`conv2d`.

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1, 32, 56, 56)).astype(np.float32)
    >>> dw = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    >>> pw = rng.standard_normal((64, 32, 1, 1)).astype(np.float32)
    >>> y = pcf.separable_conv2d(x, dw, pw, padding=1)
    >>> y.shape
    (1, 64, 56, 56)
    >>> two_calls = pcf.conv2d(pcf.conv2d(x, dw, groups=32, padding=1), pw)
    >>> bool(np.allclose(y, two_calls, atol=1e-4))
    True
    """
    from pyconvfast._lib.separable.kernel import conv_separable_fused
    from pyconvfast._core.problem import CHANNELS_LAST
    from pyconvfast._core.threads import blas_threads

    x = _api._as_float_array("x", x)
    depthwise = _factor_array("depthwise", depthwise, 4, "(C * m, 1, R, S)", x.dtype)
    pointwise = _factor_array("pointwise", pointwise, 4, "(K, C * m, 1, 1)", x.dtype)
    if depthwise.shape[1] != 1:
        raise ValueError(f"depthwise must have shape (C * m, 1, R, S), got "
                         f"depthwise.shape={depthwise.shape}")
    if pointwise.shape[2:] != (1, 1) or pointwise.shape[1] != depthwise.shape[0]:
        raise ValueError(
            f"pointwise must have shape (K, C * m, 1, 1) = (K, {depthwise.shape[0]}, 1, 1) "
            f"to follow depthwise.shape={depthwise.shape}, got pointwise.shape={pointwise.shape}")
    if not isinstance(layout, str) or layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC' for separable_conv2d, "
                         f"got layout={layout!r}")
    channels_last = layout == CHANNELS_LAST[2]
    if x.ndim in (3, 4):
        channels = x.shape[-1] if channels_last else x.shape[-3]
    else:
        raise ValueError(f"x must be 4-D ({layout}) or 3-D (unbatched), got x.shape={x.shape}")
    problem = _api.cached_problem(
        x.shape, depthwise.shape, n_spatial=2, has_bias=False, dtype=x.dtype, stride=stride,
        padding=padding, dilation=dilation, groups=channels, padding_mode=padding_mode,
        flip=flip, layout=layout, precision=precision)
    c_mid, c_out = depthwise.shape[0], pointwise.shape[0]
    mid_shape = ((problem.batch,) if not problem.unbatched else ()) + (
        problem.out_size + (c_mid,) if channels_last else (c_mid,) + problem.out_size)
    out_problem = _api.cached_problem(mid_shape, pointwise.shape, n_spatial=2,
                                      has_bias=bias is not None, dtype=x.dtype, layout=layout)
    bias = _api.checked_bias(bias, out_problem, x.dtype)
    if depthwise_bias is not None:
        depthwise_bias = _api._as_float_array("depthwise_bias", depthwise_bias)
        if depthwise_bias.dtype != x.dtype:
            raise TypeError(f"x is {x.dtype} but depthwise_bias is {depthwise_bias.dtype}; "
                            f"cast one to the other's dtype")
        if depthwise_bias.shape != (c_mid,):
            raise ValueError(f"depthwise_bias must have shape ({c_mid},), got "
                             f"depthwise_bias.shape={depthwise_bias.shape}")
    n_threads = resolve_n_threads(n_threads)
    out = _api.output_array(out, out_problem, x.dtype,
                            {"x": x, "depthwise": depthwise, "pointwise": pointwise,
                             "bias": bias, "depthwise_bias": depthwise_bias})
    if depthwise_bias is not None:
        folded = pointwise[:, :, 0, 0].astype(np.float64) @ depthwise_bias.astype(np.float64)
        if bias is not None:
            folded += bias
        bias = folded.astype(x.dtype)
    if not problem.batch:
        return out
    x4 = _api._channels_first_5d(x, problem)[:, :, 0]
    out4 = _api._channels_first_5d(out, out_problem)[:, :, 0]
    w_depthwise = np.ascontiguousarray(_api.weight_5d(depthwise, problem)[:, 0, 0]).reshape(
        c_mid, -1)
    w_pointwise = np.ascontiguousarray(pointwise.reshape(c_out, c_mid))
    # Channels-innermost tiles (x with a unit channel stride) order the depthwise channels
    # (j, c) for output channel c * m + j, as the depthwise kernel's "pixels" loop does.
    channels, multiplier = problem.c_in, c_mid // problem.c_in
    w_packed = np.ascontiguousarray(
        w_depthwise.T.reshape(-1, channels, multiplier).transpose(0, 2, 1)).reshape(-1, c_mid)
    w_pointwise_packed = np.ascontiguousarray(
        w_pointwise.reshape(c_out, channels, multiplier).transpose(0, 2, 1)).reshape(c_out, c_mid)
    _, taps_h, taps_w = tap_tables(problem)
    h_out, w_out = problem.out_size
    rows = separable_tile_rows(c_mid, h_out, w_out, problem.batch, x.itemsize, n_threads)
    with blas_threads.limit(1):
        conv_separable_fused(x4, w_depthwise, w_pointwise, w_packed, w_pointwise_packed,
                             np.empty(0, x.dtype) if bias is None else bias, out4, taps_h,
                             taps_w, problem.stride, problem.dilation, problem.pad_before,
                             rows, n_threads)
    return out
