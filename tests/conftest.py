"""Shared pytest configuration.

* The tests live in folders by layer (``api/``, ``algorithms/``, ``tuning/``, ``runtime/``,
  ``package/``); what they share is the package :mod:`tests.helpers` (``pythonpath = ["."]`` in
  pyproject.toml puts the project root on the path; pytest runs with
  ``--import-mode=importlib``, which adds nothing else).
* Every test runs with ``PYCONVFAST_CACHE_DIR`` set to a folder of the session's temporary
  directory (restored afterwards, whatever the test did to it), so that the suite never reads
  or writes the user's real tuning cache.
* hypothesis (the property tests) runs under the profile named by ``HYPOTHESIS_PROFILE``:
  ``pyconvfast`` by default (derandomized, so every run draws the same examples, and bounded
  to keep the suite quick), ``thorough`` for a long randomized search.
* Tests marked ``slow`` are deselected unless a marker expression is given, e.g. ``pytest -m slow``
  (only the slow ones) or ``pytest -m "slow or not slow"`` (everything).
* ``--simd-level=baseline|avx2|avx512f`` runs the session with every run-time-dispatched SIMD
  kernel (the one level of ``pyconvfast._lib.cpu.levels``: blocked direct, depthwise, separable,
  grouped, pointwise) forced to that instruction-set level (capped to what the CPU has), so that a lower
  level's code paths get the same tests as the best one;
  tests marked ``default_simd_level`` (which check the default dispatch) are skipped then.
"""

import os

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the property tests skip themselves without hypothesis
    settings = None
else:
    _quiet = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
    settings.register_profile("pyconvfast", derandomize=True, max_examples=40, deadline=None,
                              suppress_health_check=_quiet, print_blob=True, database=None)
    settings.register_profile("thorough", max_examples=2000, deadline=None,
                              suppress_health_check=_quiet, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pyconvfast"))



def pytest_addoption(parser):
    parser.addoption("--simd-level", choices=("baseline", "avx2", "avx512f"), default=None,
                     help="force the SIMD kernels to this instruction-set level (capped to "
                          "what the CPU has) for the whole session")


def pytest_configure(config):
    level = config.getoption("simd_level")
    if level:
        from pyconvfast._lib.cpu import levels

        config._pyconvfast_simd_before = levels.simd_level()
        config._pyconvfast_simd_forced = levels.set_simd_level(level)


def pytest_unconfigure(config):
    before = getattr(config, "_pyconvfast_simd_before", None)
    if before:
        from pyconvfast._lib.cpu import levels

        levels.set_simd_level(before)


def pytest_report_header(config):
    forced = getattr(config, "_pyconvfast_simd_forced", None)
    if forced:
        return f"pyconvfast SIMD level forced: {forced}"
    return None


def pytest_collection_modifyitems(config, items):
    if config.getoption("simd_level"):
        skip = pytest.mark.skip(reason="checks the default SIMD dispatch; --simd-level is given")
        for item in items:
            if item.get_closest_marker("default_simd_level"):
                item.add_marker(skip)
    if config.getoption("markexpr", default=""):
        return  # the user chose explicitly with -m
    kept, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("slow") else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tuning-cache")


@pytest.fixture(autouse=True)
def _isolated_tuning_cache(monkeypatch, _session_cache_dir):
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(_session_cache_dir))
    # Every algorithm is checked by name, so "auto" needs no timing to be covered; timing each of
    # the sweep's thousands of distinct problems would only slow the suite down. The tuner's
    # measuring modes have their own tests (test_autotune.py), which set the variable themselves.
    monkeypatch.setenv("PYCONVFAST_TUNE", "estimate")
    # Prepared weights kept by plain calls (pyconvfast._core.prepared) do not outlive a test:
    # a test's second call on a weight is its own, not one after another test's.
    from pyconvfast._core import prepared

    prepared.clear()


@pytest.fixture
def rng(request):
    """A generator seeded from the test's node id, so every test draws reproducible data."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
