"""What a plan saves on Winograd layers: ``conv2d`` transforms the weight on every call, a plan once.

    python bench/plan_gain.py [--threads 2] [--rounds 30]

On ResNet-style 3x3 layers (batch 1, padding 1), times ``pcf.conv2d(x, w,
algorithm="winograd_f4x4_3x3", out=out)`` and the same call through :func:`pyconvfast.plan`, one
call of each per round in alternating order, and prints each one's median time and the median
of the per-round ratios conv2d / plan (paired: a drift in the machine's speed hits both calls of
a round alike).
"""

import argparse
import time

import numpy as np

import pyconvfast as pcf

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]  # (channels, height = width)
ALGORITHM = "winograd_f4x4_3x3"


def _seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def paired_times(calls, rounds):
    """(rounds, len(calls)) seconds: one call of each per round, the order reversed every
    other round, after one untimed call of each."""
    for call in calls:
        call()
    times = np.empty((rounds, len(calls)))
    for index in range(rounds):
        order = range(len(calls)) if index % 2 else reversed(range(len(calls)))
        for position in order:
            times[index, position] = _seconds(calls[position])
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'layer':<14} {'conv2d ms':>10} {'plan ms':>9} {'conv2d/plan':>12}")
    for channels, size in LAYERS:
        x = rng.standard_normal((1, channels, size, size)).astype(np.float32)
        w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
        out = np.empty_like(x)
        plan = pcf.plan(x.shape, w, padding=1, algorithm=ALGORITHM, n_threads=args.threads)
        times = paired_times([
            lambda x=x, w=w, out=out: pcf.conv2d(x, w, padding=1, algorithm=ALGORITHM, out=out,
                                                 n_threads=args.threads),
            lambda x=x, out=out, plan=plan: plan(x, out=out)], args.rounds)
        called, planned = np.median(times, axis=0) * 1e3
        ratio = np.median(times[:, 0] / times[:, 1])
        print(f"{f'{channels}ch {size}x{size}':<14} {called:>10.3f} {planned:>9.3f} {ratio:>11.2f}x")


if __name__ == "__main__":
    main()
