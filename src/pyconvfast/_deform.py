"""``pcf.deform_conv2d``: deformable convolution v1 and v2 (modulated), torchvision's conventions.

The arguments are validated here (the geometry by :func:`pyconvfast._api.make_problem`, as for
``conv2d``); the work is done by ``_lib/deform/kernel.pyx`` (deformable im2col + BLAS GEMM, OpenMP over
chunks of output positions). Deformable convolution is not a :class:`~pyconvfast._core.problem.ConvProblem`
the convolution tuner could hand to another algorithm: it has one algorithm of its own,
``"deformable_im2col"``, kept out of :func:`pyconvfast.list_algorithms` (whose names all run
plain convolutions), and ``algorithm="auto"`` runs it without timing anything.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from pyconvfast._core.workspace import work_chunk, workspace_bytes
from pyconvfast import _api
from pyconvfast._lib.deform.kernel import deform_conv
from pyconvfast._core.threads import blas_threads, resolve_n_threads
from pyconvfast._typing import ArrayLike, FloatArray, Ints, Layout2d, Padding, Precision

#: The algorithms ``deform_conv2d`` accepts besides "auto".
ALGORITHMS = ("deformable_im2col",)

# Output positions per task. The chunk never depends on the thread count, so every thread count
# runs the same GEMMs and gives the same bits. 128 positions make GEMMs of useful height while
# the columns of a 256-channel 3x3 layer (1.2 MB in float32) stay near the core's cache, and cut
# a 14x14 output into two tasks.
DEFORM_CHUNK = 128
# The per-thread buffers are bounded by the workspace bound shared among this many threads,
# whatever n_threads is (so that the chunk, and the bits, do not depend on it).
_BUDGET_THREADS = 16


def deform_chunk(c_in: int, c_per_group_out: int, n_taps: int, n_positions: int, itemsize: int,
                 max_chunk: int | None = None) -> int:
    """Output positions sampled at once by one task: ``max_chunk`` (default
    :data:`DEFORM_CHUNK`), fewer where a thread's share of the workspace bound
    (``PYCONVFAST_WORKSPACE_MB``) would not hold its buffers."""
    bytes_per_position = ((c_in * n_taps + c_per_group_out + 5 * n_taps) * itemsize
                          + n_taps * (4 * 8 + 1))
    return work_chunk(n_positions, bytes_per_position, workspace_bytes() // _BUDGET_THREADS,
                      cap=max_chunk or DEFORM_CHUNK)


def _checked_side_array(name: str, value: ArrayLike, dtype: np.dtype[Any],
                        expected_shape: tuple[Any, ...], what: str) -> FloatArray:
    """``offset`` or ``mask`` as an array of ``dtype`` and ``expected_shape`` (None: any
    channel count, checked by the caller)."""
    array = _api._as_float_array(name, value)
    if array.dtype != dtype:
        raise TypeError(f"x is {dtype} but {name} is {array.dtype}; cast one to the other's dtype")
    if array.shape != expected_shape:
        raise ValueError(f"{name} must have shape {expected_shape} ({what}), got "
                         f"{name}.shape={array.shape}")
    return array


def deform_conv2d(x: ArrayLike, offset: ArrayLike, weight: ArrayLike,
                  bias: ArrayLike | None = None, *, stride: Ints = 1, padding: Padding = 0,
                  dilation: Ints = 1, groups: int = 1, mask: ArrayLike | None = None,
                  layout: Layout2d = "NCHW",
                  algorithm: Literal["auto", "deformable_im2col"] = "auto",
                  out: FloatArray | None = None, n_threads: int | None = None,
                  precision: Precision | None = None) -> FloatArray:
    """Deformable 2-D convolution (v1), or modulated deformable convolution (v2) with ``mask``.

    Each kernel tap of each output position samples the input at its regular place plus a
    learned, fractional displacement, by bilinear interpolation; with a mask, each sample is
    also scaled by a modulation scalar. The conventions are torchvision's
    (``torchvision.ops.deform_conv2d``), so results compare one to one:

    ``out[n, k, oh, ow] = bias[k] + sum over c in the group of k, taps (i, j) of
    weight[k, c, i, j] * mask[n, g*R*S + t, oh, ow] * bilinear(x[n, c], y, x)`` with
    ``t = i*S + j``, ``g`` the offset group of channel ``c``, ``y = oh*stride - pad + i*dilation
    + offset[n, 2*(g*R*S + t), oh, ow]`` and ``x = ow*stride - pad + j*dilation +
    offset[n, 2*(g*R*S + t) + 1, oh, ow]`` (computed in the input's precision).
    ``bilinear`` is 0 for a point with ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W``;
    otherwise it interpolates the four neighbouring pixels, those outside the image counting as
    0 (so it fades to 0 over the last pixel of distance beyond the border).

    Parameters
    ----------
    x : ndarray of float32 or float64, shape ``(N, C_in, H, W)``
        Input, or ``(N, H, W, C_in)`` with ``layout="NHWC"``; drop ``N`` for an unbatched
        input. Any strides are read in place.
    offset : ndarray, shape ``(N, 2 * offset_groups * R * S, H_out, W_out)``
        Displacements, in pixels: channel ``2 * (g * R * S + i * S + j)`` holds the row (y)
        displacement of tap ``(i, j)`` in offset group ``g`` and the next channel the column (x)
        one. ``offset_groups`` is inferred from the channel count and must divide ``C_in``
        (channel ``c`` belongs to group ``c // (C_in // offset_groups)``). Same layout, batching
        and dtype as ``x`` (``(N, H_out, W_out, 2 * offset_groups * R * S)`` for "NHWC").
    weight : ndarray, shape ``(C_out, C_in // groups, R, S)``
        The filters, in this order whatever the layout; same dtype as ``x``.
    bias : ndarray, shape ``(C_out,)``, optional
    stride, dilation : int or tuple of 2 ints, default 1
    padding : int, tuple of 2 ints, tuple of 2 ``(before, after)`` pairs, "valid" or "same"
        As for :func:`conv2d`: zero padding, which only sets where the regular grid starts and
        how many outputs there are (samples outside the image are 0 anyway).
    groups : int, default 1
        Weight groups: ``C_in`` and ``C_out`` are split into this many groups, as for
        :func:`conv2d`. Independent of the offset groups.
    mask : ndarray, shape ``(N, offset_groups * R * S, H_out, W_out)``, optional
        Modulation (deformable convolution v2): channel ``g * R * S + i * S + j`` scales the
        samples of tap ``(i, j)`` in offset group ``g``. Same layout, batching and dtype as
        ``x``. None for v1 (every sample scaled by 1).
    layout : {"NCHW", "NHWC"}, default "NCHW"
        Layout of ``x``, ``offset``, ``mask`` and the result.
    algorithm : {"auto", "deformable_im2col"}, default "auto"
        There is one algorithm (bilinear-sampled columns, then a BLAS GEMM per weight group);
        "auto" runs it.
    out : ndarray, optional
        Preallocated, writable result of the right shape and dtype; returned.
    n_threads : int, optional
        OpenMP threads; None uses OpenMP's default (``OMP_NUM_THREADS``). The result is bitwise
        the same for every thread count.
    precision : {"fast", "accurate"}, optional
        As for :func:`conv2d`; the deformable kernel sums plainly, so both run it alike.

    Returns
    -------
    ndarray, shape ``(N, C_out, H_out, W_out)``, or ``(N, H_out, W_out, C_out)`` with "NHWC"
        Same dtype and layout as ``x`` (unbatched if ``x`` is); ``H_out`` and ``W_out`` are
        those of :func:`conv2d` with the same geometry.

    Raises
    ------
    TypeError
        Integer or mixed dtypes; a float or bool where an int is needed.
    ValueError
        Inconsistent shapes (``offset`` or ``mask`` not matching the output size, the kernel or
        the offset groups; ``offset_groups`` not dividing ``C_in``; ``groups`` not dividing the
        channels) or geometry, naming the argument and its value.

    Notes
    -----
    There is no ``flip``: true convolution flips the kernel, but which displacement goes with
    which tap is defined in cross-correlation order, and flipping would have to reorder the
    offset and mask channels too; flip ``weight`` and reorder those channels yourself if you
    need it.

    Examples
    --------
    With zero offsets, deformable convolution is the ordinary convolution:

    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(-4, 5, (2, 4, 8, 8)).astype(np.float32)
    >>> w = rng.integers(-4, 5, (6, 4, 3, 3)).astype(np.float32)
    >>> offset = np.zeros((2, 2 * 3 * 3, 8, 8), dtype=np.float32)   # one offset group
    >>> y = pcf.deform_conv2d(x, offset, w, padding=1)
    >>> y.shape
    (2, 6, 8, 8)
    >>> bool(np.array_equal(y, pcf.conv2d(x, w, padding=1)))
    True

    A displacement of one pixel to the right on every tap is the convolution of the shifted
    image; half a pixel averages two neighbours. With a mask of 0.5 (v2) every sample counts
    half:

    >>> offset[:, 1::2] = 0.5
    >>> mask = np.full((2, 9, 8, 8), 0.5, dtype=np.float32)
    >>> y2 = pcf.deform_conv2d(x, offset, w, padding=1, mask=mask)
    >>> bool(np.allclose(2 * y2, pcf.deform_conv2d(x, offset, w, padding=1), atol=1e-4))
    True
    """
    x = _api._as_float_array("x", x)
    weight = _api._as_float_array("weight", weight)
    if weight.dtype != x.dtype:
        raise TypeError(f"x is {x.dtype} but weight is {weight.dtype}; cast one to the other's dtype")
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in // groups, R, S), got "
                         f"weight.shape={weight.shape}")
    if not isinstance(algorithm, str) or algorithm not in ("auto",) + ALGORITHMS:
        raise ValueError(f"unknown algorithm={algorithm!r} for deform_conv2d; choose 'auto' or "
                         f"one of {list(ALGORITHMS)}")
    problem = _api.cached_problem(
        x.shape, weight.shape, n_spatial=2, stride=stride, padding=padding, dilation=dilation,
        groups=groups, layout=layout, has_bias=bias is not None, dtype=x.dtype,
        precision=precision,
    )
    bias = _api.checked_bias(bias, problem, x.dtype)
    n_taps = math.prod(problem.kernel)
    h_out, w_out = problem.out_size

    def side_shape(channels: Any) -> tuple[Any, ...]:
        spatial = (h_out, w_out)
        shape = (*spatial, channels) if problem.channels_last else (channels, *spatial)
        return shape if problem.unbatched else (problem.batch, *shape)

    offset = _api._as_float_array("offset", offset)
    channel_axis = -1 if problem.channels_last else (0 if problem.unbatched else 1)
    offset_channels = offset.shape[channel_axis] if offset.ndim == x.ndim else None
    if offset_channels is None or offset_channels < 2 * n_taps or offset_channels % (2 * n_taps):
        expected = "(" + ", ".join(str(v) for v in side_shape("2 * offset_groups * R * S")) + ")"
        raise ValueError(
            f"offset must have shape {expected} with R * S = {n_taps} "
            f"(layout={problem.layout!r}), got offset.shape={offset.shape}")
    offset_groups = offset_channels // (2 * n_taps)
    offset = _checked_side_array(
        "offset", offset, x.dtype, side_shape(offset_channels),
        f"offset_groups={offset_groups}, kernel {problem.kernel}, output {problem.out_size}")
    if problem.c_in % offset_groups:
        raise ValueError(
            f"offset.shape={offset.shape} gives offset_groups = {offset_channels} // "
            f"(2 * {n_taps}) = {offset_groups}, which does not divide C_in={problem.c_in}")
    if mask is not None:
        mask = _checked_side_array(
            "mask", mask, x.dtype, side_shape(offset_groups * n_taps),
            f"offset_groups * R * S = {offset_groups} * {n_taps}, output {problem.out_size}")
    n_threads = resolve_n_threads(n_threads)
    out = _api.output_array(out, problem, x.dtype, {
        "x": x, "offset": offset, "weight": weight, "bias": bias, "mask": mask})
    if problem.batch == 0:
        return out

    def channels_first(array: FloatArray) -> FloatArray:
        if problem.unbatched:
            array = array[np.newaxis]
        return np.moveaxis(array, -1, 1) if problem.channels_last else array

    chunk = deform_chunk(problem.c_in, problem.c_out // problem.groups, n_taps, h_out * w_out,
                         x.itemsize)
    matrix = np.ascontiguousarray(weight).reshape(problem.c_out, -1)
    (kh, kw), (sh, sw), (dh, dw) = problem.kernel, problem.stride, problem.dilation
    ph, pw = problem.pad_before
    with blas_threads.limit(1):
        deform_conv(
            channels_first(x), channels_first(offset),
            channels_first(mask) if mask is not None else np.zeros((1, 1, 1, 1), x.dtype),
            matrix, bias if bias is not None else np.empty(0, x.dtype), channels_first(out),
            kh, kw, sh, sw, ph, pw, dh, dw, problem.groups, offset_groups, mask is not None,
            chunk, n_threads,
        )
    return out
