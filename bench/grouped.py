"""Grouped layers: the ``grouped`` kernel against im2col, PyTorch CPU and onnxruntime.

    env -u OPENBLAS_CORETYPE python bench/grouped.py --threads 2 --rounds 15

The ResNeXt-50 32x4d grouped 3x3 layers (bench/compare.py's ``resnext50`` suite, batch 1) and
ShuffleNet's grouped 1x1 layers (g = 3, 4, 8, stage 2-4 widths). On a shared machine single
timings are noisy: every round times each contender once, interleaved, and the table keeps each
one's best call. Prints ms per contender and the speed-up of ``grouped`` over the faster peer,
then the geometric mean over the ResNeXt layers and over the ShuffleNet ones.
"""

import argparse
import math
import time

import numpy as np
from compare import onnxruntime_runner, torch_runner

import pyconvfast as pcf
from pyconvfast._models import Layer, model_layers


def shufflenet_layers():
    layers = []
    for groups, widths in ((3, (240, 480, 960)), (4, (272, 544, 1088)), (8, (384, 768, 1536))):
        for width, size in zip(widths, (28, 14, 7)):
            bottleneck = width // 4 // groups * groups
            layers.append(Layer(f"shufflenet_g{groups}_{width}_in", (1, width, size, size),
                                (bottleneck, width // groups, 1, 1), {"groups": groups}))
            layers.append(Layer(f"shufflenet_g{groups}_{width}_out", (1, bottleneck, size, size),
                                (width, bottleneck // groups, 1, 1), {"groups": groups}))
    return layers


def time_once(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=5, help="calls per contender and round")
    parser.add_argument("--suites", default="resnext50,shufflenet")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    suites = {
        "resnext50": [layer for layer in model_layers("resnext50")
                      if layer.kwargs.get("groups", 1) > 1],
        "shufflenet": shufflenet_layers(),
    }
    for suite in args.suites.split(","):
        print(f"\n{suite}, {args.threads} threads, float32, best of {args.rounds} rounds\n"
              f"{'layer':<28} {'grouped':>8} {'im2col':>8} {'auto':>17} {'torch':>8} {'ort':>8}"
              f" {'vs torch':>8} {'vs ort':>7} {'vs best':>7}")
        speedups = []
        for layer in suites[suite]:
            x = rng.standard_normal(layer.x_shape).astype(np.float32)
            weight = rng.standard_normal(layer.w_shape).astype(np.float32)
            contenders = {}
            for algorithm in ("grouped", "im2col", "auto"):
                plan = pcf.plan(x.shape, weight, n_threads=args.threads, algorithm=algorithm,
                                **layer.kwargs)
                out = plan(x)
                contenders[algorithm] = (lambda plan=plan, out=out, x=x: plan(x, out=out))
                if algorithm == "auto":
                    auto_name = plan.algorithm
            for name, make in (("torch", torch_runner), ("ort", onnxruntime_runner)):
                runner = make(layer, x, weight, args.threads)
                if runner is not None:
                    contenders[name] = runner
            best = {name: float("inf") for name in contenders}
            for name, call in contenders.items():
                call()
            for _ in range(args.rounds):
                for name, call in contenders.items():
                    for _ in range(args.number):
                        best[name] = min(best[name], time_once(call))
            ms = {name: f"{best[name] * 1e3:.3f}" if name in best else "-"
                  for name in ("grouped", "im2col", "auto", "torch", "ort")}
            ratios = {name: best[name] / best["grouped"] for name in ("torch", "ort")
                      if name in best}
            vs_best = min(ratios.values()) if ratios else None
            if vs_best is not None:
                speedups.append(vs_best)
            shown = [f"{ratios[n]:.2f}x" if n in ratios else "-" for n in ("torch", "ort")]
            print(f"{layer.name:<28} {ms['grouped']:>8} {ms['im2col']:>8} "
                  f"{auto_name[:8] + ' ' + ms['auto']:>17} {ms['torch']:>8} {ms['ort']:>8} "
                  f"{shown[0]:>8} {shown[1]:>7} "
                  f"{'-' if vs_best is None else f'{vs_best:.2f}x':>7}")
        if speedups:
            geomean = math.exp(sum(map(math.log, speedups)) / len(speedups))
            print(f"geometric mean speed-up of grouped over the faster peer: {geomean:.2f}x")


if __name__ == "__main__":
    main()
