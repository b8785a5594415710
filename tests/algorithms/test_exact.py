"""Integer-valued inputs: every partial sum is a small integer, exactly representable in float32
and float64, so every algorithm must give exactly the reference (oneDNN benchdnn's trick).

The exceptions are listed, with the reason, in ``cases.NOT_EXACT_ON_INTEGERS`` (Winograd
F(4x4, 3x3), whose transform holds 1/6, and fft): those run here, but only random-data tests check
their values.
"""

import numpy as np
import pytest

import pyconvfast as pcf
from tests.helpers.cases import CONV, exact_on_integers, make_case, run_case
from tests.helpers.reference import conv_reference

SEED = 777

GEOMETRIES = [
    # (x_shape channels-first, w_shape, kwargs)
    ((2, 3, 11), (4, 3, 3), {}),
    ((2, 3, 11), (4, 3, 3), {"padding": "same", "stride": 2}),
    ((1, 4, 16), (6, 2, 5), {"groups": 2, "dilation": 2, "padding": ((3, 1),)}),
    ((3, 5, 9), (10, 1, 4), {"groups": 5, "padding": "same", "padding_mode": "reflect"}),
    ((2, 3, 7, 9), (5, 3, 3, 3), {"padding": 1}),
    ((2, 3, 7, 9), (5, 3, 3, 2), {"padding": "same", "stride": (2, 3), "flip": True}),
    ((1, 6, 8, 8), (6, 2, 3, 3), {"groups": 3, "dilation": (1, 2), "padding_mode": "circular",
                                  "padding": (2, 1)}),
    ((2, 4, 6, 7), (8, 1, 3, 3), {"groups": 4, "padding": ((2, 0), (1, 2)),
                                  "padding_mode": "replicate"}),
    ((1, 17, 5, 5), (13, 17, 1, 1), {}),
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), {"padding": 1}),
    ((2, 3, 4, 5, 6), (6, 1, 2, 3, 2), {"groups": 3, "stride": (1, 2, 2), "padding": "same",
                                        "padding_mode": "reflect", "flip": True}),
    ((1, 2, 6, 6, 6), (2, 2, 3, 1, 2), {"dilation": (2, 1, 3), "padding": (2, 0, 3),
                                        "padding_mode": "circular"}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("geometry", range(len(GEOMETRIES)))
def test_exact_geometries(geometry, bias, channels_last, dtype, rng):
    x_shape, w_shape, kwargs = GEOMETRIES[geometry]
    n_spatial = len(w_shape) - 2
    x = rng.integers(-3, 4, size=x_shape).astype(dtype)
    w = rng.integers(-3, 4, size=w_shape).astype(dtype)
    b = rng.integers(-3, 4, size=w_shape[0]).astype(dtype) if bias else None
    if channels_last:
        x = np.moveaxis(x, 1, -1)  # a view: channels-last strides, no copy
        kwargs = dict(kwargs, layout={1: "NLC", 2: "NHWC", 3: "NDHWC"}[n_spatial])
    expected = conv_reference(x, w, b, **kwargs)
    assert np.array_equal(expected, np.round(expected))  # the reference is exact here
    usable = pcf.list_algorithms(x, w, **kwargs)
    for algorithm in usable + ["auto"]:
        got = CONV[n_spatial](x, w, b, algorithm=algorithm, **kwargs)
        assert got.dtype == dtype
        where = f"algorithm={algorithm!r} x.shape={x.shape} w.shape={w_shape} {kwargs}"
        if exact_on_integers(algorithm, usable):  # else: see cases.NOT_EXACT_ON_INTEGERS
            np.testing.assert_array_equal(got, expected.astype(dtype), err_msg=where)


def test_exact_large_sums_float32(rng):
    """Sums up to ~2**20 stay exact in float32 (below 2**24), with many terms per output."""
    x = rng.integers(-8, 9, size=(1, 64, 12, 12)).astype(np.float32)
    w = rng.integers(-8, 9, size=(5, 64, 5, 5)).astype(np.float32)
    expected = conv_reference(x, w, padding=2)
    assert np.abs(expected).max() < 2**24 and 64 * 25 * 64 < 2**24
    usable = pcf.list_algorithms(x, w, padding=2)
    # fft and winograd_f2x2_5x5, the transform-based algorithms that run 5x5, are not exact;
    # "auto" may pick them (by timing) unless precision="accurate" keeps to the others.
    inexact = {"fft", "winograd_f2x2_5x5"}
    assert inexact <= set(usable) and not any(exact_on_integers(name, ()) for name in inexact)
    for algorithm in [name for name in usable if name not in inexact]:
        assert exact_on_integers(algorithm, ())
        np.testing.assert_array_equal(pcf.conv2d(x, w, padding=2, algorithm=algorithm),
                                      expected.astype(np.float32), err_msg=algorithm)
    np.testing.assert_array_equal(pcf.conv2d(x, w, padding=2, precision="accurate"),
                                  expected.astype(np.float32), err_msg="auto, accurate")


@pytest.mark.parametrize("index", range(300))
def test_exact_random(index):
    """The randomized sweep's cases (see test_sweep) with integer values, checked for equality."""
    run_case(make_case(SEED, index, integer=True))
