"""The ``depthwise`` algorithm: one input channel per group, with a channel multiplier.

Besides the error-bound comparison with the float64 reference (:mod:`reference`), results are
compared *bitwise* with :func:`ordered_sum`, a NumPy evaluation of the summation order the kernel
promises: per output, ``acc = 0``, then ``acc = acc + w * x`` for each kernel tap in (kd, kh, kw)
order, in the input's dtype, and the bias added last (taps on the zero padding add ``w * 0``,
which leaves a sum that started at +0 unchanged). NumPy's elementwise float32/float64 operations
are correctly rounded and never fused, so equality holds on any build, and pins down that the
result does not depend on the loop order, the SIMD level, the thread count or how the work is
split.

The "chw" loop order (channels-first 2-D 3x3 and 5x5 kernels with zero padding, the default for
such inputs) uses FMA where the SIMD level has it, so it is held to the reference's error bound
and to equality across thread counts, strides and task splits instead (its own section below).
"""

import itertools

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast.tuning import heuristic as _heuristic
from pyconvfast._lib.cpu import levels as simd
from pyconvfast._lib.depthwise import kernel as depthwise_lib
from tests.helpers.cases import CONV, make_case, with_memory
from tests.helpers.reference import (
    CHANNELS_FIRST, CHANNELS_LAST, NUMPY_PAD_MODE, assert_conv_matches, padding_pairs,
)

ALGORITHM = registry.get("depthwise")
SWEEP_SEED = 20240611  # test_sweep.SEED
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def ordered_sum(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros", flip=False, layout=None):
    """The depthwise convolution summed in the kernel's order, in x's dtype (see the module
    docstring). Same arguments and conventions as ``pcf.conv*d``."""
    n_spatial = weight.ndim - 2
    channels_last = layout == CHANNELS_LAST[n_spatial]
    x = np.moveaxis(x, -1, 1) if channels_last else x
    c_in, c_out = x.shape[1], weight.shape[0]
    assert groups == c_in and weight.shape[1] == 1
    kernel = weight.shape[2:]
    stride = (stride,) * n_spatial if np.isscalar(stride) else tuple(stride)
    dilation = (dilation,) * n_spatial if np.isscalar(dilation) else tuple(dilation)
    pairs = padding_pairs(padding, x.shape[2:], kernel, stride, dilation)
    if flip:
        weight = weight[(Ellipsis,) + (slice(None, None, -1),) * n_spatial]
    padded = np.pad(x, [(0, 0), (0, 0)] + pairs, mode=NUMPY_PAD_MODE[padding_mode])
    padded = np.repeat(padded, c_out // c_in, axis=1)  # output channel k reads k // m
    out_size = tuple(
        (padded.shape[2 + a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
        for a in range(n_spatial)
    )
    broadcast = (1, c_out) + (1,) * n_spatial
    acc = np.zeros((x.shape[0], c_out) + out_size, dtype=x.dtype)
    for tap in np.ndindex(*kernel):
        window = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilation, out_size, stride)
        )
        acc = acc + weight[(slice(None), 0) + tap].reshape(broadcast) * padded[(Ellipsis,) + window]
    if bias is not None:
        acc = acc + bias.reshape(broadcast)
    return np.moveaxis(acc, 1, -1) if channels_last else acc


def _data(rng, x_shape, w_shape, dtype, bias=True):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    return x, w, b


def _order_used(x, w, params=None, **kwargs):
    """The loop order the adapter runs for this call (``params`` forcing one or not)."""
    from pyconvfast._algorithms import depthwise as depthwise_algorithm

    problem = _api.make_problem(x.shape, w.shape, n_spatial=w.ndim - 2, **kwargs)
    return depthwise_algorithm._depthwise_loop_order(
        problem, _api._channels_first_5d(x, problem), params or {})


def _exact(x, w, b, **kwargs):
    """The result the exact loop orders give (ordered_sum), or for a call that runs "chw" the
    result of one thread (the order is exact across thread counts, not against ordered_sum)."""
    if _order_used(x, w, **kwargs) == "chw":
        return CONV[w.ndim - 2](x, w, b, algorithm="depthwise", n_threads=1, **kwargs)
    return ordered_sum(x, w, b, **kwargs)


def _check(x, w, b, n_threads=None, **kwargs):
    """Run "depthwise" through the public API; bitwise against ordered_sum (the "chw" order:
    against another thread count), and within the error bound of the float64 reference."""
    n_spatial = w.ndim - 2
    got = CONV[n_spatial](x, w, b, algorithm="depthwise", n_threads=n_threads, **kwargs)
    context = f"x.shape={x.shape} w.shape={w.shape} bias={b is not None} {kwargs}"
    if _order_used(x, w, **kwargs) == "chw":
        again = CONV[n_spatial](x, w, b, algorithm="depthwise", n_threads=3, **kwargs)
        np.testing.assert_array_equal(got, again, err_msg=context)
    else:
        np.testing.assert_array_equal(got, ordered_sum(x, w, b, **kwargs), err_msg=context)
    assert_conv_matches(got, x, w, b, context=context, **kwargs)
    return got


def _run_forced(x, w, b, params, n_threads, **kwargs):
    """The registered algorithm's run() with explicit kernel parameters (the loop order)."""
    n_spatial = w.ndim - 2
    problem = _api.make_problem(x.shape, w.shape, n_spatial=n_spatial, has_bias=b is not None,
                                dtype=x.dtype, **kwargs)
    out = np.full(problem.out_shape, np.nan, dtype=x.dtype)
    prepared = ALGORITHM.prepare(problem, _api.weight_5d(w, problem))
    ALGORITHM.run(problem, _api._channels_first_5d(x, problem), prepared, b,
                  _api._channels_first_5d(out, problem), n_threads, params)
    return out


def _layout_x(x, layout):
    """x given channels-first, rearranged (as a new C-contiguous array) for ``layout``."""
    n_spatial = x.ndim - 2
    if layout == CHANNELS_LAST[n_spatial]:
        return np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return x


# --- what it supports ---------------------------------------------------------------------------

def test_supports_says_why_not():
    problem = _api.make_problem((2, 8, 9, 9), (6, 4, 3, 3), n_spatial=2, groups=2)
    assert ALGORITHM.supports(problem) == (
        "needs one input channel per group (groups == C_in), got C_in // groups = 4")
    dense = _api.make_problem((1, 3, 9), (5, 3, 3), n_spatial=1)
    assert "got C_in // groups = 3" in ALGORITHM.supports(dense)
    for x_shape, w_shape, groups in (((2, 8, 9, 9), (16, 1, 3, 3), 8),
                                     ((1, 1, 9), (3, 1, 3), 1),
                                     ((4, 5, 5, 5, 5), (5, 1, 3, 3, 3), 5)):
        problem = _api.make_problem(x_shape, w_shape, n_spatial=len(x_shape) - 2, groups=groups)
        assert ALGORITHM.supports(problem) is None


def test_listed_only_for_depthwise_problems():
    assert "depthwise" in pcf.list_algorithms()
    assert "depthwise" in pcf.list_algorithms((1, 8, 9, 9), (24, 1, 3, 3), groups=8)
    assert "depthwise" not in pcf.list_algorithms((1, 8, 9, 9), (8, 2, 3, 3), groups=4)
    assert "depthwise" not in pcf.list_algorithms((1, 8, 9, 9), (8, 8, 3, 3))


def test_asking_for_it_on_another_problem_is_a_value_error(rng):
    x, w, _ = _data(rng, (1, 8, 6, 6), (4, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"algorithm='depthwise' cannot run this problem: needs "
                       r"one input channel per group \(groups == C_in\), got C_in // groups = 4"):
        pcf.conv2d(x, w, groups=2, algorithm="depthwise")


def test_auto_picks_depthwise_for_depthwise_problems(rng):
    for x_shape, w_shape in (((1, 32, 20, 20), (32, 1, 3, 3)), ((2, 16, 40), (32, 1, 31))):
        problem = _api.make_problem(x_shape, w_shape, n_spatial=len(x_shape) - 2,
                                    groups=x_shape[1])
        assert _heuristic.choose(problem) == "depthwise"


# --- channels, multipliers, layouts -------------------------------------------------------------

@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("multiplier", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 3, 13, 17, 33, 65])
def test_channel_tails_and_multipliers(channels, multiplier, layout, rng):
    for dtype, size in ((np.float32, (7, 9)), (np.float64, (12, 5)), (np.float32, (20, 37))):
        x, w, b = _data(rng, (2, channels) + size, (channels * multiplier, 1, 3, 3), dtype)
        x = _layout_x(x, layout)
        _check(x, w, b, groups=channels, padding=1, layout=layout)
        _check(x, w, None, groups=channels, stride=2, padding="same", layout=layout)


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
def test_every_loop_order_on_every_layout(n_spatial, rng):
    """"rows", "pixels" and "blocked", forced through the kernel parameter (the run falls back
    to an order the strides allow), give the same bits; so does "chw", which falls back to
    "rows" on these geometries (not square, reflect padding)."""
    size = {1: (23,), 2: (9, 14), 3: (5, 6, 7)}[n_spatial]
    kernel = {1: (5,), 2: (3, 2), 3: (3, 3, 2)}[n_spatial]
    orders = [{}] + [{"order": order} for order in depthwise_lib.ORDERS]
    assert ALGORITHM.param_space(_api.make_problem(
        (1, 4) + size, (4, 1) + kernel, n_spatial=n_spatial, groups=4)) == orders
    for channels, multiplier, dtype in ((1, 3, np.float32), (5, 2, np.float64),
                                        (18, 1, np.float32)):
        for layout in (CHANNELS_FIRST[n_spatial], CHANNELS_LAST[n_spatial]):
            x, w, b = _data(rng, (2, channels) + size, (channels * multiplier, 1) + kernel, dtype)
            x = _layout_x(x, layout)
            kwargs = dict(groups=channels, padding=1, stride=(1,) * (n_spatial - 1) + (2,),
                          padding_mode="reflect", layout=layout)
            expected = ordered_sum(x, w, b, **kwargs)
            for params, n_threads in itertools.product(orders, (1, 3)):
                got = _run_forced(x, w, b, params, n_threads, **kwargs)
                np.testing.assert_array_equal(got, expected, err_msg=f"{params} {kwargs}")


# --- geometry -----------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("n_spatial", [1, 2, 3])
def test_stride_and_dilation_on_every_axis(n_spatial, padding_mode, rng):
    size = {1: (29,), 2: (13, 11), 3: (9, 8, 10)}[n_spatial]
    for stride, dilation in (((2, 3, 2), (1, 1, 1)), ((1, 1, 1), (2, 3, 2)),
                             ((3, 2, 2), (2, 2, 3)), ((2, 2, 2), (3, 1, 2))):
        stride, dilation = stride[:n_spatial], dilation[:n_spatial]
        for layout, channels, multiplier, padding in (
            (CHANNELS_FIRST[n_spatial], 3, 2, "same"),
            (CHANNELS_LAST[n_spatial], 6, 1, 2),
            (CHANNELS_FIRST[n_spatial], 17, 1, [(1, 2)] * n_spatial),
        ):
            if padding_mode == "reflect" and padding == "same" and max(dilation) > 2:
                continue  # "same" padding of 6 would not fit reflect on the smallest axis
            dtype = np.float64 if channels == 6 else np.float32
            x, w, b = _data(rng, (2, channels) + size, (channels * multiplier, 1)
                            + (3,) * n_spatial, dtype)
            _check(_layout_x(x, layout), w, b, groups=channels, stride=stride,
                   dilation=dilation, padding=padding, padding_mode=padding_mode, layout=layout,
                   flip=channels == 17)


@pytest.mark.parametrize("k", [31, 63])
def test_long_1d_kernels(k, rng):
    """TCN-like layers: long kernels, dilated, "same" and "valid", rows long enough to be cut
    into several tasks, channels-first and channels-last."""
    for length, dilation, padding, padding_mode in (
        (k, 1, "valid", "zeros"), (100, 1, "same", "zeros"), (300, 2, "same", "circular"),
        (5000, 3, "same", "zeros"), (2 * k, 1, "same", "reflect"), (10, 1, "same", "zeros"),
        (250, 4, [(4 * (k - 1), 0)], "zeros"), (3 * k, 1, k // 2, "replicate"),
    ):
        for layout, dtype, channels, multiplier in (("NCL", np.float32, 5, 1),
                                                    ("NLC", np.float64, 16, 1),
                                                    ("NLC", np.float32, 3, 2)):
            x, w, b = _data(rng, (1, channels, length), (channels * multiplier, 1, k), dtype)
            _check(_layout_x(x, layout), w, b, groups=channels, dilation=dilation,
                   padding=padding, padding_mode=padding_mode, layout=layout)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_small_planes_and_wide_padding(padding_mode, rng):
    """Planes from 1x1 up (only border columns and rows, or none), padding wider than the
    kernel (outputs that read only zeros), square "same" planes whose rows are run as one
    stretch."""
    for h, w_size, k, pad in ((1, 1, 1, 0), (1, 5, 3, 1), (4, 1, 3, 1), (2, 3, 2, 1),
                              (7, 7, 3, 1), (7, 7, 5, 2), (14, 14, 3, 1), (6, 9, 3, 3),
                              (5, 5, 1, 3), (16, 16, 3, 1), (17, 33, 3, 1)):
        if padding_mode == "reflect" and pad >= min(h, w_size):
            continue
        for channels, layout in ((3, "NCHW"), (20, "NCHW"), (20, "NHWC"), (1, "NHWC")):
            x, w, b = _data(rng, (2, channels, h, w_size), (channels, 1, k, k), np.float32)
            _check(_layout_x(x, layout), w, b, groups=channels, padding=pad,
                   padding_mode=padding_mode, layout=layout)


def test_three_d_with_multiplier_and_flip(rng):
    for layout in ("NCDHW", "NDHWC"):
        for dtype in (np.float32, np.float64):
            x, w, b = _data(rng, (2, 7, 6, 9, 8), (21, 1, 3, 2, 3), dtype)
            _check(_layout_x(x, layout), w, b, groups=7, padding=(1, 0, 2), flip=True,
                   padding_mode="circular", layout=layout)


@pytest.mark.parametrize("x_memory", ["c", "f", "sliced", "negative", "permuted"])
def test_any_input_and_output_strides(x_memory, rng):
    memory_rng = np.random.default_rng(len(x_memory))
    for x_shape, w_shape, layout in (((2, 9, 11), (18, 1, 5), "NCL"),
                                     ((2, 8, 10, 6), (12, 1, 3, 3), "NHWC"),
                                     ((1, 12, 14, 14), (24, 1, 3, 3), "NCHW"),
                                     ((1, 5, 4, 5, 6), (5, 1, 3, 3, 3), "NCDHW")):
        x, w, b = _data(rng, x_shape, w_shape, np.float32)  # x_shape is in the layout given
        x = with_memory(x, x_memory, memory_rng)
        w = with_memory(w, "negative", memory_rng)
        kwargs = dict(groups=x.shape[-1] if layout in CHANNELS_LAST.values() else x.shape[1],
                      padding=1, layout=layout)
        expected = _exact(x, w, b, **kwargs)
        for out_kind in ("c", "f", "sliced", "negative"):
            out = with_memory(np.full(expected.shape, np.nan, np.float32), out_kind, memory_rng)
            got = CONV[w.ndim - 2](x, w, b, algorithm="depthwise", out=out, **kwargs)
            assert got is out
            np.testing.assert_array_equal(got, expected, err_msg=f"{x_memory} {out_kind}")


# --- threads and instruction sets ---------------------------------------------------------------

# (x_shape, w_shape, kwargs): fewer (sample, channel) planes than threads, row blocks and row
# segments split to balance the threads, long rows cut into segments, one pixel, 3-D.
THREAD_SHAPES = [
    ((1, 1, 9, 10), (2, 1, 3, 3), {"padding": 1}),
    ((1, 3, 40, 40), (3, 1, 3, 3), {"padding": 1}),
    ((1, 2, 6000), (4, 1, 31), {"padding": "same", "dilation": 2}),
    ((3, 13, 14, 14), (26, 1, 5, 5), {"padding": 2, "padding_mode": "reflect"}),
    ((1, 33, 1, 1), (33, 1, 1, 1), {}),
    ((2, 6, 5, 7, 9), (6, 1, 3, 3, 3), {"padding": 1, "stride": (1, 2, 1)}),
]


@pytest.mark.parametrize("layout_kind", ["first", "last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", range(len(THREAD_SHAPES)))
def test_bitwise_equal_for_every_thread_count(shape, dtype, layout_kind, rng):
    x_shape, w_shape, kwargs = THREAD_SHAPES[shape]
    n_spatial = len(x_shape) - 2
    layout = (CHANNELS_FIRST if layout_kind == "first" else CHANNELS_LAST)[n_spatial]
    x, w, b = _data(rng, x_shape, w_shape, dtype)
    x = _layout_x(x, layout)
    kwargs = dict(kwargs, groups=x_shape[1], layout=layout)
    expected = _exact(x, w, b, **kwargs)
    for n_threads in (1, 2, 3, 4, None):
        got = CONV[n_spatial](x, w, b, algorithm="depthwise", n_threads=n_threads, **kwargs)
        np.testing.assert_array_equal(got, expected, err_msg=f"n_threads={n_threads}")
    exact = ordered_sum(x, w, b, **kwargs)
    chw = _run_forced(x, w, b, {"order": "chw"}, 1, **kwargs)
    for params in ALGORITHM.param_space(_api.make_problem(
            x.shape, w.shape, n_spatial=n_spatial, **kwargs))[1:]:
        for n_threads in (1, 2, 4):
            got = _run_forced(x, w, b, params, n_threads, **kwargs)
            wanted = chw if _order_used(x, w, params, **kwargs) == "chw" else exact
            np.testing.assert_array_equal(got, wanted, err_msg=f"{params} {n_threads}")


@pytest.mark.default_simd_level
def test_every_simd_level_gives_the_same_bits(rng):
    variants = simd.variants_on_this_cpu(depthwise_lib.VARIANTS)
    levels = tuple(variant.level for variant in variants)
    assert levels == simd.simd_levels()
    assert levels[0] == "baseline" and simd.simd_level() == levels[-1]
    problems = []
    for x_shape, w_shape, layout, kwargs in (
        ((2, 20, 23, 19), (40, 1, 3, 3), "NCHW", {"padding": 1}),
        ((2, 21, 17, 9), (21, 1, 5, 5), "NHWC", {"padding": "same", "stride": (1, 2)}),
        ((1, 7, 300), (7, 1, 31), "NLC", {"padding": "same", "dilation": 2}),
        ((1, 7, 300), (14, 1, 63), "NCL", {"padding": "same", "padding_mode": "circular"}),
        ((3, 40, 7, 7), (40, 1, 3, 3), "NCHW", {"padding": 1}),
    ):
        for dtype in (np.float32, np.float64):
            x, w, b = _data(rng, x_shape, w_shape, dtype)
            kwargs = dict(kwargs, groups=x_shape[1], layout=layout)
            problems.append((_layout_x(x, layout), w, b, kwargs))
    try:
        for variant in variants:
            level = variant.level
            assert simd.set_simd_level(level) == level
            assert depthwise_lib.active_variant() == variant
            for x, w, b, kwargs in problems:
                got = CONV[w.ndim - 2](x, w, b, algorithm="depthwise", n_threads=2, **kwargs)
                if _order_used(x, w, **kwargs) == "chw":  # FMA at some levels: its own tests
                    got = _run_forced(x, w, b, {"order": "rows"}, 2, **kwargs)
                np.testing.assert_array_equal(got, ordered_sum(x, w, b, **kwargs),
                                              err_msg=f"level={level} {kwargs}")
    finally:
        simd.set_simd_level(levels[-1])
    with pytest.raises(ValueError, match="level must be one of"):
        simd.set_simd_level("sse9")


def test_sweep_exercises_depthwise():
    """The seeded sweep (tests/test_sweep.py) runs "depthwise" on hundreds of its cases, with
    every channel multiplier, layout, dimension and loop order."""
    from pyconvfast._algorithms import depthwise as depthwise_algorithm

    cases = [make_case(SWEEP_SEED, i) for i in range(2000)]
    seen = []
    for case in cases:
        x, w, _ = case.arrays()
        if "depthwise" not in pcf.list_algorithms(x, w, **case.kwargs):
            continue
        problem = _api.make_problem(x.shape, w.shape, n_spatial=case.n_spatial,
                                    **case.kwargs)
        order = depthwise_algorithm._depthwise_loop_order(problem, _api._channels_first_5d(x, problem),
                                                  {})
        seen.append((case.w_shape[0] // case.kwargs["groups"], case.kwargs["layout"],
                     case.n_spatial, order))
    assert len(seen) >= 500
    assert {1, 2, 3} <= {m for m, *_ in seen}
    assert len({layout for _, layout, _, _ in seen}) == 6
    # The sweep's random kernels are rarely square 3x3/5x5 with zero padding: "chw" has its own
    # sweep (test_chw_within_the_bound_at_every_level).
    for order in ("rows", "pixels", "blocked"):
        assert sum(o == order for *_, o in seen) >= 20, order


# --- the channels-first FMA loop order ("chw") --------------------------------------------------

CHW_WIDTHS = tuple(range(1, 41)) + (47, 48, 49, 63, 64, 65, 127, 128, 129)
CHW_HEIGHTS = tuple(range(1, 10))


def _chw_cases(k, stride):
    """(h, w, padding, multiplier, channels, bias) around the vector lengths (4, 8, 16 lanes and
    their doubles at stride 2), every height 1..9, padding from 0 up to the input size (and
    uneven pairs), multipliers 1..3, odd channel counts."""
    cases = []
    for i, width in enumerate(CHW_WIDTHS):
        height = CHW_HEIGHTS[i % len(CHW_HEIGHTS)]
        pads = (0, 1, k // 2, k - 1, min(height, width), [(i % 3, 2), (k - 1, i % 2)])
        padding = pads[i % len(pads)]
        pairs = padding if isinstance(padding, list) else [(padding, padding)] * 2
        if height + sum(pairs[0]) < k or width + sum(pairs[1]) < k:
            padding = k  # the plane must hold one window
        cases.append((height, width, padding, 1 + i % 3, (1, 3, 5)[i % 3], i % 4 != 0))
    for height in CHW_HEIGHTS:
        cases.append((height, 17, "same" if stride == 1 else k // 2, 2, 3, True))
    return cases


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("level", range(3))
def test_chw_within_the_bound_at_every_level(level, dtype, k, stride, rng):
    """Every variant of CHW_VARIANTS against the float64 reference, at the widths around its
    vector lengths, on small planes where every vector crosses the padding and on wide ones."""
    variants = simd.variants_on_this_cpu(depthwise_lib.CHW_VARIANTS)
    if level >= len(variants):
        pytest.skip("this CPU lacks the level")
    before = simd.simd_level()
    try:
        simd.set_simd_level(variants[level].level)
        assert depthwise_lib.active_chw_variant() == variants[level]
        for h, w_size, padding, m, channels, bias in _chw_cases(k, stride):
            x, w, b = _data(rng, (2, channels, h, w_size), (channels * m, 1, k, k), dtype, bias)
            kwargs = dict(groups=channels, stride=stride, padding=padding)
            assert _order_used(x, w, {"order": "chw"}, **kwargs) == "chw"
            got = _run_forced(x, w, b, {"order": "chw"}, 2, **kwargs)
            assert_conv_matches(got, x, w, b, algorithm="depthwise",
                                context=f"{variants[level]} {x.shape} {w.shape} {kwargs}",
                                **kwargs)
    finally:
        simd.set_simd_level(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chw_same_bits_for_every_thread_count_and_stride(dtype, rng):
    """Row blocks split differently for 1, 2 and 3 threads (few planes, tall ones), and
    non-contiguous inputs and outputs, give the same bits as one thread on contiguous arrays."""
    memory_rng = np.random.default_rng(7)
    for x_shape, k, stride, padding in (((1, 1, 37, 21), 3, 1, 1), ((1, 2, 30, 70), 3, 2, 1),
                                        ((2, 3, 23, 16), 5, 1, 2), ((1, 1, 9, 129), 5, 2, 3),
                                        ((1, 5, 7, 7), 3, 1, 1)):
        x, w, b = _data(rng, x_shape, (x_shape[1] * 2, 1, k, k), dtype)
        kwargs = dict(groups=x_shape[1], stride=stride, padding=padding)
        expected = _run_forced(x, w, b, {}, 1, **kwargs)
        assert _order_used(x, w, **kwargs) == "chw"
        assert_conv_matches(expected, x, w, b, algorithm="depthwise", **kwargs)
        for n_threads in (1, 2, 3):
            got = _run_forced(x, w, b, {"order": "chw"}, n_threads, **kwargs)
            np.testing.assert_array_equal(got, expected, err_msg=f"{n_threads} {kwargs}")
        for x_memory in ("sliced", "negative", "f", "permuted"):
            xm = with_memory(x, x_memory, memory_rng)
            order = _order_used(xm, w, {"order": "chw"}, **kwargs)
            for out_kind in ("c", "f", "sliced", "negative"):
                out = with_memory(np.full(expected.shape, np.nan, dtype), out_kind, memory_rng)
                got = pcf.conv2d(xm, w, b, algorithm="depthwise", out=out, n_threads=2,
                                 **kwargs)
                if order == "chw":  # a unit column stride
                    np.testing.assert_array_equal(got, expected, err_msg=f"{x_memory} {out_kind}")
                assert_conv_matches(got, x, w, b, algorithm="depthwise", **kwargs)


def test_chw_picked_only_where_it_applies(rng):
    """The default order of channels-first 2-D 3x3/5x5 stride 1/2 zero-padded problems; the
    others (dilation, stride 3, 7x7, reflect, 1-D, 3-D, channels-last) keep the exact orders,
    and forcing "chw" on them falls back to "rows"."""
    x = np.zeros((1, 4, 12, 12), np.float32)
    for k, kwargs in ((3, {"padding": 1}), (5, {"stride": 2, "padding": "same"}),
                      (3, {"padding": [(0, 3), (2, 1)]})):
        w = np.zeros((8, 1, k, k), np.float32)
        assert _order_used(x, w, groups=4, **kwargs) == "chw"
    for k, kwargs in ((3, {"dilation": 2}), (3, {"stride": 3}), (7, {}), (2, {}),
                      (3, {"padding": 1, "padding_mode": "reflect"}),
                      (3, {"stride": (1, 2)})):
        w = np.zeros((4, 1, k, k), np.float32)
        assert _order_used(x, w, {"order": "chw"}, groups=4, **kwargs) == "rows", kwargs
    assert _order_used(np.zeros((1, 12, 12, 4), np.float32), np.zeros((4, 1, 3, 3), np.float32),
                       groups=4, layout="NHWC") == "pixels"
    assert _order_used(np.zeros((1, 4, 12), np.float32), np.zeros((4, 1, 3), np.float32),
                       {"order": "chw"}, groups=4) == "rows"
