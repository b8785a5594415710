"""``resize_conv2d``: upsample, then convolve (the checkerboard-free alternative to a transposed
convolution).

``mode="nearest"`` never builds the upsampled image. Along an axis upsampled by an integer ``s``
and convolved with stride ``st``, padding ``pad`` and dilation ``d``, output ``o`` reads the
upsampled position ``u = o * st - pad + t * d`` at tap ``t``, which holds input sample
``floor(u / s)``. Writing ``o = q * s + r`` (phase ``r``),

    floor(u / s) = q * st + c[r, t],        c[r, t] = floor((r * st - pad + t * d) / s),

so within a phase the taps that share an offset ``c`` read the same input sample for every
output: their weights add up. Each of the ``s_h * s_w`` phases is then a small convolution of the
*original* input with stride ``st`` and a collapsed kernel of ``len(set(c[r, :]))`` taps per axis
(for a 3x3 kernel and ``s = 2``: 2x2, so 2.25x fewer multiplies than convolving the upsampled
image), written into the strided phase view of the output by the im2col (or direct) kernel with
per-phase tap tables. Odd and even kernels, any padding and stride need nothing special: the
offsets carry them.

Padding modes act on the upsampled image. "zeros", "replicate" and "circular" commute with
nearest upsampling (an upsampled position outside the image maps to input ``floor(u / s)``
outside the input, then clipped, wrapped or zeroed there), so the phases apply them to the input
index. "reflect" does not (reflection about the upsampled edge sample depends on ``u mod s``):
it runs with the uncollapsed kernel, each tap reading ``reflect(u) // s``, still without
upsampling anything.

``mode="bilinear"`` follows ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` with an integer scale factor: the source coordinate of output ``o`` is
``max((o + 0.5) / s - 0.5, 0)``, blended linearly between its two neighbours (the upper one
clamped to the last sample). The upsampled image is materialized (two separable passes) and
then convolved by ``conv2d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from pyconvfast import _api
from pyconvfast.tuning import autotune
from pyconvfast._algorithms.im2col import lowered_gemm, positions_chunk
from pyconvfast._core.kernel_args import bias_or_empty
from pyconvfast._lib.direct.generic import conv_direct
from pyconvfast._core.padding import tap_table
from pyconvfast._core.threads import blas_threads, resolve_n_threads
from pyconvfast._typing import (
    ArrayLike, FloatArray, Ints, Layout2d, Padding, PaddingMode, Precision,
)

MODES = ("nearest", "bilinear")
ALGORITHMS = ("auto", "im2col", "direct")


def _scale_factors(scale_factor: Ints) -> tuple[int, ...]:
    if isinstance(scale_factor, (tuple, list)):
        if len(scale_factor) != 2:
            raise ValueError(
                f"scale_factor must be an int or 2 ints (height, width), "
                f"got scale_factor={scale_factor!r}")
        values: Sequence[Any] = scale_factor
    else:
        values = (scale_factor, scale_factor)
    shown = f"scale_factor={scale_factor!r}"
    factors = []
    for value in values:
        if isinstance(value, (float, np.floating)):
            raise TypeError(
                f"scale_factor must be an int or 2 ints (integer upsampling factors; "
                f"fractional factors are not supported), got {shown}")
        factors.append(_api._as_int("scale_factor", value, 1, shown))
    return tuple(factors)


def axis_phases(in_size: int, out_size: int, kernel: int, stride: int, dilation: int,
                pad_before: int, scale: int, padding_mode: str) -> list[Any]:
    """The phases of one axis: ``(start, step, table, collapse)`` each.

    Outputs ``start, start + step, ...`` read, at collapsed tap ``j``, the input sample
    ``table[q, j]`` (-1 for a zero); ``collapse[t, j]`` is 1 where original tap ``t`` adds into
    collapsed tap ``j``.
    """
    if padding_mode == "reflect":
        table = tap_table(in_size * scale, out_size, kernel, stride, dilation, pad_before,
                          "reflect") // scale
        return [(0, 1, np.ascontiguousarray(table), np.eye(kernel))]
    phases = []
    for r in range(min(scale, out_size)):
        offsets = [(r * stride - pad_before + t * dilation) // scale for t in range(kernel)]
        distinct = sorted(set(offsets))
        collapse = np.zeros((kernel, len(distinct)))
        for t, c in enumerate(offsets):
            collapse[t, distinct.index(c)] = 1
        n_q = -(-(out_size - r) // scale)
        index = (np.arange(n_q, dtype=np.int64)[:, None] * stride
                 + np.array(distinct, dtype=np.int64)[None, :])
        if padding_mode == "zeros":
            index[(index < 0) | (index >= in_size)] = -1
        elif padding_mode == "replicate":
            np.clip(index, 0, in_size - 1, out=index)
        else:  # circular
            np.mod(index, in_size, out=index)
        phases.append((r, scale, np.ascontiguousarray(index), collapse))
    return phases


def bilinear_upsample(x: FloatArray, scale_h: int, scale_w: int) -> FloatArray:
    """PyTorch's bilinear interpolation (align_corners=False) of (N, C, H, W) ``x`` by integer
    factors, computed in x's dtype."""
    def weights(size: int, scale: int) -> tuple[Any, Any, Any]:
        dst = np.arange(size * scale, dtype=np.float64)
        src = np.maximum((dst + 0.5) / scale - 0.5, 0.0)
        low = np.floor(src).astype(np.int64)
        high = np.minimum(low + 1, size - 1)
        frac = (src - low).astype(x.dtype)
        return low, high, frac

    low, high, frac = weights(x.shape[2], scale_h)
    frac = frac[:, None]
    rows = (1 - frac) * x[:, :, low, :] + frac * x[:, :, high, :]
    low, high, frac = weights(x.shape[3], scale_w)
    upsampled: FloatArray = (1 - frac) * rows[:, :, :, low] + frac * rows[:, :, :, high]
    return upsampled


def resize_conv2d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
                  scale_factor: Ints = 2, mode: Literal["nearest", "bilinear"] = "nearest",
                  stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
                  padding_mode: PaddingMode = "zeros", flip: bool = False,
                  layout: Layout2d = "NCHW",
                  algorithm: Literal["auto", "im2col", "direct"] = "auto",
                  out: FloatArray | None = None, n_threads: int | None = None,
                  precision: Precision | None = None) -> FloatArray:
    """Upsample a batch of images by an integer factor, then convolve them (resize-convolution).

    The same result as ``conv2d(upsample(x), weight, ...)``, where ``upsample`` is PyTorch's
    ``F.interpolate(x, scale_factor=scale_factor, mode=mode)`` (``align_corners=False`` for
    bilinear). Unlike a transposed convolution, every output sees the same number of kernel
    taps, so it does not produce checkerboard artifacts (see :doc:`guide/upsampling`).
    "nearest" never builds the upsampled image: it runs ``s_h * s_w`` small convolutions of ``x``
    with collapsed kernels (for 3x3 and factor 2, 2x2 kernels: 2.25x fewer multiplies).

    Parameters
    ----------
    x : ndarray of float32 or float64, shape ``(N, C_in, H, W)``
        Or ``(N, H, W, C_in)`` with ``layout="NHWC"``, or either without ``N``.
    weight : ndarray, shape ``(C_out, C_in // groups, R, S)``
        Same dtype as ``x``.
    bias : ndarray, shape ``(C_out,)``, optional
    scale_factor : int or tuple of 2 ints, default 2
        Upsampling factor per axis (height, width), integers >= 1; fractional factors are
        refused (TypeError).
    mode : {"nearest", "bilinear"}, default "nearest"
    stride, padding, dilation, groups, flip, layout, out, n_threads, precision
        As for :func:`conv2d`, applied to the upsampled image (``padding="same"`` keeps its size).
    padding_mode : {"zeros", "reflect", "replicate", "circular"}, default "zeros"
        Padding of the upsampled image, as for :func:`conv2d`.
    algorithm : {"auto", "im2col", "direct"}, default "auto"
        The kernel running each phase (nearest) or the convolution (bilinear, where any
        :func:`conv2d` algorithm name is accepted). "auto" times both kernels on the first call
        of each geometry and keeps the faster in the tuning cache, as :func:`conv2d` does
        (``PYCONVFAST_TUNE=off`` or ``estimate``: im2col, or direct for one input channel per
        group, untimed).

    Returns
    -------
    ndarray, shape ``(N, C_out, H_out, W_out)`` (or ``(N, H_out, W_out, C_out)``)
        With ``H_out = (H * s_h + pad_top + pad_bottom - dilation * (R - 1) - 1) // stride + 1``
        (likewise ``W_out``); same dtype and layout as ``x``.

    Raises
    ------
    TypeError, ValueError
        Bad arrays or arguments, naming the argument and its value.

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    >>> w = np.ones((1, 1, 1, 1), dtype=np.float32)
    >>> pcf.resize_conv2d(x, w, scale_factor=2)[0, 0]
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.],
           [2., 2., 3., 3.],
           [2., 2., 3., 3.]], dtype=float32)
    >>> pcf.resize_conv2d(np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3)), padding="same").shape
    (2, 4, 16, 16)
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got mode={mode!r}")
    scale_h, scale_w = _scale_factors(scale_factor)
    x = _api._as_float_array("x", x)
    weight = _api._as_float_array("weight", weight)
    if weight.dtype != x.dtype:
        raise TypeError(
            f"x is {x.dtype} but weight is {weight.dtype}; cast one to the other's dtype")
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(
            f"layout must be 'NCHW' or 'NHWC' for resize_conv2d, got layout={layout!r}")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be 4-D ({layout}) or 3-D (unbatched), got x.shape={x.shape}")
    spatial = tuple(a - (4 - x.ndim) for a in ((1, 2) if layout == "NHWC" else (2, 3)))
    up_shape = list(x.shape)
    up_shape[spatial[0]] *= scale_h
    up_shape[spatial[1]] *= scale_w
    if mode == "bilinear":
        x4 = x if x.ndim == 4 else x[None]
        if layout == "NHWC":
            x4 = np.moveaxis(x4, -1, 1)
        up = bilinear_upsample(x4, scale_h, scale_w)
        if layout == "NHWC":
            up = np.moveaxis(up, 1, -1)
        if x.ndim == 3:
            up = up[0]
        from pyconvfast._conv import conv2d

        return conv2d(up, weight, bias, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, padding_mode=padding_mode, flip=flip, layout=layout,
                      algorithm=algorithm, out=out, n_threads=n_threads, precision=precision)
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {ALGORITHMS} for mode='nearest', "
            f"got algorithm={algorithm!r}")
    problem = _api.make_problem(
        tuple(up_shape), weight.shape, n_spatial=2, stride=stride, padding=padding,
        dilation=dilation, groups=groups, padding_mode=padding_mode, layout=layout, flip=flip,
        has_bias=bias is not None, dtype=x.dtype, precision=precision)
    bias = _api.checked_bias(bias, problem, x.dtype)
    n_threads = resolve_n_threads(n_threads)
    out = _api.output_array(out, problem, x.dtype, {"x": x, "weight": weight, "bias": bias})
    if problem.batch == 0:
        return out
    # The kernels read x itself: a problem whose in_size is x's, for the 5-D views.
    x5 = _api._channels_first_5d(x, problem)
    out5 = _api._channels_first_5d(out, problem)
    w = _api.weight_5d(weight, problem)[:, :, 0]
    in_h, in_w = x5.shape[3], x5.shape[4]
    rows = axis_phases(in_h, problem.out_size[0], problem.kernel[0], problem.stride[0],
                       problem.dilation[0], problem.pad_before[0], scale_h, padding_mode)
    cols = axis_phases(in_w, problem.out_size[1], problem.kernel[1], problem.stride[1],
                       problem.dilation[1], problem.pad_before[1], scale_w, padding_mode)
    phases = []
    for r_h, step_h, table_h, collapse_h in rows:
        for r_w, step_w, table_w, collapse_w in cols:
            sub = np.einsum("kcrs,ri,sj->kcij", w, collapse_h.astype(w.dtype),
                            collapse_w.astype(w.dtype))
            phases.append((out5[:, :, :, r_h::step_h, r_w::step_w], np.ascontiguousarray(sub),
                           table_h, table_w))
    bias_arg = bias_or_empty(bias, x.dtype)

    def run(kernel: str) -> None:
        _run_phases(kernel, problem, x5, phases, bias_arg, n_threads)

    if algorithm == "auto":
        first = "direct" if problem.c_in // problem.groups == 1 else "im2col"
        names = (first, "im2col" if first == "direct" else "direct")
        algorithm = autotune.choose_among(
            f"resize_conv2d|scale{scale_h}x{scale_w}|{problem.key}|threads{n_threads}", names, run,
            sum(sub.nbytes for _, sub, _, _ in phases),
            prime=lambda: np.add.reduce(x5, axis=None))
    run(algorithm)
    return out


def _run_phases(kernel: str, problem: Any, x5: FloatArray, phases: list[Any], bias: FloatArray,
                n_threads: int) -> None:
    """Each phase's collapsed convolution of ``x5`` into its strided view of the output."""
    depth_table = np.zeros((1, 1), dtype=np.int64)
    k_g = problem.c_out // problem.groups
    with blas_threads.limit(1):
        for view, sub, table_h, table_w in phases:
            if kernel == "im2col":
                matrix = sub.reshape(problem.c_out, -1)
                chunk = positions_chunk(view.shape[3] * view.shape[4], matrix.shape[1], k_g,
                                        problem.batch * problem.groups, n_threads, x5.itemsize)
                lowered_gemm(x5, matrix, bias, view, (depth_table, table_h, table_w),
                             problem.groups, chunk, n_threads)
            else:
                conv_direct(x5, sub[:, :, None], bias, view, depth_table, table_h, table_w,
                            n_threads)
