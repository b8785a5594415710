"""The blocked ``direct`` kernel against the measured FMA peak of one core.

For each 3x3 layer (ResNet-50 / VGG-16 shapes, float32, NCHW, ``n_threads=1``), times
``pcf.conv2d(..., algorithm="direct")`` with a plan (weights packed once) and measures the FMA
peak right before, in the same pass. Both are timed in CPU time of the calling thread (the
kernel runs on it with ``n_threads=1``), so that other processes on a shared machine do not
count. Prints GFLOP/s, the peak and the percentage, best of ``--passes``.

    python bench/direct_peak.py --passes 5
"""

import argparse
import time

import numpy as np
from pyconvfast._lib.direct.blocked import fma_peak_gflops

import pyconvfast as pcf

# (name, x_shape, w_shape, kwargs)
LAYERS = [
    ("resnet 64ch 56x56", (1, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
    ("resnet 128ch 28x28", (1, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}),
    ("resnet 256ch 14x14", (1, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}),
    ("vgg 128ch 112x112", (1, 128, 112, 112), (128, 128, 3, 3), {"padding": 1}),
    ("vgg 256ch 56x56", (1, 256, 56, 56), (256, 256, 3, 3), {"padding": 1}),
]


def best_time(fn, min_seconds=0.3):
    fn()
    best, total = float("inf"), 0.0
    while total < min_seconds:
        start = time.thread_time()
        fn()
        elapsed = time.thread_time() - start
        best, total = min(best, elapsed), total + elapsed
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = {}
    for _ in range(args.passes):
        for name, x_shape, w_shape, kwargs in LAYERS:
            x = rng.standard_normal(x_shape).astype(args.dtype)
            w = rng.standard_normal(w_shape).astype(args.dtype)
            plan = pcf.plan(x.shape, w, algorithm="direct", n_threads=1, **kwargs)
            out = plan(x)
            peak = fma_peak_gflops(args.dtype, seconds=0.05)
            seconds = best_time(lambda plan=plan, x=x, out=out: plan(x, out=out))
            gflops = plan.problem.flops / seconds / 1e9
            old = rows.get(name)
            # Best of each over the passes; the percentage from the pass of the best kernel time.
            if old is None or gflops > old[0]:
                rows[name] = (gflops, peak, max(peak, old[1]) if old else peak)
            else:
                rows[name] = (old[0], old[1], max(peak, old[2]))
    print(f"{'layer':24s} {'GFLOP/s':>8s} {'peak':>7s} {'%peak':>6s} {'best peak':>9s} {'%':>5s}")
    for name, (gflops, peak, best_peak) in rows.items():
        print(f"{name:24s} {gflops:8.1f} {peak:7.1f} {100 * gflops / peak:5.0f}% "
              f"{best_peak:9.1f} {100 * gflops / best_peak:4.0f}%")


if __name__ == "__main__":
    main()
