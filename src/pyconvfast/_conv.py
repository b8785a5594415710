"""The public convolution functions ``conv1d``, ``conv2d``, ``conv3d``, ``conv_output_shape``
and ``list_algorithms``; the work is done by :mod:`pyconvfast._api`."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyconvfast import _api
from pyconvfast._typing import (
    ArrayLike, DTypeLike, FloatArray, Ints, Layout, Layout1d, Layout2d, Layout3d, Padding,
    PaddingMode, Precision, Shape,
)
from pyconvfast._algorithms import separable
from pyconvfast._algorithms import registry

_CONV_DOC = """{n}-D convolution (cross-correlation, as in deep learning) of a batch of {what}.

Parameters
----------
x : ndarray of float32 or float64, shape ``(N, C_in, {spatial})``
    Input in the ``{cf}`` layout, or ``(N, {spatial}, C_in)`` with ``layout="{cl}"``; drop
    the leading ``N`` for an unbatched input. Any strides are read in place (no copy).
weight : ndarray, shape ``(C_out, C_in // groups, {kernel})``
    The filters, in this order whatever the layout of ``x``; same dtype as ``x``.
bias : ndarray, shape ``(C_out,)``, optional
    Added to every output position of each output channel.
stride : int or tuple of {ints}, default 1
    Step between output positions along each spatial axis.
dilation : int or tuple of {ints}, default 1
    Spacing between kernel taps (atrous convolution).
padding : int, tuple of {ints}, tuple of {n} ``(before, after)`` pair(s), "valid" or "same"
    "same" splits the total ``dilation * (k - 1)`` with the extra element at the end; with
    ``stride > 1`` it follows TensorFlow's SAME rule (``ceil(in / stride)`` outputs).
groups : int, default 1
    Both ``C_in`` and ``C_out`` are split into this many groups; ``groups == C_in`` is a
    depthwise convolution (``C_out = m * C_in`` for a channel multiplier ``m``).
padding_mode : {{"zeros", "reflect", "replicate", "circular"}}, default "zeros"
    What the padding holds; done by index arithmetic, never by padding a copy of ``x``.
    "reflect" needs padding smaller than the input on every axis.
flip : bool, default False
    True for true (mathematical) convolution: the kernel is flipped on every spatial axis.
layout : {{"{cf}", "{cl}"}}, default "{cf}"
    Layout of ``x`` and of the result.
algorithm : str, default "auto"
    "auto", or a name from :func:`list_algorithms`; one that cannot run the problem is a
    ValueError saying why.
out : ndarray, optional
    Preallocated, writable result of the right shape and dtype; returned.
n_threads : int, optional
    Threads for the kernel (OpenMP, and BLAS for ``im2col``); None uses OpenMP's default
    (``OMP_NUM_THREADS``).
precision : {{"fast", "accurate"}}, optional
    "accurate" runs only algorithms within the plain summation error bound (no Winograd or
    FFT), which also keep NaN and infinities where a plain sum puts them; "fast" (the
    default) lets ``auto`` pick any. None: the configured default (:func:`config_context`,
    :func:`set_config`, ``PYCONVFAST_PRECISION``).

Returns
-------
ndarray, shape ``(N, C_out, {spatial_out})``, or ``(N, {spatial_out}, C_out)`` with ``layout="{cl}"``
    Same dtype and layout as ``x`` (unbatched if ``x`` is), where each output size is
    ``(in + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1``.

Raises
------
TypeError
    Integer, mixed or otherwise unsupported dtypes; a float or bool where an int is needed.
ValueError
    Any inconsistent shape or geometry, naming the argument and its value.

Examples
--------
>>> import numpy as np
>>> import pyconvfast as pcf
>>> x = np.ones({x_shape}, dtype=np.float32)
>>> w = np.ones({w_shape}, dtype=np.float32)
>>> {name}(x, w, padding="same").shape
{same_shape}
>>> {name}(x, w, stride=2).shape
{strided_shape}
"""


def _conv_doc(n: int, what: str, x_shape: str, w_shape: str, same_shape: str,
              strided_shape: str) -> str:
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[n]
    out = {1: "L_out", 2: "H_out, W_out", 3: "D_out, H_out, W_out"}[n]
    kernel = {1: "K", 2: "R, S", 3: "T, R, S"}[n]
    cf, cl = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}[n]
    return _CONV_DOC.format(
        n=n, ints="1 int" if n == 1 else f"{n} ints", what=what, spatial=spatial, spatial_out=out, kernel=kernel, cf=cf, cl=cl,
        name=f"pcf.conv{n}d", x_shape=x_shape, w_shape=w_shape, same_shape=same_shape,
        strided_shape=strided_shape,
    )


def conv1d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
           stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
           padding_mode: PaddingMode = "zeros", flip: bool = False,
           layout: Layout1d = "NCL", algorithm: str = "auto", out: FloatArray | None = None,
           n_threads: int | None = None, precision: Precision | None = None) -> FloatArray:
    return _api.convolve(1, x, weight, bias, stride, padding, dilation, groups, padding_mode,
                         flip, layout, algorithm, out, n_threads, precision)


def conv2d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
           stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
           padding_mode: PaddingMode = "zeros", flip: bool = False,
           layout: Layout2d = "NCHW", algorithm: str = "auto", out: FloatArray | None = None,
           n_threads: int | None = None, precision: Precision | None = None) -> FloatArray:
    return _api.convolve(2, x, weight, bias, stride, padding, dilation, groups, padding_mode,
                         flip, layout, algorithm, out, n_threads, precision)


def conv3d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
           stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
           padding_mode: PaddingMode = "zeros", flip: bool = False,
           layout: Layout3d = "NCDHW", algorithm: str = "auto", out: FloatArray | None = None,
           n_threads: int | None = None, precision: Precision | None = None) -> FloatArray:
    return _api.convolve(3, x, weight, bias, stride, padding, dilation, groups, padding_mode,
                         flip, layout, algorithm, out, n_threads, precision)


conv1d.__doc__ = _conv_doc(1, "sequences", "(2, 3, 10)", "(4, 3, 3)", "(2, 4, 10)", "(2, 4, 4)")
conv2d.__doc__ = _conv_doc(2, "images", "(2, 3, 8, 8)", "(4, 3, 3, 3)", "(2, 4, 8, 8)",
                           "(2, 4, 3, 3)")
conv3d.__doc__ = _conv_doc(3, "volumes", "(1, 2, 6, 6, 6)", "(4, 2, 3, 3, 3)",
                           "(1, 4, 6, 6, 6)", "(1, 4, 2, 2, 2)")


def conv_output_shape(x_shape: Shape, weight_shape: Shape, *, stride: Ints = 1,
                      padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
                      padding_mode: PaddingMode = "zeros",
                      layout: Layout | None = None) -> tuple[int, ...]:
    """Shape of the result of ``conv1d``/``conv2d``/``conv3d``, without computing it.

    The number of spatial axes is taken from ``weight_shape``. Each output size is
    ``(in + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1``.

    Parameters
    ----------
    x_shape : tuple of int
        ``(N, C_in, *spatial)``, ``(N, *spatial, C_in)`` for channels-last, or either without
        ``N``.
    weight_shape : tuple of int
        ``(C_out, C_in // groups, *kernel)``.
    stride, padding, dilation, groups, padding_mode, layout
        As for :func:`conv2d`; ``layout=None`` means channels-first.

    Returns
    -------
    tuple of int
        The output shape, in the same layout, unbatched if ``x_shape`` is.

    Raises
    ------
    TypeError, ValueError
        As the convolution itself would.

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> pcf.conv_output_shape((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    (1, 64, 112, 112)
    >>> pcf.conv_output_shape((32, 32, 3), (8, 3, 3, 3), padding="same", layout="NHWC")
    (32, 32, 8)
    """
    x_shape = _api._shape_of("x_shape", x_shape)
    weight_shape = _api._shape_of("weight_shape", weight_shape)
    problem = _api.make_problem(
        x_shape, weight_shape, n_spatial=_api.n_spatial_of(weight_shape), stride=stride,
        padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
        layout=layout,
    )
    return problem.out_shape


def list_algorithms(x: ArrayLike | Shape | None = None, weight: ArrayLike | Shape | None = None,
                    *, dtype: DTypeLike | None = None, transposed: bool = False,
                    **conv_kwargs: Any) -> list[str]:
    """Names of the algorithms, or of those that can run a given problem.

    Parameters
    ----------
    x, weight : ndarray or tuple of int, optional
        The input and weight (or their shapes) of a problem. Without them, every registered
        algorithm is listed.
    dtype : numpy dtype, optional
        The problem's dtype when ``x`` is a shape; default ``x.dtype``, else float32.
    transposed : bool, default False
        List the algorithms of transposed convolutions (:func:`conv_transpose2d`) instead;
        ``weight`` is then ``(C_in, C_out // groups, *kernel)``.
    **conv_kwargs
        ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``, ``flip``,
        ``layout``, as for :func:`conv2d` (with ``transposed=True``: ``output_padding`` and
        ``output_size`` too, as for :func:`conv_transpose2d`, and no ``padding_mode``).

    Returns
    -------
    list of str
        Registered names, in the order of registration; "auto" is always allowed besides.
        ``"separable"`` is listed only when ``weight`` is an array whose 2-D kernels (3x3 or
        larger) are all rank-1 (see :func:`separate_kernel`).

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> "direct" in pcf.list_algorithms()
    True
    >>> "direct" in pcf.list_algorithms((1, 8, 32, 32), (8, 1, 3, 3), groups=8)
    True
    >>> pcf.list_algorithms((1, 8, 16, 16), (8, 4, 4, 4), stride=2, transposed=True)
    ['transpose_gemm', 'transpose_subpixel', 'transpose_direct']
    """
    if not isinstance(transposed, (bool, np.bool_)):
        raise TypeError(f"transposed must be a bool, got transposed={transposed!r}")
    if x is None and weight is None:
        return registry.names(kind="conv_transpose" if transposed else "conv")
    if x is None or weight is None:
        raise ValueError("list_algorithms needs both x and weight (arrays or shapes), or neither")
    if dtype is None:
        dtype = x.dtype if isinstance(x, np.ndarray) else np.float32
    weight_shape = _api._shape_of("weight", weight)
    if transposed:
        from pyconvfast import _transpose

        return registry.names(_transpose.make_problem(
            _api._shape_of("x", x), weight_shape, n_spatial=_transpose.n_spatial_of(weight_shape),
            dtype=dtype, **conv_kwargs,
        ))
    problem = _api.make_problem(
        _api._shape_of("x", x), weight_shape, n_spatial=_api.n_spatial_of(weight_shape), dtype=dtype,
        **conv_kwargs,
    )
    if isinstance(weight, np.ndarray) and weight.dtype in _api._FLOAT_DTYPES:
        problem = separable.mark(problem, _api._as_float_array("weight", weight))
    return registry.names(problem)
