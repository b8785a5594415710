"""Fused ``pcf.separable_conv2d`` against the two calls it replaces, on MobileNet-like layers.

The two calls are ``pcf.conv2d(x, depthwise, groups=C)`` then ``pcf.conv2d(mid, pointwise)``,
each with the algorithm ``auto`` picks (the tuning cache is filled before timing) and a
preallocated intermediate and output. Both run interleaved, ``--repeats`` rounds of
``--number`` calls each; the minimum per call counts (a shared machine's load only adds time).

    env -u OPENBLAS_CORETYPE python bench/separable_vs_two_calls.py [--threads 2] [--dtype float32]

Prints one line per layer: shape, fused ms, two calls ms, ratio (two calls / fused; > 1 means
the fused kernel is faster).
"""

import argparse
import time

import numpy as np

import pyconvfast as pcf

# (C, H=W, stride, K): the depthwise-separable blocks of MobileNetV1 (224x224 input), N=1.
LAYERS = [
    (32, 112, 1, 64), (64, 112, 2, 128), (128, 56, 1, 128), (128, 56, 2, 256),
    (256, 28, 1, 256), (256, 28, 2, 512), (512, 14, 1, 512), (512, 14, 2, 1024),
    (1024, 7, 1, 1024),
]


def _best(fn, number, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    parser.add_argument("--number", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    print(f"dtype={dtype.name} batch={args.batch} layout={args.layout} "
          f"threads={args.threads or 'default'}")
    print(f"{'C':>5} {'HxW':>8} {'s':>2} {'K':>5} {'fused ms':>10} {'2 calls ms':>11} {'ratio':>6}")
    ratios = []
    for c, size, stride, k in LAYERS:
        shape = (args.batch, c, size, size)
        x = rng.standard_normal(shape).astype(dtype)
        if args.layout == "NHWC":
            x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        dw = rng.standard_normal((c, 1, 3, 3)).astype(dtype)
        pw = rng.standard_normal((k, c, 1, 1)).astype(dtype)
        kw = {"stride": stride, "padding": 1, "layout": args.layout, "n_threads": args.threads}
        mid = pcf.conv2d(x, dw, groups=c, **kw)
        out = pcf.conv2d(mid, pw, layout=args.layout, n_threads=args.threads)
        fused_out = np.empty_like(out)

        def fused(x=x, dw=dw, pw=pw, fused_out=fused_out, kw=kw):
            pcf.separable_conv2d(x, dw, pw, out=fused_out, **kw)

        def two_calls(x=x, dw=dw, pw=pw, c=c, mid=mid, out=out, kw=kw):
            pcf.conv2d(x, dw, groups=c, out=mid, **kw)
            pcf.conv2d(mid, pw, layout=kw["layout"], out=out, n_threads=kw["n_threads"])

        fused(), two_calls()
        np.testing.assert_allclose(fused_out, out, rtol=1e-3, atol=1e-3 * np.abs(out).max())
        t_fused, t_two = float("inf"), float("inf")
        for _ in range(args.repeats):  # interleaved
            t_fused = min(t_fused, _best(fused, args.number, 1))
            t_two = min(t_two, _best(two_calls, args.number, 1))
        ratios.append(t_two / t_fused)
        print(f"{c:5d} {size:4d}x{size:<4d}{stride:2d} {k:5d} {t_fused * 1e3:10.3f} "
              f"{t_two * 1e3:11.3f} {t_two / t_fused:6.2f}")
    print(f"geometric mean ratio: {float(np.exp(np.mean(np.log(ratios)))):.2f}")


if __name__ == "__main__":
    main()
