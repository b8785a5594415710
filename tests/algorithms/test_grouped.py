"""The ``grouped`` algorithm: groups > 1 with a few channels per group, every group in one kernel.

Checked against the float64 reference (:mod:`reference`) on the ResNeXt and ShuffleNet shapes
(scaled down), at the edges of its blocks: output channels per group one below, at and above
the 4-channel register tile (3, 4, 5, 13, 17, 33), output planes around the pixel tiles (16, 48
and 96 pixels) and around the task's pixel block; exactly on integer data; bitwise the same for
every thread count and pixel block; at every SIMD level this CPU has.
"""

import numpy as np
import pytest
from tests.helpers.cases import CONV
from tests.helpers.reference import assert_conv_matches, conv_reference

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import grouped as grouped_algorithm
from pyconvfast._algorithms import registry
from pyconvfast.tuning import heuristic as _heuristic
from pyconvfast._lib.cpu import levels
from pyconvfast._lib.grouped import kernel as grouped_lib

ALGORITHM = registry.get("grouped")


def _check(x, w, b=None, **kwargs):
    got = CONV[w.ndim - 2](x, w, b, algorithm="grouped", **kwargs)
    assert_conv_matches(got, x, w, b, algorithm="grouped", context=(
        f"x.shape={x.shape} w.shape={w.shape} kwargs={kwargs}"), **kwargs)
    return got


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("per_group", [4, 8, 16, 32])
@pytest.mark.parametrize("stride", [1, 2])
def test_resnext_layers(per_group, stride, dtype, rng):
    """ResNeXt's 3x3 layers: 32 groups of 4..32 channels, stride 1 and 2, both layouts."""
    channels = 32 * per_group
    size = 9 if per_group < 32 else 7
    x = rng.standard_normal((2, channels, size, size + 2)).astype(dtype)
    w = rng.standard_normal((channels, per_group, 3, 3)).astype(dtype)
    b = rng.standard_normal(channels).astype(dtype)
    got = _check(x, w, b, stride=stride, padding=1, groups=32)
    got_last = _check(np.moveaxis(x, 1, -1), w, b, stride=stride, padding=1, groups=32,
                      layout="NHWC")
    np.testing.assert_allclose(np.moveaxis(got_last, -1, 1), got, rtol=0, atol=0)


@pytest.mark.parametrize("groups", [3, 4, 8])
def test_shufflenet_pointwise(groups, rng):
    """ShuffleNet's grouped 1x1 layers (g = 3, 4, 8), stride 1, channel counts of the paper."""
    for c_in, c_out in ((24 * groups, 36 * groups), (60 * groups // 2 * 2, 30 * groups)):
        x = rng.standard_normal((1, c_in, 14, 14)).astype(np.float32)
        w = rng.standard_normal((c_out, c_in // groups, 1, 1)).astype(np.float32)
        _check(x, w, rng.standard_normal(c_out).astype(np.float32), groups=groups)


@pytest.mark.parametrize("k_per_group", [1, 3, 4, 5, 13, 17, 33])
def test_output_channel_tails(k_per_group, rng):
    """Output channels per group around the 4-channel register tile (zero-padded blocks)."""
    for c_per_group in (2, 3, 5):
        x = rng.standard_normal((1, 3 * c_per_group, 6, 7)).astype(np.float32)
        w = rng.standard_normal((3 * k_per_group, c_per_group, 3, 3)).astype(np.float32)
        _check(x, w, rng.standard_normal(3 * k_per_group).astype(np.float32), groups=3,
               padding=1)


@pytest.mark.parametrize("width", [1, 15, 16, 17, 47, 48, 49, 95, 96, 97, 193])
def test_pixel_tails(width, rng):
    """1-D rows one below, at and above 16, 48 and 96 pixels (a vector, the AVX2 and AVX-512
    register tiles), in both dtypes (8 and 16 lanes)."""
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 8, width)).astype(dtype)
        w = rng.standard_normal((12, 2, 3)).astype(dtype)
        _check(x, w, groups=4, padding=1)


@pytest.mark.parametrize("max_pixels", [None, 64, 256, 1024])
def test_pixel_blocks_are_bitwise_equal(max_pixels, rng):
    """Every pixel block (param_space), thread count and layout gives the same bits."""
    problem = _api.make_problem((2, 64, 23, 29), (64, 4, 3, 3), n_spatial=2, padding=1,
                                groups=16)
    assert {"max_pixels": 64} in ALGORITHM.param_space(problem)
    x = rng.standard_normal((2, 64, 23, 29)).astype(np.float32)
    w = rng.standard_normal((64, 4, 3, 3)).astype(np.float32)
    views = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=1, groups=16)
    packed = ALGORITHM.prepare(views, w[:, :, None])
    results = []
    for n_threads in (1, 2, 3):
        out = np.empty((2, 64, 1, 23, 29), np.float32)
        params = {} if max_pixels is None else {"max_pixels": max_pixels}
        ALGORITHM.run(problem, x[:, :, None], packed, None, out, n_threads, params)
        results.append(out[:, :, 0])
    assert_conv_matches(results[0], x, w, padding=1, groups=16, algorithm="grouped")
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_integer_data_is_exact(rng):
    """Small integers give the reference exactly (FMA or not: every partial sum is an integer
    far below 2**24)."""
    for n_spatial, stride, dilation in ((1, 2, 3), (2, 1, 2), (3, 2, 1)):
        size = (11, 9, 6)[n_spatial - 1]
        x = rng.integers(-3, 4, size=(2, 12) + (size,) * n_spatial).astype(np.float32)
        w = rng.integers(-3, 4, size=(9, 4) + (3,) * n_spatial).astype(np.float32)
        b = rng.integers(-3, 4, size=9).astype(np.float32)
        kwargs = {"stride": stride, "dilation": dilation, "padding": "same", "groups": 3,
                  "padding_mode": "reflect" if n_spatial == 1 else "zeros"}
        got = CONV[n_spatial](x, w, b, algorithm="grouped", **kwargs)
        np.testing.assert_array_equal(got, conv_reference(x, w, b, **kwargs).astype(np.float32))


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_modes_strides_dilations_3d(padding_mode, rng):
    x = rng.standard_normal((1, 6, 5, 7, 8))
    w = rng.standard_normal((9, 2, 3, 2, 3))
    for stride, dilation in ((1, 1), ((2, 1, 3), 1), (1, (1, 2, 2))):
        _check(x, w, groups=3, padding=1, padding_mode=padding_mode, stride=stride,
               dilation=dilation, flip=True)
        _check(np.moveaxis(x, 1, -1), w, groups=3, padding="same", padding_mode=padding_mode,
               stride=stride, dilation=dilation, layout="NDHWC")


@pytest.mark.parametrize("variant", grouped_lib.VARIANTS, ids=lambda variant: variant.name)
def test_every_simd_level(variant, rng):
    """Each variant (instruction-set level) this CPU has computes within the bound (levels it
    lacks are capped to the best it has, which the call reports)."""
    level = variant.level
    previous = levels.simd_level()
    try:
        got_level = levels.set_simd_level(level)
        assert got_level in levels.simd_levels()
        assert got_level == level or level not in levels.simd_levels()
        assert grouped_lib.active_variant().level == got_level
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((1, 32, 10, 37)).astype(dtype)
            w = rng.standard_normal((36, 8, 3, 3)).astype(dtype)
            _check(x, w, groups=4, padding=1, stride=(1, 2))
    finally:
        levels.set_simd_level(previous)


@pytest.mark.default_simd_level
def test_best_simd_level_is_used():
    assert levels.simd_level() == levels.simd_levels()[-1]
    assert grouped_lib.active_variant().level == levels.simd_levels()[-1]


def test_bad_simd_level():
    with pytest.raises(ValueError, match="level must be one of"):
        levels.set_simd_level("sse9")


@pytest.mark.parametrize("c_in, groups, reason", [
    (8, 1, "needs groups > 1"),
    (8, 8, "more than one input channel per group"),
])
def test_refusals_say_why(c_in, groups, reason):
    x = np.zeros((1, c_in, 5, 5), np.float32)
    w = np.zeros((8, c_in // groups, 3, 3), np.float32)
    with pytest.raises(ValueError, match=reason):
        pcf.conv2d(x, w, groups=groups, algorithm="grouped")
    assert "grouped" not in pcf.list_algorithms(x, w, groups=groups)


def test_pixel_block_bounds():
    """The block keeps the lowered input near its budget and gives each thread tasks."""
    small = _api.make_problem((1, 128, 56, 56), (128, 4, 3, 3), n_spatial=2, padding=1,
                              groups=32)
    block = grouped_algorithm.pixel_block(small, 2)
    assert block % 16 == 0 and 64 <= block <= 4096
    assert block * 36 <= 2 * grouped_algorithm._BLOCK_ELEMENTS
    few = _api.make_problem((1, 24, 8, 8), (24, 8, 1, 1), n_spatial=2, groups=3)
    assert grouped_algorithm.pixel_block(few, 2) == 64  # 3 groups x 1 block < 8 tasks


def test_auto_picks_grouped_for_resnext():
    problem = _api.make_problem((1, 128, 56, 56), (128, 4, 3, 3), n_spatial=2, padding=1,
                                groups=32)
    assert _heuristic.choose(problem) == "grouped"
