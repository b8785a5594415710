"""The blocked ``direct`` kernel's row tilings against each other and the FMA peak.

``tiles="full"`` (the default with AVX-512F) cuts each output row into tiles that hold the
border pixels too (their taps on the zero padding skipped per pixel); ``tiles="split"`` (the old
tiling) runs the interior columns in tiles of up to the variant's width and each border column
in its own narrow tile; ``full_chunked`` is full tiles with the input channels in chunks whose
weights stay in L1 (``c_chunk=-1``). For every 3x3 layer of ResNet-50 and VGG-16 (batch 1,
float32, NCHW, ``algorithm="direct"`` through ``pcf.plan``), the plans are called in turn for
``--rounds`` rounds (a short block of calls each, the order rotating), and each one's median
GFLOP/s is printed with the median over rounds of split's time over its own (``speed``) and
its share of ``--threads`` times the FMA peak of one core measured in the same process
(``fma_peak_gflops``, before and after the layers). Times are wall clock, or the CPU time of
the calling thread with ``--threads 1 --cpu-time``.

On a machine shared with other jobs, the wall time of a 2-thread call waits for a time slice
of the other core (times quantized to the scheduler tick): use ``--threads 1 --cpu-time`` there.

    PYTHONPATH=src python bench/direct_tiles.py                 # 2 threads, 30 rounds
    PYTHONPATH=src python bench/direct_tiles.py --threads 1 --cpu-time --only 7x7
"""

import argparse
import dataclasses
import statistics
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._lib.cpu import levels
from pyconvfast._lib.direct.blocked import active_variant, fma_peak_gflops
from pyconvfast._models import model_layers

# The kernel parameters compared: the old split tiling, full tiles (every input channel in one
# pass), and full tiles with the input channels in chunks whose weights stay in L1 (MLAS's loop
# order; not faster here, so not the default).
CONFIGS = {
    "split": {"tiles": "split"},
    "full": {"tiles": "full"},
    "full_chunked": {"tiles": "full", "c_chunk": -1},
}


def layers():
    """(label, x_shape, w_shape, kwargs) of the distinct 3x3 layers of ResNet-50 and VGG-16."""
    seen, found = set(), []
    for model in ("resnet50", "vgg16"):
        for layer in model_layers(model):
            if tuple(layer.w_shape[2:]) != (3, 3):
                continue
            key = (tuple(layer.x_shape), tuple(layer.w_shape),
                   tuple(sorted(layer.kwargs.items())))
            if key in seen:
                continue
            seen.add(key)
            c, h, w = layer.x_shape[1:]
            stride = layer.kwargs.get("stride", 1)
            label = f"{model} {layer.w_shape[0]}x{c} {h}x{w}"
            label += f" s{stride}" if stride != 1 else ""
            found.append((label, tuple(layer.x_shape), tuple(layer.w_shape),
                          dict(layer.kwargs)))
    return found


def tiled_plan(x_shape, weight, kwargs, params, n_threads):
    """A ``direct`` plan whose kernel runs with ``params``."""
    plan = pcf.plan(x_shape, weight, algorithm="direct", n_threads=n_threads, **kwargs)
    choice = dataclasses.replace(plan._runner[0], params=dict(params))
    plan._runner = plan._runner_of(choice, _api.weight_5d(plan._weight, plan.problem))
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
    parser.add_argument("--simd-level", default=None,
                        help="run at this SIMD level (pyconvfast._lib.cpu.levels), e.g. avx2")
    args = parser.parse_args()
    if args.simd_level:
        levels.set_simd_level(args.simd_level)
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
        plans = {c: tiled_plan(x_shape, w, kwargs, CONFIGS[c], args.threads) for c in CONFIGS}
        out = {c: plans[c](x) for c in CONFIGS}
        for c in CONFIGS:
            np.testing.assert_allclose(out[c], out["split"], rtol=1e-4, atol=1e-3 * np.abs(
                out["split"]).max())
        flops = 2.0 * np.prod(out["full"].shape) * np.prod(w_shape[1:])
        one = block_seconds(plans["full"], x, out["full"], 1, clock)
        calls = max(1, int(args.min_block / one))
        seconds = {c: [] for c in CONFIGS}
        names = list(CONFIGS)
        for r in range(args.rounds):
            for c in names[r % len(names):] + names[:r % len(names)]:  # order rotating
                seconds[c].append(block_seconds(plans[c], x, out[c], calls, clock))
        ratio = {c: statistics.median(s / f for s, f in zip(seconds["split"], seconds[c]))
                 for c in CONFIGS}
        gf = {c: flops / statistics.median(seconds[c]) / 1e9 for c in CONFIGS}
        rows.append((label, gf, ratio))
        print(f"{label:28s} " + "  ".join(f"{c} {gf[c]:6.1f} GF/s ({ratio[c]:4.2f}x)"
                                          for c in CONFIGS), flush=True)
    peak_after = fma_peak_gflops(np.float32)
    peak = max(peak_before, peak_after) * args.threads
    print(f"\nFMA peak: {peak_before:.1f} / {peak_after:.1f} GF/s a core (before / after); "
          f"shares below of {peak:.1f} GF/s ({args.threads} cores)")
    print(f"{'layer':28s} "
          + " ".join(f"{c:>11s} {'%peak':>5s} {'speed':>5s}" for c in CONFIGS))
    for label, gf, ratio in rows:
        print(f"{label:28s} " + " ".join(
            f"{gf[c]:11.1f} {100 * gf[c] / peak:4.0f}% {ratio[c]:5.2f}" for c in CONFIGS))
    print("speed: the median over rounds of (split's time / this one's time)")


if __name__ == "__main__":
    main()
