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

ALGORITHMS = pcf.list_algorithms() + ["auto", "torch"]
CONV = {1: "conv1d", 2: "conv2d", 3: "conv3d"}


@pytest.fixture
def arrays(layer, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(layer.x_shape).astype(dtype)
    weight = rng.standard_normal(layer.w_shape).astype(dtype)
    return x, weight


def _torch_call(layer, x, weight, n_threads):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as functional

    torch.set_num_threads(n_threads)
    kwargs = dict(layer.kwargs)
    padding = kwargs.pop("padding", 0)
    x_t, w_t = torch.from_numpy(x), torch.from_numpy(weight)
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):  # (before, after) pairs
        pads = [p for pair in reversed(padding) for p in pair]
        x_t = functional.pad(x_t, pads)
        padding = 0
    conv = getattr(functional, CONV[layer.n_spatial])

    def call():
        with torch.no_grad():
            return conv(x_t, w_t, padding=padding, **kwargs)
    return call


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_layer(benchmark, layer, dtype, algorithm, arrays, request):
    x, weight = arrays
    n_threads = request.config.getoption("threads")
    if algorithm == "torch":
        call = _torch_call(layer, x, weight, n_threads)
    else:
        if algorithm not in pcf.list_algorithms(x, weight, **layer.kwargs) + ["auto"]:
            pytest.skip(f"{algorithm} cannot run {layer.name}")
        plan = pcf.plan(x.shape, weight, algorithm=algorithm, n_threads=n_threads,
                        **layer.kwargs)
        out = plan(x)
        benchmark.extra_info["chosen"] = plan.algorithm

        def call():
            return plan(x, out=out)
    flops = 2 * np.prod(pcf.conv_output_shape(x.shape, weight.shape, **layer.kwargs)) \
        * np.prod(weight.shape[1:])
    benchmark.extra_info["gflop"] = float(flops) / 1e9
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
