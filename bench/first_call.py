"""A second process on a warm cache: how its first call compares with the steady state.

    python -m pyconvfast tune --model resnet50     # once, to warm the cache
    python bench/first_call.py --model resnet50

In this (new) process, each layer's first ``conv2d`` call with ``algorithm="auto"`` (which finds
its choice in the cache file, builds the index tables and prepares the weight) is timed, then
the same call's steady state (best of several); prints the ratio per layer and the worst.
"""

import argparse
import os
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._models import model_layers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    conv = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}
    rng = np.random.default_rng(1)
    layers = model_layers(args.model)
    arrays = [(rng.standard_normal(layer.x_shape).astype(np.float32),
               rng.standard_normal(layer.w_shape).astype(np.float32)) for layer in layers]
    worst = 0.0
    print(f"{'layer':<26} {'first ms':>9} {'steady ms':>10} {'ratio':>6}")
    for layer, (x, w) in zip(layers, arrays):
        call = conv[layer.n_spatial]
        start = time.perf_counter()
        out = call(x, w, n_threads=args.threads, **layer.kwargs)
        first = time.perf_counter() - start
        steady = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            call(x, w, out=out, n_threads=args.threads, **layer.kwargs)
            steady = min(steady, time.perf_counter() - start)
        worst = max(worst, first / steady)
        print(f"{layer.name:<26} {first * 1e3:>9.2f} {steady * 1e3:>10.2f} {first / steady:>6.2f}")
    print(f"worst first/steady: {worst:.2f}")


if __name__ == "__main__":
    main()
