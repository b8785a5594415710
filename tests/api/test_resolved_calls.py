"""A plain call whose arguments, settings and weight contents match an earlier one runs what
that call resolved (pyconvfast._api._resolved): it must still see a changed setting, a weight
changed in place, and never lend its resolution to another stride, layout or dtype."""

import dataclasses

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast._core import prepared
from tests.helpers.reference import assert_conv_matches


@pytest.fixture(autouse=True)
def _fresh():
    prepared.clear()
    _api._resolved.clear()
    yield
    prepared.clear()
    _api._resolved.clear()


@pytest.fixture
def runs(monkeypatch):
    """[(algorithm name, n_threads)] of every run of a registered algorithm."""
    ran = []
    for name, algorithm in list(registry._ALGORITHMS.items()):
        def run(problem, x, weight, bias, out, n_threads, params, _run=algorithm.run,
                _name=name):
            ran.append((_name, n_threads))
            return _run(problem, x, weight, bias, out, n_threads, params)
        monkeypatch.setitem(registry._ALGORITHMS, name, dataclasses.replace(
            algorithm, run=run, bind=None))
    return ran


def _arrays(rng, dtype=np.float32, layout="NCHW"):
    x = rng.standard_normal((2, 8, 9, 10) if layout == "NCHW" else (2, 9, 10, 8)).astype(dtype)
    w = rng.standard_normal((6, 8, 3, 3)).astype(dtype)
    return x, w


def test_repeated_calls_are_resolved_once_and_stay_right(rng):
    x, w = _arrays(rng)
    for _ in range(4):
        assert_conv_matches(pcf.conv2d(x, w, padding=1, algorithm="direct"), x, w, padding=1,
                            algorithm="direct")
    assert len(_api._resolved) == 1


def test_a_weight_changed_in_place_after_a_resolved_call_gives_the_new_result(rng):
    x, w = _arrays(rng)
    for name in ("direct", "winograd_f4x4_3x3", "auto"):
        for _ in range(3):
            pcf.conv2d(x, w, padding=1, algorithm=name)
        w[1, 2, 0, 1] += 3.0
        w[5] *= -1
        assert_conv_matches(pcf.conv2d(x, w, padding=1, algorithm=name), x, w, padding=1,
                            algorithm=name)


def test_a_weight_turned_rank_1_in_place_may_run_separable_again(rng):
    """The rank-1 check is part of the resolution: new contents check again."""
    x, w = _arrays(rng)
    for _ in range(3):
        pcf.conv2d(x, w, padding=1)
    w[...] = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0]).astype(np.float32)
    assert "separable" in pcf.list_algorithms(x, w, padding=1)
    for _ in range(2):
        got = pcf.conv2d(x, w, padding=1, algorithm="separable")
    assert_conv_matches(got, x, w, padding=1, algorithm="separable")


def test_a_changed_setting_resolves_again(rng, runs):
    x, w = _arrays(rng)
    for _ in range(3):
        pcf.conv2d(x, w, padding=1, algorithm="winograd_f4x4_3x3")
    with pcf.config_context(precision="accurate"):
        with pytest.raises(ValueError, match="precision='accurate'"):
            pcf.conv2d(x, w, padding=1, algorithm="winograd_f4x4_3x3")
    runs.clear()
    for n_threads in (1, 2, 1):
        with pcf.config_context(n_threads=n_threads):
            for _ in range(2):
                pcf.conv2d(x, w, padding=1, algorithm="direct")
    assert runs == [("direct", 1)] * 2 + [("direct", 2)] * 2 + [("direct", 1)] * 2
    runs.clear()
    with pcf.config_context(tune="off"):
        for _ in range(2):
            got = pcf.conv2d(x, w, padding=1)
    with pcf.config_context(precision="accurate", tune="off"):
        for _ in range(2):
            accurate = pcf.conv2d(x, w, padding=1)
    assert not any(registry.get(name).accurate is False for name, _ in runs[2:])
    assert_conv_matches(got, x, w, padding=1, algorithm="auto")
    assert_conv_matches(accurate, x, w, padding=1, algorithm="direct")


def test_another_dtype_layout_or_stride_does_not_share_a_resolution(rng):
    x, w = _arrays(rng)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    cases = [
        (x, w, {}),
        (x64, w64, {}),
        (x_last, w, {"layout": "NHWC"}),
        (x, w, {"stride": 2}),
        (x, w, {"stride": (2, 1)}),
        (x, w, {"dilation": 2}),
        (x, w, {"padding": "same"}),
        (x[:, :, ::-1], w, {}),  # other array strides: the same problem, right all the same
        (x, w, {"flip": True}),
    ]
    for _ in range(3):
        for x_case, w_case, kwargs in cases:
            got = pcf.conv2d(x_case, w_case, algorithm="direct", **kwargs)
            assert got.dtype == x_case.dtype
            assert_conv_matches(got, x_case, w_case, algorithm="direct", context=str(kwargs),
                                **kwargs)
    assert len(_api._resolved) == len(cases) - 1


@pytest.mark.parametrize("bad, error", [
    ({"stride": 2.0}, TypeError), ({"stride": True}, TypeError), ({"groups": True}, TypeError),
    ({"flip": 1}, TypeError), ({"n_threads": True}, TypeError),
    ({"n_threads": 2.0}, TypeError), ({"precision": "exact"}, ValueError),
])
def test_a_resolved_valid_call_does_not_vouch_for_an_equal_invalid_one(rng, bad, error):
    """``2`` and ``2.0``, ``1`` and ``True`` compare equal; only one of each is valid."""
    x, w = _arrays(rng)
    good = {"stride": 2, "groups": 1, "flip": True, "n_threads": 2, "precision": None}
    good = {name: good[name] for name in bad}
    for _ in range(3):
        pcf.conv2d(x, w, **good)
    with pytest.raises(error):
        pcf.conv2d(x, w, **bad)


def test_a_bias_out_and_a_forgotten_choice_are_checked_on_every_resolved_call(rng):
    x, w = _arrays(rng)
    bias = rng.standard_normal(6).astype(np.float32)
    out = np.empty((2, 6, 9, 10), np.float32)
    for _ in range(3):
        assert pcf.conv2d(x, w, bias, padding=1, out=out) is out
    assert_conv_matches(out, x, w, bias, padding=1, algorithm="auto")
    with pytest.raises(ValueError, match="bias must have shape"):
        pcf.conv2d(x, w, bias[:5], padding=1)
    with pytest.raises(ValueError, match="out has shape"):
        pcf.conv2d(x, w, bias, padding=1, out=out[:, :, :8])
    with pytest.raises(ValueError, match="out shares memory with x"):
        pcf.conv2d(out[:, :6, :, :], w[:, :6], padding=1, out=out)
    pcf.tuning.clear()
    assert_conv_matches(pcf.conv2d(x, w, bias, padding=1), x, w, bias, padding=1,
                        algorithm="auto")
