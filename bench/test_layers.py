"""pytest-benchmark suite: every algorithm (and ``auto``) on every layer, PyTorch beside them.

Run, and compare the algorithms of each layer side by side::

    pip install ".[bench]"
    pytest bench --benchmark-group-by=param:layer --models resnet50
    pytest bench --benchmark-group-by=param:layer --benchmark-save=before
    pytest bench --benchmark-group-by=param:layer --benchmark-compare=0001

Each benchmark times a :func:`pyconvfast.plan` call (algorithm chosen and weight prepared
beforehand), so what is measured is the kernel and the thin call around it.
"""

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast._api import make_problem
from compare import torch_runner

ALGORITHMS = pcf.list_algorithms() + ["auto", "torch"]


@pytest.fixture
def arrays(layer, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(layer.x_shape).astype(dtype)
    weight = rng.standard_normal(layer.w_shape).astype(dtype)
    return x, weight


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_layer(benchmark, layer, dtype, algorithm, arrays, request):
    x, weight = arrays
    n_threads = request.config.getoption("threads")
    if algorithm == "torch":
        call = torch_runner(layer, x, weight, n_threads)
        if call is None:
            pytest.skip("PyTorch is not installed")
    else:
        if algorithm not in pcf.list_algorithms(x, weight, **layer.kwargs) + ["auto"]:
            pytest.skip(f"{algorithm} cannot run {layer.name}")
        plan = pcf.plan(x.shape, weight, algorithm=algorithm, n_threads=n_threads,
                        **layer.kwargs)
        out = plan(x)
        benchmark.extra_info["chosen"] = plan.algorithm

        def call():
            return plan(x, out=out)
    problem = make_problem(x.shape, weight.shape, n_spatial=layer.n_spatial, **layer.kwargs)
    benchmark.extra_info["gflop"] = problem.flops / 1e9
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
