"""Winograd on dilated 3x3 layers (by phases) and on 5x5 layers, against direct, im2col and
PyTorch (if installed), side by side in one process.

    python bench/winograd_layers.py [--threads 2] [--repeats 3] [--passes 5] [--only dilated|5x5]

The timing scheme is bench/winograd.py's: every variant of a layer is timed ``--repeats`` times
in a row after a pause that lets the worker threads of the previous variant go idle,
``--passes`` such rounds over the variants interleaved (so a burst of load from other processes
does not hit one variant only), and the best time is kept. Weights are prepared once, as a plan
does (PyTorch's own weight handling is timed, inside conv2d). Ratios are the best time of a
variant over the best Winograd's; GFLOP/s count direct-convolution flops.
"""

import argparse
import time

import numpy as np

from pyconvfast import _api
from pyconvfast._algorithms import registry

# (label, batch, C_in = C_out, size, kernel, dilation); padding "same"
LAYERS = {
    "dilated": [
        ("dilated 256ch 64x64 d=2", 1, 256, 64, 3, 2),
        ("dilated 256ch 64x64 d=4", 1, 256, 64, 3, 4),
        ("DeepLab 512ch 32x32 d=2", 1, 512, 32, 3, 2),
        ("DeepLab 512ch 32x32 d=4", 1, 512, 32, 3, 4),
    ],
    "5x5": [
        ("5x5 64ch 56x56", 1, 64, 56, 5, 1),
        ("5x5 192ch 28x28", 1, 192, 28, 5, 1),
    ],
}
OURS = ("direct", "im2col", "winograd_f2x2_3x3", "winograd_f4x4_3x3", "winograd_f2x2_5x5")


def _variants(problem, x, w, out, n_threads, dilation):
    """name -> callable running one convolution (weights prepared once, as a plan would)."""
    x5, out5 = x[:, :, None], out[:, :, None]
    variants = {}
    for name in OURS:
        algorithm = registry.get(name)
        if algorithm.supports(problem) is not None:
            continue
        prepared = algorithm.prepare(problem, w[:, :, None])
        variants[name] = (lambda a=algorithm, p=prepared:
                          a.run(problem, x5, p, None, out5, n_threads, {}))
    try:
        import torch
    except ImportError:
        return variants
    torch.set_num_threads(n_threads)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)

    def run_torch():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, padding="same", dilation=dilation)
    variants["torch"] = run_torch
    return variants


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--only", choices=sorted(LAYERS))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"float32, {args.threads} threads, best of {args.passes} passes x {args.repeats} "
          f"runs; GFLOP/s, then the best Winograd's speed-up over each other variant")
    for suite, layers in LAYERS.items():
        if args.only and suite != args.only:
            continue
        for label, batch, channels, size, kernel, dilation in layers:
            x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
            w = rng.standard_normal((channels, channels, kernel, kernel)).astype(np.float32)
            problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding="same",
                                        dilation=dilation, dtype=x.dtype)
            out = np.empty(problem.out_shape, dtype=x.dtype)
            variants = _variants(problem, x, w, out, args.threads, dilation)
            best = {name: float("inf") for name in variants}
            for _ in range(args.passes):
                for name, run in variants.items():
                    time.sleep(0.2)  # let the previous variant's worker threads go idle
                    run()  # warm-up
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        run()
                        best[name] = min(best[name], time.perf_counter() - start)
            winograd = min((n for n in best if n.startswith("winograd")), key=best.get)
            cells = "  ".join(f"{name.replace('winograd_', 'wg_')} "
                              f"{problem.flops / best[name] / 1e9:5.1f}" for name in variants)
            ratios = "  ".join(f"/{other} {best[other] / best[winograd]:4.2f}"
                               for other in ("direct", "im2col", "torch") if other in best)
            print(f"{label:24s} {cells}   best {winograd.replace('winograd_', 'wg_')}: {ratios}",
                  flush=True)


if __name__ == "__main__":
    main()
