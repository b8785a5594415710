"""``pointwise_packed``: 1x1 stride-1 unpadded layers with our own packed GEMM micro-kernels.

Every variant of :data:`VARIANTS` (one per SIMD level this CPU runs) is checked against the
float64 reference in both tile forms ("chw", vectors along pixels; "hwc", vectors along
channels), both dtypes and 1-D/2-D/3-D layouts, at the tile edges: planes of 1, 15, 17, 49 and
196 pixels and those around each tile's width (12, 24, 48 pixels; 2, 6, 24 rows), output
channels around the panel width (1, 15, 16, 17, 33) and the 4-panel AVX-512 "hwc" tile (64,
70, 100), odd and single input channels, input
channel blocks smaller than C_in, groups and batches. Each output sums bias + w[0] x[0] + ...
in input-channel order with one multiply-add per term whatever the tile or the split, so the
results are also compared *bitwise* across thread counts, tile forms, splits, input-channel
blocks and memory layouts of x and out.
"""

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import pointwise as pointwise_algorithm
from pyconvfast._algorithms import registry
from pyconvfast._lib.cpu import levels as simd
from pyconvfast._lib.pointwise import kernel as pointwise_lib
from pyconvfast.tuning import heuristic as _heuristic
from tests.helpers.cases import CONV, with_memory
from tests.helpers.reference import CHANNELS_FIRST, CHANNELS_LAST, assert_conv_matches

ALGORITHM = registry.get("pointwise_packed")
VARIANTS = simd.variants_on_this_cpu(pointwise_lib.VARIANTS)

# (batch, c_in, c_out, spatial, groups): the tile edges of the module docstring.
EDGE_CASES = (
    (1, 1, 1, (1,), 1),
    (2, 3, 17, (15,), 1),
    (1, 5, 16, (17,), 1),
    (3, 7, 15, (7, 7), 1),
    (1, 13, 33, (14, 14), 1),
    (2, 16, 40, (5, 9), 2),
    (1, 9, 6, (4, 6), 3),
    (1, 4, 48, (2, 12), 1),
    (2, 24, 1, (1, 25), 1),
    (1, 2, 20, (2, 3, 8), 2),
    (1, 33, 18, (1, 50), 1),
    (1, 5, 100, (5, 5), 1),
    (2, 6, 140, (1, 17), 2),
    (1, 3, 64, (7,), 1),
)


def _arrays(rng, batch, c_in, c_out, spatial, groups, dtype, layout):
    x = rng.standard_normal((batch, c_in, *spatial)).astype(dtype)
    if layout in CHANNELS_LAST.values():
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w = rng.standard_normal((c_out, c_in // groups) + (1,) * len(spatial)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


def _run(x, w, b, params, n_threads, *, groups=1, layout=None, out=None):
    """The algorithm with ``params``, on the API's 5-D views."""
    n_spatial = w.ndim - 2
    kwargs = {"groups": groups, "layout": layout or CHANNELS_FIRST[n_spatial]}
    x, w, b, problem = _api.validated_arrays(n_spatial, x, w, b, kwargs)
    if out is None:
        out = np.empty(problem.out_shape, x.dtype)
    ALGORITHM.run(problem, _api._channels_first_5d(x, problem),
                  ALGORITHM.prepare(problem, _api.weight_5d(w, problem)), b,
                  _api._channels_first_5d(out, problem), n_threads, params)
    return out


def test_supports_only_pointwise_problems():
    assert "pointwise_packed" in pcf.list_algorithms((1, 8, 5, 5), (4, 8, 1, 1))
    assert "pointwise_packed" in pcf.list_algorithms((1, 8, 5), (4, 2, 1), groups=4)
    for kwargs in ({"stride": 2}, {"padding": 1}):
        assert "pointwise_packed" not in pcf.list_algorithms((1, 8, 5, 5), (4, 8, 1, 1),
                                                             **kwargs)
    assert "pointwise_packed" not in pcf.list_algorithms((1, 8, 5, 5), (4, 8, 3, 3))
    problem = _api.make_problem((1, 8, 5, 5), (4, 8, 3, 1), n_spatial=2, padding=(1, 0))
    assert "needs a 1x1 kernel" in ALGORITHM.supports(problem)
    with pytest.raises(ValueError, match="1x1 kernel"):
        pcf.conv2d(np.zeros((1, 8, 5, 5), np.float32), np.zeros((4, 8, 3, 3), np.float32),
                   algorithm="pointwise_packed")


def test_variant_table_follows_the_simd_level():
    assert [variant.level for variant in pointwise_lib.VARIANTS] == list(simd.SIMD_LEVELS)
    assert len({variant.name for variant in pointwise_lib.VARIANTS}) == len(simd.SIMD_LEVELS)
    before = simd.simd_level()
    try:
        for variant in VARIANTS:
            simd.set_simd_level(variant.level)
            assert pointwise_lib.active_variant() == variant
    finally:
        simd.set_simd_level(before)


@pytest.mark.parametrize("form", pointwise_lib.FORMS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.level)
def test_matches_reference_at_every_level(variant, dtype, channels_last, form, rng):
    before = simd.simd_level()
    try:
        simd.set_simd_level(variant.level)
        assert pointwise_lib.active_variant() == variant
        for batch, c_in, c_out, spatial, groups in EDGE_CASES:
            layout = (CHANNELS_LAST if channels_last else CHANNELS_FIRST)[len(spatial)]
            x, w, b = _arrays(rng, batch, c_in, c_out, spatial, groups, dtype, layout)
            # kb = 2 takes the input channels in several blocks (the accumulators restart
            # from the output), the default in one.
            for params in ({"form": form}, {"form": form, "kb": 2}):
                got = _run(x, w, b, params, 2, groups=groups, layout=layout)
                assert_conv_matches(got, x, w, b, groups=groups, layout=layout,
                                    algorithm="pointwise_packed",
                                    context=f"{variant} {x.shape} {w.shape} {groups=} {params}")
    finally:
        simd.set_simd_level(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_same_bits_for_every_thread_count_split_form_and_block(layout, dtype, rng):
    for batch, c_in, c_out, spatial, groups in ((1, 37, 50, (14, 14), 1),
                                                (1, 64, 96, (7, 7), 1),
                                                (2, 18, 34, (9, 11), 2),
                                                (1, 300, 20, (3, 17), 1),
                                                # forced "hwc" on NCHW: stages over 4 MB, so
                                                # its tasks take fewer pixels
                                                (1, 8, 72, (160, 120), 1)):
        x, w, b = _arrays(rng, batch, c_in, c_out, spatial, groups, dtype, layout)
        expected = pcf.conv2d(x, w, b, groups=groups, layout=layout,
                              algorithm="pointwise_packed", n_threads=1)
        assert_conv_matches(expected, x, w, b, groups=groups, layout=layout,
                            algorithm="pointwise_packed")
        problem = _api.make_problem(x.shape, w.shape, n_spatial=2, groups=groups,
                                    layout=layout)
        for params in ALGORITHM.param_space(problem) + [{"kb": 1}, {"kb": 7}]:
            for n_threads in (1, 2, 3):
                got = _run(x, w, b, params, n_threads, groups=groups, layout=layout)
                np.testing.assert_array_equal(got, expected,
                                              err_msg=f"{x.shape} {params} {n_threads=}")


@pytest.mark.parametrize("x_kind", ["c", "f", "sliced", "negative", "permuted"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_any_memory_layout_of_x_and_out(x_kind, layout, rng):
    """Strided, reversed and permuted inputs are packed (or copied where their pixels do not
    flatten); outputs that do not flatten get the result through a temporary: the same bits."""
    x, w, b = _arrays(rng, 2, 19, 21, (6, 5), 1, np.float32, layout)
    expected = pcf.conv2d(x, w, b, layout=layout, algorithm="pointwise_packed", n_threads=1)
    memory_rng = np.random.default_rng(3)
    xm = with_memory(x, x_kind, memory_rng)
    for out_kind in ("c", "f", "sliced", "negative", "permuted"):
        out = with_memory(np.full(expected.shape, np.nan, np.float32), out_kind, memory_rng)
        got = pcf.conv2d(xm, w, b, layout=layout, algorithm="pointwise_packed", out=out,
                         n_threads=2)
        assert got is out
        np.testing.assert_array_equal(got, expected, err_msg=f"x {x_kind}, out {out_kind}")


def test_plan_packs_the_weight_once(monkeypatch, rng):
    calls = []
    pack = pointwise_algorithm.pack_weights

    def counting(w, groups):
        calls.append(w.shape)
        return pack(w, groups)

    monkeypatch.setattr(pointwise_algorithm, "pack_weights", counting)
    x, w, b = _arrays(rng, 1, 24, 40, (7, 7), 1, np.float32, "NCHW")
    plan = pcf.plan(x.shape, w, b, algorithm="pointwise_packed")
    assert calls == [(40, 24)]
    for _ in range(3):
        got = plan(x)
    assert calls == [(40, 24)]
    assert_conv_matches(got, x, w, b, algorithm="pointwise_packed")


def test_packed_panels():
    w = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    packed = pointwise_lib.pack_weights(w, 1)
    assert packed.shape == (2, 3, 16) and packed.flags.c_contiguous
    np.testing.assert_array_equal(packed[0], w[:16].T)
    np.testing.assert_array_equal(packed[1, :, :4], w[16:].T)
    assert not packed[1, :, 4:].any()
    grouped = pointwise_lib.pack_weights(np.ones((6, 5), np.float64), 3)  # 8-wide panels
    assert grouped.shape == (3, 5, 8) and grouped[:, :, :2].all() and not grouped[:, :, 2:].any()


def test_bad_parameters_are_value_errors(rng):
    x, w, b = _arrays(rng, 1, 4, 4, (3, 3), 1, np.float32, "NCHW")
    for params, match in (({"kb": 0}, "kb must be >= 1"), ({"form": "nchw"}, "form must be"),
                          ({"split": "rows"}, "split must be")):
        with pytest.raises(ValueError, match=match):
            _run(x, w, b, params, 1)


def test_estimate_prefers_it_where_measured():
    """Dense float32 1x1 layers of 16+ channels per group (ResNet-50, MobileNetV2) go to
    ``pointwise_packed`` first; float64, fewer channels and other kernels keep their rules."""
    def choice(x_shape, w_shape, dtype="float32", **kwargs):
        problem = _api.make_problem(x_shape, w_shape, n_spatial=len(x_shape) - 2,
                                    dtype=dtype, **kwargs)
        return _heuristic.choose(problem)

    assert choice((1, 64, 56, 56), (256, 64, 1, 1)) == "pointwise_packed"
    assert choice((1, 56, 56, 960), (160, 960, 1, 1), layout="NHWC") == "pointwise_packed"
    assert choice((1, 64, 56, 56), (256, 64, 1, 1), dtype="float64") == "im2col"
    assert choice((1, 8, 56, 56), (256, 8, 1, 1)) == "im2col"
    assert choice((1, 64, 56, 56), (64, 64, 1, 1), stride=2) != "pointwise_packed"
    assert choice((1, 64, 56, 56), (64, 1, 1, 1), groups=64) == "depthwise"
