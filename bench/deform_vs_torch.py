"""Deformable convolution layers: ``pcf.deform_conv2d`` against torchvision's, and against
pyconvfast's own ``conv2d`` of the same shape (the cost floor: the same GEMM, no sampling).

Run from the repository root (PyTorch and torchvision are needed for their column only, never
by pyconvfast; without a working ``torchvision.ops.deform_conv2d`` the table has the conv2d
floor only, and says so):

    python bench/deform_vs_torch.py --threads 2

The layers are DCN layers as placed in ResNet-50 (3x3, stride 1, padding 1, one offset group,
v2 with a mask unless the name says v1), batch 4. Every method of a layer is timed in turn,
round after round, so that load from other processes hits them alike; the best round of each
is reported in milliseconds, with the ratios ``torchvision / pcf`` (> 1: pcf faster) and
``pcf / conv2d`` (the price of sampling over the plain convolution). Results are checked
against each other. ``--passes N`` repeats the table N times and keeps the best of each cell.
"""

import argparse
import time

import numpy as np

import pyconvfast as pcf

# name, batch, C_in, C_out, size, offset groups, modulated (v2)
LAYERS = [
    ("r50 s3 256ch 28x28 v2", 4, 256, 256, 28, 1, True),
    ("r50 s3 256ch 28x28 v1", 4, 256, 256, 28, 1, False),
    ("r50 s3 256ch 14x14 v2", 4, 256, 256, 14, 1, True),
    ("r50 s4 512ch 7x7 v2", 4, 512, 512, 7, 1, True),
    ("128ch 28x28 og4 v2", 4, 128, 128, 28, 4, True),
]


def _torchvision(threads):
    """torchvision's deform_conv2d and torch, or None where it does not import or run."""
    try:
        import torch
        from torchvision.ops import deform_conv2d

        torch.set_num_threads(threads)
        deform_conv2d(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1))
    except (ImportError, OSError, RuntimeError) as error:
        print(f"torchvision.ops.deform_conv2d unavailable ({type(error).__name__}: "
              f"{str(error).splitlines()[0][:80]}): comparing with conv2d only")
        return None
    return torch, deform_conv2d


def _layer_calls(threads, x, offset, w, mask, torchvision):
    """(calls, results): a no-argument function per method, and how to read its result."""
    out = np.empty((x.shape[0], w.shape[0]) + x.shape[2:], x.dtype)
    conv_out = np.empty_like(out)
    calls = {
        "pcf": lambda: pcf.deform_conv2d(x, offset, w, padding=1, mask=mask, out=out,
                                         n_threads=threads),
        "conv2d": lambda: pcf.conv2d(x, w, padding=1, algorithm="im2col", out=conv_out,
                                     n_threads=threads),
    }
    results = {"pcf": lambda: out}
    if torchvision is not None:
        torch, tv_deform = torchvision
        tensors = [torch.from_numpy(a) for a in (x, offset, w)]
        tv_mask = None if mask is None else torch.from_numpy(mask)
        tv_out = {}

        def run_tv():
            with torch.no_grad():
                tv_out["y"] = tv_deform(*tensors, padding=(1, 1), mask=tv_mask)

        calls["torchvision"] = run_tv
        results["torchvision"] = lambda: tv_out["y"].numpy()
    return calls, results


def bench(threads, dtype, min_rounds, min_seconds, layers, torchvision):
    rows = []
    rng = np.random.default_rng(0)
    for name, batch, c_in, c_out, size, offset_groups, modulated in layers:
        x = rng.standard_normal((batch, c_in, size, size)).astype(dtype)
        w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(dtype)
        offset = rng.standard_normal((batch, 2 * offset_groups * 9, size, size)).astype(dtype)
        mask = rng.random((batch, offset_groups * 9, size, size)).astype(dtype) \
            if modulated else None
        calls, results = _layer_calls(threads, x, offset, w, mask, torchvision)
        best = {key: float("inf") for key in calls}
        for call in calls.values():  # warm up (and allocate) once
            call()
        rounds, start = 0, time.perf_counter()
        while rounds < min_rounds or time.perf_counter() - start < min_seconds:
            for key, call in calls.items():
                t0 = time.perf_counter()
                call()
                best[key] = min(best[key], time.perf_counter() - t0)
            rounds += 1
            if rounds >= 200:
                break
        if "torchvision" in results:
            got, expected = results["pcf"](), results["torchvision"]()
            assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), name
        rows.append((name, best, rounds))
    return rows


def print_table(rows, with_torchvision):
    columns = ["pcf", "conv2d"] + (["torchvision"] if with_torchvision else [])
    header = f"{'layer':24} " + " ".join(f"{c + ' ms':>14}" for c in columns)
    header += f" {'pcf/conv2d':>10}" + (f" {'tv/pcf':>8}" if with_torchvision else "")
    print(header)
    for name, best, rounds in rows:
        line = f"{name:24} " + " ".join(f"{best[c] * 1e3:14.2f}" for c in columns)
        line += f" {best['pcf'] / best['conv2d']:10.2f}"
        if with_torchvision:
            line += f" {best['torchvision'] / best['pcf']:8.2f}"
        print(line)
    print("best round of each; pcf/conv2d: time over the plain im2col convolution of the same "
          "shape (the floor);" + (" tv/pcf > 1: pcf faster than torchvision" if
                                  with_torchvision else " torchvision: not available"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--rounds", type=int, default=10, help="at least this many rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="and at least this long")
    parser.add_argument("--passes", type=int, default=1, help="repeat the table, keep the best")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--only", default="", help="layers whose name contains this text")
    args = parser.parse_args()
    torchvision = None if args.no_torch else _torchvision(args.threads)
    layers = [layer for layer in LAYERS if args.only in layer[0]]
    print(f"threads={args.threads} dtype={args.dtype}")
    rows = None
    for _ in range(args.passes):
        new = bench(args.threads, np.dtype(args.dtype), args.rounds, args.seconds, layers,
                    torchvision)
        if rows is None:
            rows = new
            continue
        for (_, best, _), (_, times, _) in zip(rows, new):
            for key, value in times.items():
                best[key] = min(best[key], value)
    print_table(rows, torchvision is not None)


if __name__ == "__main__":
    main()
