"""``resize_conv2d`` on Dask arrays: upsample, then convolve, block by block with exact halos.

``mode="nearest"`` cuts the *input* (never upsampled, as in the NumPy function): output ``o``
reads, at tap ``t``, the upsampled sample ``u = o * stride - pad_before + t * dilation``, that
is input sample ``floor(u / s)``. An output block reads the input range holding its first and
last ``u`` and calls :func:`pyconvfast.resize_conv2d` on it. Cutting that range at a multiple of
``s`` keeps ``u mod s``, so every output sums the same taps of the same samples in the same
order as in the whole call (bitwise with ``algorithm="direct"``). A block's first output need
not fall on a whole stride of its range: the call then starts up to one stride earlier, with
less than ``stride`` padding before, and the outputs before the block's are cropped.

Padding acts on the upsampled image. "zeros", "replicate" and "circular" commute with nearest
upsampling, so a chunked axis is padded once on the input (``ceil(pad / s)`` samples, as NumPy
pads) and no block reads its call's padding. "reflect" does not commute: the edge blocks hold
the true image edge and the samples their reflected taps read, and their calls reflect.

``mode="bilinear"`` upsamples lazily (each upsampled chunk from the input samples its two
neighbours come from, with the NumPy function's global source coordinates, so the samples are
bitwise those of the whole call), then runs :func:`pyconvfast.dask.conv2d`, as the NumPy
function runs ``conv2d``.
"""

import numpy as np
import dask.array as da

from pyconvfast import _api
from pyconvfast import _resize
from pyconvfast._config import resolve_precision
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast.tuning import autotune
from pyconvfast.dask._blocks import (AxisPiece, FunctionBlock, as_dask, check_channel_chunks,
                                     float_arrays, layout_axes, output_owners,
                                     pad_chunked_axes, sliced_blocks)


def resize_pieces(chunks, in_size, out_size, scale, stride, extent, pad_before, pad_after,
                  padding_mode):
    """The :class:`AxisPiece` of each output chunk along one axis, and the input samples to pad
    before and after that axis (``(0, 0)`` for "reflect" and an axis in one chunk).

    Output ``j`` belongs to the input chunk holding upsampled sample ``j * stride`` (input
    chunk ``i`` gives output chunk ``i``, as for :func:`pyconvfast.dask.conv2d`).
    """
    if len(chunks) == 1:
        return [AxisPiece(0, in_size, out_size, pad_before, pad_after)], (0, 0)
    reflect = padding_mode == "reflect"
    pad_in = (0, 0) if reflect else (-(-pad_before // scale), -(-pad_after // scale))
    size = in_size + sum(pad_in)
    # Upsampled samples of the padded input left to pad before it (<= 0 but for "reflect").
    offset = pad_before - scale * pad_in[0]
    pieces, j0 = [], 0
    for count in output_owners([c * scale for c in chunks], out_size, stride):
        if not count:
            pieces.append(AxisPiece(0, 0, 0))
            continue
        lo = j0 * stride - offset  # the block reads upsampled samples [lo, hi)
        hi = (j0 + count - 1) * stride - offset + extent
        i0, i1 = max(lo, 0) // scale, min(size, (hi - 1) // scale + 1)
        if reflect:  # the reflected taps: u -> -u before the image, 2 * (size*s - 1) - u past it
            if lo < 0:
                i1 = max(i1, min(size, -lo // scale + 1))
            if hi > size * scale:
                i0 = min(i0, max(0, (2 * (size * scale - 1) - (hi - 1)) // scale))
        while True:
            before_first = lo - i0 * scale
            crop = -(-before_first // stride) if before_first > 0 else 0
            before = crop * stride - before_first
            after = max(0, (crop + count - 1) * stride + extent - (i1 - i0) * scale - before)
            if not reflect or max(before, after) < (i1 - i0) * scale:
                break
            # "reflect" needs padding smaller than the call's (upsampled) input: widen it.
            if i1 < size:
                i1 += 1
            else:
                i0 -= 1
        pieces.append(AxisPiece(i0, i1, count, before, after, None, crop))
        j0 += count
    return pieces, pad_in


def _upsample_axis(x, axis, scale):
    """Bilinear upsampling (PyTorch's, ``align_corners=False``) of ``x`` along ``axis`` by an
    integer ``scale``, lazily: upsampled chunk ``i`` is input chunk ``i`` times ``scale``."""
    if scale == 1:
        return x
    size = x.shape[axis]
    blocks, v0 = [], 0
    for chunk in x.chunks[axis]:
        v1 = v0 + chunk * scale
        low, high, _ = _bilinear_sources(v0, v1, scale, size)
        i0, i1 = int(low[0]), int(high[-1]) + 1
        selection = [slice(None)] * x.ndim
        selection[axis] = slice(i0, i1)
        piece = x[tuple(selection)].rechunk({axis: -1})
        chunks = list(piece.chunks)
        chunks[axis] = (v1 - v0,)
        blocks.append(piece.map_blocks(_bilinear_block, axis, v0, v1, i0, scale, size,
                                       chunks=tuple(chunks), dtype=x.dtype))
        v0 = v1
    return blocks[0] if len(blocks) == 1 else da.concatenate(blocks, axis=axis)


def _bilinear_sources(v0, v1, scale, size):
    """The two source samples and the weight of the second for upsampled samples ``[v0,
    v1)``, computed as :func:`pyconvfast._resize.bilinear_upsample` computes them."""
    src = np.maximum((np.arange(v0, v1, dtype=np.float64) + 0.5) / scale - 0.5, 0.0)
    low = np.floor(src).astype(np.int64)
    return low, np.minimum(low + 1, size - 1), src - low


def _bilinear_block(block, axis, v0, v1, i0, scale, size):
    low, high, frac = _bilinear_sources(v0, v1, scale, size)
    shape = [1] * block.ndim
    shape[axis] = v1 - v0
    frac = frac.astype(block.dtype).reshape(shape)
    return ((1 - frac) * np.take(block, low - i0, axis=axis)
            + frac * np.take(block, high - i0, axis=axis))


def _client_choice(variants, weight, bias, n_threads, kwargs):
    """The phase kernel for every block: what ``algorithm="auto"`` picks for the most common
    block (timed here, once, as the NumPy function times it, and cached under its key)."""
    shape, extra = max(variants, key=lambda variant: (variants[variant], variant))
    threads = 1 if n_threads is None else n_threads
    block = np.random.default_rng(0).standard_normal(shape).astype(weight.dtype)
    call = dict(kwargs, **dict(extra))
    scales = call["scale_factor"]
    _, spatial_axes = layout_axes(len(shape), 2, call["layout"])
    up_shape = list(shape)
    for axis, scale in zip(spatial_axes, scales):
        up_shape[axis] *= scale
    geometry = {name: call[name] for name in ("stride", "padding", "dilation", "groups",
                                              "padding_mode", "layout", "flip", "precision")}
    problem = _api.make_problem(tuple(up_shape), weight.shape, n_spatial=2,
                                has_bias=bias is not None, dtype=weight.dtype, **geometry)
    first = "direct" if problem.c_in // problem.groups == 1 else "im2col"
    names = (first, "im2col" if first == "direct" else "direct")

    def run(name):
        _resize.resize_conv2d(block, weight, bias, algorithm=name, n_threads=threads, **call)

    # The NumPy function's own key: a call on this block shape in this process reuses it.
    return autotune.choose_among(
        f"resize_conv2d|scale{scales[0]}x{scales[1]}|{problem.key}|threads{threads}", names,
        run, weight.nbytes)


def resize_conv2d(x, weight, bias=None, *, scale_factor=2, mode="nearest", stride=1, padding=0,
                  dilation=1, groups=1, padding_mode="zeros", flip=False, layout="NCHW",
                  algorithm="auto", n_threads=None, precision=None):
    """Upsample a Dask array by an integer factor, then convolve it, lazily, with exact halos.

    :func:`pyconvfast.resize_conv2d` block by block; the result equals the NumPy function's on
    the whole array (bitwise with ``algorithm="direct"``). Batch chunks are kept; a spatial
    axis in several chunks gets exact halos for any kernel, stride, dilation, asymmetric
    padding and padding mode; input chunk ``i`` gives output chunk ``i`` (``scale`` times as
    long at stride 1 with ``padding="same"``).

    Parameters
    ----------
    x : dask.array.Array or ndarray of float32 or float64, shape ``(N, C_in, H, W)``
        Or ``(N, H, W, C_in)`` with ``layout="NHWC"``, or either without ``N``; a NumPy array
        is wrapped with ``da.asarray``. The channel axis must be one chunk.
    weight : ndarray, shape ``(C_out, C_in // groups, R, S)``
    bias : ndarray, shape ``(C_out,)``, optional
    scale_factor, mode, stride, padding, dilation, groups, padding_mode, flip, layout, precision
        As for :func:`pyconvfast.resize_conv2d`.
    algorithm : str, default "auto"
        "nearest": "auto" picks the phase kernel once, on the client, for the most common
        block (as the NumPy function picks it), and every block runs it; "im2col" or "direct"
        runs that kernel. "bilinear": as for :func:`conv2d` (one plan per graph).
    n_threads : int, optional
        Threads of each block's kernel; None: :func:`task_threads`.

    Returns
    -------
    dask.array.Array, shape ``(N, C_out, H_out, W_out)`` (or ``(N, H_out, W_out, C_out)``)
        Lazy; the shape, dtype and layout :func:`pyconvfast.resize_conv2d` gives; as many
        chunks per axis as ``x`` (one on channels).

    Raises
    ------
    ValueError
        The channel axis in several chunks (the message says how to rechunk), and every error
        of :func:`pyconvfast.resize_conv2d`, raised when the graph is built.
    TypeError
        As :func:`pyconvfast.resize_conv2d`.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast as pcf
    >>> import pyconvfast.dask as pcfd
    >>> x = np.random.default_rng(0).random((1, 3, 30, 20), dtype=np.float32)
    >>> w = np.ones((4, 3, 3, 3), dtype=np.float32)
    >>> lazy = pcfd.resize_conv2d(da.from_array(x, chunks=(1, 3, 8, 8)), w, padding="same",
    ...                           padding_mode="reflect", algorithm="direct")
    >>> lazy.chunks[2:]
    ((16, 16, 16, 12), (16, 16, 8))
    >>> np.array_equal(lazy.compute(), pcf.resize_conv2d(
    ...     x, w, padding="same", padding_mode="reflect", algorithm="direct"))
    True
    """
    if not isinstance(mode, str) or mode not in _resize.MODES:
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got mode={mode!r}")
    scales = _resize._scale_factors(scale_factor)
    x = as_dask(x)
    arrays = float_arrays(x, weight=weight, bias=bias)
    weight, bias = arrays["weight"], arrays["bias"]
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(
            f"layout must be 'NCHW' or 'NHWC' for resize_conv2d, got layout={layout!r}")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be 4-D ({layout}) or 3-D (unbatched), got x.shape={x.shape}")
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    channel_axis, spatial_axes = layout_axes(x.ndim, 2, layout)
    check_channel_chunks(x, channel_axis, "resize_conv2d")
    up_shape = list(x.shape)
    for axis, scale in zip(spatial_axes, scales):
        up_shape[axis] *= scale
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode, flip=flip, layout=layout, precision=precision)
    if mode == "bilinear":
        from pyconvfast.dask._convolution import conv2d

        up = x
        for axis, scale in zip(spatial_axes, scales):
            up = _upsample_axis(up, axis, scale)
        return conv2d(up, weight, bias, algorithm=algorithm, n_threads=n_threads, **conv)
    if algorithm not in _resize.ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {_resize.ALGORITHMS} for mode='nearest', "
            f"got algorithm={algorithm!r}")
    problem = _api.make_problem(
        tuple(up_shape), weight.shape, n_spatial=2, has_bias=bias is not None, dtype=x.dtype,
        **conv)
    bias = _api.checked_bias(bias, problem, x.dtype)
    if problem.batch == 0:
        return da.empty(problem.out_shape, dtype=x.dtype)
    chunked = [len(x.chunks[axis]) > 1 for axis in spatial_axes]
    per_axis, pad_in = [], []
    for i, axis in enumerate(spatial_axes):
        pieces, pads = resize_pieces(
            x.chunks[axis], x.shape[axis], problem.out_size[i], scales[i], problem.stride[i],
            problem.dilation[i] * (problem.kernel[i] - 1) + 1, problem.pad_before[i],
            problem.pad_after[i], padding_mode)
        per_axis.append(pieces)
        pad_in.append(pads)
    source = pad_chunked_axes(x, spatial_axes, chunked, [p[0] for p in pad_in],
                              [p[1] for p in pad_in], padding_mode)
    kwargs = dict(conv, scale_factor=scales, mode="nearest", stride=problem.stride,
                  dilation=problem.dilation)
    del kwargs["padding"]

    def make_block_function(variants):
        chosen = algorithm
        if chosen == "auto":
            chosen = _client_choice(variants, weight, bias, n_threads, kwargs)
        return FunctionBlock("resize_conv2d", (weight, bias), n_threads,
                             dict(kwargs, algorithm=chosen)), ()

    chunks = list(x.chunks)
    chunks[channel_axis] = (problem.c_out,)
    return sliced_blocks(source, spatial_axes, per_axis, chunks, make_block_function, x.dtype,
                         "resize_conv2d")
