"""precision="fast" | "accurate": the setting, where it comes from, and what "accurate" runs.

"accurate" keeps only algorithms within the plain summation bound; they also leave NaN and
infinities where the float64 reference puts them (issue 18, item 8), which Winograd and the FFT
do not (docs/guide/guarantees.rst).
"""

import dataclasses
import re

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast._algorithms import registry
from pyconvfast.tuning import autotune as _autotune
from tests.helpers.reference import conv_reference

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.api.test_properties import conv_problems  # noqa: E402

NOT_ACCURATE = {"winograd_f2x2_3x3", "winograd_f4x4_3x3", "winograd_f2x2_5x5", "fft"}


def test_the_registry_says_which_algorithms_are_not_accurate():
    assert {name for name in registry.names(kind="conv")
            if not registry.get(name).accurate} == NOT_ACCURATE
    assert all(registry.get(name).accurate for name in registry.names(kind="conv_transpose"))


def test_list_algorithms_under_accurate_drops_exactly_those(rng):
    x = rng.standard_normal((1, 16, 20, 20)).astype(np.float32)
    seen = set()
    for kernel, dilation in ((3, 1), (5, 1), (3, 2), (5, 3)):
        w = rng.standard_normal((16, 16, kernel, kernel)).astype(np.float32)
        kwargs = {"padding": "same", "dilation": dilation}
        fast = pcf.list_algorithms(x, w, **kwargs)
        seen |= NOT_ACCURATE & set(fast)
        assert any(name.startswith("winograd") for name in fast), kwargs
        assert pcf.list_algorithms(x, w, precision="accurate", **kwargs) == [
            name for name in fast if name not in NOT_ACCURATE]
    assert seen == NOT_ACCURATE


@pytest.mark.parametrize("algorithm", sorted(NOT_ACCURATE))
def test_asking_accurate_for_an_inexact_algorithm_is_a_value_error(algorithm, rng):
    x = rng.standard_normal((1, 4, 12, 12)).astype(np.float32)
    kernel = 5 if algorithm.endswith("5x5") else 3
    w = rng.standard_normal((4, 4, kernel, kernel)).astype(np.float32)
    with pytest.raises(ValueError, match=f"algorithm='{algorithm}' cannot run this problem: its "
                                         "rounding error exceeds the plain summation bound"):
        pcf.conv2d(x, w, padding=1, algorithm=algorithm, precision="accurate")
    with pytest.raises(ValueError, match="exceeds the plain summation bound"):
        pcf.plan(x.shape, w, padding=1, algorithm=algorithm, precision="accurate")


@pytest.mark.parametrize("value", ["exact", "Fast", "", 1, True])
def test_a_bad_precision_is_a_value_error_naming_it(value, rng):
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    message = f"precision must be one of ('fast', 'accurate'), got precision={value!r}"
    for call in (lambda: pcf.conv2d(x, w, precision=value),
                 lambda: pcf.conv_transpose2d(x, w, precision=value),
                 lambda: pcf.plan(x.shape, w, precision=value),
                 lambda: pcf.list_algorithms(x, w, precision=value),
                 lambda: pcf.config_context(precision=value).__enter__(),
                 lambda: pcf.set_config(precision=value)):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_the_default_comes_from_context_then_set_config_then_the_environment(monkeypatch):
    monkeypatch.delenv("PYCONVFAST_PRECISION", raising=False)
    assert pcf.get_config()["precision"] == "fast"
    monkeypatch.setenv("PYCONVFAST_PRECISION", "accurate")
    assert pcf.get_config()["precision"] == "accurate"
    try:
        pcf.set_config(precision="fast")
        assert pcf.get_config()["precision"] == "fast"
        with pcf.config_context(precision="accurate"):
            assert pcf.get_config()["precision"] == "accurate"
            with pcf.config_context(precision="fast"):
                assert pcf.get_config()["precision"] == "fast"
            assert pcf.get_config()["precision"] == "accurate"
        assert pcf.get_config()["precision"] == "fast"
    finally:
        pcf.set_config(precision=None)
    assert pcf.get_config()["precision"] == "accurate"
    monkeypatch.setenv("PYCONVFAST_PRECISION", "sloppy")
    with pytest.raises(ValueError, match="PYCONVFAST_PRECISION must be one of"):
        pcf.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))


@pytest.fixture
def spied_runs(monkeypatch, tmp_path):
    """Every algorithm's run, recorded by name; a fresh cache, measuring."""
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PYCONVFAST_TUNE", "measure")
    _autotune.forget()
    ran = []
    for name, algorithm in list(registry._ALGORITHMS.items()):
        def run(*args, _run=algorithm.run, _name=name):
            ran.append(_name)
            return _run(*args)
        monkeypatch.setitem(registry._ALGORITHMS, name, dataclasses.replace(algorithm, run=run))
    yield ran
    _autotune.forget()


def test_accurate_never_runs_an_inexact_algorithm_even_while_tuning(spied_runs, rng):
    """Layers where Winograd and the FFT are candidates (and usually win): timed under
    "accurate", by a call, a plan and a context, none of them runs at all."""
    winograd = (rng.standard_normal((2, 32, 28, 28)).astype(np.float32),
                rng.standard_normal((32, 32, 3, 3)).astype(np.float32), {"padding": 1})
    dilated = (winograd[0], winograd[1], {"padding": 2, "dilation": 2})
    winograd_5x5 = (winograd[0], rng.standard_normal((32, 32, 5, 5)).astype(np.float32),
                    {"padding": 2})
    fft = (rng.standard_normal((1, 4, 64, 64)).astype(np.float32),
           rng.standard_normal((4, 4, 21, 21)).astype(np.float32), {"padding": 10})
    for x, w, kwargs in (winograd, dilated, winograd_5x5, fft):
        assert NOT_ACCURATE & set(pcf.list_algorithms(x, w, **kwargs))
        pcf.conv2d(x, w, precision="accurate", **kwargs)
        pcf.plan(x.shape, w, precision="accurate", **kwargs)(x)
        with pcf.config_context(precision="accurate"):
            pcf.conv2d(x, w, **kwargs)
    assert spied_runs and not NOT_ACCURATE & set(spied_runs), sorted(set(spied_runs))
    # the same calls under "fast" do time them (the spy sees them): the test can fail
    for x, w, kwargs in (winograd, dilated, winograd_5x5, fft):
        pcf.conv2d(x, w, **kwargs)
    assert NOT_ACCURATE <= set(spied_runs)


def test_choices_are_cached_apart_per_precision(spied_runs, rng):
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    pcf.conv2d(x, w, padding=1, precision="accurate")
    pcf.conv2d(x, w, padding=1, precision="fast")
    keys = [entry["key"] for entry in pcf.tuning.report()]
    assert len(keys) == 2 and sum("|accurate" in key for key in keys) == 1
    accurate_choice = next(e for e in pcf.tuning.report() if "|accurate" in e["key"])
    assert accurate_choice["algorithm"] not in NOT_ACCURATE


@given(problem=conv_problems(), data=st.data())
def test_accurate_puts_nan_and_inf_where_the_reference_does(problem, data):
    x, weight, bias, kwargs = problem
    x = x.copy()
    flat = x.reshape(-1)
    for _ in range(data.draw(st.integers(1, 3))):
        flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
    note(f"non-finite at {np.flatnonzero(~np.isfinite(flat)).tolist()}")
    n_spatial = weight.ndim - 2
    conv = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}[n_spatial]
    names = pcf.list_algorithms(x, weight, precision="accurate", **kwargs)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = conv_reference(x, weight, bias, **kwargs)
        for algorithm in names + ["auto"]:
            got = conv(x, weight, bias, algorithm=algorithm, precision="accurate", **kwargs)
            where = f"algorithm={algorithm!r}"
            assert np.array_equal(np.isnan(got), np.isnan(ref)), where
            assert np.array_equal(np.isposinf(got), np.isposinf(ref)), where
            assert np.array_equal(np.isneginf(got), np.isneginf(ref)), where


# --- the other settings of the one configuration place (issue 17, item 3) ------------------------

def test_each_setting_from_context_set_config_and_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PYCONVFAST_TUNE", "off")
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", "64")
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path / "from-env"))
    config = pcf.get_config()
    assert (config["tune"], config["workspace_mb"], config["cache_dir"]) == (
        "off", 64.0, str(tmp_path / "from-env"))
    with pcf.config_context(tune="estimate", workspace_mb=8, cache_dir=tmp_path / "scoped",
                            n_threads=1):
        config = pcf.get_config()
        assert (config["tune"], config["workspace_mb"], config["cache_dir"], config["n_threads"]) \
            == ("estimate", 8.0, str(tmp_path / "scoped"), 1)
        assert pcf.tuning.cache_path() == tmp_path / "scoped" / "tuning.json"
        from pyconvfast._core.workspace import workspace_bytes

        assert workspace_bytes() == 8 * 2**20
    assert pcf.get_config()["tune"] == "off"


def test_a_context_does_not_leak_into_another_thread():
    import threading

    seen = {}
    inside, checked = threading.Event(), threading.Event()

    def other():
        inside.wait(5)
        seen["other"] = pcf.get_config()["precision"]
        checked.set()

    thread = threading.Thread(target=other)
    thread.start()
    with pcf.config_context(precision="accurate"):
        inside.set()
        checked.wait(5)
        seen["this"] = pcf.get_config()["precision"]
    thread.join()
    assert seen == {"this": "accurate", "other": "fast"}


@pytest.mark.parametrize(("settings", "error", "message"), [
    ({"tune": "fastest"}, ValueError, "tune must be one of"),
    ({"n_threads": 0}, ValueError, "n_threads must be a positive int, got n_threads=0"),
    ({"workspace_mb": -1}, ValueError, "workspace_mb must be a positive number of MiB"),
    ({"cache_dir": ""}, ValueError, "cache_dir must be a folder path"),
    ({"colour": "red"}, TypeError, r"unknown setting\(s\) \['colour'\]"),
])
def test_bad_settings_name_the_setting(settings, error, message):
    with pytest.raises(error, match=message):
        pcf.set_config(**settings)
    with pytest.raises(error, match=message):
        pcf.config_context(**settings).__enter__()


def test_show_config_says_what_pyconvfast_runs_on(capsys):
    pcf.show_config()
    text = capsys.readouterr().out
    for word in ("pyconvfast", "OpenMP", "SIMD levels", "BLAS", "precision", "tuning cache",
                 "at most %d per call" % pcf.thread_limit()):
        assert word in text, word
