"""``conv1d/2d/3d`` (spatial chunks with exact halos) and ``conv_transpose1d/2d/3d`` (batch
chunks) on Dask arrays."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import numpy as np
import dask
import dask.array as da

from pyconvfast import _api
from pyconvfast._algorithms import separable
from pyconvfast._config import resolve_precision
from pyconvfast._core.problem import CHANNELS_LAST
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast.dask._blocks import (Geometry, PlannedBlock, as_dask, block_shapes,
                                     blockwise_spatial, check_channel_chunks, float_arrays,
                                     layout_axes, require_whole_spatial_axes, settled_plan)
from pyconvfast._typing import (
    ArrayLike, FloatArray, Ints, Layout, Layout1d, Layout2d, Layout3d, Padding, PaddingMode, Precision, Shape,
)

# What the functions take as x: a Dask array, or anything NumPy makes an array of.
DaskOrArray = da.Array | ArrayLike


# --- convolution -------------------------------------------------------------------------------

def _convolve(n_spatial: int, x: DaskOrArray, weight: ArrayLike, bias: ArrayLike | None, *,
              stride: Ints, padding: Padding, dilation: Ints, groups: int,
              padding_mode: PaddingMode, flip: bool, layout: Layout, algorithm: str,
              n_threads: int | None, precision: Precision | None) -> da.Array:
    function = f"conv{n_spatial}d"
    x = as_dask(x)
    arrays = float_arrays(x, weight=weight, bias=bias)
    weight, bias = cast("FloatArray", arrays["weight"]), arrays["bias"]
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    problem = _api.make_problem(
        x.shape, weight.shape, n_spatial=n_spatial, stride=stride, padding=padding,
        dilation=dilation, groups=groups, padding_mode=padding_mode, layout=layout, flip=flip,
        has_bias=bias is not None, dtype=x.dtype, precision=precision)
    bias = _api.checked_bias(bias, problem, x.dtype)
    if algorithm != "auto":
        _api.explicit_algorithm(algorithm, separable.mark(problem, weight))
    if problem.batch == 0:
        empty: da.Array = da.empty(problem.out_shape, dtype=x.dtype)
        return empty
    kwargs: dict[str, Any] = dict(
        stride=problem.stride, dilation=problem.dilation, groups=groups,
        padding_mode=padding_mode, flip=flip, layout=layout, precision=precision)

    def make_block_function(shapes: Counter[tuple[int, ...]], block_padding: Any,
                            ) -> tuple[PlannedBlock, tuple[Any, ...]]:
        plan, algorithm_for_shape = settled_plan(
            shapes, weight, bias, algorithm, n_threads, False,
            dict(kwargs, padding=block_padding))
        run = PlannedBlock(function, algorithm_for_shape, n_threads, kwargs)
        return run, (dask.delayed(plan, pure=False),)

    return blockwise_spatial(x, n_spatial, layout, Geometry.of(problem), make_block_function,
                              x.dtype, function)


_DOC = """{n}-D convolution of a Dask array, lazily: :func:`pyconvfast.conv{n}d` block by block.

The result equals ``pyconvfast.conv{n}d`` on the whole array (bitwise with
``algorithm="direct"``), whatever the chunks: batch chunks are kept, a spatial axis in
several chunks gets exact halos (any kernel size, dilation, stride and asymmetric padding; the
outer faces padded with ``padding_mode`` as the NumPy function pads them), and input chunk
``i`` gives output chunk ``i`` on every axis (empty where ``stride`` skips a chunk).

Parameters
----------
x : dask.array.Array or ndarray of float32 or float64, shape ``(N, C_in, {spatial})``
    Or ``(N, {spatial}, C_in)`` with ``layout="{cl}"``, or either without ``N``; a NumPy
    array is wrapped with ``da.asarray``. The channel axis must be one chunk.
weight : ndarray, shape ``(C_out, C_in // groups, {kernel})``
    Same dtype as ``x``; goes into the graph once, inside the plan.
bias : ndarray, shape ``(C_out,)``, optional
stride, padding, dilation, groups, padding_mode, flip, layout, precision
    As for :func:`pyconvfast.conv{n}d`.
algorithm : str, default "auto"
    "auto" makes one :func:`pyconvfast.plan` on the client for the most common block and runs
    its algorithm in every block (see :mod:`pyconvfast.dask`); a name runs that algorithm.
n_threads : int, optional
    Threads of each block's kernel; None: :func:`task_threads`, ``cores // worker_threads``.

Returns
-------
dask.array.Array, shape ``(N, C_out, {spatial_out})``, or ``(N, {spatial_out}, C_out)``
    Lazy; the dtype and layout of ``x``; as many chunks per axis as ``x`` (one on channels).

Raises
------
ValueError
    The channel axis in several chunks (the message says how to rechunk), and every geometry
    error of :func:`pyconvfast.conv{n}d`, raised when the graph is built.
TypeError
    As :func:`pyconvfast.conv{n}d`.

Examples
--------
>>> import numpy as np
>>> import dask.array as da
>>> import pyconvfast as pcf
>>> import pyconvfast.dask as pcfd
>>> x = np.random.default_rng(0).random({x_shape}, dtype=np.float32)
>>> w = np.ones({w_shape}, dtype=np.float32)
>>> lazy = pcfd.conv{n}d(da.from_array(x, chunks={chunks}), w, padding="same",
...                      padding_mode="reflect", algorithm="direct")
>>> lazy.chunks[-1]
{out_chunks}
>>> np.array_equal(lazy.compute(), pcf.conv{n}d(x, w, padding="same",
...                                            padding_mode="reflect", algorithm="direct"))
True
"""


def _conv_doc(n: int, x_shape: str, w_shape: str, chunks: str, out_chunks: str) -> str:
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[n]
    spatial_out = {1: "L_out", 2: "H_out, W_out", 3: "D_out, H_out, W_out"}[n]
    kernel = {1: "K", 2: "R, S", 3: "T, R, S"}[n]
    return _DOC.format(n=n, spatial=spatial, spatial_out=spatial_out, kernel=kernel,
                       cl=CHANNELS_LAST[n], x_shape=x_shape, w_shape=w_shape, chunks=chunks,
                       out_chunks=out_chunks)


def conv1d(x: DaskOrArray, weight: ArrayLike, bias: ArrayLike | None = None, *,
           stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
           padding_mode: PaddingMode = "zeros", flip: bool = False,
           layout: Layout1d = "NCL", algorithm: str = "auto", n_threads: int | None = None,
           precision: Precision | None = None) -> da.Array:
    return _convolve(1, x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=padding_mode, flip=flip, layout=layout,
                     algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv2d(x: DaskOrArray, weight: ArrayLike, bias: ArrayLike | None = None, *,
           stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
           padding_mode: PaddingMode = "zeros", flip: bool = False,
           layout: Layout2d = "NCHW", algorithm: str = "auto", n_threads: int | None = None,
           precision: Precision | None = None) -> da.Array:
    return _convolve(2, x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=padding_mode, flip=flip, layout=layout,
                     algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv3d(x: DaskOrArray, weight: ArrayLike, bias: ArrayLike | None = None, *,
           stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
           padding_mode: PaddingMode = "zeros", flip: bool = False,
           layout: Layout3d = "NCDHW", algorithm: str = "auto", n_threads: int | None = None,
           precision: Precision | None = None) -> da.Array:
    return _convolve(3, x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=padding_mode, flip=flip, layout=layout,
                     algorithm=algorithm, n_threads=n_threads, precision=precision)


conv1d.__doc__ = _conv_doc(1, "(2, 3, 50)", "(4, 3, 5)", "(1, 3, 16)", "(16, 16, 16, 2)")
conv2d.__doc__ = _conv_doc(2, "(1, 3, 40, 40)", "(4, 3, 3, 3)", "(1, 3, 16, 16)", "(16, 16, 8)")
conv3d.__doc__ = _conv_doc(3, "(1, 2, 12, 12, 12)", "(4, 2, 3, 3, 3)", "(1, 2, 6, 6, 6)",
                           "(6, 6)")


# --- transposed convolution (batch chunks) -----------------------------------------------------

def _convolve_transpose(n_spatial: int, x: DaskOrArray, weight: ArrayLike,
                        bias: ArrayLike | None, *, stride: Ints, padding: Padding,
                        output_padding: Ints, dilation: Ints, groups: int,
                        output_size: Shape | None, flip: bool, layout: Layout, algorithm: str,
                        n_threads: int | None, precision: Precision | None) -> da.Array:
    from pyconvfast import _transpose

    function = f"conv_transpose{n_spatial}d"
    x = as_dask(x)
    arrays = float_arrays(x, weight=weight, bias=bias)
    weight, bias = cast("FloatArray", arrays["weight"]), arrays["bias"]
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    kwargs: dict[str, Any] = dict(
        stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
        groups=groups, output_size=output_size, flip=flip, layout=layout, precision=precision)
    problem = _transpose.make_problem(x.shape, weight.shape, n_spatial=n_spatial,
                                      has_bias=bias is not None, dtype=x.dtype, **kwargs)
    bias = _api.checked_bias(bias, problem, x.dtype)
    if algorithm != "auto":
        _transpose.explicit_algorithm(algorithm, problem)
    if problem.batch == 0:
        empty: da.Array = da.empty(problem.out_shape, dtype=x.dtype)
        return empty
    channel_axis, spatial_axes = layout_axes(x.ndim, n_spatial, layout)
    check_channel_chunks(x, channel_axis, function)
    require_whole_spatial_axes(x, spatial_axes, function)
    padding = kwargs.pop("padding")
    plan, algorithm_for_shape = settled_plan(block_shapes(x), weight, bias, algorithm,
                                              n_threads, True, dict(kwargs, padding=padding))
    chunks = list(x.chunks)
    out_shape = problem.out_shape
    for axis in [channel_axis, *spatial_axes]:
        chunks[axis] = (out_shape[axis],)
    # da.map_blocks(f, x), which x.map_blocks(f) calls: dask's types take the method's f for
    # an array
    result: da.Array = da.map_blocks(
        PlannedBlock(function, algorithm_for_shape, n_threads, kwargs), x, padding,
        dask.delayed(plan, pure=False), chunks=tuple(chunks), dtype=x.dtype,
        meta=np.empty((0,) * x.ndim, dtype=x.dtype))
    return result


_TRANSPOSE_DOC = """{n}-D transposed convolution of a Dask array, split along the batch axis.

:func:`pyconvfast.conv_transpose{n}d` on each batch chunk, with one algorithm chosen on the
client (a plan for the most common chunk, as for :func:`conv{n}d`). The channel and spatial
axes must each be one chunk; spatial chunks are not supported yet.

Parameters
----------
x : dask.array.Array or ndarray of float32 or float64, shape ``(N, C_in, {spatial})``
    Or channels-last with ``layout="{cl}"``, or without ``N``; a NumPy array is wrapped.
weight : ndarray, shape ``(C_in, C_out // groups, {kernel})``
bias : ndarray, shape ``(C_out,)``, optional
stride, padding, output_padding, dilation, groups, output_size, flip, layout, algorithm, precision
    As for :func:`pyconvfast.conv_transpose{n}d`.
n_threads : int, optional
    As for :func:`conv{n}d`.

Returns
-------
dask.array.Array
    Lazy; the result of :func:`pyconvfast.conv_transpose{n}d`, chunked as ``x`` on the batch
    axis.

Raises
------
ValueError
    A channel or spatial axis in several chunks (the message says how to rechunk), and every
    error of :func:`pyconvfast.conv_transpose{n}d`.

Examples
--------
>>> import numpy as np
>>> import dask.array as da
>>> import pyconvfast.dask as pcfd
>>> x = da.ones({x_shape}, chunks={chunks}, dtype=np.float32)
>>> y = pcfd.conv_transpose{n}d(x, np.ones({w_shape}, dtype=np.float32), stride=2)
>>> y.shape, y.chunks[0]
({out_shape}, (1, 1, 1))
"""


def conv_transpose1d(x: DaskOrArray, weight: ArrayLike, bias: ArrayLike | None = None, *,
                     stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                     dilation: Ints = 1, groups: int = 1, output_size: Shape | None = None,
                     flip: bool = False, layout: Layout1d = "NCL", algorithm: str = "auto",
                     n_threads: int | None = None,
                     precision: Precision | None = None) -> da.Array:
    return _convolve_transpose(
        1, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv_transpose2d(x: DaskOrArray, weight: ArrayLike, bias: ArrayLike | None = None, *,
                     stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                     dilation: Ints = 1, groups: int = 1, output_size: Shape | None = None,
                     flip: bool = False, layout: Layout2d = "NCHW", algorithm: str = "auto",
                     n_threads: int | None = None,
                     precision: Precision | None = None) -> da.Array:
    return _convolve_transpose(
        2, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv_transpose3d(x: DaskOrArray, weight: ArrayLike, bias: ArrayLike | None = None, *,
                     stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                     dilation: Ints = 1, groups: int = 1, output_size: Shape | None = None,
                     flip: bool = False, layout: Layout3d = "NCDHW", algorithm: str = "auto",
                     n_threads: int | None = None,
                     precision: Precision | None = None) -> da.Array:
    return _convolve_transpose(
        3, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, n_threads=n_threads, precision=precision)


for _n, _function, _x, _w, _out in (
        (1, conv_transpose1d, "(3, 2, 5)", "(2, 4, 3)", "(3, 4, 11)"),
        (2, conv_transpose2d, "(3, 2, 5, 5)", "(2, 4, 3, 3)", "(3, 4, 11, 11)"),
        (3, conv_transpose3d, "(3, 2, 4, 4, 4)", "(2, 4, 3, 3, 3)", "(3, 4, 9, 9, 9)")):
    _function.__doc__ = _TRANSPOSE_DOC.format(
        n=_n, spatial={1: "L", 2: "H, W", 3: "D, H, W"}[_n],
        kernel={1: "K", 2: "R, S", 3: "T, R, S"}[_n], cl=CHANNELS_LAST[_n], x_shape=_x,
        w_shape=_w, out_shape=_out, chunks=f"(1, -1{', -1' * _n})")


