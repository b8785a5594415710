"""The channel-blocked kernel behind ``direct`` (``_lib/direct/blocked.pyx``).

Every SIMD level this CPU has (baseline, AVX2 + FMA, AVX-512F) is run, each with its own register
tile (2, 6 and 12 pixels; 1, 1 and 2 channel blocks of 16 float32 / 8 float64 channels), so the
output channel counts and output widths below sit one below, at and one above every block and
tile size. A seeded random sweep over every stride, dilation, padding form and mode, groups,
flip, layout, memory layout and dtype checks the path against the reference.
"""

import numpy as np
import pytest
from tests.helpers.cases import CONV, MEMORY_KINDS, PADDING_MODES, with_memory
from tests.helpers.reference import CHANNELS_FIRST, CHANNELS_LAST, assert_conv_matches, conv_reference

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import direct as direct_algorithm
from pyconvfast.tuning import heuristic as _heuristic
from pyconvfast._lib.cpu import levels
from pyconvfast._lib.direct import blocked as direct_blocked

# The kernel's variant table, the rows this CPU runs (one per SIMD level it has).
VARIANTS = levels.variants_on_this_cpu(direct_blocked.VARIANTS)
# Output channels per group around 8, 16, 32 and 48 (blocks of 8 float64 / 16 float32, tiles of
# one or two blocks).
OUT_CHANNELS = (4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49)
# Output widths around the tiles of 2, 6 and 12 pixels (and two tiles of 12).
OUT_WIDTHS = (1, 2, 3, 5, 6, 7, 11, 12, 13, 23, 24, 25)


@pytest.fixture(params=VARIANTS, ids=lambda variant: variant.name)
def level(request):
    before = levels.simd_level()
    levels.set_simd_level(request.param.level)
    assert direct_blocked.active_variant() == request.param
    yield request.param.level
    levels.set_simd_level(before)


def _blocked(x_shape, w_shape, **kwargs):
    n_spatial = len(w_shape) - 2
    problem = _api.make_problem(x_shape, w_shape, n_spatial=n_spatial, **kwargs)
    return direct_algorithm._direct_blocked_applies(problem)


def test_the_blocked_path_is_taken_from_four_output_and_two_input_channels_per_group():
    assert _blocked((1, 8, 9, 9), (4, 8, 3, 3))
    assert _blocked((1, 8, 9, 9), (8, 4, 3, 3), groups=2)
    assert _blocked((1, 2, 9, 9), (4, 2, 3, 3))
    assert not _blocked((1, 8, 9, 9), (3, 8, 3, 3))
    assert not _blocked((1, 8, 9, 9), (32, 1, 3, 3), groups=8)  # depthwise: the generic loop
    assert not _blocked((1, 1, 9, 9), (32, 1, 3, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_blocks_and_tile_widths(level, dtype, rng):
    for c_out in OUT_CHANNELS:
        for w_out in OUT_WIDTHS:
            x = rng.standard_normal((1, 5, 3, w_out + 2)).astype(dtype)
            w = rng.standard_normal((c_out, 5, 3, 3)).astype(dtype)
            b = rng.standard_normal(c_out).astype(dtype)
            assert _blocked(x.shape, w.shape)
            got = pcf.conv2d(x, w, b, algorithm="direct")
            assert got.shape == (1, c_out, 1, w_out)
            assert_conv_matches(got, x, w, b, context=f"{level} C_out={c_out} W_out={w_out}")
            # with padding: border columns on both sides of the interior tiles
            got = pcf.conv2d(x, w, b, algorithm="direct", padding=(1, 2),
                             padding_mode="reflect" if w_out > 1 else "zeros")
            assert_conv_matches(got, x, w, b, padding=(1, 2),
                                padding_mode="reflect" if w_out > 1 else "zeros",
                                context=f"{level} C_out={c_out} W_out={w_out} padded")


def _random_problem(rng):
    n_spatial = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2, 3]))
    k_g = int(rng.choice(OUT_CHANNELS))
    c_g = int(rng.choice([2, 3, 5, 16, 17]))
    in_size = [int(v) for v in rng.integers(1, {1: 40, 2: 15, 3: 7}[n_spatial], size=n_spatial)]
    kernel = [int(v) for v in rng.integers(1, {1: 6, 2: 5, 3: 4}[n_spatial], size=n_spatial)]
    stride = [int(v) for v in rng.choice([1, 1, 2, 3], size=n_spatial)]
    dilation = [int(v) for v in rng.choice([1, 1, 2, 3], size=n_spatial)]
    padding = rng.choice(["int", "pairs", "same", "valid"])
    if padding == "int":
        padding = int(rng.integers(0, 4))
    elif padding == "pairs":
        padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 4, size=(n_spatial, 2)))
    else:
        padding = str(padding)
    kwargs = {
        "stride": tuple(stride), "dilation": tuple(dilation), "padding": padding,
        "groups": groups, "padding_mode": str(rng.choice(PADDING_MODES)),
        "flip": bool(rng.random() < 0.3),
        "layout": str(rng.choice([CHANNELS_FIRST[n_spatial], CHANNELS_LAST[n_spatial]])),
    }
    batch = int(rng.integers(1, 3))
    channels_first = (batch, c_g * groups, *in_size)
    try:
        out_shape = pcf.conv_output_shape(channels_first, (k_g * groups, c_g, *kernel), **{
            k: v for k, v in kwargs.items() if k not in ("flip", "layout")})
    except ValueError:
        return None
    if kwargs["padding_mode"] == "reflect" and not isinstance(padding, str):
        pads = [padding] * n_spatial if isinstance(padding, int) else [max(p) for p in padding]
        if any(p >= s for p, s in zip(pads, in_size)):
            return None
    if min(out_shape[2:]) < 1:
        return None
    x_shape = channels_first if kwargs["layout"] == CHANNELS_FIRST[n_spatial] else (
        batch, *in_size, c_g * groups)
    return x_shape, (k_g * groups, c_g, *kernel), kwargs


def _sweep_case(index, level):
    rng = np.random.default_rng([4242, index])
    drawn = None
    while drawn is None:
        drawn = _random_problem(rng)
    x_shape, w_shape, kwargs = drawn
    dtype = rng.choice([np.float32, np.float64])
    x = with_memory(rng.standard_normal(x_shape).astype(dtype), str(rng.choice(MEMORY_KINDS)), rng)
    w = with_memory(rng.standard_normal(w_shape).astype(dtype), str(rng.choice(MEMORY_KINDS)), rng)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if rng.random() < 0.5 else None
    context = f"{level} x.shape={x_shape} w.shape={w_shape} {kwargs} dtype={np.dtype(dtype)}"
    expected = conv_reference(x, w, b, **kwargs)
    assert _blocked(x.shape, w.shape, **{k: v for k, v in kwargs.items() if k != "flip"})
    got = CONV[len(w_shape) - 2](x, w, b, algorithm="direct", **kwargs)
    assert got.shape == expected.shape, context
    assert_conv_matches(got, x, w, b, context=context, **kwargs)


@pytest.mark.parametrize("index", range(24))
def test_random_sweep_of_the_blocked_path(index, level):
    _sweep_case(index, level)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(24, 400))
def test_random_sweep_of_the_blocked_path_slow(index, level):
    _sweep_case(index, level)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_integer_data_is_exact(level, dtype, rng):
    for x_shape, w_shape, kwargs in (
        ((2, 17, 9, 30), (33, 17, 3, 3), {"padding": 1}),
        ((1, 8, 13, 29), (16, 8, 5, 3), {"padding": 2, "stride": 2, "dilation": (1, 2),
                                         "padding_mode": "reflect"}),
        ((2, 6, 40), (24, 2, 3), {"groups": 3, "padding": "same", "padding_mode": "circular"}),
        ((1, 5, 4, 6, 30), (9, 5, 3, 3, 3), {"padding": 1, "flip": True}),
    ):
        x = rng.integers(-3, 4, size=x_shape).astype(dtype)
        w = rng.integers(-3, 4, size=w_shape).astype(dtype)
        b = rng.integers(-3, 4, size=w_shape[0]).astype(dtype)
        expected = conv_reference(x, w, b, **kwargs).astype(dtype)
        conv = CONV[len(w_shape) - 2]
        np.testing.assert_array_equal(conv(x, w, b, algorithm="direct", **kwargs), expected)
        x_last = np.moveaxis(x, 1, -1)
        layout = CHANNELS_LAST[len(w_shape) - 2]
        np.testing.assert_array_equal(
            conv(x_last, w, b, algorithm="direct", layout=layout, **kwargs),
            np.moveaxis(expected, 1, -1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_the_same_for_every_thread_count_and_layout(level, dtype, rng):
    x = rng.standard_normal((2, 19, 11, 27)).astype(dtype)
    w = rng.standard_normal((40, 19, 3, 3)).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    kwargs = {"padding": 1, "stride": (1, 2)}
    one = pcf.conv2d(x, w, b, algorithm="direct", n_threads=1, **kwargs)
    assert_conv_matches(one, x, w, b, **kwargs)
    for n_threads in (2, 3, 5, 64):
        np.testing.assert_array_equal(
            pcf.conv2d(x, w, b, algorithm="direct", n_threads=n_threads, **kwargs), one)
    # channels-last input and output: the same sums in the same order
    np.testing.assert_array_equal(
        pcf.conv2d(np.moveaxis(x, 1, -1), w, b, algorithm="direct", layout="NHWC", n_threads=2,
                   **kwargs), np.moveaxis(one, 1, -1))


def test_a_nan_spoils_only_the_outputs_whose_window_holds_it(level):
    """Taps on the zero padding are skipped, not multiplied by zero: an inf weight does not turn
    border outputs into NaN, and a NaN input reaches only its window's outputs."""
    x = np.ones((1, 4, 6, 20), np.float32)
    w = np.ones((16, 4, 3, 3), np.float32)
    w[:, :, 0, 0] = np.inf
    got = pcf.conv2d(x, w, algorithm="direct", padding=1)
    # the top row and left column never read tap (0, 0): finite; the rest is inf
    assert np.isfinite(got[:, :, 0, :]).all() and np.isfinite(got[:, :, :, 0]).all()
    assert np.isinf(got[:, :, 1:, 1:]).all()
    x = np.ones((1, 4, 6, 20), np.float32)
    x[0, 2, 3, 10] = np.nan
    got = pcf.conv2d(x, np.ones((16, 4, 3, 3), np.float32), algorithm="direct", padding=1)
    nan = np.zeros(got.shape[2:], bool)
    nan[2:5, 9:12] = True
    assert (np.isnan(got) == nan).all()


def test_pack_weights_layout(rng):
    w = rng.standard_normal((2 * 19, 3, 2, 1, 2)).astype(np.float32)
    packed = direct_blocked.pack_weights(w, 2)
    assert packed.shape == (2, 2, 3, 4, 16) and packed.flags.c_contiguous
    for g in range(2):
        for k in range(19):
            np.testing.assert_array_equal(packed[g, k // 16, :, :, k % 16],
                                          w[g * 19 + k].reshape(3, 4))
    assert not packed[:, 1, :, :, 3:].any()  # channels past the group's 19: zero
    assert direct_blocked.pack_weights(w.astype(np.float64), 2).shape == (2, 3, 3, 4, 8)


def test_set_simd_level_refuses_an_unknown_level():
    with pytest.raises(ValueError, match="level must be one of"):
        levels.set_simd_level("avx9000")


def test_fma_peak(level):
    peak32 = direct_blocked.fma_peak_gflops(np.float32, seconds=0.01)
    peak64 = direct_blocked.fma_peak_gflops(np.float64, seconds=0.01)
    assert peak32 > 0.5 and peak64 > 0.25
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got int32"):
        direct_blocked.fma_peak_gflops(np.int32)


def test_auto_prefers_direct_where_measured_to_win():
    def choice(x_shape, w_shape, dtype=np.float32, **kwargs):
        return _heuristic.choose(_api.make_problem(x_shape, w_shape, n_spatial=len(w_shape) - 2,
                                                   dtype=dtype, **kwargs))

    assert choice((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3) == "direct"
    assert choice((1, 128, 56, 56), (128, 128, 3, 3), stride=2, padding=1) == "direct"
    # (dilated 3x3 planes of 48 tiles of 4x4 and more, phases together: Winograd by phases,
    # test_winograd.py)
    assert choice((1, 256, 12, 12), (256, 256, 3, 3), dilation=2, padding=2) == "direct"
    assert choice((1, 64, 4096), (64, 64, 3), dilation=4, padding=((8, 0),)) == "direct"
    assert choice((1, 64, 56, 56), (256, 64, 1, 1)) == "pointwise_packed"  # 1x1: not a win
    assert choice((1, 128, 56, 56), (128, 4, 3, 3), groups=32, padding=1) == "grouped"
    assert choice((1, 64, 56, 56), (64, 64, 3, 3), stride=2, dtype=np.float64) == "im2col"
