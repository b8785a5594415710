"""Winograd F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5), dense and dilated (by phases): accuracy,
tile and phase edges, padding, groups, layouts, weight reuse, thread independence, and the
problems they refuse.

The generic tests (sweep, tile edges, threads ...) already run both algorithms wherever they are
usable, under their tolerance in ``reference.ALGORITHM_TOLERANCE``; this file aims at what is
particular to them.
"""

import itertools

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import winograd as winograd_algorithm
from pyconvfast._algorithms import registry
from pyconvfast.tuning import heuristic as _heuristic
from tests.helpers.reference import (
    ALGORITHM_TOLERANCE, assert_conv_matches, conv_reference, conv_scale,
)

TILE = {"winograd_f2x2_3x3": 2, "winograd_f4x4_3x3": 4, "winograd_f2x2_5x5": 2}
KERNEL = {"winograd_f2x2_3x3": 3, "winograd_f4x4_3x3": 3, "winograd_f2x2_5x5": 5}
WINOGRAD = tuple(TILE)
WINOGRAD_3X3 = ("winograd_f2x2_3x3", "winograd_f4x4_3x3")

# The float32 accuracy targets, max |got - ref| / (|x| (*) |w| + |b|), on standard-normal data
# with 3 or more input channels. Measured: about 3e-7 (F2) and 1e-5 (F4) at 3 channels, 1.5e-7
# and 2e-6 from 13 to 512 channels; F(2x2, 5x5) 3e-6 at 3 channels, 1-2e-6 from 13 to 256
# (docs/guide/algorithms.rst). The generic tolerance in reference.py is looser, as it must also
# hold for one or two input channels per group.
TARGET_FLOAT32 = {
    "winograd_f2x2_3x3": 2e-6, "winograd_f4x4_3x3": 5e-5, "winograd_f2x2_5x5": 1.5e-5,
}


def relative_error(got, x, w, b=None, **kwargs):
    ref_dtype = np.float64 if got.dtype == np.float32 else np.longdouble
    ref = conv_reference(x, w, b, dtype=ref_dtype, **kwargs)
    scale = conv_scale(x, w, b, dtype=ref_dtype, **kwargs)
    return float(np.max(np.abs(got.astype(ref_dtype) - ref) / scale))


# --- accuracy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("c_in", [3, 13, 17, 33, 65])
def test_float32_error_within_target(algorithm, c_in, rng):
    for padding, mode in ((1, "zeros"), (0, "zeros"), (1, "reflect"), (2, "zeros")):
        x = rng.standard_normal((2, c_in, 19, 22)).astype(np.float32)
        w = rng.standard_normal((16, c_in) + (KERNEL[algorithm],) * 2).astype(np.float32)
        b = rng.standard_normal(16).astype(np.float32)
        kwargs = {"padding": padding, "padding_mode": mode}
        got = pcf.conv2d(x, w, b, algorithm=algorithm, **kwargs)
        error = relative_error(got, x, w, b, **kwargs)
        assert error <= TARGET_FLOAT32[algorithm], (algorithm, c_in, kwargs, error)


@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("c_in", [1, 3, 33])
def test_float64_error_within_tolerance(algorithm, c_in, rng):
    x = rng.standard_normal((2, c_in, 17, 18))
    w = rng.standard_normal((8, c_in) + (KERNEL[algorithm],) * 2)
    got = pcf.conv2d(x, w, padding=1, algorithm=algorithm)
    assert got.dtype == np.float64
    error = relative_error(got, x, w, padding=1)
    assert error <= ALGORITHM_TOLERANCE[algorithm][np.dtype(np.float64)], error
    # float64 really is computed in float64: far below the float32 error
    assert error < 1e-12


def test_f4_is_less_accurate_than_f2_which_is_close_to_direct(rng):
    """The ordering the docs state: larger tiles, larger transform error."""
    x = rng.standard_normal((4, 8, 24, 24)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    errors = {a: relative_error(pcf.conv2d(x, w, padding=1, algorithm=a), x, w, padding=1)
              for a in ("direct",) + WINOGRAD_3X3}
    assert errors["winograd_f4x4_3x3"] > errors["winograd_f2x2_3x3"]
    assert errors["winograd_f2x2_3x3"] < 10 * max(errors["direct"], 1e-8)


def test_f2_exact_on_small_integers(rng):
    """F(2x2)'s transforms hold only halves: integer data gives exactly the integer result."""
    for groups, c_in, c_out in ((1, 33, 17), (3, 6, 9)):
        x = rng.integers(-3, 4, size=(2, c_in, 11, 10)).astype(np.float32)
        w = rng.integers(-3, 4, size=(c_out, c_in // groups, 3, 3)).astype(np.float32)
        b = rng.integers(-3, 4, size=c_out).astype(np.float32)
        for padding_mode in ("zeros", "reflect"):
            kwargs = {"padding": 1, "padding_mode": padding_mode, "groups": groups}
            got = pcf.conv2d(x, w, b, algorithm="winograd_f2x2_3x3", **kwargs)
            np.testing.assert_array_equal(got, conv_reference(x, w, b, **kwargs))


# --- tile edges ----------------------------------------------------------------------------------

def _edge_sizes(m):
    return (m - 1, m, m + 1, 2 * m - 1, 2 * m, 2 * m + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_output_sizes_at_every_tile_edge(algorithm, dtype, rng):
    """Output planes one below, at and one above one and two tiles, in both dimensions (the
    partial tiles of the last tile row and column are cut to the plane)."""
    m, r = TILE[algorithm], KERNEL[algorithm]
    w = rng.standard_normal((5, 3, r, r)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    for h_out, w_out in itertools.product(_edge_sizes(m), repeat=2):
        for padding in (0, 1):
            x = rng.standard_normal((2, 3, h_out + r - 1 - 2 * padding,
                                     w_out + r - 1 - 2 * padding)).astype(dtype)
            out = np.full((2, 5, h_out, w_out), np.nan, dtype=dtype)
            got = pcf.conv2d(x, w, b, padding=padding, algorithm=algorithm, out=out)
            assert got is out and got.shape == (2, 5, h_out, w_out)
            assert_conv_matches(got, x, w, b, padding=padding, algorithm=algorithm,
                                context=f"{algorithm} out {h_out}x{w_out} padding {padding}")


@pytest.mark.parametrize("dilation", [1, 2, (3, 2)])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_blocks_of_tiles_across_samples(algorithm, dilation, monkeypatch, rng):
    """Blocks of tiles that start and end mid-row and span samples (and phases); a block of one
    tile (a tiny workspace bound); every block size of param_space."""
    x = rng.standard_normal((3, 4, 13, 11)).astype(np.float32)
    w = rng.standard_normal((6, 4) + (KERNEL[algorithm],) * 2).astype(np.float32)
    kwargs = {"padding": "same", "dilation": dilation}
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, **kwargs)
    chosen = registry.get(algorithm)
    prepared = chosen.prepare(problem, w[:, :, None])
    expected = pcf.conv2d(x, w, algorithm="direct", **kwargs)
    spaces = chosen.param_space(problem) + [{"block": b} for b in (1, 5, 7, 1000)]
    assert spaces[0] == {}
    for params in spaces:
        for n_threads in (1, 2, 3):
            out = np.full_like(expected, np.nan)
            chosen.run(problem, x[:, :, None], prepared, None, out[:, :, None], n_threads, params)
            assert_conv_matches(out, x, w, algorithm=algorithm,
                                context=f"params={params} n_threads={n_threads}", **kwargs)
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", "0.0001")
    assert winograd_algorithm._winograd_schedule(problem, TILE[algorithm], 2, 4)[0] == 1
    got = pcf.conv2d(x, w, algorithm=algorithm, n_threads=2, **kwargs)
    assert_conv_matches(got, x, w, algorithm=algorithm, **kwargs)


def test_blocks_are_even():
    """The default block of 64 tiles is cut to blocks of even size, the same for every thread
    count: 196 tiles are 4 blocks of 49, not 3 of 64 and one of 4."""
    problem = _api.make_problem((1, 64, 28, 28), (64, 64, 5, 5), n_spatial=2, padding=2)
    for n_threads in (1, 2, 3):
        assert winograd_algorithm._winograd_schedule(problem, 2, n_threads, 4)[0] == 49


# --- padding, groups, layouts, flip, bias --------------------------------------------------------

@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_every_padding_mode_and_amount(algorithm, padding_mode, rng):
    for padding in (0, 1, 2, 3, "same", "valid", ((0, 2), (3, 1)), ((2, 1), (0, 0))):
        for size in ((5, 6), (9, 14), (3, 3), (2, 7)):
            x = rng.standard_normal((2, 3) + size).astype(np.float32)
            w = rng.standard_normal((4, 3) + (KERNEL[algorithm],) * 2).astype(np.float32)
            b = rng.standard_normal(4).astype(np.float32)
            kwargs = {"padding": padding, "padding_mode": padding_mode}
            try:
                pcf.conv_output_shape(x.shape, w.shape, **kwargs)
            except ValueError:
                continue  # reflect padding as large as the input, or a kernel too large
            got = pcf.conv2d(x, w, b, algorithm=algorithm, **kwargs)
            assert_conv_matches(got, x, w, b, algorithm=algorithm, context=str((size, kwargs)),
                                **kwargs)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_pads_wider_than_a_tile_row_segment(algorithm, padding_mode, rng):
    """Issue 18: a pad wider than the tiles left in a block's last tile row (the block ends
    mid-image) wrote the input's row into the next phase's slots: 4 of 289 outputs wrong on
    (1, 1, 7, 7) with pad 6 reflect (F2), relative error 0.84 on (1, 64, 14, 14) with pad 12
    reflect through auto. Every pad from 0 to the input size, on sizes where the block of 64
    tiles ends inside a tile row."""
    for size, c in ((7, 1), (9, 2), (14, 3), (13, 1)):
        for pad in range(size if padding_mode == "reflect" else size + 1):
            x = rng.standard_normal((1, c, size, size))
            w = rng.standard_normal((2, c) + (KERNEL[algorithm],) * 2)
            kwargs = {"padding": pad, "padding_mode": padding_mode}
            got = pcf.conv2d(x, w, algorithm=algorithm, **kwargs)
            assert_conv_matches(got, x, w, algorithm=algorithm,
                                context=f"size={size} pad={pad} {padding_mode}", **kwargs)


@pytest.mark.parametrize(("padding_mode", "pad"), [("reflect", 12), ("circular", 11)])
def test_issue_18_default_call_with_a_wide_pad(padding_mode, pad, rng):
    x = rng.standard_normal((1, 64, 14, 14)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    kwargs = {"padding": pad, "padding_mode": padding_mode}
    for algorithm in ("auto",) + WINOGRAD_3X3:
        got = pcf.conv2d(x, w, algorithm=algorithm, **kwargs)
        assert_conv_matches(got, x, w, algorithm=algorithm, context=algorithm, **kwargs)


@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_windows_of_zero_padding_give_exactly_the_bias(algorithm, rng):
    """Outputs whose whole window is zero padding are exactly the bias, though their tile holds
    data (they are computed directly: Winograd's rounding would leave crumbs of the tile)."""
    x = rng.standard_normal((1, 5, 8, 9)).astype(np.float32)
    w = rng.standard_normal((3, 5) + (KERNEL[algorithm],) * 2).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    for kwargs in ({"padding": ((6, 7), (8, 5))}, {"padding": ((14, 7), (6, 15)), "dilation": 3},
                   {"padding": ((10, 9), (17, 8)), "dilation": (2, 4)}):
        got = pcf.conv2d(x, w, b, algorithm=algorithm, **kwargs)
        expected = pcf.conv2d(x, w, b, algorithm="direct", **kwargs)
        # windows that touch no input sample
        outside = conv_reference(np.ones_like(x), np.ones_like(w), **kwargs)[0, 0] == 0
        assert outside.any() and not outside.all()
        np.testing.assert_array_equal(got[:, :, outside], np.broadcast_to(
            b[:, None], got[:, :, outside].shape))
        np.testing.assert_array_equal(got[:, :, outside], expected[:, :, outside])
        assert_conv_matches(got, x, w, b, algorithm=algorithm, context=str(kwargs), **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_groups_and_depthwise(algorithm, dtype, rng):
    for c_in, c_out, groups in ((6, 9, 3), (8, 8, 2), (5, 10, 5), (4, 4, 4), (34, 17, 17)):
        x = rng.standard_normal((2, c_in, 10, 7)).astype(dtype)
        w = rng.standard_normal((c_out, c_in // groups) + (KERNEL[algorithm],) * 2).astype(dtype)
        b = rng.standard_normal(c_out).astype(dtype)
        got = pcf.conv2d(x, w, b, groups=groups, padding=1, algorithm=algorithm)
        assert_conv_matches(got, x, w, b, groups=groups, padding=1, algorithm=algorithm,
                            context=f"groups={groups}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_layouts_strides_flip_and_out(algorithm, dtype, rng):
    x = rng.standard_normal((2, 6, 11, 9)).astype(dtype)
    w = rng.standard_normal((7, 6) + (KERNEL[algorithm],) * 2).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    kwargs = {"padding": 1, "padding_mode": "replicate"}
    first = pcf.conv2d(x, w, b, algorithm=algorithm, **kwargs)
    assert_conv_matches(first, x, w, b, algorithm=algorithm, **kwargs)
    # channels-last views and memory, with a channels-last and a strided out=
    for x_last in (np.moveaxis(x, 1, -1), np.ascontiguousarray(np.moveaxis(x, 1, -1))):
        last = pcf.conv2d(x_last, w, b, layout="NHWC", algorithm=algorithm, **kwargs)
        np.testing.assert_array_equal(last, np.moveaxis(first, 1, -1))
        h_out, w_out = first.shape[2:]
        base = np.full((2, 13, 11, 20), np.nan, dtype=dtype)
        out = base[:, 1:1 + h_out, ::-1][:, :, :w_out, 3:17:2]
        pcf.conv2d(x_last, w, b, layout="NHWC", algorithm=algorithm, out=out, **kwargs)
        np.testing.assert_array_equal(out, np.moveaxis(first, 1, -1))
    # negatively strided and sliced input and weight; flip
    xv = np.ascontiguousarray(x[:, :, ::-1])[:, ::-1, ::-1][:, ::-1]
    wv = np.asfortranarray(w[..., ::-1])[..., ::-1]
    np.testing.assert_array_equal(pcf.conv2d(xv, wv, b, algorithm=algorithm, **kwargs), first)
    flipped = pcf.conv2d(x, w, b, flip=True, algorithm=algorithm, **kwargs)
    assert_conv_matches(flipped, x, w, b, flip=True, algorithm=algorithm, **kwargs)
    np.testing.assert_array_equal(
        flipped, pcf.conv2d(x, np.ascontiguousarray(w[..., ::-1, ::-1]), b, algorithm=algorithm,
                            **kwargs))
    # unbatched
    single = pcf.conv2d(x[1], w, b, algorithm=algorithm, **kwargs)
    assert single.shape == first.shape[1:]
    assert_conv_matches(single, x[1], w, b, algorithm=algorithm, **kwargs)


@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_batch_of_zero_and_one(algorithm, rng):
    r = KERNEL[algorithm]
    w = rng.standard_normal((4, 3, r, r)).astype(np.float32)
    empty = pcf.conv2d(np.zeros((0, 3, 6, 6), np.float32), w, padding=r // 2,
                       algorithm=algorithm)
    assert empty.shape == (0, 4, 6, 6)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    assert_conv_matches(pcf.conv2d(x, w, padding=r // 2, algorithm=algorithm), x, w,
                        padding=r // 2, algorithm=algorithm)


# --- dilated layers, by phases ------------------------------------------------------------------

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_dilated_randomized_sweep(algorithm, rng):
    """Random dilated problems (dilation 2 to 6, per axis too), against the float64 reference:
    batch, channels (1 and tails), odd and even sizes, every padding mode and width up to the
    input size, groups, both layouts and dtypes."""
    r = KERNEL[algorithm]
    ran = 0
    while ran < 60:
        dilation = tuple(int(d) for d in rng.integers(2, 7, size=2))
        if rng.random() < 0.3:
            dilation = (dilation[0],) * 2
        if rng.random() < 0.15:
            dilation = (1, dilation[1])
        size = tuple(int(n) for n in rng.integers(1, 30, size=2))
        mode = PADDING_MODES[ran % 4]
        pads = tuple(tuple(int(p) for p in rng.integers(0, n + 1, size=2)) for n in size)
        groups = int(rng.choice([1, 1, 2, 3]))
        c_g, k_g = int(rng.choice([1, 2, 5, 13, 17])), int(rng.choice([1, 3, 16]))
        batch = int(rng.choice([1, 2, 3]))
        dtype = np.float32 if ran % 2 else np.float64
        layout = "NHWC" if ran % 3 == 0 else "NCHW"
        kwargs = {"padding": pads, "padding_mode": mode, "dilation": dilation,
                  "groups": groups}
        x = rng.standard_normal((batch, groups * c_g) + size).astype(dtype)
        w = rng.standard_normal((groups * k_g, c_g, r, r)).astype(dtype)
        b = rng.standard_normal(groups * k_g).astype(dtype)
        try:
            pcf.conv_output_shape(x.shape, w.shape, **kwargs)
        except ValueError:
            continue  # reflect padding as large as the input, or a window larger than it
        x_in = np.moveaxis(x, 1, -1).copy() if layout == "NHWC" else x
        got = pcf.conv2d(x_in, w, b, algorithm=algorithm, layout=layout, **kwargs)
        if layout == "NHWC":
            got = np.moveaxis(got, -1, 1)
        assert_conv_matches(got, x, w, b, algorithm=algorithm,
                            context=f"{x.shape} {layout} {dtype.__name__} {kwargs}", **kwargs)
        ran += 1


@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("dilation", [2, 3, 4, 5, 6])
def test_dilated_phase_and_tile_edges(algorithm, dilation, rng):
    """Output planes whose size is a multiple of the dilation and one to d - 1 past it (phases
    of unequal sizes), with phases one below, at and above one and two tiles, and phases with
    no output at all (an output plane smaller than the dilation)."""
    m, r = TILE[algorithm], KERNEL[algorithm]
    w = rng.standard_normal((4, 3, r, r)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    sizes = sorted({dilation * k + j for k in (0, m - 1, m, m + 1, 2 * m + 1)
                    for j in (1, dilation // 2, dilation - 1) if dilation * k + j > 0})
    for h_out, w_out in zip(sizes, sizes[::-1]):
        for padding in (0, dilation * (r // 2)):
            span = dilation * (r - 1)
            x = rng.standard_normal((2, 3, h_out + span - 2 * padding,
                                     w_out + span - 2 * padding)).astype(np.float32)
            if min(x.shape[2:]) < 1:
                continue
            out = np.full((2, 4, h_out, w_out), np.nan, dtype=np.float32)
            got = pcf.conv2d(x, w, b, padding=padding, dilation=dilation, algorithm=algorithm,
                             out=out)
            assert got is out
            assert_conv_matches(got, x, w, b, padding=padding, dilation=dilation,
                                algorithm=algorithm,
                                context=f"out {h_out}x{w_out} padding {padding}")


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_dilated_every_pad_width(algorithm, padding_mode, rng):
    """Every pad from 0 to the input size (reflect: below it), dilations 2 and 3, on sizes
    where the phases differ in size and a block of tiles ends inside a tile row."""
    r = KERNEL[algorithm]
    for size, c, dilation in ((7, 1, 2), (11, 2, 3), (14, 3, 2)):
        for pad in range(size if padding_mode == "reflect" else size + 1):
            x = rng.standard_normal((1, c, size, size + 1))
            w = rng.standard_normal((2, c, r, r))
            kwargs = {"padding": pad, "padding_mode": padding_mode, "dilation": dilation}
            try:
                pcf.conv_output_shape(x.shape, w.shape, **kwargs)
            except ValueError:
                continue
            got = pcf.conv2d(x, w, algorithm=algorithm, **kwargs)
            assert_conv_matches(got, x, w, algorithm=algorithm, context=str((size, kwargs)),
                                **kwargs)


@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_dilated_into_strided_and_channels_last_out(algorithm, rng):
    """The phases write straight into out= views of any strides, and channels-last gives the
    same bits as channels-first."""
    r = KERNEL[algorithm]
    x = rng.standard_normal((2, 6, 23, 19)).astype(np.float32)
    w = rng.standard_normal((7, 6, r, r)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    kwargs = {"padding": "same", "dilation": (3, 2), "padding_mode": "reflect"}
    first = pcf.conv2d(x, w, b, algorithm=algorithm, **kwargs)
    assert_conv_matches(first, x, w, b, algorithm=algorithm, **kwargs)
    base = np.full((2, 9, 30, 50), np.nan, dtype=np.float32)
    out = base[:, 1:8, ::-1][:, :, 3:26, 1:39:2]
    pcf.conv2d(x, w, b, algorithm=algorithm, out=out, **kwargs)
    np.testing.assert_array_equal(out, first)
    last = pcf.conv2d(np.moveaxis(x, 1, -1), w, b, layout="NHWC", algorithm=algorithm,
                      **kwargs)
    np.testing.assert_array_equal(last, np.moveaxis(first, 1, -1))


@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_dilated_bitwise_the_same_for_every_thread_count(algorithm, rng):
    """All phases' tasks in one parallel region, or in turn with each step split: the same
    bits for every thread count, both ways of running compared."""
    ways = set()
    r = KERNEL[algorithm]
    for shape, groups, dilation in (((3, 8, 21, 17), 2, 2), ((1, 32, 40, 40), 1, (2, 3)),
                                    ((1, 64, 30, 31), 1, 4), ((2, 16, 13, 9), 1, 5)):
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal((shape[1], shape[1] // groups, r, r)).astype(np.float32)
        kwargs = {"padding": "same", "groups": groups, "dilation": dilation}
        problem = _api.make_problem(x.shape, w.shape, n_spatial=2, **kwargs)
        ways |= {winograd_algorithm._winograd_schedule(problem, TILE[algorithm], n, x.itemsize)[1]
                 for n in (2, 3, 4, 7)}
        results = {n: pcf.conv2d(x, w, algorithm=algorithm, n_threads=n, **kwargs)
                   for n in (1, 2, 3, 4, 7)}
        for n, result in results.items():
            assert np.array_equal(result, results[1]), (shape, n)
        assert_conv_matches(results[1], x, w, algorithm=algorithm, **kwargs)
    assert ways == {True, False}


def test_dilated_phase_tables(rng):
    """The kernel's view of a dilated layer: phase p of an axis reads input p - pad + d*t,
    mapped by the padding mode, and the in-input range of the columns is exact."""
    problem = _api.make_problem((1, 2, 9, 10), (3, 2, 3, 3), n_spatial=2, padding=(4, 3),
                                dilation=(3, 2), padding_mode="reflect")
    lines_h, lines_w, cols = winograd_algorithm._winograd_lines(problem, 2)
    assert lines_h.shape[0] == 3 and lines_w.shape[0] == 2
    for d, pad, size, lines in ((3, 4, 9, lines_h), (2, 3, 10, lines_w)):
        for p, line in enumerate(lines):
            position = p - pad + d * np.arange(line.size)
            reflected = np.abs(position) % (2 * (size - 1))
            reflected = np.where(reflected < size, reflected, 2 * (size - 1) - reflected)
            np.testing.assert_array_equal(line, reflected)
    for q, (first, stop) in enumerate(cols):
        inside = [t for t in range(-5, 20) if 0 <= q - 3 + 2 * t < 10]
        assert (first, stop) == (inside[0], inside[-1] + 1)


# --- weights prepared once -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_prepared_weight_reused_across_inputs(algorithm, dtype, rng):
    """prepare() once (as a plan does), then run on several inputs: the same bits as conv2d."""
    r = KERNEL[algorithm]
    w = rng.standard_normal((9, 4, r, r)).astype(dtype)
    b = rng.standard_normal(9).astype(dtype)
    kwargs = {"padding": r // 2, "dilation": (1, 2)}
    problem = _api.make_problem((2, 4, 12, 10), w.shape, n_spatial=2, has_bias=True,
                                dtype=dtype, **kwargs)
    chosen = registry.get(algorithm)
    prepared = chosen.prepare(problem, w[:, :, None])
    u = prepared[0]
    assert u.shape == ((TILE[algorithm] + r - 1) ** 2, 9, 4) and u.flags.c_contiguous
    assert u.dtype == dtype
    for _ in range(3):
        x = rng.standard_normal((2, 4, 12, 10)).astype(dtype)
        out = np.empty(problem.out_shape, dtype=dtype)
        chosen.run(problem, x[:, :, None], prepared, b, out[:, :, None], 2, {})
        np.testing.assert_array_equal(out, pcf.conv2d(x, w, b, algorithm=algorithm, **kwargs))
        assert_conv_matches(out, x, w, b, algorithm=algorithm, **kwargs)


def test_weight_transform_matches_lavin_matrices(rng):
    """U = G g G^T with Lavin & Gray's G, to the last bit of float32 (F(2, 5): the points and
    scales of F(4, 3), rows f_i * (1, a_i, ..., a_i^4))."""
    g_matrices = {
        "winograd_f2x2_3x3": np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
        "winograd_f4x4_3x3": np.array([
            [1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
        "winograd_f2x2_5x5": np.array([
            [1 / 4, 0, 0, 0, 0], [-1 / 6] * 5, [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3], [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
            [0, 0, 0, 0, 1]]),
    }
    for algorithm, g in g_matrices.items():
        w = rng.standard_normal((5, 3) + (KERNEL[algorithm],) * 2).astype(np.float32)
        problem = _api.make_problem((1, 3, 8, 8), w.shape, n_spatial=2)
        u = registry.get(algorithm).prepare(problem, w[:, :, None])[0]
        expected = np.einsum("ir,kcrs,js->ijkc", g, w.astype(np.float64), g)
        np.testing.assert_allclose(u.reshape(expected.shape), expected, rtol=2 ** -23, atol=1e-7)


# --- threads -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_bitwise_the_same_for_every_thread_count(algorithm, dtype, rng):
    """The block size does not depend on the thread count, and both ways of running blocks
    (one per thread, or each phase split among threads) do the same arithmetic."""
    ways = set()
    for shape, groups in (((3, 8, 17, 13), 2), ((8, 32, 14, 14), 1), ((1, 64, 30, 30), 1)):
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((shape[1], shape[1] // groups) + (KERNEL[algorithm],) * 2
                                ).astype(dtype)
        problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=1, groups=groups,
                                    dtype=dtype)
        ways |= {winograd_algorithm._winograd_schedule(problem, TILE[algorithm], n, x.itemsize)[1]
                 for n in (2, 3, 4, 7)}
        results = {n: pcf.conv2d(x, w, padding=1, groups=groups, algorithm=algorithm,
                                 n_threads=n) for n in (1, 2, 3, 4, 7)}
        for n, result in results.items():
            assert np.array_equal(result, results[1]), (shape, n)
        out = np.full_like(results[1], np.nan)
        pcf.conv2d(x, w, padding=1, groups=groups, algorithm=algorithm, n_threads=3, out=out)
        assert np.array_equal(out, results[1])
    assert ways == {True, False}  # both ways of running were compared


# --- what they refuse ----------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_supports_says_why_not(algorithm):
    chosen = registry.get(algorithm)
    r = KERNEL[algorithm]
    other = 8 - r  # the other kernel size: 5 for the 3x3 algorithms, 3 for the 5x5 one

    def reason(x_shape, w_shape, n_spatial=2, **kwargs):
        return chosen.supports(_api.make_problem(x_shape, w_shape, n_spatial=n_spatial, **kwargs))

    assert reason((1, 3, 9, 9), (4, 3, r, r)) is None
    assert reason((1, 3, 9, 9), (4, 3, r, r), padding=3, padding_mode="circular",
                  groups=1, flip=True, layout="NCHW") is None
    assert reason((1, 6, 9, 9), (6, 2, r, r), groups=3) is None
    assert reason((1, 3, 19, 19), (4, 3, r, r), dilation=2) is None  # by phases
    assert reason((1, 3, 19, 19), (4, 3, r, r), dilation=(1, 4)) is None
    assert reason((1, 3, 9, 9), (4, 3, other, other)) == \
        f"needs a {r}x{r} kernel, got {other}x{other}"
    assert reason((1, 3, 9, 9), (4, 3, r, 1)) == f"needs a {r}x{r} kernel, got {r}x1"
    assert reason((1, 3, 9, 9), (4, 3, r, r), stride=2) == "needs stride 1, got stride=(2, 2)"
    assert reason((1, 3, 9, 9), (4, 3, r, r), stride=(1, 2)) == \
        "needs stride 1, got stride=(1, 2)"
    assert reason((1, 3, 9), (4, 3, r), n_spatial=1) == "2-D only, got a 1-D convolution"
    assert reason((1, 3, 5, 5, 5), (4, 3, r, r, r), n_spatial=3) == \
        "2-D only, got a 3-D convolution"
    assert algorithm in pcf.list_algorithms((1, 3, 9, 9), (4, 3, r, r))
    assert algorithm in pcf.list_algorithms((1, 3, 19, 19), (4, 3, r, r), dilation=3)
    assert algorithm not in pcf.list_algorithms((1, 3, 9, 9), (4, 3, other, other))
    assert algorithm not in pcf.list_algorithms((1, 3, 9, 9), (4, 3, r, r), stride=2)


def test_asking_for_winograd_on_a_5x5_kernel_is_a_value_error():
    x = np.ones((1, 3, 9, 9), np.float32)
    w = np.ones((4, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"algorithm='winograd_f4x4_3x3' cannot run this "
                                         r"problem: needs a 3x3 kernel, got 5x5"):
        pcf.conv2d(x, w, algorithm="winograd_f4x4_3x3")
    with pytest.raises(ValueError, match="needs stride 1"):
        pcf.conv2d(x, w[..., :3, :3], stride=2, algorithm="winograd_f2x2_3x3")


# --- "auto" --------------------------------------------------------------------------------------

def test_auto_picks_f4_where_measured_to_win(rng):
    def choice(x_shape, w_shape, dtype=np.float32, padding=1, **kwargs):
        return _heuristic.choose(_api.make_problem(x_shape, w_shape, n_spatial=2, dtype=dtype,
                                                   padding=padding, **kwargs))

    assert choice((1, 64, 56, 56), (64, 64, 3, 3)) == "winograd_f4x4_3x3"
    assert choice((8, 256, 14, 14), (256, 256, 3, 3)) == "winograd_f4x4_3x3"
    assert choice((2, 32, 28, 28), (64, 16, 3, 3), groups=2) == "winograd_f4x4_3x3"
    # (the blocked "direct" is the measured next choice for float32 3x3 layers)
    assert choice((1, 512, 7, 7), (512, 512, 3, 3)) == "direct"        # too few tiles
    assert choice((1, 8, 56, 56), (64, 8, 3, 3)) == "direct"           # too few channels
    assert choice((1, 64, 56, 56), (64, 64, 3, 3), dtype=np.float64) == "im2col"
    assert choice((1, 64, 56, 56), (64, 64, 3, 3), stride=2) == "direct"
    # dilated layers, by phases: the tiles of all phases count
    assert choice((1, 256, 64, 64), (256, 256, 3, 3), dilation=2, padding=2) == \
        "winograd_f4x4_3x3"
    assert choice((1, 512, 32, 32), (512, 512, 3, 3), dilation=2, padding=2) == \
        "winograd_f4x4_3x3"
    assert choice((1, 512, 32, 32), (512, 512, 3, 3), dilation=4, padding=4) == \
        "winograd_f4x4_3x3"
    assert choice((1, 512, 12, 12), (512, 512, 3, 3), dilation=4, padding=4) == "direct"
    assert choice((1, 256, 28, 28), (256, 256, 3, 3), dilation=2, padding=2) == \
        "winograd_f4x4_3x3"
    # 5x5 layers
    assert choice((1, 64, 56, 56), (64, 64, 5, 5), padding=2) == "winograd_f2x2_5x5"
    assert choice((4, 64, 28, 28), (64, 64, 5, 5), padding=2) == "winograd_f2x2_5x5"
    assert choice((1, 64, 28, 28), (64, 64, 5, 5), padding=2) == "direct"     # too few tiles
    assert choice((4, 192, 28, 28), (192, 192, 5, 5), padding=2) == "direct"  # U beyond L2
    assert choice((1, 8, 56, 56), (64, 8, 5, 5), padding=2) == "direct"
    x = rng.standard_normal((1, 16, 28, 28)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    assert choice(x.shape, w.shape) == "winograd_f4x4_3x3"
    got = pcf.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(got, pcf.conv2d(x, w, padding=1, algorithm="winograd_f4x4_3x3"))
    assert_conv_matches(got, x, w, padding=1, algorithm="auto")


# --- the GIL -------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_gil_released_during_the_kernel(algorithm, rng):
    """A worker thread runs one long Winograd convolution (one OpenMP thread, leaving the other
    core to Python); the main thread keeps executing bytecode meanwhile. Were the GIL held in
    the kernel, the main thread would stall for the whole call (the same check as
    test_threads.test_gil_released_during_direct_kernel)."""
    import threading
    import time

    r = KERNEL[algorithm]
    w = rng.standard_normal((64, 64, r, r)).astype(np.float32)
    chosen = registry.get(algorithm)
    batch = 1
    while True:  # a call long enough (0.3 s) to tell a held GIL from a 5 ms switch interval
        x = rng.standard_normal((batch, 64, 56, 56)).astype(np.float32)
        problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=r // 2)
        prepared = chosen.prepare(problem, w[:, :, None])
        out = np.empty(problem.out_shape, np.float32)
        start = time.perf_counter()
        chosen.run(problem, x[:, :, None], prepared, None, out[:, :, None], 1, {})
        if time.perf_counter() - start >= 0.3 or batch >= 64:
            break
        batch *= 2
    timing = {}

    def work():
        timing["start"] = time.perf_counter()
        chosen.run(problem, x[:, :, None], prepared, None, out[:, :, None], 1, {})
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
    assert_conv_matches(out[:1, :4], x[:1], w[:4], padding=r // 2, algorithm=algorithm)
