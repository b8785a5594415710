"""The blocked ``direct`` kernel's row tilings against each other and the FMA peak.

``tiles="full"`` (the default) cuts each output row into tiles of equal width with the border
pixels inside (their taps on the zero padding skipped per pixel); ``tiles="split"`` (the old
tiling) runs the interior columns in tiles of up to the variant's width and each border column
in its own narrow tile. For every 3x3 layer of ResNet-50 and VGG-16 (batch 1, float32, NCHW,
``algorithm="direct"`` through ``pcf.plan``), both plans are called alternately, ``--rounds``
rounds (each a short block of calls of one, then the other, order alternating), and the
median of the per-round time ratios split / full is reported with each one's median GFLOP/s
(wall clock, ``--threads`` threads; or CPU time of one thread, ``--cpu-time``) and its share of ``--threads`` times the FMA peak of one
core measured in the same process (``fma_peak_gflops``, before and after the layers).

    PYTHONPATH=src python bench/direct_tiles.py                 # 2 threads, 30 rounds
    PYTHONPATH=src python bench/direct_tiles.py --threads 1 --cpu-time --only 7x7
"""

import argparse
import dataclasses
import statistics
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._lib.direct.blocked import active_variant, fma_peak_gflops
from pyconvfast._models import model_layers

TILINGS = ("split", "full")


def layers():
    """(label, x_shape, w_shape, kwargs) of the distinct 3x3 layers of ResNet-50 and VGG-16."""
    seen, found = set(), []
    for model in ("resnet50", "vgg16"):
        for layer in model_layers(model):
            if tuple(layer.w_shape[2:]) != (3, 3):
                continue
            key = (tuple(layer.x_shape), tuple(layer.w_shape), tuple(sorted(layer.kwargs.items())))
            if key in seen:
                continue
            seen.add(key)
            c, h, w = layer.x_shape[1:]
            stride = layer.kwargs.get("stride", 1)
            label = f"{model} {layer.w_shape[0]}x{c} {h}x{w}" + (f" s{stride}" if stride != 1 else "")
            found.append((label, tuple(layer.x_shape), tuple(layer.w_shape), dict(layer.kwargs)))
    return found


def tiled_plan(x_shape, weight, kwargs, tiles, n_threads):
    """A ``direct`` plan whose kernel runs with ``tiles=``."""
    plan = pcf.plan(x_shape, weight, algorithm="direct", n_threads=n_threads, **kwargs)
    choice, algorithm, prepared = plan._runner
    plan._runner = (dataclasses.replace(choice, params={"tiles": tiles}), algorithm, prepared)
    return plan


def block_seconds(plan, x, out, calls, clock):
    start = clock()
    for _ in range(calls):
        plan(x, out=out)
    return (clock() - start) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--min-block", type=float, default=0.01,
                        help="seconds of calls per plan per round (at least one call)")
    parser.add_argument("--only", default="", help="run only layers whose label contains this")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time in CPU time of the calling thread (needs --threads 1): "
                             "other processes on a shared machine then do not count")
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1")
    clock = time.thread_time if args.cpu_time else time.perf_counter

    rng = np.random.default_rng(0)
    peak_before = fma_peak_gflops(np.float32)
    print(f"variant {active_variant().name}, {args.threads} threads, FMA peak of one core "
          f"{peak_before:.1f} GF/s")
    rows = []
    for label, x_shape, w_shape, kwargs in layers():
        if args.only not in label:
            continue
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        plans = {t: tiled_plan(x_shape, w, kwargs, t, args.threads) for t in TILINGS}
        out = {t: plans[t](x) for t in TILINGS}
        np.testing.assert_array_equal(out["split"], out["full"])
        flops = 2.0 * np.prod(out["full"].shape) * np.prod(w_shape[1:])
        one = block_seconds(plans["full"], x, out["full"], 1, clock)
        calls = max(1, int(args.min_block / one))
        seconds = {t: [] for t in TILINGS}
        for r in range(args.rounds):
            order = TILINGS if r % 2 == 0 else TILINGS[::-1]
            for t in order:
                seconds[t].append(block_seconds(plans[t], x, out[t], calls, clock))
        ratio = statistics.median(s / f for s, f in zip(seconds["split"], seconds["full"]))
        gf = {t: flops / statistics.median(seconds[t]) / 1e9 for t in TILINGS}
        rows.append((label, gf, ratio))
        print(f"{label:28s} split {gf['split']:6.1f} GF/s  full {gf['full']:6.1f} GF/s  "
              f"full/split speed {ratio:5.2f}x", flush=True)
    peak_after = fma_peak_gflops(np.float32)
    peak = max(peak_before, peak_after) * args.threads
    print(f"\nFMA peak: {peak_before:.1f} / {peak_after:.1f} GF/s a core (before / after); "
          f"shares below of {peak:.1f} GF/s ({args.threads} cores)")
    print(f"{'layer':28s} {'split':>7s} {'%peak':>6s} {'full':>7s} {'%peak':>6s} {'ratio':>6s}")
    for label, gf, ratio in rows:
        print(f"{label:28s} {gf['split']:7.1f} {100 * gf['split'] / peak:5.0f}% "
              f"{gf['full']:7.1f} {100 * gf['full'] / peak:5.0f}% {ratio:6.2f}")


if __name__ == "__main__":
    main()
