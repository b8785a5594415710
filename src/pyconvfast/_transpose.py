"""Transposed convolution: ``conv_transpose1d``, ``conv_transpose2d``, ``conv_transpose3d``.

The problem type (:class:`ConvTransposeProblem`), its validation and the public functions; the
kernels are registered by :mod:`pyconvfast._algorithms.transpose_gemm` and its two siblings under ``kind="conv_transpose"``,
so that the tuner, its cache and the registry keep them apart from plain convolutions (the cache
key starts with ``conv_transposeNd``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast._algorithms.transpose_taps import KIND
from pyconvfast._config import resolve_precision
from pyconvfast._core.problem import CHANNELS_FIRST, CHANNELS_LAST, ConvProblem, _axes
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast._typing import (
    ArrayLike, FloatArray, Ints, Layout1d, Layout2d, Layout3d, Padding, Precision, Shape,
)


@dataclass(frozen=True)
class ConvTransposeProblem:
    """A validated transposed-convolution problem; tuples have one entry per spatial axis.

    ``in_size`` is the size of the transposed convolution's input ``x`` and ``out_size`` that of
    its result: ``(in - 1) * stride - pad_before - pad_after + dilation * (k - 1) + 1 +
    output_padding``. ``c_in`` is ``x``'s channel count (the weight's first axis).
    """

    batch: int
    c_in: int
    c_out: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    output_padding: tuple[int, ...]
    dtype: str
    layout: str
    flip: bool = False
    has_bias: bool = False
    unbatched: bool = False
    # Every transposed algorithm is within the summation bound; kept so that a plan or the
    # cache keys a choice the same way as for a convolution (pyconvfast._config).
    precision: str = "fast"

    kind = KIND
    padding_mode = "zeros"

    @cached_property
    def n_spatial(self) -> int:
        """Number of spatial axes: 1, 2 or 3."""
        return len(self.kernel)

    @cached_property
    def channels_last(self) -> bool:
        """True for the NLC / NHWC / NDHWC layouts."""
        return self.layout == CHANNELS_LAST[self.n_spatial]

    @cached_property
    def out_size(self) -> tuple[int, ...]:
        """Output spatial size."""
        return tuple(
            (i - 1) * s - pb - pa + d * (k - 1) + 1 + op
            for i, k, s, d, pb, pa, op in zip(
                self.in_size, self.kernel, self.stride, self.dilation, self.pad_before,
                self.pad_after, self.output_padding,
            )
        )

    @cached_property
    def out_shape(self) -> tuple[int, ...]:
        """Output array shape in the problem's layout, unbatched when the input was."""
        if self.channels_last:
            shape = (self.batch, *self.out_size, self.c_out)
        else:
            shape = (self.batch, self.c_out, *self.out_size)
        return shape[1:] if self.unbatched else shape

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two floating-point operations (no product is wasted)."""
        n = 2 * self.batch * self.c_in * (self.c_out // self.groups)
        for size, k in zip(self.in_size, self.kernel):
            n *= size * k
        return n

    def as_3d(self) -> dict[str, tuple[int, ...]]:
        """The geometry padded to three spatial axes (leading axes of size 1)."""
        lead = 3 - self.n_spatial
        return {
            "in_size": (1,) * lead + self.in_size,
            "out_size": (1,) * lead + self.out_size,
            "kernel": (1,) * lead + self.kernel,
            "stride": (1,) * lead + self.stride,
            "dilation": (1,) * lead + self.dilation,
            "pad_before": (0,) * lead + self.pad_before,
        }

    @property
    def key(self) -> str:
        """A string that names the problem exactly, for caches and reports."""
        return (
            f"conv_transpose{self.n_spatial}d|n{self.batch}|c{self.c_in}|k{self.c_out}"
            f"|g{self.groups}|in{_axes(self.in_size)}|w{_axes(self.kernel)}"
            f"|s{_axes(self.stride)}|d{_axes(self.dilation)}"
            f"|p{_axes(self.pad_before)}-{_axes(self.pad_after)}|op{_axes(self.output_padding)}"
            f"|{self.dtype}|{self.layout}|flip{int(self.flip)}"
            + ("|accurate" if self.precision == "accurate" else "")
        )


def n_spatial_of(weight_shape: tuple[int, ...]) -> int:
    """Spatial axes of a transposed convolution, from ``(C_in, C_out // groups, *kernel)``."""
    return _api.n_spatial_of(weight_shape, "(C_in, C_out // groups, *kernel)")


def _padding(padding: Any, n_spatial: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(padding, str):
        raise ValueError(
            f"padding of a transposed convolution must be an int, one int per axis or one "
            f"(before, after) pair per axis, got padding={padding!r}"
        )
    return _api._padding_pairs(padding, n_spatial, None, None, None, None)


def _output_size(output_size: Any, n_spatial: int, layout: str,
                 channels_last: bool) -> tuple[int, ...]:
    """The spatial sizes of ``output_size`` (n_spatial ints, or a whole batched shape)."""
    if not isinstance(output_size, (tuple, list)) or len(output_size) not in (
            n_spatial, n_spatial + 2):
        raise ValueError(
            f"output_size must be {n_spatial} ints (the spatial sizes) or a whole "
            f"{n_spatial + 2}-D shape in layout {layout!r}, got output_size={output_size!r}"
        )
    sizes = tuple(_api._as_int("output_size", v, 1, f"output_size={output_size!r}")
                  for v in output_size)
    if len(sizes) == n_spatial:
        return sizes
    return sizes[1:-1] if channels_last else sizes[2:]


def make_problem(
    x_shape: Any, weight_shape: Any, *, n_spatial: int, stride: Any = 1, padding: Any = 0,
    output_padding: Any = 0, dilation: Any = 1, groups: Any = 1, output_size: Any = None,
    layout: Any = None, flip: Any = False, has_bias: bool = False, dtype: Any = np.float32,
    precision: Any = None,
) -> ConvTransposeProblem:
    """Validate the geometry of a transposed convolution and return its problem.

    Raises ValueError or TypeError naming the offending argument; allocates nothing.
    """
    layout, channels_last, unbatched, batch, c_in, in_size = _api.activation_geometry(
        x_shape, weight_shape, n_spatial, layout, f"conv_transpose{n_spatial}d",
        "C_in, C_out // groups")
    x_shape, weight_shape = tuple(x_shape), tuple(weight_shape)
    w_c_in, k_per_group, kernel = weight_shape[0], weight_shape[1], weight_shape[2:]
    if w_c_in < 1 or k_per_group < 1 or min(kernel) < 1:
        raise ValueError(f"weight must have no empty axis, got weight.shape={weight_shape}")
    groups = _api._as_int("groups", groups, 1)
    if w_c_in != c_in:
        raise ValueError(
            f"x has C_in={c_in} channels but weight.shape[0]={w_c_in} (a transposed "
            f"convolution's weight is (C_in, C_out // groups, *kernel); x.shape={x_shape}, "
            f"weight.shape={weight_shape}, layout={layout!r})"
        )
    if c_in % groups:
        raise ValueError(
            f"groups={groups} must divide C_in={c_in} (x.shape={x_shape}, "
            f"weight.shape={weight_shape})"
        )
    stride = _api._int_tuple("stride", stride, n_spatial, 1)
    dilation = _api._int_tuple("dilation", dilation, n_spatial, 1)
    pad_before, pad_after = _padding(padding, n_spatial)
    output_padding_arg = output_padding
    output_padding = _api._int_tuple("output_padding", output_padding, n_spatial, 0)
    for axis, (op, s, d) in enumerate(zip(output_padding, stride, dilation)):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation on every axis; spatial "
                f"axis {axis} has output_padding {op}, stride {s}, dilation {d} "
                f"(output_padding={output_padding_arg!r})"
            )
    smallest = tuple(
        (i - 1) * s - pb - pa + d * (k - 1) + 1
        for i, k, s, d, pb, pa in zip(in_size, kernel, stride, dilation, pad_before, pad_after)
    )
    for axis, size in enumerate(smallest):
        if size + output_padding[axis] < 1:
            raise ValueError(
                f"padding={padding!r} is too large: the output would have size "
                f"{size + output_padding[axis]} on spatial axis {axis} (x.shape={x_shape}, "
                f"weight.shape={weight_shape}, stride={stride}, dilation={dilation})"
            )
    if output_size is not None:
        if any(output_padding):
            raise ValueError(
                f"give output_padding or output_size, not both (output_padding="
                f"{output_padding}, output_size={output_size!r})"
            )
        wanted = _output_size(output_size, n_spatial, layout, channels_last)
        picked = []
        for axis, (size, low) in enumerate(zip(wanted, smallest)):
            high = low + max(stride[axis], dilation[axis]) - 1
            if not max(low, 1) <= size <= high:
                raise ValueError(
                    f"output_size={output_size!r} cannot be reached: spatial axis {axis} can "
                    f"have sizes {max(low, 1)} to {high} with x.shape={x_shape}, "
                    f"weight.shape={weight_shape}, stride={stride}, padding={padding!r}, "
                    f"dilation={dilation}"
                )
            picked.append(size - low)
        output_padding = tuple(picked)
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"flip must be a bool, got flip={flip!r}")
    problem = ConvTransposeProblem(
        batch=batch, c_in=c_in, c_out=k_per_group * groups, groups=groups,
        in_size=tuple(in_size), kernel=tuple(kernel), stride=stride, dilation=dilation,
        pad_before=pad_before, pad_after=pad_after, output_padding=output_padding,
        dtype=np.dtype(dtype).name, layout=layout, flip=bool(flip), has_bias=has_bias,
        unbatched=unbatched, precision=resolve_precision(precision),
    )
    n_bytes = np.dtype(dtype).itemsize
    for size in problem.out_shape:
        n_bytes *= size
    if n_bytes > _api._physical_memory_bytes():
        raise ValueError(
            f"the output would have shape {problem.out_shape} ({n_bytes:.3g} bytes), more than "
            f"this machine's memory; check stride={stride}, x.shape={x_shape}"
        )
    return problem


cached_problem = _api.remembered(make_problem)


def explicit_algorithm(name: str, problem: ConvProblem | ConvTransposeProblem) -> Any:
    """The transposed algorithm ``name``, checked to support ``problem``."""
    usable_kind = registry.names(kind=KIND)
    if name not in usable_kind:
        raise ValueError(
            f"unknown algorithm={name!r} for a transposed convolution; choose 'auto' or one of "
            f"{usable_kind}"
        )
    return _api.explicit_algorithm(name, problem)


def conv_transpose(n_spatial: int, x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None, *,
                   algorithm: str, out: FloatArray | None, n_threads: int | None,
                   precision: Precision | None = None, **geometry: Any) -> FloatArray:
    """Shared body of conv_transpose1d/2d/3d (see their docstrings)."""
    geometry["precision"] = precision  # None: the remembered problem resolves the default
    x = _api._as_float_array("x", x)
    weight = _api._as_float_array("weight", weight)
    if weight.dtype != x.dtype:
        raise TypeError(
            f"x is {x.dtype} but weight is {weight.dtype}; cast one to the other's dtype")
    problem = cached_problem(x.shape, weight.shape, n_spatial=n_spatial,
                             has_bias=bias is not None, dtype=x.dtype, **geometry)
    bias = _api.checked_bias(bias, problem, x.dtype)
    n_threads = resolve_n_threads(n_threads)
    chosen = None if algorithm == "auto" else explicit_algorithm(algorithm, problem)
    out = _api.output_array(out, problem, x.dtype, {"x": x, "weight": weight, "bias": bias})
    if problem.batch == 0:
        return out
    x5, w5 = _api._channels_first_5d(x, problem), _api.weight_5d(weight, problem)
    _api.run_chosen(problem, chosen, x5, weight, w5, bias, _api._channels_first_5d(out, problem),
                    n_threads)
    return out


_DOC = """{n}-D transposed convolution (the adjoint of ``conv{n}d``) of a batch of {what}.

Each input sample is spread over the output, weighted by the kernel: ``out[n, k, o] +=
x[n, c, i] * weight[c, k % (C_out // groups), t]`` for ``o = i * stride - padding + t *
dilation`` (per axis), with ``c`` in ``k``'s group. It is the gradient of ``conv{n}d`` with
respect to its input, and upsamples by ``stride``. Computed without inserting zeros into ``x``
(see :doc:`guide/upsampling`).

Parameters
----------
x : ndarray of float32 or float64, shape ``(N, C_in, {spatial})``
    Input in the ``{cf}`` layout, or ``(N, {spatial}, C_in)`` with ``layout="{cl}"``; drop
    the leading ``N`` for an unbatched input. Read in place, any strides.
weight : ndarray, shape ``(C_in, C_out // groups, {kernel})``
    The filters, as PyTorch's ``ConvTranspose{n}d.weight``, whatever the layout of ``x``.
bias : ndarray, shape ``(C_out,)``, optional
    Added to every output position of each output channel.
stride : int or tuple of {ints}, default 1
    The upsampling factor: step between the output positions of neighbouring inputs.
padding : int, tuple of {ints}, or tuple of {n} ``(before, after)`` pair(s), default 0
    Removes ``padding`` positions from each end of the full result (as in PyTorch, it is
    the padding of the convolution this one transposes); strings are refused.
output_padding : int or tuple of {ints}, default 0
    Extra positions at the end of each axis, to pick among the input sizes that ``conv{n}d``
    with this stride maps to the same size; smaller than ``stride`` or ``dilation``.
dilation : int or tuple of {ints}, default 1
    Spacing between kernel taps.
groups : int, default 1
    ``C_in`` and ``C_out`` are split into this many groups.
output_size : tuple of {ints}, optional
    The wanted spatial output size (or a whole output shape); picks ``output_padding``.
    A size out of reach is a ValueError giving the sizes that can be had.
flip : bool, default False
    Flip the kernel on every spatial axis (the transpose of true convolution,
    ``conv{n}d(..., flip=True)``).
layout : {{"{cf}", "{cl}"}}, default "{cf}"
    Layout of ``x`` and of the result.
algorithm : str, default "auto"
    "auto" (tuned and cached like ``conv{n}d``), "transpose_gemm", "transpose_subpixel"
    (stride > 1) or "transpose_direct"; ``pcf.list_algorithms(transposed=True)`` lists them.
out : ndarray, optional
    Preallocated, writable result of the right shape and dtype; returned.
n_threads : int, optional
    OpenMP threads for the kernel; None uses OpenMP's default.
precision : {{"fast", "accurate"}}, optional
    As for :func:`conv2d`: every transposed algorithm is within the plain summation bound, so
    both run the same algorithms; the tuning cache keeps their choices apart.

Returns
-------
ndarray, shape ``(N, C_out, {spatial_out})``, or ``(N, {spatial_out}, C_out)`` with ``layout="{cl}"``
    Same dtype and layout as ``x``, where each output size is ``(in - 1) * stride -
    pad_before - pad_after + dilation * (k - 1) + 1 + output_padding``.

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
>>> pcf.conv_transpose{n}d(x, w, stride=2, padding=1).shape
{shape}
>>> pcf.conv_transpose{n}d(x, w, stride=2, padding=1, output_size={size}).shape
{shape_op}
"""


def _doc(n: int, what: str, x_shape: str, w_shape: str, shape: str, size: str,
         shape_op: str) -> str:
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[n]
    out = {1: "L_out", 2: "H_out, W_out", 3: "D_out, H_out, W_out"}[n]
    kernel = {1: "K", 2: "R, S", 3: "T, R, S"}[n]
    return _DOC.format(
        n=n, what=what, ints="1 int" if n == 1 else f"{n} ints", spatial=spatial,
        spatial_out=out, kernel=kernel, cf=CHANNELS_FIRST[n], cl=CHANNELS_LAST[n],
        x_shape=x_shape, w_shape=w_shape, shape=shape, size=size, shape_op=shape_op,
    )


def conv_transpose1d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
                     stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                     dilation: Ints = 1, groups: int = 1, output_size: Shape | None = None,
                     flip: bool = False, layout: Layout1d = "NCL", algorithm: str = "auto",
                     out: FloatArray | None = None, n_threads: int | None = None,
                     precision: Precision | None = None) -> FloatArray:
    return conv_transpose(
        1, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, out=out, n_threads=n_threads, precision=precision,
    )


def conv_transpose2d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
                     stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                     dilation: Ints = 1, groups: int = 1, output_size: Shape | None = None,
                     flip: bool = False, layout: Layout2d = "NCHW", algorithm: str = "auto",
                     out: FloatArray | None = None, n_threads: int | None = None,
                     precision: Precision | None = None) -> FloatArray:
    return conv_transpose(
        2, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, out=out, n_threads=n_threads, precision=precision,
    )


def conv_transpose3d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
                     stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                     dilation: Ints = 1, groups: int = 1, output_size: Shape | None = None,
                     flip: bool = False, layout: Layout3d = "NCDHW", algorithm: str = "auto",
                     out: FloatArray | None = None, n_threads: int | None = None,
                     precision: Precision | None = None) -> FloatArray:
    return conv_transpose(
        3, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, out=out, n_threads=n_threads, precision=precision,
    )


conv_transpose1d.__doc__ = _doc(1, "sequences", "(2, 4, 10)", "(4, 3, 4)", "(2, 3, 20)",
                                "(21,)", "(2, 3, 21)")
conv_transpose2d.__doc__ = _doc(2, "images", "(2, 4, 8, 8)", "(4, 3, 4, 4)", "(2, 3, 16, 16)",
                                "(17, 16)", "(2, 3, 17, 16)")
conv_transpose3d.__doc__ = _doc(3, "volumes", "(1, 2, 4, 4, 4)", "(2, 3, 4, 4, 4)",
                                "(1, 3, 8, 8, 8)", "(9, 8, 8)", "(1, 3, 9, 8, 8)")
