"""im2col's 1x1 path: stride 1, no padding, GEMMs run on x and out themselves (no lowering).

Checked against the float64 reference in both layouts, 1-D/2-D/3-D, groups, both dtypes, at
BLAS and task edges, for every memory layout of x and out (those that do not flatten take the
lowering path and must give the same answer), and in each of the pointwise modes.
"""

import numpy as np
import pytest
from tests.helpers.cases import CONV, with_memory
from pyconvfast._lib.gemm_lowering.im2col import pointwise_form
from tests.helpers.reference import CHANNELS_FIRST, CHANNELS_LAST, assert_conv_matches

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast._algorithms.im2col import POINTWISE_MODES, _is_pointwise

IM2COL = registry.get("im2col")


def _arrays(rng, batch, c_in, c_out, spatial, groups, dtype, layout):
    x = rng.standard_normal((batch, c_in, *spatial)).astype(dtype)
    if layout in CHANNELS_LAST.values():
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w = rng.standard_normal((c_out, c_in // groups) + (1,) * len(spatial)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


def _run_mode(x, w, b, mode, n_threads, groups, layout):
    """The im2col kernel with ``params={"pointwise": mode}``, on the API's 5-D views."""
    n_spatial = w.ndim - 2
    x, w, b, problem = _api.validated_arrays(n_spatial, x, w, b,
                                             {"groups": groups, "layout": layout})
    out = np.empty(problem.out_shape, x.dtype)
    IM2COL.run(problem, _api._channels_first_5d(x, problem),
               IM2COL.prepare(problem, _api.weight_5d(w, problem)), b,
               _api._channels_first_5d(out, problem), n_threads, {"pointwise": mode})
    return out


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_matches_reference(n_spatial, channels_last, dtype, rng):
    layout = (CHANNELS_LAST if channels_last else CHANNELS_FIRST)[n_spatial]
    spatial = {1: (17,), 2: (13, 5), 3: (3, 4, 5)}[n_spatial]
    for batch, c_in, c_out, groups in ((1, 13, 17, 1), (3, 16, 8, 4), (2, 33, 3, 1)):
        x, w, b = _arrays(rng, batch, c_in, c_out, spatial, groups, dtype, layout)
        for n_threads in (1, 2, 3):
            got = CONV[n_spatial](x, w, b, groups=groups, layout=layout, algorithm="im2col",
                                  n_threads=n_threads)
            assert_conv_matches(got, x, w, b, groups=groups, layout=layout,
                                context=f"{batch=} {c_in=} {c_out=} {groups=} {n_threads=}")


@pytest.mark.parametrize("mode", POINTWISE_MODES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_every_mode_matches_reference(mode, layout, rng):
    # positions 1, and one below, at and above 16 (the smallest task) and a 2-thread split
    for spatial in ((1, 1), (3, 5), (4, 4), (1, 17), (7, 9)):
        for groups in (1, 3):
            x, w, b = _arrays(rng, 2, 12, 9, spatial, groups, np.float32, layout)
            for n_threads in (1, 2):
                got = _run_mode(x, w, b, mode, n_threads, groups, layout)
                assert_conv_matches(got, x, w, b, groups=groups, layout=layout,
                                    context=f"{mode=} {spatial=} {groups=} {n_threads=}")


@pytest.mark.parametrize("kind", ["c", "f", "sliced", "negative", "permuted"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_any_memory_layout_of_x_and_out(kind, layout, rng):
    x, w, b = _arrays(rng, 3, 10, 7, (6, 5), 1, np.float32, layout)
    x = with_memory(x, kind, rng)
    out = with_memory(np.zeros(pcf.conv_output_shape(x.shape, w.shape, layout=layout),
                               np.float32), kind, rng)
    got = pcf.conv2d(x, w, b, layout=layout, algorithm="im2col", out=out, n_threads=2)
    assert got is out
    assert_conv_matches(got, x, w, b, layout=layout, context=f"memory {kind!r}")


def test_the_gemm_path_is_taken_for_plain_arrays():
    """Contiguous NCHW and NHWC arrays flatten (form 1 and 2); a strided spatial view does
    not (the lowering path runs it)."""
    f32 = 4
    nchw = np.empty((2, 8, 5, 6), np.float32)
    nhwc = np.empty((2, 5, 6, 8), np.float32)
    out_cf = np.empty((2, 4, 5, 6), np.float32)
    out_cl = np.empty((2, 5, 6, 4), np.float32)

    def form(x, out, channels_last):
        if channels_last:
            x, out = np.moveaxis(x, -1, 1), np.moveaxis(out, -1, 1)
        x5, o5 = x[:, :, None], out[:, :, None]
        return pointwise_form(x5.strides, o5.strides, x5.shape[2:], 8, 4, f32)

    assert form(nchw, out_cf, False) == 1
    assert form(nhwc, out_cl, True) == 2
    assert form(np.empty((2, 8, 5, 12), np.float32)[..., ::2], out_cf, False) == 0
    assert form(nchw, np.empty((2, 4, 5, 7), np.float32)[..., :6], False) == 0
    problem = _api.make_problem((2, 8, 5, 6), (4, 8, 1, 1), n_spatial=2)
    assert _is_pointwise(problem)
    assert not _is_pointwise(_api.make_problem((2, 8, 5, 6), (4, 8, 1, 1), n_spatial=2,
                                               padding=1))
    assert not _is_pointwise(_api.make_problem((2, 8, 5, 6), (4, 8, 1, 1), n_spatial=2,
                                               stride=2))


def test_padded_and_strided_1x1_still_correct(rng):
    """Not the GEMM path (padding, stride), with every padding mode: the lowering runs them."""
    x, w, b = _arrays(rng, 2, 6, 5, (7, 8), 1, np.float64, "NCHW")
    for kwargs in ({"padding": 1}, {"stride": 2}, {"padding": 2, "padding_mode": "reflect"}):
        got = pcf.conv2d(x, w, b, algorithm="im2col", **kwargs)
        assert_conv_matches(got, x, w, b, context=str(kwargs), **kwargs)


def test_unknown_pointwise_mode_is_refused(rng):
    x, w, b = _arrays(rng, 1, 4, 4, (3, 3), 1, np.float32, "NCHW")
    with pytest.raises(ValueError, match="pointwise must be one of"):
        _run_mode(x, w, b, "fast", 1, 1, "NCHW")
