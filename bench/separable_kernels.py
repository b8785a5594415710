"""Rank-1 kernels (Gaussian blur) as two 1-D passes: ``algorithm="separable"`` against the
algorithms ``auto`` chose from before it existed.

A 512x512 image (one sample), 1 or 3 channels, float32, each channel blurred by a K x K
Gaussian (``groups=C``), ``padding="same"``, ``padding_mode="reflect"``. For each kernel size:
the best time of ``separable`` and of ``depthwise``, ``im2col`` and ``direct`` (the candidates
before; the fastest of them is what ``conv2d(..., algorithm="auto")`` ran before this change),
and what ``auto`` picks now (measured by ``pcf.plan``). Calls are interleaved, the minimum of
``--repeats`` rounds counts (a shared machine's load only adds time).

    env -u OPENBLAS_CORETYPE python bench/separable_kernels.py [--threads 2] [--skip-direct]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import pyconvfast as pcf

SIZES = (7, 11, 15, 31)
OLD = ("depthwise", "im2col", "direct")


def gaussian(size, dtype):
    sigma = size / 6
    g = np.exp(-0.5 * (np.arange(size) - (size - 1) / 2) ** 2 / sigma**2)
    return (np.outer(g, g) / g.sum() ** 2).astype(dtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--skip-direct", action="store_true", help="direct is slow at 31x31")
    parser.add_argument("--skip-im2col", action="store_true", help="im2col is slower still")
    args = parser.parse_args()
    os.environ.setdefault("PYCONVFAST_CACHE_DIR", tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    skipped = {name for name, skip in (("direct", args.skip_direct),
                                       ("im2col", args.skip_im2col)) if skip}
    names = ("separable",) + tuple(n for n in OLD if n not in skipped)
    print(f"image {args.size}x{args.size}, float32, threads={args.threads or 'default'}; "
          f"ms, best of {args.repeats}")
    print(f"{'C':>2} {'kernel':>7} " + " ".join(f"{n:>10}" for n in names)
          + f" {'before':>8} {'gain':>6}  auto now")
    for channels in (1, 3):
        x = rng.random((1, channels, args.size, args.size), dtype=np.float32)
        for size in SIZES:
            weight = np.broadcast_to(gaussian(size, np.float32),
                                     (channels, 1, size, size)).copy()
            kwargs = {"groups": channels, "padding": "same", "padding_mode": "reflect",
                      "n_threads": args.threads}
            out = np.empty_like(x)
            best = {name: float("inf") for name in names}
            for _ in range(args.repeats):
                for name in names:
                    start = time.perf_counter()
                    pcf.conv2d(x, weight, algorithm=name, out=out, **kwargs)
                    best[name] = min(best[name], time.perf_counter() - start)
            before = min(best[name] for name in names if name != "separable")
            plan = pcf.plan(x.shape, weight, **kwargs)
            print(f"{channels:2d} {size:3d}x{size:<3d} "
                  + " ".join(f"{best[n] * 1e3:10.2f}" for n in names)
                  + f" {before * 1e3:8.2f} {before / best['separable']:5.1f}x  {plan.algorithm}")


if __name__ == "__main__":
    main()
