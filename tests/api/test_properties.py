"""Property-based tests: every public function against the float64 reference (hypothesis).

The seeded sweeps (test_sweep.py, test_resize.py) draw pads of at most 3; a Winograd defect
that only showed with pads wider than a tile-row segment (issue 18) went through them. Here
hypothesis draws the geometry, with every pad from 0 up to the input size (up to size - 1 for
"reflect", which numpy and PyTorch allow no further), every padding mode, stride, dilation,
groups (depthwise with a channel multiplier too), both layouts, both dtypes, bias, flip and
unbatched inputs, and shrinks a failure to a small case. Each convolution runs every algorithm
that ``list_algorithms`` says can run it, and "auto".

The runs are reproducible: the profile (set in conftest.py) derandomizes hypothesis, so CI draws
the same examples every time, and bounds them (``max_examples``); ``HYPOTHESIS_PROFILE=thorough``
draws many more, randomly.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pyconvfast as pcf  # noqa: E402
from tests.helpers.reference import (  # noqa: E402
    CHANNELS_FIRST, CHANNELS_LAST, assert_conv_matches, assert_within_bound, conv_reference,
    conv_scale, n_terms, reference_dtype,
)
from tests.helpers.reference_transpose import assert_transpose_matches  # noqa: E402
from tests.api.test_deform import assert_deform_matches  # noqa: E402
from tests.api.test_resize import check as assert_resize_matches  # noqa: E402

CONV = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}
CONV_TRANSPOSE = {1: pcf.conv_transpose1d, 2: pcf.conv_transpose2d, 3: pcf.conv_transpose3d}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
MAX_SIZE = {1: 20, 2: 12, 3: 6}
MAX_KERNEL = {1: 6, 2: 4, 3: 3}
MAX_MACS = 300_000


def _pad_limit(size, padding_mode):
    """The widest pad on one side that the padding mode allows (and that we test)."""
    return size - 1 if padding_mode == "reflect" else size


@st.composite
def channels(draw):
    """(c_in, c_out, groups): one group, depthwise (with a multiplier) or grouped."""
    kind = draw(st.sampled_from(["one", "depthwise", "grouped"]))
    if kind == "one":
        return draw(st.sampled_from([1, 2, 3, 13, 17])), draw(st.sampled_from([1, 3, 8, 17])), 1
    if kind == "depthwise":
        c = draw(st.sampled_from([1, 3, 13, 17]))
        return c, c * draw(st.integers(1, 3)), c
    groups = draw(st.integers(2, 4))
    return groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3)), groups


@st.composite
def geometry(draw, n_spatial, padding_mode):
    """(in_size, kernel, stride, dilation, padding pairs) of a valid problem, pads up to the
    input size."""
    in_size = [draw(st.integers(1, MAX_SIZE[n_spatial])) for _ in range(n_spatial)]
    kernel = [draw(st.integers(1, MAX_KERNEL[n_spatial])) for _ in range(n_spatial)]
    stride = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(n_spatial)]
    dilation = [draw(st.sampled_from([1, 1, 2])) for _ in range(n_spatial)]
    pads = []
    for axis in range(n_spatial):
        limit = _pad_limit(in_size[axis], padding_mode)
        before = draw(st.integers(0, limit))
        after = draw(st.one_of(st.just(before), st.integers(0, limit)))
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        if extent > in_size[axis] + before + after:   # the window must fit the padded input
            kernel[axis], dilation[axis] = 1, 1
        pads.append((before, after))
    return in_size, kernel, stride, dilation, pads


def _padding_argument(draw, pads):
    """The pads as the caller may write them: one int, one int per axis, or pairs."""
    if all(b == a for b, a in pads):
        if len({b for b, _ in pads}) == 1 and draw(st.booleans()):
            return pads[0][0]
        return tuple(b for b, _ in pads)
    return tuple(pads)


def _out_size(in_size, kernel, stride, dilation, pads):
    return [(i + b + a - d * (k - 1) - 1) // s + 1
            for i, k, s, d, (b, a) in zip(in_size, kernel, stride, dilation, pads)]


@st.composite
def conv_problems(draw, n_spatial=None):
    """(x, weight, bias, kwargs) of a random valid convolution, any public form."""
    n_spatial = n_spatial or draw(st.integers(1, 3))
    padding_mode = draw(st.sampled_from(PADDING_MODES))
    c_in, c_out, groups = draw(channels())
    in_size, kernel, stride, dilation, pads = draw(geometry(n_spatial, padding_mode))
    batch = draw(st.sampled_from([None, 1, 2]))
    macs = (batch or 1) * c_out * (c_in // groups) * np.prod(kernel) * np.prod(
        _out_size(in_size, kernel, stride, dilation, pads))
    hypothesis.assume(macs <= MAX_MACS)
    layout = draw(st.sampled_from([CHANNELS_FIRST[n_spatial], CHANNELS_LAST[n_spatial]]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (c_in, *in_size) if layout == CHANNELS_FIRST[n_spatial] else (*in_size, c_in)
    if batch is not None:
        shape = (batch,) + shape
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if draw(st.booleans()) else None
    kwargs = dict(stride=tuple(stride), padding=_padding_argument(draw, pads),
                  dilation=tuple(dilation), groups=groups, padding_mode=padding_mode,
                  flip=draw(st.booleans()), layout=layout)
    note(f"x.shape={x.shape} weight.shape={weight.shape} bias={bias is not None} "
         f"dtype={np.dtype(dtype).name} seed={seed} kwargs={kwargs}")
    return x, weight, bias, kwargs


@given(problem=conv_problems())
def test_conv_every_algorithm_matches_the_reference(problem):
    x, weight, bias, kwargs = problem
    n_spatial = weight.ndim - 2
    algorithms = pcf.list_algorithms(x, weight, **kwargs)
    assert "direct" in algorithms
    for algorithm in algorithms + ["auto"]:
        got = CONV[n_spatial](x, weight, bias, algorithm=algorithm, **kwargs)
        assert_conv_matches(got, x, weight, bias, algorithm=algorithm,
                            context=f"algorithm={algorithm!r}", **kwargs)


@given(problem=conv_problems(n_spatial=2))
def test_conv2d_3x3_wide_pads_every_algorithm(problem):
    """The Winograd geometry (2-D, 3x3, stride 1, dilation 1) with any pad, drawn on its own so
    that its many tile edges get many examples."""
    x, weight, bias, kwargs = problem
    hypothesis.assume(weight.shape[2:] == (3, 3))
    kwargs = dict(kwargs, stride=1, dilation=1)
    for algorithm in pcf.list_algorithms(x, weight, **kwargs):
        got = pcf.conv2d(x, weight, bias, algorithm=algorithm, **kwargs)
        assert_conv_matches(got, x, weight, bias, algorithm=algorithm,
                            context=f"algorithm={algorithm!r}", **kwargs)


@st.composite
def winograd_problems(draw):
    """2-D 3x3 stride-1 problems with pads up to the input size: every Winograd tile edge."""
    padding_mode = draw(st.sampled_from(PADDING_MODES))
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    pads = []
    for size in (h, w):
        limit = _pad_limit(size, padding_mode)
        pads.append((draw(st.integers(0, limit)), draw(st.integers(0, limit))))
    hypothesis.assume(all(size + b + a >= 3 for size, (b, a) in zip((h, w), pads)))
    c_in, c_out = draw(st.sampled_from([1, 3, 17])), draw(st.sampled_from([1, 4]))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = draw(st.integers(1, 3))
    shape = (batch, c_in, h, w) if layout == "NCHW" else (batch, h, w, c_in)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    kwargs = dict(padding=tuple(pads), padding_mode=padding_mode, layout=layout)
    note(f"x.shape={x.shape} weight.shape={weight.shape} kwargs={kwargs}")
    return x, weight, kwargs


@pytest.mark.parametrize("algorithm", ["winograd_f2x2_3x3", "winograd_f4x4_3x3"])
@hypothesis.settings(max_examples=150)
@given(problem=winograd_problems())
def test_winograd_any_pad_matches_the_reference(algorithm, problem):
    x, weight, kwargs = problem
    got = pcf.conv2d(x, weight, algorithm=algorithm, **kwargs)
    assert_conv_matches(got, x, weight, algorithm=algorithm, **kwargs)


@given(problem=conv_problems())
def test_plan_matches_the_reference(problem):
    x, weight, bias, kwargs = problem
    plan = pcf.plan(x.shape, weight, bias, **kwargs)
    got = plan(x)
    assert_conv_matches(got, x, weight, bias, algorithm=plan.algorithm, **kwargs)
    assert np.array_equal(plan(x), got)   # a plan gives the same result on every call


@st.composite
def transpose_problems(draw):
    n_spatial = draw(st.integers(1, 3))
    c_in, c_out, groups = draw(channels())
    in_size = [draw(st.integers(1, MAX_SIZE[n_spatial] // 2 + 1)) for _ in range(n_spatial)]
    kernel = [draw(st.integers(1, MAX_KERNEL[n_spatial])) for _ in range(n_spatial)]
    stride = [draw(st.integers(1, 3)) for _ in range(n_spatial)]
    dilation = [draw(st.sampled_from([1, 1, 2])) for _ in range(n_spatial)]
    padding, output_padding = [], []
    for i, k, s, d in zip(in_size, kernel, stride, dilation):
        full = (i - 1) * s + d * (k - 1) + 1
        pad = draw(st.integers(0, (full - 1) // 2))            # an output of at least one
        padding.append(pad)
        output_padding.append(draw(st.integers(0, max(s, d) - 1)))
    batch = draw(st.sampled_from([None, 1, 2]))
    layout = draw(st.sampled_from([CHANNELS_FIRST[n_spatial], CHANNELS_LAST[n_spatial]]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (c_in, *in_size) if layout == CHANNELS_FIRST[n_spatial] else (*in_size, c_in)
    if batch is not None:
        shape = (batch,) + shape
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((c_in, c_out // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if draw(st.booleans()) else None
    kwargs = dict(stride=tuple(stride), padding=tuple(padding),
                  output_padding=tuple(output_padding), dilation=tuple(dilation), groups=groups,
                  layout=layout)
    note(f"x.shape={x.shape} weight.shape={weight.shape} kwargs={kwargs}")
    return x, weight, bias, kwargs


@given(problem=transpose_problems())
def test_conv_transpose_every_algorithm_matches_the_reference(problem):
    x, weight, bias, kwargs = problem
    n_spatial = weight.ndim - 2
    algorithms = pcf.list_algorithms(x, weight, transposed=True, **kwargs)
    for algorithm in algorithms + ["auto"]:
        got = CONV_TRANSPOSE[n_spatial](x, weight, bias, algorithm=algorithm, **kwargs)
        assert_transpose_matches(got, x, weight, bias, context=f"algorithm={algorithm!r}",
                                 **kwargs)


def _assert_composed(got, x, weight, bias, terms, context, **kwargs):
    """``got`` against conv2d's reference with ``weight`` (a composed kernel), with ``terms``
    summed terms (the composition's own roundings included)."""
    ref_dtype = reference_dtype(x.dtype)
    ref = conv_reference(x, weight, bias, dtype=ref_dtype, **kwargs)
    scale = conv_scale(x, weight, bias, dtype=ref_dtype, **kwargs)
    assert got.dtype == x.dtype
    assert_within_bound(got, ref, scale, terms, x.dtype, ref_dtype, context)


@given(problem=conv_problems(n_spatial=2), data=st.data())
def test_spatially_separable_and_flattened_match_the_reference(problem, data):
    x, weight, bias, kwargs = problem
    groups = kwargs.pop("groups")
    c_out, c_g, r, s = weight.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    column = rng.standard_normal((c_out, c_g, r)).astype(x.dtype)
    row = rng.standard_normal((c_out, c_g, s)).astype(x.dtype)
    got = pcf.spatially_separable_conv2d(x, column, row, bias, groups=groups, **kwargs)
    full = column.astype(np.float64)[..., None] * row.astype(np.float64)[..., None, :]
    # the two passes round each intermediate once more: one term per tap of the second pass
    _assert_composed(got, x, full, bias, n_terms(full.shape) + r + s, "spatially separable",
                     groups=groups, **kwargs)
    if groups == 1:
        lateral = rng.standard_normal((c_out, c_g)).astype(x.dtype)
        vertical = rng.standard_normal((c_out, r)).astype(x.dtype)
        horizontal = rng.standard_normal((c_out, s)).astype(x.dtype)
        got = pcf.flattened_conv2d(x, lateral, vertical, horizontal, bias, **kwargs)
        full = (lateral.astype(np.float64)[:, :, None, None]
                * vertical.astype(np.float64)[:, None, :, None]
                * horizontal.astype(np.float64)[:, None, None, :])
        _assert_composed(got, x, full, bias, n_terms(full.shape) + r + s + c_g, "flattened",
                         **kwargs)


@given(problem=conv_problems(n_spatial=2), data=st.data())
def test_separable_conv2d_matches_the_reference(problem, data):
    x, weight, _, kwargs = problem
    kwargs.pop("groups")
    channels_last = kwargs["layout"] == "NHWC"
    c = x.shape[-1] if channels_last else x.shape[-3]
    multiplier = data.draw(st.integers(1, 2))
    k = data.draw(st.sampled_from([1, 5, 16]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    depthwise = rng.standard_normal((c * multiplier, 1, *weight.shape[2:])).astype(x.dtype)
    pointwise = rng.standard_normal((k, c * multiplier, 1, 1)).astype(x.dtype)
    bias = rng.standard_normal(k).astype(x.dtype) if data.draw(st.booleans()) else None
    got = pcf.separable_conv2d(x, depthwise, pointwise, bias, **kwargs)
    ref_dtype = reference_dtype(x.dtype)
    inner = conv_reference(x, depthwise, groups=c, dtype=ref_dtype, **kwargs)
    inner_abs = conv_scale(x, depthwise, groups=c, dtype=ref_dtype, **kwargs)
    point = dict(layout=kwargs["layout"])
    ref = conv_reference(inner, pointwise, bias, dtype=ref_dtype, **point)
    scale = conv_scale(inner_abs, pointwise, bias, dtype=ref_dtype, **point)
    terms = n_terms(depthwise.shape) + n_terms(pointwise.shape)
    assert_within_bound(got, ref, scale, terms, x.dtype, ref_dtype, "separable_conv2d")


@given(problem=conv_problems(n_spatial=2), data=st.data())
def test_resize_conv2d_matches_the_reference(problem, data):
    x, weight, bias, kwargs = problem
    scale = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    mode = data.draw(st.sampled_from(["nearest", "bilinear"]))
    if kwargs["padding_mode"] == "reflect":   # pads were drawn against the smaller input
        kwargs["padding_mode"] = "replicate"
    algorithm = data.draw(st.sampled_from(["auto", "direct", "im2col"]))
    got = pcf.resize_conv2d(x, weight, bias, scale_factor=scale, mode=mode,
                            algorithm=algorithm, **kwargs)
    assert_resize_matches(got, x, weight, bias, scale=scale, mode=mode,
                          context=f"algorithm={algorithm!r}", **kwargs)


@given(problem=conv_problems(n_spatial=2), data=st.data())
def test_deform_conv2d_matches_the_reference(problem, data):
    x, weight, bias, kwargs = problem
    hypothesis.assume(kwargs["padding_mode"] == "zeros" and kwargs["layout"] == "NCHW"
                      and not kwargs["flip"] and x.ndim == 4)
    pads = kwargs["padding"]
    pads = (pads, pads) if isinstance(pads, int) else pads
    hypothesis.assume(all(isinstance(p, int) for p in pads))
    geometry = dict(stride=kwargs["stride"], padding=tuple(pads), dilation=kwargs["dilation"],
                    groups=kwargs["groups"])
    h_out, w_out = pcf.conv_output_shape(x.shape, weight.shape, **geometry)[2:]
    c_in = x.shape[1]
    offset_groups = data.draw(st.sampled_from([g for g in (1, 2, 3) if c_in % g == 0]))
    taps = weight.shape[2] * weight.shape[3]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    offset = (rng.standard_normal((x.shape[0], 2 * offset_groups * taps, h_out, w_out))
              * data.draw(st.sampled_from([0.5, 2.0, 6.0]))).astype(x.dtype)
    mask = (rng.random((x.shape[0], offset_groups * taps, h_out, w_out)).astype(x.dtype)
            if data.draw(st.booleans()) else None)
    got = pcf.deform_conv2d(x, offset, weight, bias, mask=mask, **geometry)
    assert_deform_matches(got, x, offset, weight, bias, mask, **geometry)


@given(problem=conv_problems(), data=st.data())
def test_channel_shuffle_is_the_reshape_transpose(problem, data):
    x, _, _, kwargs = problem
    layout = kwargs["layout"]
    axis = -1 if layout in CHANNELS_LAST.values() else (0 if x.ndim == len(layout) - 1 else 1)
    c = x.shape[axis]
    groups = data.draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    moved = np.moveaxis(x, axis, -1)
    want = moved.reshape(moved.shape[:-1] + (groups, c // groups)).swapaxes(-1, -2)
    want = np.moveaxis(want.reshape(moved.shape), -1, axis)
    assert np.array_equal(pcf.channel_shuffle(x, groups, layout=layout), want)

