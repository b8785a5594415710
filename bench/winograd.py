"""Winograd vs im2col (vs PyTorch, if installed) on ResNet-style 3x3 layers, side by side.

    python bench/winograd.py [--threads 2] [--dtype float32] [--repeats 5] [--passes 5] [--params]

Every variant of a layer is timed ``--repeats`` times in a row, after a pause that lets the
worker threads of the previous variant go idle; ``--passes`` such rounds over the variants
(so that a burst of load from other processes does not hit one variant only), and the best
time is kept. GFLOP/s count direct-convolution flops,
2 * K * C * 9 * H_out * W_out * N, whatever the algorithm does. Weights are prepared once, as
a plan would (the Winograd weight transform is not timed; PyTorch's own is, inside conv2d).
``--params`` also times the Winograd block sizes of ``param_space``.
"""

import argparse
import time

import numpy as np

from pyconvfast import _api
from pyconvfast._algorithms import registry

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]  # (channels, height = width), padding 1
BATCHES = (1, 8)


def _variants(problem, x, w, out, n_threads, with_params):
    """name -> callable running one convolution (weights prepared once, as a plan would)."""
    x5 = x[:, :, None]
    out5 = out[:, :, None]
    variants = {}
    for name in ("im2col", "winograd_f2x2_3x3", "winograd_f4x4_3x3"):
        algorithm = registry.get(name)
        prepared = algorithm.prepare(problem, w[:, :, None])
        spaces = algorithm.param_space(problem) if with_params and name != "im2col" else [{}]
        for params in spaces:
            label = name + "".join(f" {k}={v}" for k, v in params.items())
            variants[label] = (lambda a=algorithm, p=prepared, q=params:
                               a.run(problem, x5, p, None, out5, n_threads, q))
    try:
        import torch
    except ImportError:
        return variants
    torch.set_num_threads(n_threads)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)

    def run_torch():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, padding=1)
    variants["torch"] = run_torch
    return variants


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--params", action="store_true")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{args.dtype}, {args.threads} threads, best of {args.passes} passes x {args.repeats} "
          f"runs; GFLOP/s")
    for batch in BATCHES:
        for channels, size in LAYERS:
            x = rng.standard_normal((batch, channels, size, size)).astype(args.dtype)
            w = rng.standard_normal((channels, channels, 3, 3)).astype(args.dtype)
            problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=1, dtype=x.dtype)
            out = np.empty(problem.out_shape, dtype=x.dtype)
            variants = _variants(problem, x, w, out, args.threads, args.params)
            best = {name: float("inf") for name in variants}
            for _ in range(args.passes):
                for name, run in variants.items():
                    # OpenMP and BLAS worker threads keep spinning for a while after a call:
                    # let those of the previous variant (another library's maybe) go idle.
                    time.sleep(0.2)
                    run()  # warm-up
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        run()
                        best[name] = min(best[name], time.perf_counter() - start)
            cells = "  ".join(f"{name} {problem.flops / best[name] / 1e9:6.1f}"
                              for name in variants)
            ratios = "  ".join(f"F4/{other} {best[other] / best['winograd_f4x4_3x3']:4.2f}"
                               for other in ("im2col", "torch") if other in best)
            print(f"N={batch} {channels:3d}ch {size:2d}x{size:<2d}  {cells}   {ratios}",
                  flush=True)


if __name__ == "__main__":
    main()
