"""``pointwise_packed`` (our packed GEMM) against im2col's BLAS path and onnxruntime on the 1x1
stride-1 layers of ResNet-50 and MobileNetV2, as shares of the measured FMA peak.

    OPENBLAS_CORETYPE= python bench/pointwise_packed.py --threads 2 --layout NCHW

For each layer, each contender (plans of ``pointwise_packed`` and ``im2col``, onnxruntime's
``Conv`` session where installed; onnxruntime takes NCHW only, so it runs on an NCHW copy of
the input for ``--layout NHWC``, which favours it) runs in blocks of ``--inner`` calls, the
contenders interleaved and their order rotated every round, ``--rounds`` rounds; each time is
the best block's median call. GFLOP/s are given as a share of the FMA peak
(``fma_peak_gflops``: one core's, in CPU time so that other processes do not lower it, times
the threads; measured before and after the layers, the larger kept), and ``packed/blas`` and
``packed/ort`` are speed-ups (above 1: ``pointwise_packed`` is faster). On a loaded machine
only the ratios, measured side by side, mean much.
"""

import argparse
import math
import os
import statistics
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._lib.direct.blocked import fma_peak_gflops
from pyconvfast._lib.pointwise.kernel import active_variant
from pyconvfast._models import model_layers

from compare import onnxruntime_runner


def pointwise_layers(models):
    """The distinct dense 1x1 stride-1 unpadded 2-D layers of ``models``, batch 1."""
    seen, layers = set(), []
    for model in models:
        for layer in model_layers(model):
            if (layer.n_spatial == 2 and layer.w_shape[2:] == (1, 1)
                    and layer.kwargs.get("stride", 1) == 1
                    and layer.kwargs.get("padding", 0) == 0
                    and layer.kwargs.get("groups", 1) == 1
                    and (layer.x_shape, layer.w_shape) not in seen):
                seen.add((layer.x_shape, layer.w_shape))
                layers.append((model, layer))
    return layers


def side_by_side(calls, rounds, inner):
    """Best block median per contender, the contenders interleaved and rotated."""
    names = list(calls)
    best = dict.fromkeys(names, math.inf)
    for name in names:
        calls[name]()  # warm-up
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times = []
            for _ in range(inner):
                start = time.perf_counter()
                calls[name]()
                times.append(time.perf_counter() - start)
            best[name] = min(best[name], statistics.median(times))
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,mobilenet_v2")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--inner", type=int, default=5)
    args = parser.parse_args(argv)
    peak = fma_peak_gflops(np.float32) * args.threads
    rng = np.random.default_rng(0)
    rows = []
    for model, layer in pointwise_layers(args.models.split(",")):
        x = rng.standard_normal(layer.x_shape).astype(np.float32)
        w = rng.standard_normal(layer.w_shape).astype(np.float32)
        b = rng.standard_normal(layer.w_shape[0]).astype(np.float32)
        x_in = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if args.layout == "NHWC" else x
        calls = {}
        for name in ("pointwise_packed", "im2col"):
            plan = pcf.plan(x_in.shape, w, b, layout=args.layout, algorithm=name,
                            n_threads=args.threads)
            out = np.empty_like(plan(x_in))
            calls[name] = lambda plan=plan, out=out: plan(x_in, out=out)
        ort = onnxruntime_runner(layer, x, w, args.threads)
        if ort is not None:
            calls["ort"] = ort
        best = side_by_side(calls, args.rounds, args.inner)
        flops = 2 * math.prod(layer.w_shape) * math.prod(layer.x_shape[2:])
        rows.append((model, layer, flops, best))
    peak = max(peak, fma_peak_gflops(np.float32) * args.threads)
    print(f"{args.threads} threads, float32, {args.layout}, batch 1; FMA peak "
          f"{peak:.0f} GF/s; kernel {active_variant().name}; best block median of "
          f"{args.rounds} x {args.inner}")
    print(f"{'model':13} {'C_in->C_out @HxW':22} {'packed':>7} {'blas':>7} {'ort':>7}"
          f" {'packed/blas':>11} {'packed/ort':>10}")
    ratios = {"blas": [], "ort": []}
    for model, layer, flops, best in rows:
        share = {name: flops / t / 1e9 / peak for name, t in best.items()}
        cells = [f"{share.get(n, math.nan):7.0%}" for n in ("pointwise_packed", "im2col", "ort")]
        over_blas = best["im2col"] / best["pointwise_packed"]
        over_ort = best.get("ort", math.nan) / best["pointwise_packed"]
        ratios["blas"].append(over_blas)
        if "ort" in best:
            ratios["ort"].append(over_ort)
        shape = f"{layer.w_shape[1]}->{layer.w_shape[0]} @{layer.x_shape[2]}x{layer.x_shape[3]}"
        print(f"{model:13} {shape:22} {' '.join(cells)} {over_blas:11.2f} {over_ort:10.2f}")
    for name, values in ratios.items():
        if values:
            print(f"geometric mean packed/{name}: "
                  f"{math.exp(statistics.fmean(map(math.log, values))):.2f}")


if __name__ == "__main__":
    main()
