"""The blocked ``direct`` kernel's row tilings (``tiles=`` of ``conv_direct_blocked``).

``"full"`` cuts each output row into tiles of equal width with the border pixels inside (their
taps on the zero padding skipped per pixel); ``"split"`` runs the interior columns in tiles and
each border column in its own narrow tile through the W tap table; ``"auto"`` picks one by the
row width. Every output is summed in the same order either way, so the tilings must agree bit
for bit, at every SIMD level, for every row width around the tile widths (1 to 40 columns),
padding (none, every amount up to the kernel and beyond), stride, dilation, kernel size,
1-D / 2-D / 3-D, dtype and channel tail; a sample is also held to the float64 reference.
"""

import numpy as np
import pytest
from tests.helpers.reference import assert_conv_matches

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._core.kernel_args import bias_or_empty, tap_tables
from pyconvfast._lib.cpu import levels
from pyconvfast._lib.direct import blocked

VARIANTS = levels.variants_on_this_cpu(blocked.VARIANTS)
TILINGS = ("full", "split", "auto")


@pytest.fixture(params=VARIANTS, ids=lambda variant: variant.name)
def level(request):
    before = levels.simd_level()
    levels.set_simd_level(request.param.level)
    yield request.param.level
    levels.set_simd_level(before)


def _kernel(x, w, b, tiles, c_chunk=0, n_threads=1, **kwargs):
    """conv_direct_blocked on channels-first x with the given tiling; returns the output."""
    n_spatial = w.ndim - 2
    problem = _api.make_problem(x.shape, w.shape, n_spatial=n_spatial, dtype=x.dtype, **kwargs)
    out = np.full(pcf.conv_output_shape(x.shape, w.shape, **kwargs), np.nan, x.dtype)
    lift = (1,) * (3 - n_spatial)
    x5 = x.reshape(x.shape[:2] + lift + x.shape[2:])
    w5 = w.reshape(w.shape[:2] + lift + w.shape[2:])
    out5 = out.reshape(out.shape[:2] + lift + out.shape[2:])
    geometry = problem.as_3d()
    blocked.conv_direct_blocked(
        x5, blocked.pack_weights(w5, kwargs.get("groups", 1)), w.shape[0],
        bias_or_empty(b, x.dtype), out5, *tap_tables(problem), geometry["stride"][2],
        geometry["dilation"][2], geometry["pad_before"][2], n_threads, tiles=tiles,
        c_chunk=c_chunk)
    return out


def _all_tilings_agree(x, w, b, context, reference=False, **kwargs):
    results = {t: _kernel(x, w, b, t, **kwargs) for t in TILINGS}
    for t in TILINGS:
        np.testing.assert_array_equal(results[t], results["split"], err_msg=f"{t} {context}")
    if reference:
        assert_conv_matches(results["full"], x, w, b, context=context, **kwargs)
    return results["full"]


def test_full_tile_widths_cover_the_row(level):
    pf, p = blocked.full_tile_pixels(), int(blocked.active_variant().name.rsplit("x", 1)[1])
    assert pf <= p
    for w_out in range(1, 240):
        widths = blocked.full_tile_widths(w_out)
        assert sum(widths) == w_out and min(widths) >= 1
        if w_out - 2 * pf >= p:  # a tile of pf at each end, up to p between
            assert widths[0] == widths[-1] == pf and max(widths[1:-1]) <= p
            inner = widths[1:-1]
        else:
            assert max(widths) <= pf and len(widths) == -(-w_out // pf)
            inner = widths
        assert max(inner) - min(inner) <= 1 and list(inner) == sorted(inner, reverse=True)
        assert blocked.row_tiles(w_out) in ("full", "split")
    if pf == 10:
        assert blocked.full_tile_widths(7) == (7,)
        assert blocked.full_tile_widths(14) == (7, 7)
        assert blocked.full_tile_widths(24) == (8, 8, 8)
        assert blocked.full_tile_widths(28) == (10, 9, 9)
        assert blocked.full_tile_widths(56) == (10, 12, 12, 12, 10)
        assert blocked.row_tiles(7) == blocked.row_tiles(224) == "full"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_row_width_and_padding_3x3(level, dtype, rng):
    """Row widths 1..40 and a few wide ones (a tile of 10 at each end, 12s between), every
    padding from 0 to beyond the kernel, stride 1 and 2, 17 output channels (a channel tail at
    every level)."""
    w = rng.standard_normal((17, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(17).astype(dtype)
    for width in [*range(1, 41), 43, 44, 45, 56, 57, 67]:
        x = rng.standard_normal((1, 3, 4, width)).astype(dtype)
        for pad in (0, 1, 2, 3):
            for stride in (1, 2):
                if width + 2 * pad < 3:
                    continue
                _all_tilings_agree(x, w, b, f"{level} W={width} pad={pad} s={stride}",
                                   reference=width % 7 == 0 or width < 3,
                                   padding=pad, stride=stride)


@pytest.mark.parametrize("k", [1, 5, 7])
def test_kernel_sizes_and_paddings(level, k, rng):
    """1x1, 5x5 and 7x7: every padding 0..k-1 and k, stride 1 and 2, dilation 1 and 2, row
    widths around the tile widths of every level (2, 6, 12 pixels and the tile counts)."""
    for c_out in (13, 33):
        w = rng.standard_normal((c_out, 2, k, k)).astype(np.float32)
        for width in (1, 2, 3, 5, 6, 7, 8, 11, 12, 13, 14, 23, 24, 25, 28, 36, 37, 40):
            x = rng.standard_normal((1, 2, k + 1, width)).astype(np.float32)
            for pad in range(0, k + 1):
                for stride, dilation in ((1, 1), (2, 1), (1, 2)):
                    span = dilation * (k - 1) + 1
                    if width + 2 * pad < span or k + 1 + 2 * pad < span:
                        continue
                    _all_tilings_agree(
                        x, w, None, f"{level} k={k} C_out={c_out} W={width} pad={pad} "
                        f"s={stride} d={dilation}", reference=width in (7, 13, 28),
                        padding=pad, stride=stride, dilation=dilation)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_1d_and_3d(level, dtype, rng):
    for width in (1, 5, 7, 12, 13, 24, 25, 37):
        x = rng.standard_normal((2, 4, width)).astype(dtype)
        w = rng.standard_normal((13, 4, 5)).astype(dtype)
        for kwargs in ({"padding": 2}, {"padding": 4}, {"padding": ((1, 3),), "stride": 2},
                       {"padding": "same", "dilation": 2}):
            try:
                if min(pcf.conv_output_shape(x.shape, w.shape, **kwargs)[2:]) < 1:
                    continue
            except ValueError:
                continue
            _all_tilings_agree(x, w, None, f"{level} 1-D W={width} {kwargs}", reference=True,
                               **kwargs)
        # a border wider than a full tile (11 columns) on each end: balanced tiles
        x_long = rng.standard_normal((1, 2, width + 40)).astype(dtype)
        w_long = rng.standard_normal((9, 2, 23)).astype(dtype)
        _all_tilings_agree(x_long, w_long, None, f"{level} 1-D k=23 W={width + 40}",
                           reference=True, padding=11)
        x = rng.standard_normal((1, 3, 3, 4, width)).astype(dtype)
        w = rng.standard_normal((17, 3, 3, 3, 3)).astype(dtype)
        _all_tilings_agree(x, w, None, f"{level} 3-D W={width}", reference=True, padding=1)


def test_groups_and_asymmetric_padding(level, rng):
    x = rng.standard_normal((2, 6, 5, 19)).astype(np.float32)
    w = rng.standard_normal((39, 2, 3, 3)).astype(np.float32)  # 13 a group
    b = rng.standard_normal(39).astype(np.float32)
    _all_tilings_agree(x, w, b, f"{level} groups", reference=True, groups=3,
                       padding=((1, 0), (0, 2)))
    _all_tilings_agree(x, w, b, f"{level} same s2", reference=True, groups=3,
                       padding=((2, 1), (3, 1)), stride=2)


def test_other_padding_modes_run_split_and_match_the_reference(level, rng):
    """reflect / replicate / circular read remapped columns: full falls back to split."""
    x = rng.standard_normal((1, 3, 6, 13)).astype(np.float32)
    w = rng.standard_normal((17, 3, 3, 3)).astype(np.float32)
    for mode in ("reflect", "replicate", "circular"):
        _all_tilings_agree(x, w, None, f"{level} {mode}", reference=True, padding=2,
                           padding_mode=mode)


def test_input_channel_chunks_give_the_same_bits(level, rng):
    x = rng.standard_normal((1, 21, 7, 7)).astype(np.float32)
    w = rng.standard_normal((40, 21, 3, 3)).astype(np.float32)
    one = _kernel(x, w, None, "full", padding=1)
    assert_conv_matches(one, x, w, padding=1)
    for c_chunk in (-1, 1, 2, 5, 20, 21, 64):
        for n_threads in (1, 2, 3):
            np.testing.assert_array_equal(
                _kernel(x, w, None, "full", c_chunk=c_chunk, n_threads=n_threads, padding=1),
                one, err_msg=f"c_chunk={c_chunk} n_threads={n_threads}")


def test_full_tiles_skip_padding_taps(level):
    """An inf weight on a tap that only meets the zero padding does not make NaN in a full tile
    (the tap is skipped, not multiplied by zero)."""
    x = np.ones((1, 4, 5, 7), np.float32)
    w = np.ones((16, 4, 3, 3), np.float32)
    w[:, :, :, 0] = np.inf
    got = _kernel(x, w, None, "full", padding=1)
    assert np.isfinite(got[..., 0]).all()
    assert np.isinf(got[..., 1:]).all()
    w = np.ones((16, 4, 3, 3), np.float32)
    w[:, :, :, 2] = np.nan
    got = _kernel(x, w, None, "full", padding=1)
    assert np.isfinite(got[..., -1]).all() and np.isnan(got[..., :-1]).all()


def test_bad_tiles_argument():
    x = np.ones((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="tiles"):
        _kernel(x, np.ones((4, 2, 3, 3), np.float32), None, "wide")


def test_param_space_offers_both_tilings():
    from pyconvfast._algorithms import registry
    problem = _api.make_problem((1, 8, 7, 7), (16, 8, 3, 3), n_spatial=2, padding=1)
    space = registry.get("direct").param_space(problem)
    assert {} in space and {"tiles": "full"} in space and {"tiles": "split"} in space
    depthwise = _api.make_problem((1, 8, 7, 7), (8, 1, 3, 3), n_spatial=2, groups=8)
    assert registry.get("direct").param_space(depthwise) == [{}]
