"""``resize_conv2d``: upsampling then convolution.

The reference upsamples in float64 with NumPy (``np.repeat`` for nearest; for bilinear, a loop
over output pixels written from PyTorch's ``align_corners=False`` formula), then applies the
float64 convolution reference of :mod:`reference`. Results must be within the summation bound
(plus the few roundings of the upsampling or of the collapsed weights).
"""

import tracemalloc

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _resize
from tests.helpers.reference import assert_within_bound, conv_reference, n_terms, reference_dtype

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def nearest_reference(x, scale, layout):
    axes = (1, 2) if layout == "NHWC" else (2, 3)
    axes = tuple(a - (4 - x.ndim) for a in axes)
    return np.repeat(np.repeat(x, scale[0], axis=axes[0]), scale[1], axis=axes[1])


def bilinear_reference(x, scale, layout):
    """One output pixel at a time: src = max((dst + 0.5) / s - 0.5, 0), 4 neighbours."""
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if layout == "NHWC":
        x = np.moveaxis(x, -1, 1)
    n, c, h, w = x.shape
    out = np.empty((n, c, h * scale[0], w * scale[1]))
    for oy in range(h * scale[0]):
        sy = max((oy + 0.5) / scale[0] - 0.5, 0.0)
        y0 = int(np.floor(sy))
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for ox in range(w * scale[1]):
            sx = max((ox + 0.5) / scale[1] - 0.5, 0.0)
            x0 = int(np.floor(sx))
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[:, :, oy, ox] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                                 + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    if layout == "NHWC":
        out = np.moveaxis(out, 1, -1)
    return out[0] if unbatched else out


def check(got, x, w, b, *, scale, mode, context="", **kwargs):
    layout = kwargs.get("layout", "NCHW")
    ref_dtype = reference_dtype(x.dtype)
    x_ref = x.astype(ref_dtype)
    upsample = nearest_reference if mode == "nearest" else bilinear_reference
    up = upsample(x_ref, scale, layout).astype(ref_dtype)
    # The scale is the whole linear map applied to |x|: the blend of |x|, not |blend of x|
    # (a bilinear blend of values of opposite signs cancels, its rounding does not).
    up_abs = upsample(np.abs(x_ref), scale, layout).astype(ref_dtype)
    geometry = {k: v for k, v in kwargs.items() if k in (
        "stride", "padding", "dilation", "groups", "padding_mode", "flip", "layout")}
    ref = conv_reference(up, w, b, dtype=ref_dtype, **geometry)
    scale_abs = conv_reference(up_abs, np.abs(w), None if b is None else np.abs(b),
                               dtype=ref_dtype, **geometry)
    # + 4: the roundings of a bilinear blend, or of summing collapsed weights.
    assert got.dtype == x.dtype
    assert_within_bound(got, ref, scale_abs, n_terms(w.shape) + 4, x.dtype, ref_dtype, context)


def _random_case(index):
    rng = np.random.default_rng([7, index])
    scale = tuple(int(v) for v in rng.choice([1, 2, 2, 3, 4], 2))
    if rng.random() < 0.5:
        scale = (scale[0], scale[0])
    mode = "nearest" if rng.random() < 0.7 else "bilinear"
    groups = int(rng.choice([1, 1, 2]))
    c_in = groups * int(rng.choice([1, 2, 3]))
    k_g = int(rng.choice([1, 2, 5]))
    in_size = tuple(int(v) for v in rng.integers(1, 6, 2))
    kernel = tuple(int(v) for v in rng.integers(1, 6, 2))
    stride = tuple(int(v) for v in rng.choice([1, 1, 2, 3], 2))
    dilation = tuple(int(v) for v in rng.choice([1, 1, 2], 2))
    padding_mode = str(rng.choice(PADDING_MODES))
    up = (in_size[0] * scale[0], in_size[1] * scale[1])
    limit = [u - 1 if padding_mode == "reflect" else 3 for u in up]
    padding = [(int(rng.integers(0, min(3, lim) + 1)), int(rng.integers(0, min(3, lim) + 1)))
               for lim in limit]
    for axis in range(2):
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        if extent > up[axis] + sum(padding[axis]):
            kernel = tuple(1 if a == axis else k for a, k in enumerate(kernel))
    if rng.random() < 0.3:
        padding = "same" if rng.random() < 0.5 else "valid"
        if padding == "valid":
            kernel, dilation = tuple(min(k, u) for k, u in zip(kernel, up)), (1, 1)
        if padding == "same" and padding_mode == "reflect":
            padding_mode = "zeros"
    layout = "NHWC" if rng.random() < 0.4 else "NCHW"
    dtype = np.float32 if rng.random() < 0.7 else np.float64
    shape = (2, c_in) + in_size if layout == "NCHW" else (2,) + in_size + (c_in,)
    if rng.random() < 0.15:
        shape = shape[1:]
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((k_g * groups, c_in // groups) + kernel).astype(dtype)
    b = rng.standard_normal(k_g * groups).astype(dtype) if rng.random() < 0.6 else None
    algorithm = str(rng.choice(["auto", "im2col", "direct"]))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  padding_mode=padding_mode, layout=layout, flip=bool(rng.random() < 0.2),
                  algorithm=algorithm)
    return x, w, b, scale, mode, kwargs


def _run(index):
    x, w, b, scale, mode, kwargs = _random_case(index)
    context = f"case {index}: x.shape={x.shape} w.shape={w.shape} scale={scale} {mode} {kwargs}"
    got = pcf.resize_conv2d(x, w, b, scale_factor=scale, mode=mode, **kwargs)
    check(got, x, w, b, scale=scale, mode=mode, context=context, **kwargs)


@pytest.mark.parametrize("index", range(120))
def test_sweep(index):
    _run(index)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(120, 2120))
def test_sweep_slow(index):
    _run(index)


def test_sweep_covers_the_space():
    seen = set()
    for index in range(120):
        x, w, b, scale, mode, kwargs = _random_case(index)
        seen.add((mode, kwargs["padding_mode"], kwargs["algorithm"]))
        seen.add(("kernel parity", w.shape[2] % 2))
        seen.add(("scale", scale[0]))
    for mode in ("nearest", "bilinear"):
        for padding_mode in PADDING_MODES:
            for algorithm in ("auto", "im2col", "direct"):
                assert (mode, padding_mode, algorithm) in seen or mode == "bilinear"
    assert {("kernel parity", 0), ("kernel parity", 1)} <= seen
    assert {("scale", s) for s in (1, 2, 3, 4)} <= seen


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("scale", [2, 3, (2, 3)])
def test_nearest_kernels_and_padding(rng, kernel, padding_mode, scale):
    x = rng.standard_normal((2, 13, 5, 6)).astype(np.float32)
    w = rng.standard_normal((17, 13, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(17).astype(np.float32)
    scale_t = scale if isinstance(scale, tuple) else (scale, scale)
    for algorithm in ("im2col", "direct"):
        kwargs = dict(padding="same", padding_mode=padding_mode, algorithm=algorithm)
        got = pcf.resize_conv2d(x, w, b, scale_factor=scale, **kwargs)
        assert got.shape == (2, 17, 5 * scale_t[0], 6 * scale_t[1])
        check(got, x, w, b, scale=scale_t, mode="nearest", context=str(kwargs), **kwargs)


def test_nearest_is_exact_on_integers(rng):
    x = rng.integers(-4, 5, (2, 6, 7, 5)).astype(np.float32)
    w = rng.integers(-4, 5, (4, 3, 3, 4)).astype(np.float32)
    for scale in (1, 2, 3):
        up = nearest_reference(x.astype(np.float64), (scale, scale), "NCHW")
        ref = conv_reference(up, w, groups=2, padding=(1, 2), stride=2)
        got = pcf.resize_conv2d(x, w, scale_factor=scale, groups=2, padding=(1, 2), stride=2)
        np.testing.assert_array_equal(got, ref)


def test_nearest_does_not_materialize_the_upsampled_image(rng):
    x = rng.standard_normal((1, 1, 256, 256))
    w = rng.standard_normal((1, 1, 4, 4))
    pcf.resize_conv2d(x, w, scale_factor=4, stride=4)  # warm up (tap tables, imports)
    tracemalloc.start()
    got = pcf.resize_conv2d(x, w, scale_factor=4, stride=4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got.shape == (1, 1, 256, 256)
    upsampled_bytes = 1024 * 1024 * 8
    assert peak < upsampled_bytes / 4, peak


def test_auto_times_both_kernels_once_and_caches_the_faster(rng, monkeypatch, tmp_path):
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PYCONVFAST_TUNE", "measure")
    pcf.tuning.autotune.forget()
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    check(pcf.resize_conv2d(x, w, padding=1), x, w, None, scale=(2, 2), mode="nearest",
          padding=1)
    (entry,) = pcf.tuning.report()
    assert entry["key"].startswith("resize_conv2d|scale2x2|conv2d|n2|c3|k4|")
    assert set(entry["timings"]) == {"im2col", "direct"}
    assert entry["algorithm"] == min(entry["timings"], key=entry["timings"].get)
    # The next call reads the choice (a second entry would mean it was timed again).
    check(pcf.resize_conv2d(x, w, padding=1), x, w, None, scale=(2, 2), mode="nearest",
          padding=1)
    assert len(pcf.tuning.report()) == 1
    monkeypatch.setenv("PYCONVFAST_TUNE", "off")
    pcf.resize_conv2d(x, w, padding=1, scale_factor=3)
    assert len(pcf.tuning.report()) == 1
    pcf.tuning.autotune.forget()


def test_collapsed_kernel_is_smaller():
    # 3x3 kernel, factor 2, "same" padding: every phase collapses to 2 taps per axis.
    phases = _resize.axis_phases(8, 16, 3, 1, 1, 1, 2, "zeros")
    assert [collapse.shape for _, _, _, collapse in phases] == [(3, 2), (3, 2)]
    np.testing.assert_array_equal(phases[0][3], [[1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(phases[1][3], [[1, 0], [1, 0], [0, 1]])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_out_and_unbatched(rng, layout):
    x = rng.standard_normal((3, 4, 5) if layout == "NCHW" else (4, 5, 3))
    w = rng.standard_normal((2, 3, 3, 3))
    for mode in ("nearest", "bilinear"):
        got = pcf.resize_conv2d(x, w, mode=mode, padding=1, layout=layout)
        assert got.shape == ((2, 8, 10) if layout == "NCHW" else (8, 10, 2))
        out = np.empty_like(got)
        assert pcf.resize_conv2d(x, w, mode=mode, padding=1, layout=layout, out=out) is out
        np.testing.assert_array_equal(out, got)
        check(got, x, w, None, scale=(2, 2), mode=mode, padding=1, layout=layout)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4, (2, 3)])
def test_matches_torch(rng, mode, scale):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    scale_t = scale if isinstance(scale, tuple) else (scale, scale)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    up = F.interpolate(torch.from_numpy(x), scale_factor=scale_t, mode=mode, **kwargs)
    expected = F.conv2d(up, torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
    got = pcf.resize_conv2d(x, w, b, scale_factor=scale, mode=mode, padding=1)
    ref_scale = conv_reference(np.abs(up.numpy()).astype(np.float64), np.abs(w),
                               np.abs(b), padding=1)
    assert np.all(np.abs(got - expected) <= 1e-5 * ref_scale + 1e-6)


def test_empty_batch():
    got = pcf.resize_conv2d(np.zeros((0, 2, 3, 3)), np.zeros((4, 2, 3, 3)), padding=1)
    assert got.shape == (0, 4, 6, 6)
    got = pcf.resize_conv2d(np.zeros((0, 2, 3, 3)), np.zeros((4, 2, 3, 3)), padding=1,
                            mode="bilinear")
    assert got.shape == (0, 4, 6, 6)


X = np.zeros((1, 2, 4, 4))
W = np.zeros((3, 2, 3, 3))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(scale_factor=0), ValueError, "scale_factor must be >= 1, got scale_factor=0"),
    (dict(scale_factor=1.5), TypeError,
     "scale_factor must be an int or 2 ints (integer upsampling factors; fractional factors "
     "are not supported), got scale_factor=1.5"),
    (dict(scale_factor=2.0), TypeError, "got scale_factor=2.0"),
    (dict(scale_factor=(2, 2, 2)), ValueError,
     "scale_factor must be an int or 2 ints (height, width), got scale_factor=(2, 2, 2)"),
    (dict(scale_factor=(2, -1)), ValueError, "scale_factor must be >= 1, got scale_factor=(2, -1)"),
    (dict(scale_factor=True), TypeError, "scale_factor must be an int, got bool"),
    (dict(mode="bicubic"), ValueError, "mode must be 'nearest' or 'bilinear', got mode='bicubic'"),
    (dict(algorithm="winograd_f2x2_3x3"), ValueError,
     "algorithm must be one of ('auto', 'im2col', 'direct') for mode='nearest', "
     "got algorithm='winograd_f2x2_3x3'"),
    (dict(algorithm="fast", mode="bilinear"), ValueError, "unknown algorithm='fast'"),
    (dict(layout="NCL"), ValueError, "layout must be 'NCHW' or 'NHWC' for resize_conv2d"),
    (dict(padding_mode="mirror"), ValueError, "padding_mode must be one of"),
    (dict(padding=8, padding_mode="reflect"), ValueError,
     "padding_mode='reflect' needs padding smaller than the input size"),
    (dict(stride=0), ValueError, "stride must be >= 1, got stride=0"),
    (dict(groups=2), ValueError, "groups=2 must divide both C_in=2 and C_out=3"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error) as info:
        pcf.resize_conv2d(X, W, **kwargs)
    assert message in str(info.value)


def test_bad_arrays():
    with pytest.raises(ValueError, match=r"x must be 4-D \(NCHW\) or 3-D \(unbatched\)"):
        pcf.resize_conv2d(np.zeros((4, 4)), W)
    with pytest.raises(TypeError, match="x is float64 but weight is float32"):
        pcf.resize_conv2d(X, W.astype(np.float32))
    with pytest.raises(ValueError, match="x has C_in=3 channels but weight expects"):
        pcf.resize_conv2d(np.zeros((1, 3, 4, 4)), W)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        pcf.resize_conv2d(X, W, np.zeros(2))
    with pytest.raises(ValueError, match=r"out has shape \(1, 3, 8, 8\), but the result has "
                                         r"shape \(1, 3, 6, 6\)"):
        pcf.resize_conv2d(X, W, out=np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="the kernel .* is larger than the padded input"):
        pcf.resize_conv2d(np.zeros((1, 2, 1, 1)), W, scale_factor=1)
