"""A plain reference transposed convolution, written from its scatter-add definition.

Independent of pyconvfast: for every kernel tap ``t``, each input sample ``i`` adds
``x[n, c, i] * w[c, k, t]`` into a full (uncropped) output at ``i * stride + t * dilation``
(a strided slice), contracted over the group's input channels by ``einsum``; the result is then
cropped by ``pad_before`` and cut (or extended by ``output_padding``) to the output size. No tap
tables, no phases, no GEMM.

The error bound is that of :mod:`reference`: each output sums at most
``(C_in / groups) * prod(kernel)`` products plus the bias, so ``n_terms`` is the same as for the
convolution with the same weight block, and the scale is the reference applied to absolute
values.
"""

import numpy as np

from tests.helpers.reference import CHANNELS_LAST, assert_within_bound, reference_dtype


def _per_axis(value, n_spatial):
    if isinstance(value, (tuple, list)):
        assert len(value) == n_spatial
        return tuple(value)
    return (value,) * n_spatial


def pad_pairs(padding, n_spatial):
    """``padding`` (int, per-axis ints or (before, after) pairs) as a list of pairs."""
    pairs = []
    for entry in _per_axis(padding, n_spatial):
        pairs.append(tuple(entry) if isinstance(entry, (tuple, list)) else (entry, entry))
    return pairs


def out_size(in_size, kernel, stride, padding, output_padding, dilation):
    """PyTorch's formula, per axis."""
    n_spatial = len(in_size)
    pairs = pad_pairs(padding, n_spatial)
    return tuple(
        (i - 1) * s - pb - pa + d * (k - 1) + 1 + op
        for i, k, s, (pb, pa), op, d in zip(
            in_size, kernel, _per_axis(stride, n_spatial), pairs,
            _per_axis(output_padding, n_spatial), _per_axis(dilation, n_spatial))
    )


def conv_transpose_reference(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                             dilation=1, groups=1, flip=False, layout=None, dtype=np.float64,
                             output_size=None):
    """The transposed convolution of ``x`` by ``weight`` ``(C_in, C_out // groups, *kernel)``,
    computed in ``dtype``, with pyconvfast's (PyTorch's) arguments and conventions."""
    n_spatial = np.ndim(weight) - 2
    channels_last = layout == CHANNELS_LAST[n_spatial]
    x = np.asarray(x).astype(dtype)
    weight = np.asarray(weight).astype(dtype)
    unbatched = x.ndim == n_spatial + 1
    if unbatched:
        x = x[None]
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    if flip:
        weight = weight[(Ellipsis,) + (slice(None, None, -1),) * n_spatial]
    batch, c_in, in_size = x.shape[0], x.shape[1], x.shape[2:]
    kernel = weight.shape[2:]
    k_per_group = weight.shape[1]
    c_out = k_per_group * groups
    stride = _per_axis(stride, n_spatial)
    dilation = _per_axis(dilation, n_spatial)
    pairs = pad_pairs(padding, n_spatial)
    if output_size is not None:
        low = out_size(in_size, kernel, stride, padding, 0, dilation)
        output_padding = tuple(o - lo for o, lo in zip(output_size[-n_spatial:], low))
    sizes = out_size(in_size, kernel, stride, padding, output_padding, dilation)
    full = tuple(
        max((i - 1) * s + d * (k - 1) + 1, pb + o)
        for i, s, d, k, (pb, _), o in zip(in_size, stride, dilation, kernel, pairs, sizes)
    )
    grouped_x = x.reshape((batch, groups, c_in // groups) + in_size)
    grouped_w = weight.reshape((groups, c_in // groups, k_per_group) + kernel)
    result = np.zeros((batch, groups, k_per_group) + full, dtype=dtype)
    for tap in np.ndindex(*kernel):
        window = tuple(
            slice(t * d, t * d + (i - 1) * s + 1, s)
            for t, d, i, s in zip(tap, dilation, in_size, stride)
        )
        w_tap = grouped_w[(Ellipsis,) + tap]  # (groups, c_per_group, k_per_group)
        result[(Ellipsis,) + window] += np.einsum("ngc...,gck->ngk...", grouped_x, w_tap)
    crop = tuple(slice(pb, pb + o) for (pb, _), o in zip(pairs, sizes))
    result = result.reshape((batch, c_out) + full)[(slice(None), slice(None)) + crop]
    if bias is not None:
        result = result + np.asarray(bias).astype(dtype).reshape((1, c_out) + (1,) * n_spatial)
    if channels_last:
        result = np.moveaxis(result, 1, -1)
    return result[0] if unbatched else result


def assert_transpose_matches(got, x, weight, bias=None, *, context="", **kwargs):
    """``got`` within the summation error bound of the float64 (long double) reference."""
    geometry = {k: v for k, v in kwargs.items() if k in (
        "stride", "padding", "output_padding", "dilation", "groups", "flip", "layout",
        "output_size")}
    got = np.asarray(got)
    dtype = np.asarray(x).dtype
    assert got.dtype == dtype, f"result dtype {got.dtype} != input dtype {dtype}\n{context}"
    ref_dtype = reference_dtype(dtype)
    ref = conv_transpose_reference(x, weight, bias, dtype=ref_dtype, **geometry)
    scale = conv_transpose_reference(
        np.abs(x), np.abs(weight), None if bias is None else np.abs(bias), dtype=ref_dtype,
        **geometry)
    terms = int(np.prod(np.shape(weight)[2:])) * (np.shape(x)[
        -1 if geometry.get("layout") == CHANNELS_LAST[np.ndim(weight) - 2] else
        (0 if np.ndim(x) == np.ndim(weight) - 1 else 1)] // geometry.get("groups", 1)) + 1
    assert_within_bound(got, ref, scale, terms, dtype, ref_dtype, context)
