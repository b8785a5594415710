"""Plain calls keep prepared weights (pyconvfast._core.prepared): a weight seen again is not
prepared again, a weight changed in place is, and a kept entry never serves other contents."""

import dataclasses

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast._algorithms import registry
from pyconvfast._core import prepared
from pyconvfast.tuning import autotune
from tests.helpers.reference import assert_conv_matches

ALGORITHMS = ["direct", "im2col", "winograd_f4x4_3x3", "winograd_f2x2_3x3", "fft", "grouped"]


@pytest.fixture(autouse=True)
def _fresh():
    prepared.clear()
    yield
    prepared.clear()


@pytest.fixture
def count_prepares(monkeypatch):
    """{name: calls to prepare} for every registered algorithm."""
    counts = {}
    for name, algorithm in list(registry._ALGORITHMS.items()):
        def counting(problem, weight, _prepare=algorithm.prepare, _name=name):
            counts[_name] = counts.get(_name, 0) + 1
            return _prepare(problem, weight)
        monkeypatch.setitem(registry._ALGORITHMS, name,
                            dataclasses.replace(algorithm, prepare=counting))
    return counts


def _problem(rng, algorithm, dtype=np.float32):
    groups = 4 if algorithm == "grouped" else 1
    x = rng.standard_normal((2, 8, 11, 10)).astype(dtype)
    w = rng.standard_normal((8, 8 // groups, 3, 3)).astype(dtype)
    return x, w, dict(padding=1, groups=groups)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_weight_seen_again_is_prepared_once_more_then_kept(rng, algorithm, count_prepares):
    x, w, kwargs = _problem(rng, algorithm)
    results = [pcf.conv2d(x, w, algorithm=algorithm, **kwargs) for _ in range(5)]
    # the first call prepares and keeps nothing; the second keeps; the rest reuse
    assert count_prepares[algorithm] == 2
    for result in results:
        np.testing.assert_array_equal(result, results[0])
    assert_conv_matches(results[0], x, w, algorithm=algorithm, **kwargs)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_weight_changed_in_place_is_prepared_again(rng, algorithm):
    x, w, kwargs = _problem(rng, algorithm)
    for _ in range(3):
        pcf.conv2d(x, w, algorithm=algorithm, **kwargs)
    w[1, 0, 2, 1] += 3.0  # one element, in place
    got = pcf.conv2d(x, w, algorithm=algorithm, **kwargs)
    assert_conv_matches(got, x, w, algorithm=algorithm, **kwargs)
    w[...] = -w  # every element, in place
    got = pcf.conv2d(x, w, algorithm=algorithm, **kwargs)
    assert_conv_matches(got, x, w, algorithm=algorithm, **kwargs)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_kept_entry_owns_its_memory(rng, algorithm):
    """An entry kept for w's contents must not read w: after w changes, another array with
    w's old contents still gets the old result."""
    x, w, kwargs = _problem(rng, algorithm)
    original = w.copy()
    for _ in range(3):
        expected = pcf.conv2d(x, w, algorithm=algorithm, **kwargs)
    w[...] = rng.standard_normal(w.shape).astype(w.dtype)
    np.testing.assert_array_equal(pcf.conv2d(x, original, algorithm=algorithm, **kwargs),
                                  expected)


def test_flip_transposed_and_fortran_weights_are_kept_apart(rng, count_prepares):
    x = rng.standard_normal((1, 4, 9, 9))
    w = rng.standard_normal((6, 4, 3, 3))
    for flip in (False, True, False, True):
        got = pcf.conv2d(x, w, padding=1, flip=flip, algorithm="im2col")
        assert_conv_matches(got, x, w, padding=1, flip=flip, algorithm="im2col")
    fortran = np.asfortranarray(w)
    for _ in range(3):
        got = pcf.conv2d(x, fortran, padding=1, algorithm="im2col")
        assert_conv_matches(got, x, w, padding=1, algorithm="im2col")
    xt = rng.standard_normal((1, 6, 5, 5))
    for _ in range(3):
        got = pcf.conv_transpose2d(xt, w, stride=2, algorithm="transpose_gemm")
        np.testing.assert_allclose(
            got, pcf.conv_transpose2d(xt, w.copy(order="F"), stride=2, algorithm="transpose_gemm"))


def test_nothing_is_kept_with_prepared_mb_zero(rng, count_prepares):
    x, w, kwargs = _problem(rng, "im2col")
    with pcf.config_context(prepared_mb=0):
        for _ in range(3):
            pcf.conv2d(x, w, algorithm="winograd_f4x4_3x3", **kwargs)
    assert count_prepares["winograd_f4x4_3x3"] == 3
    assert prepared.kept_bytes() == 0


def test_kept_bytes_stay_under_the_setting(rng):
    limit_mb = 0.05
    with pcf.config_context(prepared_mb=limit_mb):
        for _ in range(12):
            w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)  # 9 KiB, U 36 KiB
            x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
            for _ in range(2):
                pcf.conv2d(x, w, padding=1, algorithm="winograd_f4x4_3x3")
            assert 0 < prepared.kept_bytes() <= limit_mb * 2**20


def test_a_non_contiguous_weight_is_prepared_every_call(rng, count_prepares):
    x = rng.standard_normal((1, 4, 9, 9))
    w = rng.standard_normal((6, 8, 3, 3))[:, ::2]
    for _ in range(3):
        got = pcf.conv2d(x, w, padding=1, algorithm="im2col")
    assert count_prepares["im2col"] == 3
    assert_conv_matches(got, x, w, padding=1, algorithm="im2col")


def test_auto_runs_the_plans_choice_for_a_weight_seen_before(rng, monkeypatch):
    """A call's choice counts the preparation, a plan's does not; once the weight is kept,
    a plain call runs what a plan would."""
    x, w, kwargs = _problem(rng, "im2col")
    choice = autotune.Choice("im2col", {}, plan_algorithm="winograd_f2x2_3x3", plan_params={})
    monkeypatch.setattr(autotune, "choose", lambda *args: choice)
    ran = []
    for name in ("im2col", "winograd_f2x2_3x3"):
        algorithm = registry._ALGORITHMS[name]

        def run(*args, _run=algorithm.run, _name=name):
            ran.append(_name)
            return _run(*args)
        monkeypatch.setitem(registry._ALGORITHMS, name, dataclasses.replace(algorithm, run=run))
    for _ in range(3):
        pcf.conv2d(x, w, **kwargs)
    assert ran == ["im2col", "winograd_f2x2_3x3", "winograd_f2x2_3x3"]


def test_prepared_mb_setting_is_checked():
    with pytest.raises(ValueError, match="prepared_mb must be a non-negative number of MiB"):
        pcf.set_config(prepared_mb=-1)
