"""The separable family: ``separable_conv2d`` (fused depthwise + pointwise),
``spatially_separable_conv2d`` and ``separate_kernel`` (with the ``separable`` algorithm that
``auto`` runs for rank-1 kernels), ``flattened_conv2d``.

Every result is compared with the float64 (long double) reference of :mod:`reference` applied to
the dense weight the factors make, under the summation error bound: a chain of passes sums fewer
terms per output than the dense convolution (``C/groups * (R + S)`` instead of
``C/groups * R * S``), and each pass's error is bounded by the same scale ``|x| (*) |w|``, so the
dense bound holds.
"""

import itertools

import numpy as np
import pytest
from tests.helpers.reference import (
    CHANNELS_LAST,
    assert_within_bound,
    conv_reference,
    conv_scale,
    n_terms,
    reference_dtype,
)

import pyconvfast as pcf
from pyconvfast import _api, _separable
from pyconvfast._algorithms import separable
from pyconvfast._algorithms import registry
from pyconvfast.tuning import heuristic as _heuristic

DTYPES = (np.float32, np.float64)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _to_layout(x, layout):
    if layout in CHANNELS_LAST.values():
        return np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return x


def _outer(column, row, dtype):
    """The dense weight of (column, row), exact in the reference type."""
    column, row = column.astype(dtype), row.astype(dtype)
    return column[..., :, None] * row[..., None, :]


def _assert_dense_match(got, x, weight_ref, bias, context, **kwargs):
    dtype = x.dtype
    ref_dtype = reference_dtype(dtype)
    ref = conv_reference(x, weight_ref, bias, dtype=ref_dtype, **kwargs)
    scale = conv_scale(x, weight_ref, bias, dtype=ref_dtype, **kwargs)
    assert got.dtype == dtype
    assert_within_bound(got, ref, scale, n_terms(weight_ref.shape), dtype, ref_dtype, context)


def _geometry(rng, h, w, r, s):
    """Random stride, dilation, padding and padding mode that fit an (h, w) input."""
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    mode = PADDING_MODES[rng.integers(4)]
    pads = []
    for size, k, d in zip((h, w), (r, s), dilation):
        limit = size - 1 if mode == "reflect" else k + 1
        pads.append((int(rng.integers(0, limit + 1)), int(rng.integers(0, limit + 1))))
    choice = rng.integers(3)
    padding = "same" if choice == 0 and mode != "reflect" else tuple(pads)
    for size, k, d, (b, a) in zip((h, w), (r, s), dilation, pads):
        if d * (k - 1) + 1 > size + (0 if padding == "same" else b + a):
            padding = tuple((d * (k - 1), d * (k - 1)) if mode != "reflect" else (0, 0)
                            for k, d in zip((r, s), dilation))
    return {"stride": stride, "dilation": dilation, "padding": padding, "padding_mode": mode}


def _fits(h, w, r, s, kwargs):
    try:
        pcf.conv_output_shape((1, 1, h, w), (1, 1, r, s), **kwargs)
    except ValueError:
        return False
    return True


# --- spatially_separable_conv2d -------------------------------------------------------------------

def _spatial_case(rng, dtype, big=False):
    groups = int(rng.choice([1, 1, 2, 3]))
    per_group = int(rng.choice([1, 1, 2, 3, 5]))
    k_per_group = int(rng.choice([1, 2, 3]))
    c, k = groups * per_group, groups * k_per_group
    r, s = int(rng.integers(1, 8 if big else 6)), int(rng.integers(1, 8 if big else 6))
    h, w = int(rng.integers(r, 24 if big else 14)), int(rng.integers(s, 24 if big else 14))
    while True:
        kwargs = _geometry(rng, h, w, r, s)
        if _fits(h, w, r, s, kwargs):
            break
    kwargs.update(groups=groups, flip=bool(rng.integers(2)),
                  layout=("NCHW", "NHWC")[rng.integers(2)])
    x = rng.standard_normal((int(rng.integers(1, 3)), c, h, w)).astype(dtype)
    column = rng.standard_normal((k, per_group, r)).astype(dtype)
    row = rng.standard_normal((k, per_group, s)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype) if rng.integers(2) else None
    return _to_layout(x, kwargs["layout"]), column, row, bias, kwargs


def _check_spatial(x, column, row, bias, kwargs, n_threads=None, out=None):
    got = pcf.spatially_separable_conv2d(x, column, row, bias, n_threads=n_threads, out=out,
                                         **kwargs)
    weight_ref = _outer(column, row, reference_dtype(x.dtype))
    context = (f"x.shape={x.shape} column.shape={column.shape} row.shape={row.shape} "
               f"bias={bias is not None} {kwargs}")
    _assert_dense_match(got, x, weight_ref, bias, context, **kwargs)
    return got


@pytest.mark.parametrize("dtype", DTYPES)
def test_spatially_separable_sweep(dtype):
    rng = np.random.default_rng(20261123 + np.dtype(dtype).itemsize)
    for _ in range(40):
        _check_spatial(*_spatial_case(rng, dtype))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_spatially_separable_sweep_slow(dtype):
    rng = np.random.default_rng(77 + np.dtype(dtype).itemsize)
    for _ in range(1500):
        _check_spatial(*_spatial_case(rng, dtype, big=True))


@pytest.mark.parametrize("channels", [1, 3, 13, 17, 33])
def test_spatially_separable_channel_tails(rng, channels):
    # depthwise (one channel per group), and dense with a tail of channels
    x = rng.standard_normal((2, channels, 15, 17)).astype(np.float32)
    for groups in (channels, 1):
        column = rng.standard_normal((channels, channels // groups, 7)).astype(np.float32)
        row = rng.standard_normal((channels, channels // groups, 5)).astype(np.float32)
        for n_threads in (1, 2, 3):
            _check_spatial(x, column, row, None, {"groups": groups, "padding": "same"},
                           n_threads=n_threads)


def test_spatially_separable_out_and_unbatched(rng):
    x = rng.standard_normal((4, 9, 11))
    column, row = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 4))
    bias = rng.standard_normal(6)
    out = np.full((10, 9, 6), np.nan)[::-1].transpose(2, 1, 0)[:, ::-1]  # strided
    kwargs = {"groups": 2, "padding": 1}
    got = _check_spatial(x, column, row, bias, kwargs, out=out)
    assert got is out and got.shape == (6, 9, 10)
    assert pcf.spatially_separable_conv2d(np.zeros((0, 4, 9, 11)), column, row,
                                          groups=2).shape == (0, 6, 7, 8)


def test_spatially_separable_equals_conv2d(rng):
    x = rng.standard_normal((2, 3, 20, 20)).astype(np.float32)
    column, row = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 3, 5))
    column, row = column.astype(np.float32), row.astype(np.float32)
    weight = column[..., :, None] * row[..., None, :]
    got = pcf.spatially_separable_conv2d(x, column, row, padding=2, padding_mode="reflect")
    dense = pcf.conv2d(x, weight, padding=2, padding_mode="reflect", algorithm="direct")
    np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-5 * np.abs(dense).max())


def test_spatially_separable_bad_inputs():
    x = np.zeros((1, 4, 8, 8), np.float32)
    col, row = np.zeros((2, 4, 3), np.float32), np.zeros((2, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"column must be 3-D .*column\.shape=\(2, 4\)"):
        pcf.spatially_separable_conv2d(x, col[:, :, 0], row)
    with pytest.raises(ValueError, match=r"row must be 3-D .*row\.shape=\(2, 4, 3, 1\)"):
        pcf.spatially_separable_conv2d(x, col, row[..., None])
    with pytest.raises(ValueError, match=r"agree on .*column\.shape=\(2, 4, 3\).*row\.shape=\(3, 4, 3\)"):
        pcf.spatially_separable_conv2d(x, col, np.zeros((3, 4, 3), np.float32))
    with pytest.raises(TypeError, match=r"x is float32 but row is float64"):
        pcf.spatially_separable_conv2d(x, col, row.astype(np.float64))
    with pytest.raises(TypeError, match=r"column has dtype int64"):
        pcf.spatially_separable_conv2d(x, col.astype(np.int64), row)
    with pytest.raises(ValueError, match=r"C_in=4.*\[the factors column\.shape=\(2, 2, 3\)"):
        pcf.spatially_separable_conv2d(x, col[:, :2], row[:, :2])
    with pytest.raises(ValueError, match=r"groups=3 must divide"):
        pcf.spatially_separable_conv2d(x, col, row, groups=3)
    with pytest.raises(ValueError, match=r"column must have no empty axis"):
        pcf.spatially_separable_conv2d(x, np.zeros((2, 4, 0), np.float32), row)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        pcf.spatially_separable_conv2d(x, col, row, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"out has shape"):
        pcf.spatially_separable_conv2d(x, col, row, out=np.zeros((1, 2, 7, 7), np.float32))


# --- separate_kernel and auto ---------------------------------------------------------------------

def _gaussian(size, sigma, dtype):
    g = np.exp(-0.5 * (np.arange(size) - (size - 1) / 2) ** 2 / sigma**2)
    return np.outer(g, g) / g.sum() ** 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_separate_kernel_round_trips(rng, dtype):
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    kernels = [_gaussian(7, 1.5, dtype), _gaussian(31, 5.0, dtype), sobel, sobel.T,
               np.ones((5, 5)) / 25, np.ones((3, 9)), np.zeros((4, 4)),
               np.outer(rng.standard_normal(6), rng.standard_normal(11))]
    for kernel in kernels:
        kernel = kernel.astype(dtype)
        column, row = pcf.separate_kernel(kernel)
        assert column.shape == kernel.shape[:1] and row.shape == kernel.shape[1:]
        assert column.dtype == row.dtype == dtype
        rebuilt = np.outer(column.astype(np.float64), row.astype(np.float64))
        norm = np.linalg.norm(kernel.astype(np.float64))
        eps = np.finfo(dtype).eps
        assert np.linalg.norm(rebuilt - kernel) <= 8 * eps * norm
        assert row.max() >= np.abs(row).max() * (1 - 1e-5)  # largest entry positive (or a tie)
    stacked = np.empty((3, 2, 7, 7), dtype=dtype)
    stacked[:, 0] = kernels[0]
    for k in range(3):
        stacked[k, 1] = np.outer(rng.standard_normal(7), rng.standard_normal(7)) * 10.0**k
    column, row = pcf.separate_kernel(stacked)
    assert column.shape == (3, 2, 7) and row.shape == (3, 2, 7)
    np.testing.assert_allclose(column[..., :, None] * row[..., None, :], stacked,
                               atol=8 * np.finfo(dtype).eps * np.abs(stacked).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_separate_kernel_refuses_non_rank1(rng, dtype):
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=dtype)
    assert pcf.separate_kernel(laplacian) is None
    assert pcf.separate_kernel(rng.standard_normal((5, 5)).astype(dtype)) is None
    # one rank-2 slice among rank-1 ones: None for the whole weight
    weight = np.stack([_gaussian(5, 1.0, dtype)] * 4).reshape(2, 2, 5, 5).astype(dtype)
    assert pcf.separate_kernel(weight) is not None
    weight[1, 0, 2, 2] += 1e-3
    assert pcf.separate_kernel(weight) is None
    # rtol: a small perturbation passes a looser tolerance, and gives the best rank-1 factors
    assert pcf.separate_kernel(weight, rtol=0.05) is not None
    assert pcf.separate_kernel(weight, rtol=0) is None


def test_separate_kernel_default_rtol():
    assert separable.default_rtol(np.float32) == pytest.approx(16 * 2**-23)
    assert separable.default_rtol(np.float64) == pytest.approx(16 * 2**-52)
    # a float64 Gaussian rounded to float32 is rank-1 for the float32 tolerance
    assert pcf.separate_kernel(_gaussian(15, 3.0, np.float64).astype(np.float32)) is not None


def test_separate_kernel_bad_inputs():
    with pytest.raises(TypeError, match=r"weight has dtype int64"):
        pcf.separate_kernel(np.ones((3, 3), np.int64))
    with pytest.raises(ValueError, match=r"weight must be 4-D .*weight\.shape=\(3,\)"):
        pcf.separate_kernel(np.ones(3))
    with pytest.raises(ValueError, match=r"no empty axis.*\(0, 3\)"):
        pcf.separate_kernel(np.ones((0, 3)))
    with pytest.raises(ValueError, match=r"rtol must be a non-negative number, got rtol=-1"):
        pcf.separate_kernel(np.ones((3, 3)), rtol=-1)
    with pytest.raises(ValueError, match=r"rtol=nan"):
        pcf.separate_kernel(np.ones((3, 3)), rtol=float("nan"))
    with pytest.raises(TypeError, match=r"rtol must be a real number, got rtol='1'"):
        pcf.separate_kernel(np.ones((3, 3)), rtol="1")
    with pytest.raises(TypeError, match=r"rtol=True"):
        pcf.separate_kernel(np.ones((3, 3)), rtol=True)
    assert pcf.separate_kernel(np.array([[1.0, np.nan], [1.0, 1.0]])) is None


def test_separable_algorithm_offered_only_for_rank1_weights(rng):
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    gauss = np.stack([_gaussian(7, 1.5, np.float32)] * 3)[:, None].astype(np.float32)
    dense = rng.standard_normal((3, 1, 7, 7)).astype(np.float32)
    assert "separable" in pcf.list_algorithms(x, gauss, groups=3)
    assert "separable" not in pcf.list_algorithms(x, dense, groups=3)
    assert "separable" not in pcf.list_algorithms(x.shape, gauss.shape, groups=3)  # shapes only
    assert "separable" in pcf.list_algorithms()
    with pytest.raises(ValueError, match=r"algorithm='separable' cannot run this problem: "
                                         r"needs a 2-D kernel .* rank-1"):
        pcf.conv2d(x, dense, groups=3, algorithm="separable")
    # a 1-D row of taps is rank-1 but too small to gain: not offered
    assert "separable" not in pcf.list_algorithms(x, gauss[:, :, :2], groups=3)
    # the heuristic takes it for 5x5 and larger
    problem = separable.mark(_api.make_problem(x.shape, gauss.shape, n_spatial=2, groups=3), gauss)
    assert problem.rank1_kernel and "|rank1" in problem.key
    assert _heuristic.choose(problem) == "separable"
    small = np.ones((3, 1, 3, 3), np.float32)
    problem = separable.mark(_api.make_problem(x.shape, small.shape, n_spatial=2, groups=3), small)
    assert problem.rank1_kernel and _heuristic.choose(problem) != "separable"
    plan = pcf.plan(x.shape, gauss, groups=3, padding=3)
    assert plan.algorithm == "separable"
    got = plan(x)
    _assert_dense_match(got, x, gauss.astype(np.float64), None, "plan", groups=3, padding=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels,groups", [(1, 1), (3, 3), (3, 1), (13, 13)])
def test_auto_runs_rank1_kernels_as_two_passes(rng, dtype, channels, groups):
    x = rng.standard_normal((2, channels, 40, 37)).astype(dtype)
    kernel = _gaussian(11, 2.0, dtype).astype(dtype)
    weight = np.broadcast_to(kernel, (channels, channels // groups, 11, 11)).copy()
    weight[0] *= -2  # slices differ
    kwargs = {"groups": groups, "padding": "same", "padding_mode": "reflect", "flip": True}
    sep = pcf.conv2d(x, weight, algorithm="separable", **kwargs)
    auto = pcf.conv2d(x, weight, **kwargs)  # heuristic (PYCONVFAST_TUNE=estimate): separable
    np.testing.assert_array_equal(auto, sep)
    # Within the summation bound of the given weight: the factors reproduce it to a few eps.
    _assert_dense_match(sep, x, weight, None, str(kwargs), **kwargs)


def test_separable_never_silently_wrong_after_in_place_change(rng):
    x = rng.standard_normal((1, 2, 20, 20)).astype(np.float32)
    weight = np.stack([_gaussian(7, 1.5, np.float32)] * 2)[:, None].astype(np.float32)
    first = pcf.conv2d(x, weight, groups=2, padding=3)
    _assert_dense_match(first, x, weight, None, "rank-1", groups=2, padding=3)
    weight[1, 0, 3, 3] += 0.5  # no longer rank-1, same array object
    assert "separable" not in pcf.list_algorithms(x, weight, groups=2)
    second = pcf.conv2d(x, weight, groups=2, padding=3)
    _assert_dense_match(second, x, weight, None, "changed in place", groups=2, padding=3)
    with pytest.raises(ValueError, match="cannot run this problem"):
        pcf.conv2d(x, weight, groups=2, padding=3, algorithm="separable")
    # the registry's prepare refuses a weight that is not rank-1 even if the flag is forced
    problem = _api.make_problem(x.shape, weight.shape, n_spatial=2, groups=2, padding=3)
    from dataclasses import replace

    forced = replace(problem, rank1_kernel=True)
    with pytest.raises(ValueError, match="rank-1"):
        registry.get("separable").prepare(forced, _api.weight_5d(weight, forced))


def test_auto_measure_mode_may_pick_separable(monkeypatch, rng):
    monkeypatch.setenv("PYCONVFAST_TUNE", "measure")
    x = rng.standard_normal((1, 1, 128, 128)).astype(np.float32)
    weight = _gaussian(15, 3.0, np.float32).astype(np.float32)[None, None]
    plan = pcf.plan(x.shape, weight, padding=7)
    assert "separable" in plan.explain()  # timed among the candidates
    _assert_dense_match(plan(x), x, weight, None, "measured", padding=7)


# --- flattened_conv2d ---------------------------------------------------------------------------

def _check_flat(x, lateral, vertical, horizontal, bias, kwargs, n_threads=None):
    got = pcf.flattened_conv2d(x, lateral, vertical, horizontal, bias, n_threads=n_threads,
                               **kwargs)
    ref_dtype = reference_dtype(x.dtype)
    weight_ref = (lateral.astype(ref_dtype)[:, :, None, None]
                  * vertical.astype(ref_dtype)[:, None, :, None]
                  * horizontal.astype(ref_dtype)[:, None, None, :])
    context = (f"x.shape={x.shape} lateral={lateral.shape} vertical={vertical.shape} "
               f"horizontal={horizontal.shape} {kwargs}")
    _assert_dense_match(got, x, weight_ref, bias, context, **kwargs)
    return got


@pytest.mark.parametrize("dtype", DTYPES)
def test_flattened_sweep(dtype):
    rng = np.random.default_rng(5150 + np.dtype(dtype).itemsize)
    for _ in range(40):
        c, k = int(rng.choice([1, 3, 13, 17])), int(rng.choice([1, 4, 17]))
        r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        h, w = int(rng.integers(r, 14)), int(rng.integers(s, 14))
        while True:
            kwargs = _geometry(rng, h, w, r, s)
            if _fits(h, w, r, s, kwargs):
                break
        kwargs.update(flip=bool(rng.integers(2)), layout=("NCHW", "NHWC")[rng.integers(2)])
        x = _to_layout(rng.standard_normal((int(rng.integers(1, 3)), c, h, w)).astype(dtype),
                       kwargs["layout"])
        factors = [rng.standard_normal(shape).astype(dtype) for shape in ((k, c), (k, r), (k, s))]
        bias = rng.standard_normal(k).astype(dtype) if rng.integers(2) else None
        _check_flat(x, *factors, bias, kwargs, n_threads=int(rng.integers(1, 4)))


def test_flattened_bad_inputs():
    x = np.zeros((1, 4, 8, 8))
    lat, ver, hor = np.zeros((2, 4)), np.zeros((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"lateral must be 2-D \(K, C\).*lateral\.shape=\(2, 4, 1\)"):
        pcf.flattened_conv2d(x, lat[..., None], ver, hor)
    with pytest.raises(ValueError, match=r"same K .*vertical\.shape=\(3, 3\)"):
        pcf.flattened_conv2d(x, lat, np.zeros((3, 3)), hor)
    with pytest.raises(ValueError, match=r"C_in=4 .*\[the factors lateral\.shape=\(2, 5\)"):
        pcf.flattened_conv2d(x, np.zeros((2, 5)), ver, hor)
    with pytest.raises(TypeError, match=r"x is float64 but horizontal is float32"):
        pcf.flattened_conv2d(x, lat, ver, hor.astype(np.float32))
    with pytest.raises(ValueError, match=r"stride must be >= 1, got stride=0"):
        pcf.flattened_conv2d(x, lat, ver, hor, stride=0)


# --- separable_conv2d (fused) -----------------------------------------------------------------

def _check_fused(x, depthwise, pointwise, bias=None, depthwise_bias=None, n_threads=None,
                 out=None, **kwargs):
    got = pcf.separable_conv2d(x, depthwise, pointwise, bias, depthwise_bias=depthwise_bias,
                               n_threads=n_threads, out=out, **kwargs)
    layout = kwargs.get("layout", "NCHW")
    channels = x.shape[-1] if layout == "NHWC" else x.shape[-3]
    ref_dtype = reference_dtype(x.dtype)
    mid = conv_reference(x, depthwise, depthwise_bias, groups=channels, dtype=ref_dtype,
                         **kwargs)
    ref = conv_reference(mid, pointwise, bias, layout=layout, dtype=ref_dtype)
    mid_scale = conv_scale(x, depthwise, depthwise_bias, groups=channels, dtype=ref_dtype,
                           **kwargs)
    scale = conv_scale(mid_scale, pointwise, bias, layout=layout, dtype=ref_dtype)
    terms = n_terms(depthwise.shape) + n_terms(pointwise.shape)
    context = (f"x.shape={x.shape} depthwise.shape={depthwise.shape} "
               f"pointwise.shape={pointwise.shape} n_threads={n_threads} {kwargs}")
    assert got.dtype == x.dtype
    assert_within_bound(got, ref, scale, terms, x.dtype, ref_dtype, context)
    return got


def _fused_case(rng, dtype):
    c = int(rng.choice([1, 2, 3, 13, 17, 33]))
    m = int(rng.choice([1, 1, 2, 3]))
    k = int(rng.choice([1, 5, 16, 17]))
    r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    h, w = int(rng.integers(r, 20)), int(rng.integers(s, 20))
    while True:
        kwargs = _geometry(rng, h, w, r, s)
        if _fits(h, w, r, s, kwargs):
            break
    kwargs.update(flip=bool(rng.integers(2)), layout=("NCHW", "NHWC")[rng.integers(2)])
    x = _to_layout(rng.standard_normal((int(rng.integers(1, 4)), c, h, w)).astype(dtype),
                   kwargs["layout"])
    depthwise = rng.standard_normal((c * m, 1, r, s)).astype(dtype)
    pointwise = rng.standard_normal((k, c * m, 1, 1)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype) if rng.integers(2) else None
    dw_bias = rng.standard_normal(c * m).astype(dtype) if rng.integers(2) else None
    return x, depthwise, pointwise, bias, dw_bias, kwargs


@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_conv2d_sweep(dtype):
    rng = np.random.default_rng(31337 + np.dtype(dtype).itemsize)
    for _ in range(80):
        x, dw, pw, bias, dw_bias, kwargs = _fused_case(rng, dtype)
        _check_fused(x, dw, pw, bias, dw_bias, n_threads=int(rng.integers(1, 4)), **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_conv2d_sweep_slow(dtype):
    rng = np.random.default_rng(4242 + np.dtype(dtype).itemsize)
    for _ in range(1500):
        x, dw, pw, bias, dw_bias, kwargs = _fused_case(rng, dtype)
        _check_fused(x, dw, pw, bias, dw_bias, n_threads=int(rng.integers(1, 5)), **kwargs)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_separable_conv2d_tile_edges(rng, layout, monkeypatch):
    # Tiles of 1, 2, 3 and 7 rows over 7 to 9 output rows: one below, at and above a multiple.
    for tile_bytes in (1, 2 * 33 * 8 * 4, 3 * 33 * 8 * 4, 7 * 33 * 8 * 4):
        monkeypatch.setattr(_separable, "SEPARABLE_TILE_BYTES", tile_bytes)
        for h in (7, 8, 9):
            x = _to_layout(rng.standard_normal((2, 33, h, 8)).astype(np.float32), layout)
            dw = rng.standard_normal((33, 1, 3, 3)).astype(np.float32)
            pw = rng.standard_normal((17, 33, 1, 1)).astype(np.float32)
            for n_threads in (1, 2, 3):
                _check_fused(x, dw, pw, rng.standard_normal(17).astype(np.float32),
                             n_threads=n_threads, padding=1, layout=layout)


def test_separable_tile_rows():
    assert _separable.separable_tile_rows(32, 112, 112, 1, 4, 1) == 18
    assert _separable.separable_tile_rows(1024, 7, 7, 1, 4, 1) == 7
    # fewer rows until each of the threads has a task
    assert _separable.separable_tile_rows(1024, 7, 7, 1, 4, 4) == 2
    assert _separable.separable_tile_rows(4096, 7, 7, 1, 8, 1) == 1


def test_separable_conv2d_out_kinds(rng):
    x = rng.standard_normal((2, 5, 9, 10))
    dw, pw = rng.standard_normal((10, 1, 3, 3)), rng.standard_normal((4, 10, 1, 1))
    expected = _check_fused(x, dw, pw, padding=1)
    for out in (np.empty((2, 4, 9, 10)), np.empty((10, 9, 4, 2)).T,
                np.empty((2, 4, 9, 20))[..., ::2], np.empty((2, 4, 9, 10))[:, ::-1, ::-1]):
        out[...] = np.nan
        got = pcf.separable_conv2d(x, dw, pw, padding=1, out=out)
        assert got is out
        np.testing.assert_array_equal(got, expected)
    # channels-last input (channels-innermost tiles), every kind of output
    x_last = np.moveaxis(x, 1, -1)
    for out in (np.empty((2, 9, 10, 4)), np.empty((4, 10, 9, 2)).T,
                np.empty((2, 9, 10, 8))[..., ::2], np.empty((2, 9, 10, 4))[:, ::-1]):
        out[...] = np.nan
        got = pcf.separable_conv2d(x_last, dw, pw, padding=1, out=out, layout="NHWC")
        assert got is out
        np.testing.assert_allclose(np.moveaxis(got, -1, 1), expected, rtol=1e-12, atol=1e-12)
    unbatched = pcf.separable_conv2d(x[1], dw, pw, padding=1)
    np.testing.assert_array_equal(unbatched, expected[1])
    nhwc = pcf.separable_conv2d(np.moveaxis(x, 1, -1), dw, pw, padding=1, layout="NHWC")
    np.testing.assert_allclose(np.moveaxis(nhwc, -1, 1), expected, rtol=1e-12, atol=1e-12)
    assert pcf.separable_conv2d(x[:0], dw, pw, padding=1).shape == (0, 4, 9, 10)


def test_separable_conv2d_bad_inputs():
    x = np.zeros((1, 4, 8, 8), np.float32)
    dw, pw = np.zeros((8, 1, 3, 3), np.float32), np.zeros((6, 8, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"depthwise must be 4-D .*depthwise\.shape=\(8, 3, 3\)"):
        pcf.separable_conv2d(x, dw[:, 0], pw)
    with pytest.raises(ValueError, match=r"depthwise must have shape \(C \* m, 1, R, S\).*\(8, 2, 3, 3\)"):
        pcf.separable_conv2d(x, np.zeros((8, 2, 3, 3), np.float32), pw)
    with pytest.raises(ValueError, match=r"pointwise must have shape \(K, C \* m, 1, 1\) = \(K, 8, 1, 1\).*\(6, 8, 3, 3\)"):
        pcf.separable_conv2d(x, dw, np.zeros((6, 8, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"pointwise.*\(6, 7, 1, 1\)"):
        pcf.separable_conv2d(x, dw, np.zeros((6, 7, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"groups=4 must divide both C_in=4 and C_out=6"):
        pcf.separable_conv2d(x, np.zeros((6, 1, 3, 3), np.float32),
                             np.zeros((6, 6, 1, 1), np.float32))
    with pytest.raises(TypeError, match=r"x is float32 but pointwise is float64"):
        pcf.separable_conv2d(x, dw, pw.astype(np.float64))
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        pcf.separable_conv2d(x, dw, pw, np.zeros(8, np.float32))
    with pytest.raises(ValueError, match=r"depthwise_bias must have shape \(8,\)"):
        pcf.separable_conv2d(x, dw, pw, depthwise_bias=np.zeros(6, np.float32))
    with pytest.raises(TypeError, match=r"depthwise_bias is float64"):
        pcf.separable_conv2d(x, dw, pw, depthwise_bias=np.zeros(8))
    with pytest.raises(ValueError, match=r"layout must be 'NCHW' or 'NHWC'.*layout='NCL'"):
        pcf.separable_conv2d(x, dw, pw, layout="NCL")
    with pytest.raises(ValueError, match=r"x must be 4-D \(NCHW\).*x\.shape=\(8, 8\)"):
        pcf.separable_conv2d(x[0, 0], dw, pw)
    with pytest.raises(ValueError, match=r"kernel .*larger than the padded input"):
        pcf.separable_conv2d(x[..., :2, :2], dw, pw)
    square = np.zeros((1, 8, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"out shares memory with x"):
        pcf.separable_conv2d(square, np.zeros((8, 1, 1, 1), np.float32),
                             np.zeros((8, 8, 1, 1), np.float32), out=square)
    with pytest.raises(ValueError, match=r"n_threads must be None or between"):
        pcf.separable_conv2d(x, dw, pw, n_threads=0)


# --- against PyTorch ----------------------------------------------------------------------------

def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 16, 19, 23)).astype(np.float32)
    dw = rng.standard_normal((32, 1, 5, 3)).astype(np.float32)
    pw = rng.standard_normal((24, 32, 1, 1)).astype(np.float32)
    b, db = rng.standard_normal(24).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    got = pcf.separable_conv2d(x, dw, pw, b, depthwise_bias=db, stride=2, padding=(2, 1),
                               dilation=(1, 2))
    with torch.no_grad():
        mid = F.conv2d(torch.from_numpy(x), torch.from_numpy(dw), torch.from_numpy(db),
                       stride=2, padding=(2, 1), dilation=(1, 2), groups=16)
        expected = F.conv2d(mid, torch.from_numpy(pw), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    column = rng.standard_normal((24, 4, 7)).astype(np.float32)
    row = rng.standard_normal((24, 4, 5)).astype(np.float32)
    got = pcf.spatially_separable_conv2d(x, column, row, groups=4, padding=3,
                                         padding_mode="circular")
    weight = torch.from_numpy(column[..., :, None] * row[..., None, :])
    with torch.no_grad():
        padded = F.pad(torch.from_numpy(x), (3, 3, 3, 3), mode="circular")
        expected = F.conv2d(padded, weight, groups=4).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# --- the combinations named in the docs ------------------------------------------------------------

def test_shapes_of_mobilenet_block(rng):
    for (c, size, stride, k) in itertools.islice(
            [(32, 28, 1, 64), (64, 28, 2, 128), (128, 14, 1, 128), (256, 7, 1, 256)], 4):
        x = rng.standard_normal((1, c, size, size)).astype(np.float32)
        dw = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
        pw = rng.standard_normal((k, c, 1, 1)).astype(np.float32)
        _check_fused(x, dw, pw, stride=stride, padding=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_kernels_stay_exact(rng, dtype):
    # Sobel, box and an integer outer product factor exactly (pivot factors), so the two passes
    # give exactly the direct sum on integer-valued data, as every exact algorithm does.
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    kernels = [sobel, sobel.T, np.ones((5, 5)), np.outer([1, 4, 6, 4, 1], [1, 2, 1])]
    x = rng.integers(-8, 9, (2, 4, 23, 19)).astype(dtype)
    for kernel in kernels:
        weight = np.broadcast_to(kernel, (4, 1) + kernel.shape).astype(dtype)
        column, row = pcf.separate_kernel(weight)
        np.testing.assert_array_equal(column[..., :, None] * row[..., None, :], weight)
        kwargs = {"groups": 4, "padding": "same", "padding_mode": "reflect"}
        np.testing.assert_array_equal(
            pcf.conv2d(x, weight, algorithm="separable", **kwargs),
            pcf.conv2d(x, weight, algorithm="direct", **kwargs))
