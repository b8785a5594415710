"""``separable_conv2d``, ``spatially_separable_conv2d``, ``flattened_conv2d`` (exact halos) and
``channel_shuffle`` on Dask arrays."""


from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da

from pyconvfast import _api
from pyconvfast._separable import _factor_array
from pyconvfast._config import resolve_precision
from pyconvfast._core.problem import CHANNELS_FIRST, CHANNELS_LAST
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast.dask._blocks import (FunctionBlock, Geometry, as_dask, blockwise_spatial,
                                     check_channel_chunks, float_arrays, layout_axes)
from pyconvfast._typing import ArrayLike, Ints, Layout, Layout2d, Padding, PaddingMode, Precision

# What the functions take as x: a Dask array, or anything NumPy makes an array of.
DaskOrArray = da.Array | ArrayLike
# the arrays as float arrays (None kept), by name
_Arrays = dict[str, Any]


# --- separable convolutions (exact halos) ------------------------------------------------------

def _separable(function, x, arrays, weight_shape, groups, c_out, *, stride, padding, dilation,
               padding_mode, flip, layout, n_threads, precision, extra):
    x = as_dask(x)
    arrays = float_arrays(x, **arrays)
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    try:
        problem = _api.make_problem(
            x.shape, weight_shape(arrays), n_spatial=2, stride=stride, padding=padding,
            dilation=dilation, groups=groups(x, layout) if callable(groups) else groups,
            padding_mode=padding_mode, layout=layout, flip=flip, dtype=x.dtype,
            precision=precision)
    except ValueError as error:  # as the NumPy functions say it: which factors made it
        shapes = ", ".join(f"{name}.shape={array.shape}" for name, array in arrays.items()
                           if array is not None and name != "bias")
        raise ValueError(f"{error} [the factors {shapes} make a weight of shape "
                         f"{weight_shape(arrays)}]") from None
    geometry = Geometry.of(problem)
    geometry.c_out = c_out(arrays)
    kwargs = dict(stride=problem.stride, dilation=problem.dilation, padding_mode=padding_mode,
                  flip=flip, layout=layout, precision=precision, **extra(arrays))
    positional = tuple(arrays[name] for name in (
        "depthwise", "pointwise", "column", "row", "lateral", "vertical", "horizontal", "bias")
        if name in arrays)

    def make_block_function(variants):
        return FunctionBlock(function, positional, n_threads, kwargs), ()

    return blockwise_spatial(x, 2, layout, geometry, make_block_function, x.dtype, function)


def _c_in(x: da.Array, layout: str) -> int:
    lead = x.ndim - 3
    return x.shape[-1] if layout == "NHWC" else x.shape[lead]


def separable_conv2d(x: DaskOrArray, depthwise: ArrayLike, pointwise: ArrayLike,
                     bias: ArrayLike | None = None, *, depthwise_bias: ArrayLike | None = None,
                     stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1,
                     padding_mode: PaddingMode = "zeros", flip: bool = False,
                     layout: Layout2d = "NCHW", n_threads: int | None = None,
                     precision: Precision | None = None) -> da.Array:
    """Depthwise-separable 2-D convolution of a Dask array, lazily, with exact halos.

    :func:`pyconvfast.separable_conv2d` block by block, cut as :func:`conv2d` cuts (the
    halo is the depthwise kernel's); the result equals the NumPy function's on the whole array.

    Parameters
    ----------
    x : dask.array.Array or ndarray, shape ``(N, C, H, W)`` (or ``layout="NHWC"``)
        The channel axis must be one chunk.
    depthwise : ndarray, shape ``(C * m, 1, R, S)``
    pointwise : ndarray, shape ``(K, C * m, 1, 1)``
    bias, depthwise_bias, stride, padding, dilation, padding_mode, flip, layout, precision
        As for :func:`pyconvfast.separable_conv2d`.
    n_threads : int, optional
        As for :func:`conv2d`.

    Returns
    -------
    dask.array.Array, shape ``(N, K, H_out, W_out)`` (or channels-last)

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast as pcf
    >>> import pyconvfast.dask as pcfd
    >>> x = np.random.default_rng(0).random((1, 4, 20, 20))
    >>> dw, pw = np.ones((4, 1, 3, 3)), np.ones((6, 4, 1, 1))
    >>> y = pcfd.separable_conv2d(da.from_array(x, chunks=(1, 4, 7, 7)), dw, pw, padding=1)
    >>> np.allclose(y.compute(), pcf.separable_conv2d(x, dw, pw, padding=1))
    True
    """
    arrays = {"depthwise": depthwise, "pointwise": pointwise, "bias": bias,
              "depthwise_bias": depthwise_bias}
    return _separable(
        "separable_conv2d", x, arrays, lambda a: a["depthwise"].shape, _c_in,
        lambda a: a["pointwise"].shape[0], stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode, flip=flip, layout=layout, n_threads=n_threads,
        precision=precision, extra=lambda a: {"depthwise_bias": a["depthwise_bias"]})


def spatially_separable_conv2d(x: DaskOrArray, column: ArrayLike, row: ArrayLike,
                               bias: ArrayLike | None = None, *, groups: int = 1,
                               stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1,
                               padding_mode: PaddingMode = "zeros", flip: bool = False,
                               layout: Layout2d = "NCHW", n_threads: int | None = None,
                               precision: Precision | None = None) -> da.Array:
    """2-D convolution with a rank-1 kernel of a Dask array, lazily, with exact halos.

    :func:`pyconvfast.spatially_separable_conv2d` block by block, cut as :func:`conv2d` cuts.

    Parameters
    ----------
    x : dask.array.Array or ndarray, shape ``(N, C, H, W)`` (or ``layout="NHWC"``)
        The channel axis must be one chunk.
    column : ndarray, shape ``(K, C // groups, R)``
    row : ndarray, shape ``(K, C // groups, S)``
    bias, groups, stride, padding, dilation, padding_mode, flip, layout, precision
        As for :func:`pyconvfast.spatially_separable_conv2d`.
    n_threads : int, optional
        As for :func:`conv2d`.

    Returns
    -------
    dask.array.Array, shape ``(N, K, H_out, W_out)`` (or channels-last)

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast as pcf
    >>> import pyconvfast.dask as pcfd
    >>> x = np.random.default_rng(0).random((1, 2, 20, 20))
    >>> col, row = np.ones((3, 2, 5)), np.ones((3, 2, 3))
    >>> y = pcfd.spatially_separable_conv2d(da.from_array(x, chunks=(1, 2, 6, 9)), col, row,
    ...                                     padding="same", padding_mode="replicate")
    >>> np.allclose(y.compute(), pcf.spatially_separable_conv2d(
    ...     x, col, row, padding="same", padding_mode="replicate"))
    True
    """
    arrays = {"column": column, "row": row, "bias": bias}
    return _separable(
        "spatially_separable_conv2d", x, arrays,
        lambda a: a["column"].shape + a["row"].shape[2:], groups,
        lambda a: a["column"].shape[0], stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode, flip=flip, layout=layout, n_threads=n_threads,
        precision=precision, extra=lambda a: {"groups": groups})


def flattened_conv2d(x, lateral, vertical, horizontal, bias=None, *, stride=1, padding=0,
                     dilation=1, padding_mode="zeros", flip=False, layout="NCHW",
                     n_threads=None, precision=None):
    """2-D convolution of a flattened layer on a Dask array, lazily, with exact halos.

    :func:`pyconvfast.flattened_conv2d` (a pointwise, a vertical and a horizontal pass) block
    by block, cut as :func:`conv2d` cuts for the ``(K, C, R, S)`` kernel the factors make.

    Parameters
    ----------
    x : dask.array.Array or ndarray, shape ``(N, C, H, W)`` (or ``layout="NHWC"``)
        The channel axis must be one chunk.
    lateral : ndarray, shape ``(K, C)``
    vertical : ndarray, shape ``(K, R)``
    horizontal : ndarray, shape ``(K, S)``
    bias, stride, padding, dilation, padding_mode, flip, layout, precision
        As for :func:`pyconvfast.flattened_conv2d`.
    n_threads : int, optional
        As for :func:`conv2d`.

    Returns
    -------
    dask.array.Array, shape ``(N, K, H_out, W_out)`` (or channels-last)

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast as pcf
    >>> import pyconvfast.dask as pcfd
    >>> x = np.random.default_rng(0).random((1, 4, 20, 20))
    >>> lat, ver, hor = np.ones((6, 4)), np.ones((6, 3)), np.ones((6, 5))
    >>> y = pcfd.flattened_conv2d(da.from_array(x, chunks=(1, 4, 6, 9)), lat, ver, hor,
    ...                           padding="same", padding_mode="circular")
    >>> np.array_equal(y.compute(), pcf.flattened_conv2d(
    ...     x, lat, ver, hor, padding="same", padding_mode="circular"))
    True
    """
    dtype = as_dask(x).dtype
    lateral = _factor_array("lateral", lateral, 2, "(K, C)", dtype)
    vertical = _factor_array("vertical", vertical, 2, "(K, R)", dtype)
    horizontal = _factor_array("horizontal", horizontal, 2, "(K, S)", dtype)
    arrays = {"lateral": lateral, "vertical": vertical, "horizontal": horizontal, "bias": bias}
    return _separable(
        "flattened_conv2d", x, arrays,
        lambda a: a["lateral"].shape + a["vertical"].shape[1:] + a["horizontal"].shape[1:], 1,
        lambda a: a["lateral"].shape[0], stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode, flip=flip, layout=layout, n_threads=n_threads,
        precision=precision, extra=lambda a: {})


# --- channel shuffle ---------------------------------------------------------------------------

def channel_shuffle(x: DaskOrArray, groups: int, layout: Layout = "NCHW", *,
                    n_threads: int | None = None) -> da.Array:
    """Shuffle the channels of a Dask array across ``groups`` (ShuffleNet), block by block.

    Parameters
    ----------
    x : dask.array.Array or ndarray
        As for :func:`pyconvfast.channel_shuffle`; the channel axis must be one chunk, the
        others may be cut anyhow.
    groups : int
        Must divide ``C``.
    layout : {"NCL", "NCHW", "NCDHW", "NLC", "NHWC", "NDHWC"}, default "NCHW"
    n_threads : int, optional
        Passed on to :func:`pyconvfast.channel_shuffle`.

    Returns
    -------
    dask.array.Array
        The same shape, chunks, dtype and layout as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast.dask as pcfd
    >>> x = da.arange(6.0, chunks=3).reshape(1, 6, 1, 1).rechunk((1, 6, 1, 1))
    >>> pcfd.channel_shuffle(x, 2).compute().ravel()
    array([0., 3., 1., 4., 2., 5.])
    """
    x = as_dask(x)
    n_spatial = len(layout) - 2 if isinstance(layout, str) else 0
    if layout not in (*CHANNELS_FIRST.values(), *CHANNELS_LAST.values()):
        raise ValueError(
            f"layout must be one of {sorted((*CHANNELS_FIRST.values(), *CHANNELS_LAST.values()))}"
            f", got layout={layout!r}")
    if x.ndim not in (n_spatial + 1, n_spatial + 2):
        raise ValueError(f"x must be {n_spatial + 2}-D ({layout}) or {n_spatial + 1}-D "
                         f"(unbatched), got x.shape={x.shape}")
    channel_axis, _ = layout_axes(x.ndim, n_spatial, layout)
    check_channel_chunks(x, channel_axis, "channel_shuffle")
    channels = x.shape[channel_axis]
    groups = _api._as_int("groups", groups, 1)
    if channels % groups:
        raise ValueError(f"groups={groups} must divide the {channels} channels of x "
                         f"(x.shape={x.shape}, layout={layout!r})")
    run = FunctionBlock("channel_shuffle", (groups, layout), n_threads, {})
    # da.map_blocks(f, x), which x.map_blocks(f) calls: dask's types take the method's f for
    # an array
    shuffled: da.Array = da.map_blocks(run, x, dtype=x.dtype)
    return shuffled
