"""Options of the benchmark suite.

``--models resnet50,mobilenet_v2`` picks the networks (default: every one in
``pyconvfast._models.MODELS``); ``--dtypes float32,float64`` the dtypes (default float32);
``--threads N`` the thread count of every library (default: all cores).
"""

import os
import sys

# The suite imports its helpers from bench/compare.py (pytest's importlib mode adds no path).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
    group = parser.getgroup("pyconvfast benchmarks")
    group.addoption("--models", default="", help="comma-separated networks (default: all)")
    group.addoption("--dtypes", default="float32", help="comma-separated dtypes (float32)")
    group.addoption("--threads", type=int, default=os.cpu_count(), help="threads for every library")


def pytest_generate_tests(metafunc):
    from pyconvfast._models import MODELS, model_layers

    if "layer" not in metafunc.fixturenames:
        return
    names = [m for m in metafunc.config.getoption("models").split(",") if m] or list(MODELS)
    layers = [layer for name in names for layer in model_layers(name)]
    metafunc.parametrize("layer", layers, ids=[f"{n}:{l.name}" for n in names
                                                for l in model_layers(n)])
    metafunc.parametrize("dtype", metafunc.config.getoption("dtypes").split(","))
