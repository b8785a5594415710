"""im2col's 1x1 path: GEMM on the arrays ("split", "blas") against the lowering ("lower"),
and PyTorch, on a network's 1x1 stride-1 layers.

    python bench/pointwise.py --model resnet50 --threads 2 --repeats 7

Every variant runs in turn on each layer, ``--repeats`` times over; each time printed is the
best, and each ratio is the variant's best over "split"'s (above 1: "split" is faster).
"split" cuts each image's positions into OpenMP tasks calling single-threaded BLAS; "blas" is
one BLAS call per (sample, group) with BLAS's own ``--threads`` threads.
"""

import argparse
import math
import os
import time

import numpy as np

from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast._models import model_layers


def _variants(layer, threads, layout):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(layer.x_shape).astype(np.float32)
    w = rng.standard_normal(layer.w_shape).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    x, w, _, problem = _api.validated_arrays(2, x, w, None, dict(layer.kwargs, layout=layout))
    out = np.empty(problem.out_shape, np.float32)
    im2col = registry.get("im2col")
    x5, o5 = _api._channels_first_5d(x, problem), _api._channels_first_5d(out, problem)
    prepared = im2col.prepare(problem, _api.weight_5d(w, problem))

    def variant(mode):
        return lambda: im2col.run(problem, x5, prepared, None, o5, threads, {"pointwise": mode})

    calls = {mode: variant(mode) for mode in ("split", "blas", "lower")}
    try:
        import torch
    except ImportError:
        return problem, calls
    torch.set_num_threads(threads)
    tx = torch.from_numpy(x)
    if layout == "NHWC":
        tx = tx.permute(0, 3, 1, 2)  # a channels-last tensor, as PyTorch stores NHWC
    tw = torch.from_numpy(w)
    with torch.no_grad():
        calls["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, **layer.kwargs)
    return problem, calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    args = parser.parse_args(argv)
    layers = [layer for layer in model_layers(args.model)
              if layer.n_spatial == 2 and layer.w_shape[2:] == (1, 1)
              and layer.kwargs.get("stride", 1) == 1 and layer.kwargs.get("padding", 0) == 0]
    ratios = {}
    print(f"{args.model} 1x1 stride-1 layers, {args.layout}, {args.threads} threads, best of "
          f"{args.repeats}; ms and time / split")
    for layer in layers:
        problem, calls = _variants(layer, args.threads, args.layout)
        best = dict.fromkeys(calls, float("inf"))
        for name in calls:
            calls[name]()  # warm-up
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                best[name] = min(best[name], time.perf_counter() - start)
        cells = []
        for name in calls:
            ratio = best[name] / best["split"]
            ratios.setdefault(name, []).append(ratio)
            cells.append(f"{name} {best[name] * 1e3:6.3f} ({ratio:4.2f})")
        gflops = problem.flops / best["split"] / 1e9
        print(f"{layer.name:<20} split {gflops:5.1f} GFLOP/s  " + "  ".join(cells))
    for name, values in ratios.items():
        mean = math.exp(sum(math.log(v) for v in values) / len(values))
        print(f"geometric mean time / split, {name}: {mean:.2f}")


if __name__ == "__main__":
    main()
