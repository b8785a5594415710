"""A plain reference convolution and the error bound the library's results are held to.

Independent of pyconvfast on purpose: the input is padded explicitly with ``np.pad`` (the four
padding modes map to numpy's ``constant``/``reflect``/``edge``/``wrap``), then every kernel tap
contributes one strided slice of the padded input, contracted with that tap's weights per group by
``einsum``. No tap tables, no index arithmetic shared with the library.

Error bound (oneDNN benchdnn style, never an elementwise relative error)
-----------------------------------------------------------------------
Each output is a sum of ``n_terms = (C_in / groups) * prod(kernel) + 1`` terms (the products and
the bias). Whatever the summation order, the computed sum in precision ``eps`` satisfies
``|got - exact| <= n_terms * eps * scale`` with ``scale = |x| (*) |w| + |b|`` (the same convolution
applied to absolute values). The reference itself is computed in a wider type (float64 for
float32 results, the x87 80-bit long double for float64 results where the platform has it) and
has its own bound of the same form, which is added, plus ``n_terms * tiny`` for underflow.

Algorithms that transform their operands (Winograd) round in the transformed domain too, and
legitimately exceed that bound. Each such algorithm has its own tolerance in
``ALGORITHM_TOLERANCE``: an absolute error bound given as a multiple of the same scale. The bound
applied is then ``max(summation bound, tolerance * scale)``; it is never elementwise relative.
The FFT's error follows the norms of whole blocks rather than each output's scale: its tolerance,
in ``NORMWISE_TOLERANCE``, multiplies the largest scale of the result instead.
"""

import math

import numpy as np

CHANNELS_LAST = {1: "NLC", 2: "NHWC", 3: "NDHWC"}
CHANNELS_FIRST = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# Winograd: max |got - ref| / (|x| (*) |w| + |b|) on standard-normal data, float32, measured
# over 5 million outputs per channel count (docs/guide/algorithms.rst): F(2x2) 1.8e-6 with one
# input channel per group, 1.3e-6 with two, <= 4e-7 from three on; F(4x4) 2.9e-5, 1.2e-5 and
# <= 1e-5; F(2x2, 5x5) 9.1e-6 (1.0e-5 at dilation 2), 4.4e-6 and <= 3e-6
# (bench/winograd_error.py, 1M outputs each). The tolerances hold the worst case, one input
# channel, with a 2x margin (the tighter targets for three channels and more are tested in
# test_winograd.py). float64: the same times
# eps(float64) / eps(float32) = 2**-29, with the same margin, the transforms being the same.
ALGORITHM_TOLERANCE = {
    "winograd_f2x2_3x3": {np.dtype(np.float32): 4e-6, np.dtype(np.float64): 1e-14},
    "winograd_f4x4_3x3": {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 2e-13},
    "winograd_f2x2_5x5": {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 4e-14},
}

# FFT: its rounding error is spread evenly over a whole transformed block (it is bounded by eps
# times the norms of the block and of the kernel, times a slowly growing function of the FFT
# size), so it does not follow each output's own scale: an output whose window holds only a few
# small samples (at a zero-padded edge, say) has a tiny scale but the block's error. Its
# tolerance is therefore norm-wise, a multiple of the LARGEST scale of the result,
# ``|got - ref| <= tolerance * max(|x| (*) |w| + |b|)``. Measured with bench/fft_error.py
# (standard-normal data): max error / max(scale) = 2.5e-7 in float32 (about 4 eps) over the
# 1431 stride-1 cases of the default and slow sweeps, 1.3e-7 on 1-D signals up to 2**20
# samples, 2-D up to 512x512, kernels up to 127 (1-D) and 63x63 (2-D) and 1024 channels;
# float64 6.6e-16 (sweeps) and 3.3e-16 (large cases). Per output, error / scale reaches 0.18
# in float32 (the slow sweep; 1.8e-4 in the default one), which is why the bound is not per
# output. Tolerances: 6x the worst measured in float32, 1.5e-6, and 4.5x in float64, 3e-15.
NORMWISE_TOLERANCE = {
    "fft": {np.dtype(np.float32): 1.5e-6, np.dtype(np.float64): 3e-15},
}


def algorithm_tolerance(algorithm, dtype, usable=()):
    """The error bound of ``algorithm`` beyond the summation bound, as a multiple of the scale.

    0 for an algorithm held to the summation bound alone (and for ``algorithm=None``). For
    ``"auto"``, the loosest tolerance among ``usable`` (the algorithms "auto" may pick).
    """
    names = usable if algorithm == "auto" else [algorithm]
    dtype = np.dtype(dtype)
    return max((ALGORITHM_TOLERANCE.get(name, {}).get(dtype, 0.0) for name in names),
               default=0.0)


def normwise_tolerance(algorithm, dtype, usable=()):
    """The norm-wise error bound of ``algorithm`` as a multiple of the largest scale of the
    result (see ``NORMWISE_TOLERANCE``); 0 for the others. For ``"auto"``, the loosest among
    ``usable``."""
    names = usable if algorithm == "auto" else [algorithm]
    dtype = np.dtype(dtype)
    return max((NORMWISE_TOLERANCE.get(name, {}).get(dtype, 0.0) for name in names),
               default=0.0)


def reference_dtype(dtype):
    """The accumulation type of the reference for results of ``dtype``."""
    if np.dtype(dtype) == np.float32:
        return np.dtype(np.float64)
    return np.dtype(np.longdouble)


def _per_axis(value, n_spatial):
    if isinstance(value, (tuple, list)):
        assert len(value) == n_spatial
        return tuple(int(v) for v in value)
    return (int(value),) * n_spatial


def same_padding(in_size, kernel, stride, dilation):
    """(before, after) of padding="same" on one axis, as the contract words it.

    Stride 1: the total ``dilation*(k-1)`` with the extra element at the end. Stride > 1:
    TensorFlow's SAME, ``out = ceil(in/stride)``, ``total = max((out-1)*stride + dilation*(k-1)
    + 1 - in, 0)``, ``before = total // 2``.
    """
    if stride == 1:
        total = dilation * (kernel - 1)
    else:
        out = math.ceil(in_size / stride)
        total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - in_size, 0)
    return total // 2, total - total // 2


def padding_pairs(padding, in_size, kernel, stride, dilation):
    """Any accepted ``padding`` form as a list of (before, after) pairs, one per spatial axis."""
    n_spatial = len(in_size)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n_spatial
        assert padding == "same", padding
        return [same_padding(*args) for args in zip(in_size, kernel, stride, dilation)]
    if isinstance(padding, (tuple, list)):
        assert len(padding) == n_spatial
        pairs = []
        for entry in padding:
            if isinstance(entry, (tuple, list)):
                pairs.append((int(entry[0]), int(entry[1])))
            else:
                pairs.append((int(entry), int(entry)))
        return pairs
    return [(int(padding), int(padding))] * n_spatial


def conv_reference(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", flip=False, layout=None, dtype=np.float64):
    """The convolution computed the slow obvious way, in ``dtype``.

    Takes the same arguments and array conventions as ``pcf.conv1d/2d/3d`` (channels-first or
    channels-last ``x``, batched or not; weight ``(C_out, C_in // groups, *kernel)``) and returns
    the result in the same layout and batching.
    """
    x = np.asarray(x)
    weight = np.asarray(weight)
    n_spatial = weight.ndim - 2
    assert n_spatial in (1, 2, 3)
    channels_last = layout == CHANNELS_LAST[n_spatial]
    unbatched = x.ndim == n_spatial + 1
    x = x.astype(dtype)
    weight = weight.astype(dtype)
    if unbatched:
        x = x[np.newaxis]
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    batch, c_in = x.shape[:2]
    in_size = x.shape[2:]
    c_out, c_per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    assert c_in == c_per_group * groups and c_out % groups == 0
    k_per_group = c_out // groups
    stride = _per_axis(stride, n_spatial)
    dilation = _per_axis(dilation, n_spatial)
    pairs = padding_pairs(padding, in_size, kernel, stride, dilation)

    if flip:
        weight = weight[(Ellipsis,) + (slice(None, None, -1),) * n_spatial]
    padded = np.pad(x, [(0, 0), (0, 0)] + pairs, mode=NUMPY_PAD_MODE[padding_mode])
    out_size = tuple(
        (padded.shape[2 + a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
        for a in range(n_spatial)
    )
    assert min(out_size) >= 1, "kernel larger than the padded input"
    grouped_w = weight.reshape(groups, k_per_group, c_per_group, *kernel)
    result = np.zeros((batch, groups, k_per_group) + out_size, dtype=dtype)
    for tap in np.ndindex(*kernel):
        window = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilation, out_size, stride)
        )
        x_tap = padded[(slice(None), slice(None)) + window]
        x_tap = x_tap.reshape((batch, groups, c_per_group) + out_size)
        w_tap = grouped_w[(Ellipsis,) + tap]  # (groups, k_per_group, c_per_group)
        result += np.einsum("ngc...,gkc->ngk...", x_tap, w_tap)
    result = result.reshape((batch, c_out) + out_size)
    if bias is not None:
        result += np.asarray(bias).astype(dtype).reshape((1, c_out) + (1,) * n_spatial)
    if channels_last:
        result = np.moveaxis(result, 1, -1)
    if unbatched:
        result = result[0]
    return result


def conv_scale(x, weight, bias=None, **kwargs):
    """``|x| (*) |w| + |b|``: the reference applied to absolute values (the error scale)."""
    return conv_reference(
        np.abs(np.asarray(x)), np.abs(np.asarray(weight)),
        None if bias is None else np.abs(np.asarray(bias)), **kwargs,
    )


def n_terms(weight_shape):
    """Terms summed into one output: ``(C_in / groups) * prod(kernel)`` products plus the bias."""
    return int(np.prod(weight_shape[1:])) + 1


def assert_within_bound(got, ref, scale, terms, dtype, ref_dtype, context="", tolerance=0.0,
                        normwise=0.0):
    """Assert ``|got - ref| <= terms * (eps(dtype) + eps(ref_dtype)) * scale + terms * tiny``,
    or ``<= tolerance * scale`` where that is larger (see :func:`algorithm_tolerance`), or
    ``<= normwise * max(scale)`` where that is larger (see :func:`normwise_tolerance`).

    The message names the worst element (largest error / bound), its value, the reference, the
    error and the bound, and then ``context`` (the case that reproduces it).
    """
    got = np.asarray(got)
    assert got.shape == ref.shape, f"shape {got.shape} != reference shape {ref.shape}\n{context}"
    info, ref_info = np.finfo(dtype), np.finfo(ref_dtype)
    ref = np.asarray(ref, dtype=ref_dtype)
    bound = terms * (float(info.eps) * scale + ref_info.eps * scale) + terms * float(info.tiny)
    if tolerance:
        bound = np.maximum(bound, tolerance * scale)
    if normwise and scale.size:
        bound = np.maximum(bound, normwise * scale.max())
    error = np.abs(got.astype(ref_dtype) - ref)
    bad = ~(error <= bound)  # also catches NaN
    if not bad.any():
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isnan(error), np.inf, error / bound)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    raise AssertionError(
        f"{int(bad.sum())} of {got.size} elements outside the error bound "
        f"(n_terms={terms}, eps={info.eps:.3g}, algorithm tolerance={tolerance:.3g}, "
        f"norm-wise tolerance={normwise:.3g});\n"
        f"worst at index {tuple(int(i) for i in worst)}: got {got[worst]!r}, "
        f"reference {float(ref[worst])!r}, |error| {float(error[worst]):.6g}, "
        f"bound {float(bound[worst]):.6g} (scale {float(scale[worst]):.6g}), "
        f"error/bound {float(ratio[worst]):.3g}\n{context}"
    )


def assert_conv_matches(got, x, weight, bias=None, *, context="", algorithm=None, **kwargs):
    """Compare one result of pyconvfast against the reference under the error bound.

    ``kwargs`` are the geometry/layout keyword arguments given to pyconvfast (stride, padding,
    dilation, groups, padding_mode, flip, layout); extra ones (out, n_threads) are ignored.
    ``algorithm`` (the name that computed ``got``) selects its tolerance; None holds ``got``
    to the summation bound alone. For ``"auto"``, the algorithms it may pick are asked of
    ``pyconvfast.list_algorithms`` (the one place this module uses the library under test, and
    only to choose a tolerance, never to compute the reference).
    """
    geometry = {
        k: v for k, v in kwargs.items()
        if k in ("stride", "padding", "dilation", "groups", "padding_mode", "flip", "layout")
    }
    got = np.asarray(got)
    dtype = np.asarray(x).dtype
    assert got.dtype == dtype, f"result dtype {got.dtype} != input dtype {dtype}\n{context}"
    ref_dtype = reference_dtype(dtype)
    ref = conv_reference(x, weight, bias, dtype=ref_dtype, **geometry)
    scale = conv_scale(x, weight, bias, dtype=ref_dtype, **geometry)
    usable = ()
    if algorithm == "auto":
        import pyconvfast

        usable = pyconvfast.list_algorithms(x, weight, **geometry)
    assert_within_bound(got, ref, scale, n_terms(np.shape(weight)), dtype, ref_dtype, context,
                        tolerance=algorithm_tolerance(algorithm, dtype, usable),
                        normwise=normwise_tolerance(algorithm, dtype, usable))
