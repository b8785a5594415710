"""Kernel size from which ``fft`` beats ``direct``, ``im2col`` (and ``depthwise``), 1-D and 2-D.

For each family (dimension, channels, grouping) the kernel grows; every algorithm runs as a
plan would (weights prepared once), interleaved with the others in each pass, and the best
time of all passes counts. A candidate more than 30x slower than the fastest is dropped for the
larger kernels of its family (it only gets slower). Prints one table per family and, at the
end, the crossover: the smallest kernel from which fft is the fastest for every larger one.

    env -u OPENBLAS_CORETYPE python bench/fft_crossover.py [--threads 1] [--passes 3]
"""

import argparse
import time

import numpy as np

import pyconvfast as pcf

# (label, n_spatial, batch, channels, groups, input size per axis, kernel sizes)
FAMILIES = [
    ("1-D, 1 channel", 1, 1, 1, 1, 16384, (3, 7, 15, 31, 63, 127, 255, 511, 1023)),
    ("1-D, 16 channels", 1, 1, 16, 1, 4096, (3, 5, 7, 9, 11, 15, 21, 31, 63)),
    ("1-D, 64 channels", 1, 1, 64, 1, 4096, (3, 5, 7, 9, 11, 15, 21, 31, 63)),
    ("1-D, depthwise 64 channels", 1, 1, 64, 64, 4096, (3, 7, 15, 31, 63, 127, 255, 511)),
    ("2-D, 1 channel", 2, 1, 1, 1, 256, (3, 5, 7, 9, 11, 15, 21, 31)),
    ("2-D, 16 channels", 2, 1, 16, 1, 64, (3, 5, 7, 9, 11, 15, 21, 31)),
    ("2-D, 64 channels", 2, 1, 64, 1, 32, (3, 5, 7, 9, 11, 15)),
]


def measure(family, n_threads, passes, dtype):
    _, n_spatial, batch, channels, groups, size, kernels = family
    conv_rng = np.random.default_rng(0)
    x = conv_rng.standard_normal((batch, channels) + (size,) * n_spatial).astype(dtype)
    rows, dropped = [], set()
    for k in kernels:
        w = conv_rng.standard_normal(
            (channels, channels // groups) + (k,) * n_spatial).astype(dtype)
        names = [name for name in pcf.list_algorithms(x, w, groups=groups, padding="same")
                 if name in ("direct", "im2col", "depthwise", "fft") and name not in dropped]
        plans = {name: pcf.plan(x.shape, w, groups=groups, padding="same", algorithm=name,
                                n_threads=n_threads) for name in names}
        out = np.empty(plans[names[0]].problem.out_shape, dtype=dtype)
        best = {name: float("inf") for name in names}
        for _ in range(passes):
            for name, plan in plans.items():
                repeats = 1 if best[name] > 0.2 else 3
                for _ in range(repeats):
                    start = time.perf_counter()
                    plan(x, out=out)
                    best[name] = min(best[name], time.perf_counter() - start)
        fastest = min(best.values())
        best_other = min((t, name) for name, t in best.items() if name != "fft")[1]
        dropped |= {name for name, t in best.items()
                    if t > 30 * fastest and name not in ("fft", best_other)}
        rows.append((k, best))
    return rows


def crossover(rows):
    """Smallest kernel from which fft is the fastest for every larger kernel (None if never)."""
    answer = None
    for k, best in reversed(rows):
        others = [t for name, t in best.items() if name != "fft"]
        if "fft" in best and best["fft"] < min(others, default=float("inf")):
            answer = k
        else:
            break
    return answer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--only", default=None, help="run families whose label contains this")
    args = parser.parse_args()
    summary = []
    for family in FAMILIES:
        if args.only and args.only not in family[0]:
            continue
        rows = measure(family, args.threads, args.passes, np.dtype(args.dtype))
        label, n_spatial, batch, _, _, size = family[:6]
        shape = "x".join([str(size)] * n_spatial)
        print(f"\n{label}: N={batch}, {shape}, padding='same', {args.dtype}, "
              f"{args.threads} thread(s); best ms")
        names = ["fft", "direct", "im2col", "depthwise"]
        print(f"{'k':>5} " + " ".join(f"{name:>10}" for name in names)
              + f" {'best other / fft':>17}")
        for k, best in rows:
            cells = " ".join(f"{best[name] * 1e3:10.3f}" if name in best else f"{'-':>10}"
                             for name in names)
            others = min(t for name, t in best.items() if name != "fft")
            print(f"{k:>5} {cells} {others / best['fft']:17.2f}")
        summary.append((label, crossover(rows)))
    print("\ncrossover (fft fastest from this kernel size on):")
    for label, k in summary:
        print(f"  {label:<28} {'never' if k is None else f'k >= {k}'}")


if __name__ == "__main__":
    main()
