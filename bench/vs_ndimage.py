"""Single-channel 2-D filtering: ``pcf.conv2d`` against ``scipy.ndimage.correlate``.

    env -u OPENBLAS_CORETYPE python bench/vs_ndimage.py --threads 2

One image ``(H, W)`` and one kernel ``(k, k)``, float32 and float64, 512x512 and 2048x2048,
k = 3, 5, 7, 15, with the same boundary on both sides (docs/guide/padding.rst): pyconvfast's
``padding="same"`` with ``padding_mode="zeros"`` against ndimage's ``mode="constant", cval=0``,
and ``"reflect"`` against ``"mirror"``. The results are checked equal (to rounding) before
timing. pyconvfast runs on ``--threads`` threads through a plan (the call on a
``(1, 1, H, W)`` view, the same work as ``conv2d`` with the algorithm already chosen);
``scipy.ndimage`` is single-threaded. Each round times both once, interleaved, and the table
keeps each one's best time (a shared machine's load only slows calls down).
"""

import argparse
import math
import time

import numpy as np
from scipy import ndimage

import pyconvfast as pcf

MODES = {"zeros": "constant", "reflect": "mirror"}


def best_of(calls, rounds):
    best = [float("inf")] * len(calls)
    for call in calls:
        call()
    for _ in range(rounds):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sizes", default="512,2048")
    parser.add_argument("--kernels", default="3,5,7,15")
    parser.add_argument("--modes", default="zeros,reflect")
    parser.add_argument("--dtypes", default="float32,float64")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'dtype':<8} {'image':>9} {'k':>3} {'mode':<8} {'algorithm':>10} {'pcf ms':>9} "
          f"{'ndimage ms':>10} {'speed-up':>8}")
    ratios = []
    for dtype in (np.dtype(d) for d in args.dtypes.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            image = rng.standard_normal((size, size)).astype(dtype)
            for k in (int(k) for k in args.kernels.split(",")):
                kernel = rng.standard_normal((k, k)).astype(dtype)
                for mode in args.modes.split(","):
                    plan = pcf.plan((1, 1, size, size), kernel[None, None], padding="same",
                                    padding_mode=mode, n_threads=args.threads)
                    x = image[None, None]
                    out = plan(x)
                    expected = ndimage.correlate(image, kernel, mode=MODES[mode], cval=0.0)
                    scale = ndimage.correlate(np.abs(image), np.abs(kernel), mode=MODES[mode])
                    error = np.max(np.abs(out[0, 0] - expected) / scale)
                    assert error < 100 * k * k * np.finfo(dtype).eps, (dtype, size, k, mode, error)
                    ndimage_out = np.empty_like(image)
                    ours, theirs = best_of([
                        lambda: plan(x, out=out),
                        lambda: ndimage.correlate(image, kernel, mode=MODES[mode], cval=0.0,
                                                  output=ndimage_out),
                    ], args.rounds)
                    ratios.append(theirs / ours)
                    print(f"{dtype.name:<8} {f'{size}x{size}':>9} {k:>3} {mode:<8} "
                          f"{plan.algorithm:>10} {ours * 1e3:>9.3f} {theirs * 1e3:>10.3f} "
                          f"{theirs / ours:>7.1f}x", flush=True)
    geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print(f"geometric mean speed-up over scipy.ndimage.correlate: {geomean:.1f}x; "
          f"lowest {min(ratios):.1f}x")


if __name__ == "__main__":
    main()
