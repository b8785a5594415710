"""Shared pytest configuration.

* The tests directory goes on ``sys.path`` so that test modules can ``import reference`` and
  ``import cases`` (pytest runs with ``--import-mode=importlib``, which adds nothing to the path).
* The tuning cache goes to a temporary folder for the whole session (never the user's own).
* Tests marked ``slow`` are deselected unless a marker expression is given, e.g. ``pytest -m slow``
  (only the slow ones) or ``pytest -m "slow or not slow"`` (everything).
"""

import os
import sys

import pytest

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


def pytest_collection_modifyitems(config, items):
    if config.getoption("markexpr", default=""):
        return  # the user chose explicitly with -m
    kept, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("slow") else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture
def rng(request):
    """A generator seeded from the test's node id, so every test draws reproducible data."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True, scope="session")
def _private_tuning_cache(tmp_path_factory):
    """Every test tunes into a throw-away cache folder, never the user's cache directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path_factory.mktemp("tuning-cache")))
        yield
