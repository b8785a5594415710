"""``pcf.deform_conv2d``: deformable convolution v1 and v2 against a float64 NumPy reference
written from the definition, against torchvision's results (stored, and live where torchvision
imports), and exactly against ``conv2d`` where the offsets make it an ordinary convolution.

The reference (:func:`deform_reference`) gathers the four neighbours of every sampling point
with NumPy fancy indexing and weights them in float64 (long double for float64 input); it
shares no code or index arithmetic with the kernel. Only the sampling point itself is computed
in the input's precision, ``dtype(oh*stride - pad + i*dilation) + offset``, because that is the
definition (torchvision's): the point is part of the problem, not of the arithmetic. The error
bound is the library's (``reference.assert_within_bound``), on the scale
``|w| (*) (|mask| * bilinear(|x|)) + |b|``, with 8 rounded operations counted per tap.
"""

import doctest
from pathlib import Path

import numpy as np
import pytest
from tests.helpers.reference import assert_within_bound, reference_dtype

import pyconvfast as pcf
from pyconvfast import _deform

GOLDEN = Path(__file__).parents[1] / "data" / "deform_torchvision.npz"
DTYPES = (np.float32, np.float64)


# --- the reference -----------------------------------------------------------------------------

def _pairs(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def deform_reference(x, offset, weight, bias=None, mask=None, *, stride=1, padding=0,
                     dilation=1, groups=1, dtype=np.float64):
    """(result, scale) of deformable convolution, NCHW, batched; ``padding`` int or 2 ints."""
    n, c_in, height, width = x.shape
    c_out, c_per_group, r, s = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = _pairs(stride), _pairs(padding), _pairs(dilation)
    offset_groups = offset.shape[1] // (2 * r * s)
    c_per_offset_group = c_in // offset_groups
    h_out, w_out = offset.shape[2:]
    xs, x_abs = x.astype(dtype), np.abs(x).astype(dtype)
    cols = np.zeros((n, c_in, r, s, h_out, w_out), dtype)
    cols_abs = np.zeros_like(cols)
    oh = np.arange(h_out).reshape(1, h_out, 1)
    ow = np.arange(w_out).reshape(1, 1, w_out)
    batch = np.arange(n).reshape(n, 1, 1, 1)
    for g in range(offset_groups):
        block = slice(g * c_per_offset_group, (g + 1) * c_per_offset_group)
        channels = np.arange(block.start, block.stop).reshape(1, -1, 1, 1)
        for i in range(r):
            for j in range(s):
                t = i * s + j
                # The point, in the input's precision (numpy rounds each float32 operation).
                y = (oh * sh - ph + i * dh).astype(x.dtype) + offset[:, 2 * (g * r * s + t)]
                xx = (ow * sw - pw + j * dw).astype(x.dtype) + offset[:, 2 * (g * r * s + t) + 1]
                y, xx = y.astype(dtype), xx.astype(dtype)
                inside = (y > -1) & (y < height) & (xx > -1) & (xx < width)
                y0, x0 = np.floor(y), np.floor(xx)
                ly, lx = y - y0, xx - x0
                value = np.zeros((n, c_per_offset_group, h_out, w_out), dtype)
                value_abs = np.zeros_like(value)
                for dy, dx, corner_weight in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx),
                                              (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
                    yy, xq = y0 + dy, x0 + dx
                    valid = inside & (yy >= 0) & (yy < height) & (xq >= 0) & (xq < width)
                    yy = np.where(valid, yy, 0).astype(np.intp)[:, None]
                    xq = np.where(valid, xq, 0).astype(np.intp)[:, None]
                    keep = valid[:, None]
                    value += np.where(keep, corner_weight[:, None] * xs[batch, channels, yy, xq], 0)
                    value_abs += np.where(keep, corner_weight[:, None]
                                          * x_abs[batch, channels, yy, xq], 0)
                nan_point = np.isnan(y) | np.isnan(xx)   # a NaN offset samples NaN
                value[np.broadcast_to(nan_point[:, None], value.shape)] = np.nan
                if mask is not None:
                    m = mask[:, g * r * s + t].astype(dtype)[:, None]
                    value, value_abs = value * m, value_abs * np.abs(m)
                cols[:, block, i, j] = value
                cols_abs[:, block, i, j] = value_abs
    k_per_group = c_out // groups
    w_grouped = weight.astype(dtype).reshape(groups, k_per_group, c_per_group, r, s)
    result = np.einsum("ngcrsyx,gkcrs->ngkyx",
                       cols.reshape(n, groups, c_per_group, r, s, h_out, w_out), w_grouped)
    scale = np.einsum("ngcrsyx,gkcrs->ngkyx",
                      cols_abs.reshape(n, groups, c_per_group, r, s, h_out, w_out),
                      np.abs(w_grouped))
    result, scale = result.reshape(n, c_out, h_out, w_out), scale.reshape(n, c_out, h_out, w_out)
    if bias is not None:
        result = result + bias.astype(dtype).reshape(1, -1, 1, 1)
        scale = scale + np.abs(bias).astype(dtype).reshape(1, -1, 1, 1)
    return result, scale


def assert_deform_matches(got, x, offset, weight, bias=None, mask=None, context="", **geometry):
    """``got`` (NCHW, batched) within the summation bound of the reference."""
    dtype = x.dtype
    assert got.dtype == dtype, context
    ref_dtype = reference_dtype(dtype)
    ref, scale = deform_reference(x, offset, weight, bias, mask, dtype=ref_dtype, **geometry)
    terms = 8 * int(np.prod(weight.shape[1:])) + 1
    assert_within_bound(got, ref, scale, terms, dtype, ref_dtype, context)


def _out_size(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def make_case(rng, dtype, n, c_in, h, w, c_out, r, s, *, stride=1, padding=0, dilation=1,
              groups=1, offset_groups=1, mask=False, bias=True, spread=2.0):
    (sh, sw), (ph, pw), (dh, dw) = _pairs(stride), _pairs(padding), _pairs(dilation)
    h_out, w_out = _out_size(h, r, sh, ph, dh), _out_size(w, s, sw, pw, dw)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, r, s)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if bias else None
    offset = (rng.standard_normal((n, 2 * offset_groups * r * s, h_out, w_out))
              * spread).astype(dtype)
    m = rng.random((n, offset_groups * r * s, h_out, w_out)).astype(dtype) if mask else None
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, offset, weight, b, m, geometry


def _int_data(rng, shape, dtype, low=-4, high=5):
    return rng.integers(low, high, shape).astype(dtype)


# --- against the reference ---------------------------------------------------------------------

GEOMETRIES = [
    # n, c_in, h, w, c_out, r, s, keywords
    (2, 4, 9, 11, 6, 3, 3, {}),
    (2, 4, 9, 11, 6, 3, 3, {"padding": 1, "mask": True}),
    (1, 6, 10, 8, 4, 3, 3, {"stride": 2, "padding": 1, "offset_groups": 3, "mask": True}),
    (2, 8, 9, 9, 8, 3, 3, {"groups": 4, "offset_groups": 2, "padding": (1, 2)}),
    (1, 6, 12, 9, 6, 3, 2, {"dilation": (2, 3), "stride": (1, 2), "groups": 3,
                            "offset_groups": 6, "mask": True}),
    (3, 3, 7, 7, 5, 1, 1, {"bias": False, "offset_groups": 3}),
    (1, 2, 5, 13, 3, 5, 5, {"padding": 2, "mask": True, "spread": 6.0}),
    (2, 13, 6, 7, 17, 3, 3, {"padding": 1, "offset_groups": 13, "mask": True}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(GEOMETRIES)))
def test_matches_reference(rng, dtype, case):
    n, c_in, h, w, c_out, r, s, keywords = GEOMETRIES[case]
    x, offset, weight, b, m, geometry = make_case(rng, dtype, n, c_in, h, w, c_out, r, s,
                                                  **keywords)
    got = pcf.deform_conv2d(x, offset, weight, b, mask=m, **geometry)
    assert_deform_matches(got, x, offset, weight, b, m, context=str(GEOMETRIES[case]), **geometry)


@pytest.mark.parametrize("positions", [127, 128, 129, 255, 257])
@pytest.mark.parametrize("c_in", [13, 17, 33])
def test_chunk_edges_and_channel_tails(rng, positions, c_in):
    """Output position counts one below, at and above the chunk (and two chunks); odd channel
    counts (one output row of ``positions`` columns, so the counts are exact)."""
    assert _deform.DEFORM_CHUNK == 128
    x, offset, weight, b, m, geometry = make_case(
        rng, np.float32, 2, c_in, 3, positions, 7, 3, 3, padding=(0, 1), mask=True,
        offset_groups=1 if c_in == 13 else c_in)
    got = pcf.deform_conv2d(x, offset, weight, b, mask=m, n_threads=2, **geometry)
    assert got.shape == (2, 7, 1, positions)
    assert_deform_matches(got, x, offset, weight, b, m, **geometry)


def test_small_workspace_shrinks_the_chunk(rng, monkeypatch):
    x, offset, weight, b, m, geometry = make_case(rng, np.float64, 2, 16, 12, 12, 8, 3, 3,
                                                  padding=1, mask=True, offset_groups=4)
    expected = pcf.deform_conv2d(x, offset, weight, b, mask=m, **geometry)
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", "0.5")
    assert _deform.deform_chunk(16, 8, 9, 144, 8) < 128
    got = pcf.deform_conv2d(x, offset, weight, b, mask=m, **geometry)
    assert_deform_matches(got, x, offset, weight, b, m, **geometry)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# --- exact identities ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keywords", [
    {}, {"padding": 1}, {"stride": 2, "padding": 2, "dilation": 2},
    {"groups": 2, "padding": (0, 1)}, {"stride": (2, 1), "dilation": (1, 3), "groups": 4},
])
def test_zero_offsets_equal_conv2d_exactly(rng, dtype, keywords):
    x = _int_data(rng, (2, 8, 11, 10), dtype)
    weight = _int_data(rng, (12, 8 // keywords.get("groups", 1), 3, 3), dtype)
    b = _int_data(rng, (12,), dtype)
    expected = pcf.conv2d(x, weight, b, algorithm="direct", **keywords)
    for offset_groups in (1, 2, 8):
        offset = np.zeros((2, 2 * offset_groups * 9) + expected.shape[2:], dtype)
        got = pcf.deform_conv2d(x, offset, weight, b, **keywords)
        np.testing.assert_array_equal(got, expected)
        ones = np.ones((2, offset_groups * 9) + expected.shape[2:], dtype)
        np.testing.assert_array_equal(
            pcf.deform_conv2d(x, offset, weight, b, mask=ones, **keywords), expected)


def _shifted_conv(x, weight, dy, dx, padding):
    """conv2d(x, weight, padding) with every window moved by (dy, dx) and zero outside the
    image: a valid convolution of x zero-padded by enough, cut where the moved windows start."""
    room = max(abs(dy), abs(dx)) + padding
    h_out, w_out = (size + 2 * padding - k + 1 for size, k in zip(x.shape[2:], weight.shape[2:]))
    full = pcf.conv2d(x, weight, padding=room, algorithm="direct")
    top, left = room - padding + dy, room - padding + dx
    return full[:, :, top:top + h_out, left:left + w_out]


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_offsets_equal_a_shifted_conv2d(rng, dtype):
    x = _int_data(rng, (2, 6, 9, 12), dtype)
    weight = _int_data(rng, (5, 6, 3, 3), dtype)
    for dy, dx in ((0, 1), (1, 0), (-2, 3), (4, -5), (9, 0), (0, -12)):
        offset = np.zeros((2, 18, 9, 12), dtype)
        offset[:, 0::2], offset[:, 1::2] = dy, dx
        got = pcf.deform_conv2d(x, offset, weight, padding=1)
        np.testing.assert_array_equal(got, _shifted_conv(x, weight, dy, dx, 1),
                                      err_msg=f"shift ({dy}, {dx})")


@pytest.mark.parametrize("dtype", DTYPES)
def test_offset_groups_move_their_own_channels(rng, dtype):
    """Offset group g (channels g*C/G .. (g+1)*C/G - 1) shifted by its own integer
    displacement: the sum of per-group shifted convolutions of the channel blocks."""
    x = _int_data(rng, (1, 6, 8, 9), dtype)
    weight = _int_data(rng, (4, 6, 3, 3), dtype)
    shifts = ((1, -1), (0, 2), (-3, 0))
    offset = np.zeros((1, 2 * 3 * 9, 8, 9), dtype)
    expected = np.zeros((1, 4, 8, 9), dtype)
    for g, (dy, dx) in enumerate(shifts):
        offset[:, 18 * g:18 * (g + 1):2], offset[:, 18 * g + 1:18 * (g + 1):2] = dy, dx
        channels = slice(2 * g, 2 * g + 2)
        expected += _shifted_conv(x[:, channels], weight[:, channels], dy, dx, 1)
    np.testing.assert_array_equal(pcf.deform_conv2d(x, offset, weight, padding=1), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_offsets_outside_the_image_give_the_bias(rng, dtype):
    x, offset, weight, b, m, geometry = make_case(rng, dtype, 2, 4, 6, 7, 3, 3, 3, padding=1,
                                                  mask=True)
    h, w = x.shape[2:]
    for dy, dx in ((h + 1, 0), (0, w + 1), (-h - 2, 0), (0, -w - 2), (1e6, -1e6)):
        offset[:, 0::2], offset[:, 1::2] = dy, dx
        got = pcf.deform_conv2d(x, offset, weight, b, mask=m, **geometry)
        np.testing.assert_array_equal(got, np.broadcast_to(b.reshape(1, -1, 1, 1), got.shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_zeros_gives_the_bias_and_scales_linearly(rng, dtype):
    x, offset, weight, b, _, geometry = make_case(rng, dtype, 2, 4, 6, 7, 3, 3, 3, padding=1)
    zeros = np.zeros((2, 9, 6, 7), dtype)
    got = pcf.deform_conv2d(x, offset, weight, b, mask=zeros, **geometry)
    np.testing.assert_array_equal(got, np.broadcast_to(b.reshape(1, -1, 1, 1), got.shape))
    # A mask of 2 doubles every sample exactly: twice v1's result, up to the GEMM's rounding.
    twos = np.full((2, 9, 6, 7), 2, dtype)
    doubled = pcf.deform_conv2d(x, offset, weight, mask=twos, **geometry)
    np.testing.assert_array_equal(doubled, 2 * pcf.deform_conv2d(x, offset, weight, **geometry))


# Sampling a 3x4 image with a 1x1 kernel of weight 1: the output is the sample itself. The boundary rule: 0 at and beyond distance 1 outside, linear fade within.
BOUNDARY_POINTS = [
    # (y, x, expected in terms of the image v[row, col])
    (0.0, 0.0, lambda v: v[0, 0]),
    (-0.5, 0.0, lambda v: 0.5 * v[0, 0]),
    (-0.25, 1.0, lambda v: 0.75 * v[0, 1]),
    (-1.0, 0.0, lambda v: 0.0),
    (-1.0 + 2**-10, 2.0, lambda v: 2**-10 * v[0, 2]),
    (2.0, 3.0, lambda v: v[2, 3]),
    (2.5, 3.0, lambda v: 0.5 * v[2, 3]),
    (2.0, 3.5, lambda v: 0.5 * v[2, 3]),
    (2.5, 3.5, lambda v: 0.25 * v[2, 3]),
    (3.0, 1.0, lambda v: 0.0),
    (1.0, 4.0, lambda v: 0.0),
    (1.5, -0.5, lambda v: 0.25 * (v[1, 0] + v[2, 0])),
    (0.5, 1.5, lambda v: 0.25 * (v[0, 1] + v[0, 2] + v[1, 1] + v[1, 2])),
    (1.25, 2.0, lambda v: 0.75 * v[1, 2] + 0.25 * v[2, 2]),
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_boundary_rule_point_by_point(dtype):
    v = np.arange(1, 13, dtype=dtype).reshape(3, 4)
    x = v.reshape(1, 1, 3, 4)
    weight = np.ones((1, 1, 1, 1), dtype)
    for y, xx, expected in BOUNDARY_POINTS:
        offset = np.zeros((1, 2, 3, 4), dtype)
        offset[0, 0, 0, 0], offset[0, 1, 0, 0] = y, xx   # output (0, 0) samples (y, xx)
        got = pcf.deform_conv2d(x, offset, weight)
        assert got[0, 0, 0, 0] == dtype(expected(v)), (y, xx, got[0, 0, 0, 0], expected(v))


def test_nan_offset_samples_nan():
    x = np.ones((1, 2, 4, 4))
    offset = np.zeros((1, 2, 4, 4))
    offset[0, 0, 1, 2] = np.nan
    got = pcf.deform_conv2d(x, offset, np.ones((3, 2, 1, 1)))
    assert np.isnan(got[0, :, 1, 2]).all()
    got[0, :, 1, 2] = 2
    np.testing.assert_array_equal(got, 2)


def test_inf_outside_the_sampled_corners_does_not_leak():
    """A corner outside the image is never read (not read and multiplied by 0)."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = np.inf
    offset = np.zeros((1, 2, 3, 3))
    offset[0, 0, 2, 2], offset[0, 1, 2, 2] = 0.5, 0.5   # corners (2..3, 2..3): three outside
    got = pcf.deform_conv2d(x, offset, np.ones((1, 1, 1, 1)))
    assert got[0, 0, 2, 2] == 0 and np.isinf(got[0, 0, 0, 0])


# --- layouts, batching, views, out=, threads ----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_and_unbatched_equal_nchw(rng, dtype):
    x, offset, weight, b, m, geometry = make_case(rng, dtype, 2, 6, 8, 9, 4, 3, 3, padding=1,
                                                  groups=2, offset_groups=3, mask=True)
    expected = pcf.deform_conv2d(x, offset, weight, b, mask=m, **geometry)

    def last(a):
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))

    got = pcf.deform_conv2d(last(x), last(offset), weight, b, mask=last(m), layout="NHWC",
                            **geometry)
    np.testing.assert_array_equal(got, last(expected))
    for i in range(2):
        np.testing.assert_array_equal(
            pcf.deform_conv2d(x[i], offset[i], weight, b, mask=m[i], **geometry), expected[i])
        np.testing.assert_array_equal(
            pcf.deform_conv2d(last(x)[i], last(offset)[i], weight, b, mask=last(m)[i],
                              layout="NHWC", **geometry), last(expected)[i])


def test_strided_views_and_out(rng):
    x, offset, weight, b, m, geometry = make_case(rng, np.float32, 2, 4, 9, 10, 6, 3, 3,
                                                  padding=1, mask=True, offset_groups=2)
    expected = pcf.deform_conv2d(x, offset, weight, b, mask=m, **geometry)
    big_x = np.zeros((2, 8, 18, 21), np.float32)
    big_x[:, ::2, ::2, 1::2] = x
    big_offset = np.zeros((2, 36, 9, 10 * 3), np.float32)[..., ::-3]
    big_offset[...] = offset
    mask_t = np.ascontiguousarray(m.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    out = np.full((2, 6, 9, 10 * 2), np.nan, np.float32)[..., ::2]
    got = pcf.deform_conv2d(big_x[:, ::2, ::2, 1::2], big_offset, weight, b, mask=mask_t,
                            out=out, **geometry)
    assert got is out
    np.testing.assert_array_equal(got, expected)


def test_same_bits_for_every_thread_count(rng):
    x, offset, weight, b, m, geometry = make_case(rng, np.float32, 3, 16, 20, 21, 8, 3, 3,
                                                  padding=1, mask=True, offset_groups=4, groups=2)
    first = pcf.deform_conv2d(x, offset, weight, b, mask=m, n_threads=1, **geometry)
    for n_threads in (2, 3, 5):
        np.testing.assert_array_equal(
            pcf.deform_conv2d(x, offset, weight, b, mask=m, n_threads=n_threads, **geometry),
            first)


def test_empty_batch():
    got = pcf.deform_conv2d(np.ones((0, 2, 5, 5)), np.ones((0, 18, 3, 3)), np.ones((4, 2, 3, 3)))
    assert got.shape == (0, 4, 3, 3)


def test_algorithm_names():
    x, offset, weight = np.ones((1, 2, 5, 5)), np.zeros((1, 18, 3, 3)), np.ones((4, 2, 3, 3))
    np.testing.assert_array_equal(
        pcf.deform_conv2d(x, offset, weight, algorithm="deformable_im2col"),
        pcf.deform_conv2d(x, offset, weight, algorithm="auto"))
    # Deformable convolution is not a plain convolution algorithm: the tuner never sees it.
    assert "deformable_im2col" not in pcf.list_algorithms()
    with pytest.raises(ValueError, match="algorithm='im2col'.*'deformable_im2col'"):
        pcf.deform_conv2d(x, offset, weight, algorithm="im2col")


def test_gil_released_during_the_kernel(rng):
    """A worker thread runs one long deformable convolution (one OpenMP thread); the main thread
    keeps executing bytecode meanwhile. Were the GIL held in the kernel, the main thread would
    stall for the whole call (the check of test_threads and test_winograd)."""
    import threading
    import time

    batch = 1
    while True:  # a call long enough (0.2 s) to tell a held GIL from a 5 ms switch interval
        x, offset, weight, b, m, geometry = make_case(rng, np.float32, batch, 64, 28, 28, 64,
                                                      3, 3, padding=1, mask=True)
        start = time.perf_counter()
        pcf.deform_conv2d(x, offset, weight, b, mask=m, n_threads=1, **geometry)
        if time.perf_counter() - start >= 0.2 or batch >= 16:
            break
        batch *= 2
    timing = {}

    def work():
        timing["start"] = time.perf_counter()
        pcf.deform_conv2d(x, offset, weight, b, mask=m, n_threads=1, **geometry)
        timing["end"] = time.perf_counter()

    worker = threading.Thread(target=work)
    largest_gap, last, iterations = 0.0, time.perf_counter(), 0
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        largest_gap, last = max(largest_gap, now - last), now
        iterations += 1
    worker.join()
    duration = timing["end"] - timing["start"]
    assert iterations > 1000
    assert largest_gap < 0.5 * duration, (largest_gap, duration)


# --- against torchvision -------------------------------------------------------------------------

def test_matches_torchvision_stored_results():
    """Results of torchvision.ops.deform_conv2d stored by tests/data/make_deform_torchvision.py,
    on offsets snapped to the border values of the sampling rule."""
    data = np.load(GOLDEN)
    n_cases = len({key.split("/")[0] for key in data.files if "/" in key})
    assert n_cases == 4
    for k in range(n_cases):
        x, offset, weight = data[f"{k}/x"], data[f"{k}/offset"], data[f"{k}/weight"]
        bias = data[f"{k}/bias"] if data[f"{k}/bias"].size else None
        mask = data[f"{k}/mask"] if data[f"{k}/mask"].size else None
        stride, padding, dilation = (tuple(int(v) for v in row) for row in data[f"{k}/geometry"])
        geometry = {"stride": stride, "padding": padding, "dilation": dilation,
                    "groups": int(data[f"{k}/groups"])}
        got = pcf.deform_conv2d(x, offset, weight, bias, mask=mask, **geometry)
        # torchvision's result is held to the same bound as ours: both are within it of the
        # exact result, so they are within twice it of each other.
        ref_dtype = reference_dtype(x.dtype)
        ref, scale = deform_reference(x, offset, weight, bias, mask, dtype=ref_dtype, **geometry)
        terms = 8 * int(np.prod(weight.shape[1:])) + 1
        assert_within_bound(data[f"{k}/out"], ref, scale, terms, x.dtype, ref_dtype,
                            f"torchvision, case {k}")
        assert_within_bound(got, data[f"{k}/out"].astype(ref_dtype), scale, 2 * terms, x.dtype,
                            ref_dtype, f"against torchvision, case {k}")


def _torchvision():
    try:
        import torch
        from torchvision.ops import deform_conv2d
    except (ImportError, OSError, RuntimeError):  # absent, or its operators do not load
        pytest.skip("torchvision.ops.deform_conv2d is not importable here")
    try:
        deform_conv2d(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1))
    except (OSError, RuntimeError, NotImplementedError):
        pytest.skip("torchvision.ops.deform_conv2d does not run here")
    return torch, deform_conv2d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(GEOMETRIES)))
def test_matches_torchvision_live(rng, dtype, case):
    torch, tv_deform_conv2d = _torchvision()
    n, c_in, h, w, c_out, r, s, keywords = GEOMETRIES[case]
    x, offset, weight, b, m, geometry = make_case(rng, dtype, n, c_in, h, w, c_out, r, s,
                                                  **keywords)
    expected = tv_deform_conv2d(
        torch.from_numpy(x), torch.from_numpy(offset), torch.from_numpy(weight),
        None if b is None else torch.from_numpy(b), stride=_pairs(geometry["stride"]),
        padding=_pairs(geometry["padding"]), dilation=_pairs(geometry["dilation"]),
        mask=None if m is None else torch.from_numpy(m)).numpy()
    got = pcf.deform_conv2d(x, offset, weight, b, mask=m, **geometry)
    ref_dtype = reference_dtype(dtype)
    _, scale = deform_reference(x, offset, weight, b, m, dtype=ref_dtype, **geometry)
    terms = 8 * int(np.prod(weight.shape[1:])) + 1
    assert_within_bound(got, expected.astype(ref_dtype), scale, 2 * terms, dtype, ref_dtype,
                        str(GEOMETRIES[case]))


# --- bad input ----------------------------------------------------------------------------------

def _good(dtype=np.float32):
    x = np.ones((2, 4, 6, 6), dtype)
    offset = np.zeros((2, 2 * 2 * 9, 4, 4), dtype)   # two offset groups
    weight = np.ones((6, 2, 3, 3), dtype)               # groups=2
    mask = np.ones((2, 2 * 9, 4, 4), dtype)
    return x, offset, weight, mask


def test_good_inputs_run():
    x, offset, weight, mask = _good()
    assert pcf.deform_conv2d(x, offset, weight, groups=2, mask=mask).shape == (2, 6, 4, 4)


@pytest.mark.parametrize("change, error, message", [
    (lambda a: a.update(offset=np.zeros((2, 35, 4, 4), np.float32)), ValueError,
     r"offset must have shape .* got offset.shape=\(2, 35, 4, 4\)"),
    (lambda a: a.update(offset=np.zeros((2, 0, 4, 4), np.float32)), ValueError,
     r"offset.shape=\(2, 0, 4, 4\)"),
    (lambda a: a.update(offset=np.zeros((2, 36, 4, 5), np.float32)), ValueError,
     r"offset must have shape \(2, 36, 4, 4\) .* got offset.shape=\(2, 36, 4, 5\)"),
    (lambda a: a.update(offset=np.zeros((1, 36, 4, 4), np.float32)), ValueError,
     r"offset must have shape \(2, 36, 4, 4\)"),
    (lambda a: a.update(offset=np.zeros((36, 4, 4), np.float32)), ValueError,
     r"got offset.shape=\(36, 4, 4\)"),
    (lambda a: a.update(offset=np.zeros((2, 54, 4, 4), np.float32)), ValueError,
     r"offset_groups = 54 // \(2 \* 9\) = 3, which does not divide C_in=4"),
    (lambda a: a.update(offset=np.zeros((2, 36, 4, 4), np.float64)), TypeError,
     "x is float32 but offset is float64"),
    (lambda a: a.update(offset=np.zeros((2, 36, 4, 4), np.int32)), TypeError,
     "offset has dtype int32"),
    (lambda a: a.update(mask=np.ones((2, 9, 4, 4), np.float32)), ValueError,
     r"mask must have shape \(2, 18, 4, 4\) .* got mask.shape=\(2, 9, 4, 4\)"),
    (lambda a: a.update(mask=np.ones((2, 18, 4, 3), np.float32)), ValueError,
     r"got mask.shape=\(2, 18, 4, 3\)"),
    (lambda a: a.update(mask=np.ones((2, 18, 4, 4), np.float64)), TypeError,
     "x is float32 but mask is float64"),
    (lambda a: a.update(mask=[[1]]), TypeError, "mask has dtype int64"),
    (lambda a: a.update(weight=np.ones((6, 2, 3, 3), np.float64)), TypeError,
     "x is float32 but weight is float64"),
    (lambda a: a.update(x=np.ones((2, 4, 6, 6), np.int64)), TypeError, "x has dtype int64"),
    (lambda a: a.update(weight=np.ones((6, 2, 9), np.float32)), ValueError,
     r"weight must be 4-D .* got weight.shape=\(6, 2, 9\)"),
    (lambda a: a.update(groups=3), ValueError, "groups=3 must divide both C_in=4 and C_out=6"),
    (lambda a: a.update(groups=1), ValueError, r"weight.shape\[1\] \* groups = 2 \* 1 = 2"),
    (lambda a: a.update(groups=2.0), TypeError, "groups must be an int"),
    (lambda a: a.update(stride=0), ValueError, "stride must be >= 1, got stride=0"),
    (lambda a: a.update(padding=-1), ValueError, "padding must be >= 0"),
    (lambda a: a.update(dilation=(1, 2, 3)), ValueError, "dilation must be an int or 2 ints"),
    (lambda a: a.update(layout="NCL"), ValueError, "layout must be 'NCHW' or 'NHWC'"),
    (lambda a: a.update(bias=np.ones(5, np.float32)), ValueError,
     r"bias must have shape \(6,\), got bias.shape=\(5,\)"),
    (lambda a: a.update(bias=np.ones(6, np.float64)), TypeError,
     "x is float32 but bias is float64"),
    (lambda a: a.update(out=np.empty((2, 6, 4, 5), np.float32)), ValueError,
     r"out has shape \(2, 6, 4, 5\)"),
    (lambda a: a.update(out=np.empty((2, 6, 4, 4), np.float64)), TypeError,
     "out has dtype float64"),
    (lambda a: a.update(n_threads=0), ValueError, "n_threads must be None or between"),
    (lambda a: a.update(algorithm="fast"), ValueError, "unknown algorithm='fast'"),
    (lambda a: a.update(x=np.ones((2, 4, 2, 2), np.float32)), ValueError,
     "larger than the padded input"),
])
def test_bad_input(change, error, message):
    x, offset, weight, mask = _good()
    arguments = {"x": x, "offset": offset, "weight": weight, "mask": mask, "groups": 2}
    change(arguments)
    with pytest.raises(error, match=message):
        pcf.deform_conv2d(**arguments)


def test_bad_channels_last_and_unbatched_shapes():
    x, w = np.ones((6, 6, 4)), np.ones((3, 4, 3, 3))
    with pytest.raises(ValueError, match=r"offset must have shape \(4, 4, 2 \* offset_groups "
                                         r"\* R \* S\) .*layout='NHWC'.*\(4, 4, 35\)"):
        pcf.deform_conv2d(x, np.ones((4, 4, 35)), w, layout="NHWC")
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 4, 18\)"):
        pcf.deform_conv2d(x, np.ones((4, 4, 36)), w, layout="NHWC", mask=np.ones((4, 4, 9)))
    with pytest.raises(ValueError, match=r"offset must have shape \(36, 4, 4\)"):
        pcf.deform_conv2d(np.ones((4, 6, 6)), np.ones((36, 4, 5)), w)


def test_out_sharing_memory_with_an_input_is_refused():
    x, offset, weight, mask = _good()
    with pytest.raises(ValueError, match="out shares memory with offset"):
        pcf.deform_conv2d(x, offset, weight, groups=2, mask=mask, out=offset[:, :6])
    with pytest.raises(ValueError, match="out shares memory with mask"):
        pcf.deform_conv2d(x, offset, weight, groups=2, mask=mask, out=mask[:, 12:])


def test_doctests():
    result = doctest.testmod(_deform, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
