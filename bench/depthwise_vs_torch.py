"""Depthwise layers: pyconvfast's depthwise, direct and im2col against torch.nn.functional.

Run from the repository root (PyTorch is needed for its column only, never by pyconvfast):

    python bench/depthwise_vs_torch.py --threads 2

Every method of a layer is timed in turn, round after round, so that load from other processes
hits them alike; the best round of each is reported, as GFLOP/s (a multiply-add is two flops)
and as the ratio to torch (> 1: faster than torch). Results are checked against each other.
On a shared machine, ``--passes N`` repeats the whole table N times, spread over time, and
keeps the best of each cell: a pass that ran while another process held a core (which stalls
every multi-threaded method, torch's too) does not spoil the table.
"""

import argparse
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast import _api

# name, n_spatial, channels, spatial size, kernel, stride, dilation
LAYERS = [
    ("mbv2 3x3 32ch 112", 2, 32, 112, 3, 1, 1),
    ("mbv2 3x3 96ch 112 s2", 2, 96, 112, 3, 2, 1),
    ("mbv2 3x3 144ch 56", 2, 144, 56, 3, 1, 1),
    ("mbv2 3x3 192ch 28", 2, 192, 28, 3, 1, 1),
    ("mbv2 3x3 384ch 14", 2, 384, 14, 3, 1, 1),
    ("mbv2 3x3 576ch 14", 2, 576, 14, 3, 1, 1),
    ("mbv2 3x3 960ch 7", 2, 960, 7, 3, 1, 1),
    ("5x5 240ch 28", 2, 240, 28, 5, 1, 1),
    ("3x3 d2 128ch 56", 2, 128, 56, 3, 1, 2),
    ("1d k31 256ch 4096", 1, 256, 4096, 31, 1, 1),
    ("1d k63 256ch 4096", 1, 256, 4096, 63, 1, 1),
    ("3d 3x3x3 64ch 16", 3, 64, 16, 3, 1, 1),
]
CHANNELS_LAST = {1: "NLC", 2: "NHWC", 3: "NDHWC"}
CHANNELS_FIRST = {1: "NCL", 2: "NCHW", 3: "NCDHW"}


def _torch_call(torch, n_spatial, x_np, w_np, channels_last, stride, dilation, padding, groups):
    import torch.nn.functional as F

    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n_spatial]
    x = torch.from_numpy(x_np)
    if channels_last:
        x = x.movedim(-1, 1)  # a strided view of the channels-last array
        fmt = {2: torch.channels_last, 3: torch.channels_last_3d}.get(n_spatial)
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)  # the real channels_last tensor (a no-op copy)
    w = torch.from_numpy(w_np)

    def run():
        with torch.no_grad():
            return conv(x, w, None, stride, padding, dilation, groups)

    def result():
        out = run()
        out = out.movedim(1, -1) if channels_last else out
        return out.numpy()

    return run, result


def bench(threads, dtype, min_rounds, min_seconds, layers, with_torch):
    torch = None
    if with_torch:
        import torch

        torch.set_num_threads(threads)
    rows = []
    rng = np.random.default_rng(0)
    for name, n_spatial, channels, size, k, stride, dilation in layers:
        spatial = (size,) * n_spatial
        kernel = (k,) * n_spatial
        padding = dilation * (k - 1) // 2
        w = rng.standard_normal((channels, 1) + kernel).astype(dtype)
        for channels_last in (False, True):
            layout = (CHANNELS_LAST if channels_last else CHANNELS_FIRST)[n_spatial]
            x = rng.standard_normal((1, channels) + spatial).astype(dtype)
            if channels_last:
                x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
            kwargs = dict(stride=stride, dilation=dilation, padding=padding, groups=channels,
                          layout=layout)
            problem = _api.make_problem(x.shape, w.shape, n_spatial=n_spatial, dtype=dtype,
                                        **kwargs)
            conv = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}[n_spatial]
            calls, results = {}, {}
            for algorithm in ("depthwise", "direct", "im2col"):
                out = np.empty(problem.out_shape, dtype=dtype)
                calls[algorithm] = (lambda a=algorithm, o=out: conv(
                    x, w, algorithm=a, out=o, n_threads=threads, **kwargs))
                results[algorithm] = lambda o=out: o
            if torch is not None:
                run, result = _torch_call(torch, n_spatial, x, w, channels_last, stride,
                                          dilation, padding, channels)
                calls["torch"], results["torch"] = run, result
            best = {name_: float("inf") for name_ in calls}
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
            reference = results["direct"]()
            for key in calls:
                got = results[key]()
                scale = np.abs(reference).max()
                assert np.abs(got - reference).max() <= 1e-4 * scale, (name, layout, key)
            gflops = {key: problem.flops / t / 1e9 for key, t in best.items()}
            rows.append((name, layout, gflops, rounds))
    return rows


def print_table(rows, with_torch):
    columns = ["depthwise", "direct", "im2col"] + (["torch"] if with_torch else [])
    header = f"{'layer':22} {'layout':6} " + " ".join(f"{c:>9}" for c in columns)
    if with_torch:
        header += f" {'dw/torch':>8} {'dw/direct':>9} {'dw/im2col':>9}"
    print(header)
    for name, layout, gflops, rounds in rows:
        line = f"{name:22} {layout:6} " + " ".join(f"{gflops[c]:9.2f}" for c in columns)
        if with_torch:
            line += f" {gflops['depthwise'] / gflops['torch']:8.2f}"
        else:
            line += " " * 9
        line += (f" {gflops['depthwise'] / gflops['direct']:9.1f}"
                 f" {gflops['depthwise'] / gflops['im2col']:9.1f}")
        print(line)
    print("GFLOP/s (2 flops per multiply-add), best round; ratios of depthwise's GFLOP/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--rounds", type=int, default=15, help="at least this many rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="and at least this long")
    parser.add_argument("--passes", type=int, default=1, help="repeat the table, keep the best")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--only", default="", help="layers whose name contains this text")
    args = parser.parse_args()
    from pyconvfast._lib.cpu.levels import simd_level

    layers = [layer for layer in LAYERS if args.only in layer[0]]
    print(f"threads={args.threads} dtype={args.dtype} simd={simd_level()}")
    rows = None
    for _ in range(args.passes):
        new = bench(args.threads, np.dtype(args.dtype), args.rounds, args.seconds, layers,
                    not args.no_torch)
        if rows is None:
            rows = new
            continue
        for (_, _, best, _), (_, _, gflops, _) in zip(rows, new):
            for key, value in gflops.items():
                best[key] = max(best[key], value)
    print_table(rows, not args.no_torch)


if __name__ == "__main__":
    main()
