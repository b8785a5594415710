"""pyconvfast.dask's upsampling functions and flattened_conv2d equal the NumPy functions,
whatever the chunks.

``conv_transpose1d/2d/3d`` cut along spatial axes (each output chunk computed from the inputs
that add into it, with its own padding and output_padding) and ``resize_conv2d`` (the input
range each output block reads, a call starting up to one stride early and cropped) must give
bitwise the NumPy function's result with the deterministic kernels ("transpose_direct",
"direct"), and stay within the float64 reference's bound with "auto". The chunkings are drawn
as in tests/api/test_dask.py (one-element chunks, chunks smaller than the halo, uneven last
chunks, whole axes); ``pytest -m slow`` runs a larger sweep.
"""

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

import pyconvfast as pcf  # noqa: E402
import pyconvfast.dask as pcfd  # noqa: E402
from pyconvfast._resize import bilinear_upsample  # noqa: E402
from tests.api.test_dask import MODES, _random_chunks  # noqa: E402
from tests.helpers.reference import (  # noqa: E402
    CHANNELS_FIRST, CHANNELS_LAST, assert_conv_matches)
from tests.helpers.reference_transpose import assert_transpose_matches  # noqa: E402


def _layout_shape(n, layout, batch, channels, size):
    shape = (channels, *size) if layout == CHANNELS_FIRST[n] else (*size, channels)
    return (batch, *shape) if batch else shape


def _chunks(rng, shape, channel_axis):
    return tuple((s,) if axis == channel_axis else _random_chunks(rng, s)
                 for axis, s in enumerate(shape))


def _channel_axis(ndim, n, layout):
    return ndim - 1 if layout == CHANNELS_LAST[n] else ndim - n - 1


# --- transposed convolution ----------------------------------------------------------------------

def _transpose_case(rng):
    n = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, {1: 6, 2: 4, 3: 3}[n] + 1, n))
    stride = tuple(int(s) for s in rng.integers(1, 4, n))
    dilation = tuple(int(d) for d in rng.integers(1, 3, n))
    size = tuple(int(s) for s in rng.integers(1, {1: 14, 2: 8, 3: 5}[n] + 1, n))
    padding = tuple((int(rng.integers(0, 4)), int(rng.integers(0, 4))) for _ in range(n))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    layout = str(rng.choice([CHANNELS_FIRST[n], CHANNELS_LAST[n]]))
    dtype = rng.choice([np.float32, np.float64])
    x = rng.standard_normal(_layout_shape(n, layout, int(rng.integers(0, 3)), c_in,
                                          size)).astype(dtype)
    weight = rng.standard_normal((c_in, c_out // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if rng.integers(2) else None
    chunks = _chunks(rng, x.shape, _channel_axis(x.ndim, n, layout))
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation, groups=groups, flip=bool(rng.integers(2)), layout=layout)
    return n, x, weight, bias, chunks, kwargs


def _check_transpose(n, x, weight, bias, chunks, kwargs, algorithm):
    context = f"n={n} x={x.shape} {x.dtype} w={weight.shape} chunks={chunks} {kwargs}"
    numpy_function = getattr(pcf, f"conv_transpose{n}d")
    dask_function = getattr(pcfd, f"conv_transpose{n}d")
    try:
        expected = numpy_function(x, weight, bias, algorithm="transpose_direct", **kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            dask_function(da.from_array(x, chunks=chunks), weight, bias, **kwargs)
        return False
    lazy = dask_function(da.from_array(x, chunks=chunks), weight, bias, algorithm=algorithm,
                         **kwargs)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype, context
    _, spatial = pcfd._blocks.layout_axes(x.ndim, n, kwargs["layout"])
    for i, axis in enumerate(spatial):
        in_chunks, out_chunks = da.from_array(x, chunks=chunks).chunks[axis], lazy.chunks[axis]
        assert len(out_chunks) == len(in_chunks), context
        # input chunk [c0, c1) gives outputs [c0 * s - pad, c1 * s - pad), clipped
        bounds = np.cumsum(in_chunks)[:-1] * kwargs["stride"][i] - kwargs["padding"][i][0]
        assert np.array_equal(np.cumsum(out_chunks)[:-1],
                              np.clip(bounds, 0, expected.shape[axis])), context
    got = lazy.compute(scheduler="synchronous")
    if algorithm == "transpose_direct":
        np.testing.assert_array_equal(got, expected, err_msg=context)
    else:
        assert_transpose_matches(got, x, weight, bias, context=context, **kwargs)
    return True


def _transpose_sweep(seed, count, algorithm):
    rng = np.random.default_rng(seed)
    ran = sum(_check_transpose(*_transpose_case(rng), algorithm) for _ in range(count))
    assert ran >= count // 2


@pytest.mark.parametrize("seed", range(3))
def test_transpose_sweep_direct_is_bitwise(seed):
    _transpose_sweep(5000 + seed, 25, "transpose_direct")


def test_transpose_sweep_auto_within_bound():
    _transpose_sweep(6000, 15, "auto")


@pytest.mark.parametrize("stride,kernel,dilation", [(3, 1, 1), (2, 4, 1), (3, 2, 3), (1, 3, 2)])
def test_transpose_halos_on_one_element_chunks(stride, kernel, dilation):
    # stride > extent leaves outputs no input adds into (bias only); chunks of one element
    # are smaller than every halo here
    rng = np.random.default_rng(stride * 10 + kernel)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    weight = rng.standard_normal((4, 3, kernel, 2)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    for chunks, padding in [((1, 4, 1, 1), ((2, 0), (1, 1))), ((2, 4, 3, 5), ((0, 3), (0, 0))),
                            ((1, 4, (2, 5), (1, 5)), ((1, 1), (2, 0)))]:
        _check_transpose(2, x, weight, bias, chunks, dict(
            stride=(stride, 2), padding=padding, output_padding=(stride - 1, 1),
            dilation=(dilation, 1), groups=2, flip=True, layout="NCHW"), "transpose_direct")


def test_transpose_output_size_and_empty_chunks():
    x = np.random.default_rng(2).standard_normal((1, 2, 9))
    w = np.ones((2, 3, 3))
    for chunks in [(1, 2, (4, 5)), (1, 2, (1,) * 9)]:
        lazy = pcfd.conv_transpose1d(da.from_array(x, chunks=chunks), w, stride=2, padding=4,
                                     output_size=(12,), algorithm="transpose_direct")
        np.testing.assert_array_equal(lazy.compute(), pcf.conv_transpose1d(
            x, w, stride=2, padding=4, output_size=(12,), algorithm="transpose_direct"))
    # the first chunks lie wholly in the cropped padding: empty output chunks keep i -> i
    lazy = pcfd.conv_transpose1d(da.from_array(x, chunks=(1, 2, 1)), w, stride=2, padding=4)
    assert lazy.chunks[2][:2] == (0, 0) and len(lazy.chunks[2]) == 9


# --- resize_conv2d -------------------------------------------------------------------------------

def _resize_case(rng):
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 5, 2))
    size = tuple(int(s) for s in rng.integers(1, 9, 2))
    padding = tuple((int(rng.integers(0, 5)), int(rng.integers(0, 5))) for _ in range(2))
    if rng.integers(4) == 0:
        padding = "same"
    layout = str(rng.choice(["NCHW", "NHWC"]))
    dtype = rng.choice([np.float32, np.float64])
    x = rng.standard_normal(_layout_shape(2, layout, int(rng.integers(0, 3)), c_in,
                                          size)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if rng.integers(2) else None
    chunks = _chunks(rng, x.shape, _channel_axis(x.ndim, 2, layout))
    kwargs = dict(scale_factor=tuple(int(s) for s in rng.integers(1, 4, 2)),
                  mode=str(rng.choice(["nearest", "nearest", "bilinear"])),
                  stride=tuple(int(s) for s in rng.integers(1, 4, 2)), padding=padding,
                  dilation=tuple(int(d) for d in rng.integers(1, 3, 2)), groups=groups,
                  padding_mode=str(rng.choice(MODES)), flip=bool(rng.integers(2)),
                  layout=layout)
    return x, weight, bias, chunks, kwargs


def _upsampled(x, scale_factor, mode, layout):
    """The image resize_conv2d convolves, for the float64 reference."""
    spatial = (1, 2) if layout == "NHWC" else (2, 3)
    spatial = tuple(axis - (4 - x.ndim) for axis in spatial)
    if mode == "nearest":
        for axis, scale in zip(spatial, scale_factor):
            x = np.repeat(x, scale, axis=axis)
        return x
    x4 = x if x.ndim == 4 else x[None]
    x4 = np.moveaxis(x4, -1, 1) if layout == "NHWC" else x4
    up = bilinear_upsample(x4, *scale_factor)
    up = np.moveaxis(up, 1, -1) if layout == "NHWC" else up
    return up if x.ndim == 4 else up[0]


def _check_resize(x, weight, bias, chunks, kwargs, algorithm):
    context = f"x={x.shape} {x.dtype} w={weight.shape} chunks={chunks} {kwargs}"
    try:
        expected = pcf.resize_conv2d(x, weight, bias, algorithm="direct", **kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            pcfd.resize_conv2d(da.from_array(x, chunks=chunks), weight, bias, **kwargs)
        return False
    lazy = pcfd.resize_conv2d(da.from_array(x, chunks=chunks), weight, bias,
                              algorithm=algorithm, **kwargs)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype, context
    _, spatial = pcfd._blocks.layout_axes(x.ndim, 2, kwargs["layout"])
    for axis in spatial:
        assert len(lazy.chunks[axis]) == len(da.from_array(x, chunks=chunks).chunks[axis])
    got = lazy.compute(scheduler="synchronous")
    if algorithm == "direct":
        np.testing.assert_array_equal(got, expected, err_msg=context)
    else:
        conv = {k: v for k, v in kwargs.items() if k not in ("scale_factor", "mode")}
        up = _upsampled(x, kwargs["scale_factor"], kwargs["mode"], kwargs["layout"])
        # nearest "auto" sums taps that read one sample into one weight first: im2col's
        # bound holds it (the rounding of the collapsed weights is of the same order)
        assert_conv_matches(got, up, weight, bias, context=context,
                            algorithm="im2col" if kwargs["mode"] == "nearest" else "auto",
                            **conv)
    return True


def _resize_sweep(seed, count, algorithm):
    rng = np.random.default_rng(seed)
    ran = sum(_check_resize(*_resize_case(rng), algorithm) for _ in range(count))
    assert ran >= count // 2


@pytest.mark.parametrize("seed", range(3))
def test_resize_sweep_direct_is_bitwise(seed):
    _resize_sweep(7000 + seed, 25, "direct")


def test_resize_sweep_auto_within_bound():
    _resize_sweep(8000, 15, "auto")


@pytest.mark.parametrize("mode", MODES)
def test_resize_halos_on_every_mode(mode):
    # chunks of one sample, under a 2x stride and dilation; padding past the input ("circular"
    # wraps more than once) and past the kernel
    rng = np.random.default_rng(len(mode))
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 4, 3)).astype(np.float32)
    for chunks, padding in [((1, 3, 1, 1), ((3, 1), (0, 2))), ((2, 3, 2, 3), "same"),
                            ((1, 3, (4, 1), 7), ((6, 9), (2, 2)))]:
        if mode == "reflect" and padding == ((6, 9), (2, 2)):
            padding = ((6, 8), (2, 2))  # reflect pads less than the upsampled size, 10
        for scale, stride in [((2, 3), (1, 2)), ((3, 2), (3, 1))]:
            _check_resize(x, weight, None, chunks, dict(
                scale_factor=scale, mode="nearest", stride=stride, padding=padding,
                dilation=(1, 2), groups=1, padding_mode=mode, flip=False, layout="NCHW"),
                "direct")


def test_resize_chunks_and_client_choice():
    x = da.zeros((1, 3, 40, 30), chunks=(1, 3, 16, 7), dtype=np.float32)
    w = np.ones((5, 3, 3, 3), np.float32)
    lazy = pcfd.resize_conv2d(x, w, padding="same")  # "auto": chosen once, here
    assert lazy.chunks[2:] == ((32, 32, 16), (14, 14, 14, 14, 4))
    kernels = {task[1].kwargs["algorithm"] for task in dict(lazy.dask).values()
               if isinstance(task, tuple) and len(task) > 1
               and isinstance(task[1], pcfd._blocks.FunctionBlock)}
    assert len(kernels) <= 1 and kernels <= {"im2col", "direct"}
    with pytest.raises(ValueError, match="algorithm must be one of"):
        pcfd.resize_conv2d(x, w, algorithm="winograd_f2x2_3x3")
    with pytest.raises(TypeError, match="fractional"):
        pcfd.resize_conv2d(x, w, scale_factor=1.5)


# --- flattened_conv2d ----------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_flattened_conv2d(layout):
    rng = np.random.default_rng(13)
    shape = (2, 5, 17, 13) if layout == "NCHW" else (2, 17, 13, 5)
    x = rng.standard_normal(shape).astype(np.float32)
    lateral, vertical, horizontal = (rng.standard_normal(s).astype(np.float32)
                                     for s in ((6, 5), (6, 4), (6, 3)))
    bias = rng.standard_normal(6).astype(np.float32)
    for mode, stride, padding in [("reflect", 1, "same"), ("zeros", 2, ((1, 3), (2, 0))),
                                  ("circular", 3, ((5, 1), (0, 4))), ("replicate", 1, 0)]:
        kwargs = dict(stride=stride, padding=padding, dilation=(2, 1), padding_mode=mode,
                      flip=mode == "zeros", layout=layout)
        expected = pcf.flattened_conv2d(x, lateral, vertical, horizontal, bias, **kwargs)
        for chunks in [(1, 5, 1, 13), (2, 5, 4, 3), (1, 5, (16, 1), (2, 11))]:
            if layout == "NHWC":
                chunks = (chunks[0], chunks[2], chunks[3], chunks[1])
            got = pcfd.flattened_conv2d(da.from_array(x, chunks=chunks), lateral, vertical,
                                        horizontal, bias, **kwargs).compute()
            np.testing.assert_array_equal(got, expected, err_msg=f"{chunks} {kwargs}")


# --- errors --------------------------------------------------------------------------------------

def test_split_channel_axis_says_how_to_rechunk():
    x = da.zeros((2, 4, 8, 8), chunks=(1, 2, 4, 4), dtype=np.float32)
    fix = r"x\.rechunk\(\{1: -1\}\)"
    with pytest.raises(ValueError, match=fix):
        pcfd.conv_transpose2d(x, np.ones((4, 2, 3, 3), np.float32), stride=2)
    with pytest.raises(ValueError, match=fix):
        pcfd.resize_conv2d(x, np.ones((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match=fix):
        pcfd.resize_conv2d(x, np.ones((2, 4, 3, 3), np.float32), mode="bilinear")
    with pytest.raises(ValueError, match=fix):
        pcfd.flattened_conv2d(x, *(np.ones(s, np.float32) for s in ((3, 4), (3, 3), (3, 3))))


def test_errors_and_numpy_input():
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="output_padding"):
        pcfd.conv_transpose2d(x, np.ones((2, 2, 3, 3), np.float32), stride=2,
                              output_padding=2)
    with pytest.raises(TypeError, match="float64"):
        pcfd.resize_conv2d(x, np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="reflect"):
        pcfd.resize_conv2d(da.from_array(x, chunks=(1, 2, 3, 3)),
                           np.ones((2, 2, 3, 3), np.float32), padding=12,
                           padding_mode="reflect")
    with pytest.raises(ValueError, match=r"lateral\.shape=\(3, 3\)"):
        pcfd.flattened_conv2d(x, np.ones((3, 3), np.float32), np.ones((3, 3), np.float32),
                              np.ones((3, 3), np.float32))
    lazy = pcfd.resize_conv2d(x, np.ones((3, 2, 3, 3), np.float32), mode="bilinear",
                              algorithm="direct")
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), pcf.resize_conv2d(
        x, np.ones((3, 2, 3, 3), np.float32), mode="bilinear", algorithm="direct"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_upsampling_sweep_slow(seed):
    _transpose_sweep(9000 + seed, 40, "transpose_direct")
    _resize_sweep(9500 + seed, 40, "direct")
