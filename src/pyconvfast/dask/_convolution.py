"""``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` on Dask arrays (batch and spatial chunks,
exact halos)."""


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
from pyconvfast.dask._blocks import (AxisPiece, Geometry, PlannedBlock, as_dask,
                                     blockwise_spatial, check_channel_chunks, float_arrays,
                                     layout_axes, settled_plan, sliced_blocks)
from pyconvfast._typing import (
    ArrayLike, FloatArray, Ints, Layout, Layout1d, Layout2d, Layout3d, Padding, PaddingMode,
    Precision, Shape,
)

# What the functions take as x: a Dask array, or anything NumPy makes an array of.
DaskOrArray = da.Array | ArrayLike


# --- convolution -------------------------------------------------------------------------------

def _convolve(n_spatial, x, weight, bias, *, stride, padding, dilation, groups, padding_mode,
              flip, layout, algorithm, n_threads, precision):
    function = f"conv{n_spatial}d"
    x = as_dask(x)
    arrays = float_arrays(x, weight=weight, bias=bias)
    weight, bias = arrays["weight"], arrays["bias"]
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
        return da.empty(problem.out_shape, dtype=x.dtype)
    kwargs = dict(stride=problem.stride, dilation=problem.dilation, groups=groups,
                  padding_mode=padding_mode, flip=flip, layout=layout, precision=precision)

    def make_block_function(variants):
        plan, planned, algorithm_for = settled_plan(variants, weight, bias, algorithm,
                                                    n_threads, False, kwargs)
        run = PlannedBlock(function, planned, algorithm_for, n_threads, kwargs)
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


# --- transposed convolution ---------------------------------------------------------------------

def _convolve_transpose(n_spatial, x, weight, bias, *, stride, padding, output_padding,
                        dilation, groups, output_size, flip, layout, algorithm, n_threads,
                        precision):
    from pyconvfast import _transpose

    function = f"conv_transpose{n_spatial}d"
    x = as_dask(x)
    arrays = float_arrays(x, weight=weight, bias=bias)
    weight, bias = arrays["weight"], arrays["bias"]
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation, groups=groups, output_size=output_size, flip=flip,
                  layout=layout, precision=precision)
    problem = _transpose.make_problem(x.shape, weight.shape, n_spatial=n_spatial,
                                      has_bias=bias is not None, dtype=x.dtype, **kwargs)
    bias = _api.checked_bias(bias, problem, x.dtype)
    if algorithm != "auto":
        _transpose.explicit_algorithm(algorithm, problem)
    if problem.batch == 0:
        return da.empty(problem.out_shape, dtype=x.dtype)
    channel_axis, spatial_axes = layout_axes(x.ndim, n_spatial, layout)
    check_channel_chunks(x, channel_axis, function)
    for name in ("padding", "output_padding", "output_size"):
        kwargs.pop(name)  # each block gets its own padding and output_padding
    per_axis = [
        transpose_pieces(x.chunks[axis], problem.in_size[i], problem.out_size[i],
                         problem.dilation[i] * (problem.kernel[i] - 1) + 1, problem.stride[i],
                         problem.pad_before[i], problem.pad_after[i], problem.output_padding[i])
        for i, axis in enumerate(spatial_axes)]

    def make_block_function(variants):
        plan, planned, algorithm_for = settled_plan(variants, weight, bias, algorithm,
                                                    n_threads, True, kwargs)
        run = PlannedBlock(function, planned, algorithm_for, n_threads, kwargs)
        return run, (dask.delayed(plan, pure=False),)

    chunks = list(x.chunks)
    chunks[channel_axis] = (problem.c_out,)
    return sliced_blocks(x, spatial_axes, per_axis, chunks, make_block_function, x.dtype,
                         function)


def transpose_pieces(chunks, in_size, out_size, extent, stride, pad_before, pad_after,
                     output_padding):
    """The :class:`AxisPiece` of each output chunk of a transposed convolution along one axis.

    Input ``i`` adds into the uncropped outputs ``i * stride`` to ``i * stride + extent - 1``;
    output ``o`` is uncropped output ``o + pad_before``. Input chunk ``[c0, c1)`` gives output
    chunk ``[c0 * stride - pad_before, c1 * stride - pad_before)`` (clipped to the output; the
    last chunk runs to its end). The block of output chunk ``[o0, o1)`` holds the inputs that
    add into it, ``ceil((o0 + pad_before - extent + 1) / stride)`` to ``floor((o1 - 1 +
    pad_before) / stride)``, and is called with the padding that crops its uncropped outputs to
    ``[o0, o1)``, plus the ``output_padding`` (below ``stride``) that reaches ``o1`` where its
    last input's taps end before it.
    """
    if len(chunks) == 1:
        return [AxisPiece(0, in_size, out_size, pad_before, pad_after, output_padding)]
    bounds = np.cumsum((0,) + tuple(chunks)).tolist()
    edges = [0] + [min(max(c * stride - pad_before, 0), out_size) for c in bounds[1:-1]]
    edges.append(out_size)
    pieces = []
    for o0, o1 in zip(edges[:-1], edges[1:]):
        if o1 == o0:
            pieces.append(AxisPiece(0, 0, 0, 0, 0, 0))
            continue
        first, last = o0 + pad_before, o1 + pad_before  # uncropped outputs [first, last)
        # The first input is at most first // stride, so that the padding before is >= 0
        # (with stride > extent no input may add into the first output).
        i0 = max(0, min(-(-(first - extent + 1) // stride), first // stride, in_size - 1))
        i1 = min(in_size, (last - 1) // stride + 1)
        end = (i1 - 1) * stride + extent  # the block's uncropped outputs end there
        pieces.append(AxisPiece(i0, i1, o1 - o0, first - i0 * stride, max(end - last, 0),
                                max(last - end, 0)))
    return pieces


_TRANSPOSE_DOC = """{n}-D transposed convolution of a Dask array, lazily, with exact halos.

:func:`pyconvfast.conv_transpose{n}d` block by block, with one algorithm chosen on the client
(a plan for the most common block, as for :func:`conv{n}d`); the result equals the NumPy
function's on the whole array (bitwise with ``algorithm="transpose_direct"``). Batch chunks
are kept; along a spatial axis, input chunk ``[c0, c1)`` gives output chunk ``[c0 * stride -
pad_before, c1 * stride - pad_before)`` (clipped to the output; the last chunk runs to its
end), computed from the inputs that add into it (see :mod:`pyconvfast.dask`).

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
    Lazy; the result of :func:`pyconvfast.conv_transpose{n}d`, with as many chunks per axis as
    ``x`` (one on channels).

Raises
------
ValueError
    The channel axis in several chunks (the message says how to rechunk), and every error of
    :func:`pyconvfast.conv_transpose{n}d`, raised when the graph is built.

Examples
--------
>>> import numpy as np
>>> import dask.array as da
>>> import pyconvfast.dask as pcfd
>>> x = da.ones({x_shape}, chunks={chunks}, dtype=np.float32)
>>> y = pcfd.conv_transpose{n}d(x, np.ones({w_shape}, dtype=np.float32), stride=2)
>>> y.shape, y.chunks[0], y.chunks[-1]
({out_shape}, (1, 1, 1), {out_chunks})
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


for _n, _function, _x, _w, _out, _chunks in (
        (1, conv_transpose1d, "(3, 2, 5)", "(2, 4, 3)", "(3, 4, 11)", "(6, 5)"),
        (2, conv_transpose2d, "(3, 2, 5, 5)", "(2, 4, 3, 3)", "(3, 4, 11, 11)", "(6, 5)"),
        (3, conv_transpose3d, "(3, 2, 4, 4, 4)", "(2, 4, 3, 3, 3)", "(3, 4, 9, 9, 9)",
         "(6, 3)")):
    _function.__doc__ = _TRANSPOSE_DOC.format(
        n=_n, spatial={1: "L", 2: "H, W", 3: "D, H, W"}[_n],
        kernel={1: "K", 2: "R, S", 3: "T, R, S"}[_n], cl=CHANNELS_LAST[_n], x_shape=_x,
        w_shape=_w, out_shape=_out, chunks=f"(1, -1{', -1' * (_n - 1)}, 3)", out_chunks=_chunks)


