"""Draw ``separable_cost.png``: a depthwise-separable block's cost against a dense convolution.

For a 3x3 layer on a 28x28 image (one sample, C input and C output channels, float32), the
left panel gives the multiply-adds of the dense convolution, ``C * C * 9`` per pixel, and of
the depthwise-separable block that replaces it in MobileNet, ``C * 9 + C * C``; the right panel
the measured time of ``pcf.conv2d`` (``algorithm="auto"``) and of the fused
``pcf.separable_conv2d``, best of several runs. Run from the repository root (needs matplotlib
and a built pyconvfast); the PNG is committed so that building the docs needs neither::

    env -u OPENBLAS_CORETYPE python docs/figures/separable_cost.py [--threads 2]
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import pyconvfast as pcf

CHANNELS = (16, 32, 64, 128, 256, 512)
SIZE, KERNEL = 28, 3


def best_time(fn, repeats=7):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=str(Path(__file__).with_name("separable_cost.png")))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dense_macs, separable_macs, dense_ms, separable_ms = [], [], [], []
    for c in CHANNELS:
        pixels = SIZE * SIZE
        dense_macs.append(c * c * KERNEL * KERNEL * pixels)
        separable_macs.append((c * KERNEL * KERNEL + c * c) * pixels)
        x = rng.standard_normal((1, c, SIZE, SIZE)).astype(np.float32)
        dense = rng.standard_normal((c, c, KERNEL, KERNEL)).astype(np.float32)
        depthwise = rng.standard_normal((c, 1, KERNEL, KERNEL)).astype(np.float32)
        pointwise = rng.standard_normal((c, c, 1, 1)).astype(np.float32)
        out = pcf.conv2d(x, dense, padding=1, n_threads=args.threads)  # tunes "auto" first
        t_dense, t_sep = float("inf"), float("inf")
        for _ in range(3):  # interleaved
            t_dense = min(t_dense, best_time(
                lambda x=x, dense=dense, out=out: pcf.conv2d(
                    x, dense, padding=1, out=out, n_threads=args.threads)))
            t_sep = min(t_sep, best_time(
                lambda x=x, dw=depthwise, pw=pointwise, out=out: pcf.separable_conv2d(
                    x, dw, pw, padding=1, out=out, n_threads=args.threads)))
        dense_ms.append(t_dense * 1e3)
        separable_ms.append(t_sep * 1e3)
        print(f"C={c:4d}: dense {dense_macs[-1] / 1e6:9.1f} M MACs {t_dense * 1e3:8.3f} ms | "
              f"separable {separable_macs[-1] / 1e6:8.1f} M MACs {t_sep * 1e3:8.3f} ms | "
              f"MACs {dense_macs[-1] / separable_macs[-1]:4.1f}x, "
              f"time {t_dense / t_sep:4.1f}x")

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    for axes, dense, separable, label in (
        (left, np.array(dense_macs) / 1e6, np.array(separable_macs) / 1e6, "multiply-adds (M)"),
        (right, dense_ms, separable_ms, "time (ms, measured)"),
    ):
        axes.plot(CHANNELS, dense, "o-", label="dense 3x3 conv2d")
        axes.plot(CHANNELS, separable, "s-", label="depthwise 3x3 + pointwise (fused)")
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xticks(CHANNELS, [str(c) for c in CHANNELS])
        axes.set_xlabel("channels C (in = out)")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.3)
    left.legend(loc="upper left", fontsize=8)
    left.set_title(f"work, {SIZE}x{SIZE} image, N=1", fontsize=10)
    threads = args.threads or "default"
    right.set_title(f"pyconvfast, float32, n_threads={threads}", fontsize=10)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
