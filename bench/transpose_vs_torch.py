"""Transposed-convolution layers: pyconvfast against torch.nn.functional.conv_transpose2d.

Run from the repository root (PyTorch is needed for its column only, never by pyconvfast):

    python bench/transpose_vs_torch.py --threads 2

The layers are a DCGAN generator's (batch 16, 4x4 kernels; the first maps the 100-d code to
4x4) and FCN's upsampling layers (21 classes; kernel 4 stride 2, kernel 16 stride 8, kernel 64
stride 32, as in FCN-8s/32s). Each pyconvfast algorithm, ``auto`` (tuned once before timing)
and torch are timed in turn, round after round, so that load from other processes hits them
alike; the best round of each counts. Each timed call follows an untimed one of the same
contender, so that the previous library's spinning worker threads are not counted against
it. Every call is the public function on the raw weight (weight preparation included, as
torch's). The table gives milliseconds and the ratio
torch / ours (> 1: pyconvfast faster), for ``auto`` and for the best algorithm, and their
geometric means. Results are checked against torch.
"""

import argparse
import math
import time

import numpy as np

import pyconvfast as pcf

# name, batch, C_in, C_out, input size, kernel, stride, padding
LAYERS = [
    ("dcgan 100->512 1->4", 16, 100, 512, 1, 4, 1, 0),
    ("dcgan 512->256 4->8", 16, 512, 256, 4, 4, 2, 1),
    ("dcgan 256->128 8->16", 16, 256, 128, 8, 4, 2, 1),
    ("dcgan 128->64 16->32", 16, 128, 64, 16, 4, 2, 1),
    ("dcgan 64->3 32->64", 16, 64, 3, 32, 4, 2, 1),
    ("fcn upscore2 21ch 16->34", 1, 21, 21, 16, 4, 2, 0),
    ("fcn pool4 21ch 34->70", 1, 21, 21, 34, 4, 2, 0),
    ("fcn upscore8 21ch 70->568", 1, 21, 21, 70, 16, 8, 0),
    ("fcn32 upscore 21ch 16->544", 1, 21, 21, 16, 64, 32, 0),
]
ALGORITHMS = ("transpose_gemm", "transpose_subpixel", "transpose_direct")


def _best(times):
    return min(times) if times else float("nan")


def bench(threads, dtype, rounds, min_seconds, layers, skip, clock=time.perf_counter):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, batch, c_in, c_out, size, k, stride, padding in layers:
        x = rng.standard_normal((batch, c_in, size, size)).astype(dtype)
        w = (rng.standard_normal((c_in, c_out, k, k)) / math.sqrt(c_in * k * k)).astype(dtype)
        kwargs = dict(stride=stride, padding=padding, n_threads=threads)
        x_t, w_t = torch.from_numpy(x), torch.from_numpy(w)

        def torch_call():
            with torch.no_grad():
                return F.conv_transpose2d(x_t, w_t, None, stride, padding)

        expected = torch_call().numpy()
        calls = {"torch": torch_call}
        names = [n for n in pcf.list_algorithms(x, w, transposed=True, stride=stride,
                                                padding=padding) if n not in skip]
        for algorithm in names + ["auto"]:
            def call(algorithm=algorithm):
                return pcf.conv_transpose2d(x, w, algorithm=algorithm, **kwargs)
            got = call()  # also tunes "auto"
            error = np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-30)
            assert error < 1e-4, (name, algorithm, error)
            calls[algorithm] = call
        times = {label: [] for label in calls}
        deadline = time.perf_counter() + min_seconds
        done = 0
        while done < rounds or time.perf_counter() < deadline:
            for label, call in calls.items():
                # The previous library's worker threads spin a while after its call (each
                # library has its own OpenMP pool): an untimed call lets them go to sleep first.
                call()
                start = clock()
                call()
                times[label].append(clock() - start)
            done += 1
            if done >= 50 * rounds:
                break
        best = {label: _best(t) for label, t in times.items()}
        ours = min(best[n] for n in names)
        winner = min(names, key=lambda n: best[n])
        rows.append((name, best, winner, best["torch"] / best["auto"], best["torch"] / ours))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="keep running rounds for at least this long per layer")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="cpu: the process's CPU time (with --threads 1 on a loaded, shared "
                             "machine, it leaves out the time other processes held the core)")
    parser.add_argument("--only", default="", help="run layers whose name contains this")
    parser.add_argument("--skip", default="transpose_direct",
                        help="comma-separated algorithms not timed (default: the slow direct)")
    args = parser.parse_args(argv)
    layers = [layer for layer in LAYERS if args.only in layer[0]]
    rows = bench(args.threads, np.dtype(args.dtype), args.rounds, args.min_seconds, layers,
                 set(filter(None, args.skip.split(","))),
                 time.process_time if args.clock == "cpu" else time.perf_counter)
    algos = [a for a in ALGORITHMS if any(a in row[1] for row in rows)]
    header = (f"{'layer':<28}{'torch ms':>10}" + "".join(f"{a[10:] + ' ms':>13}" for a in algos)
              + f"{'auto ms':>10}  {'best':<10}{'torch/auto':>11}{'torch/best':>11}")
    print(f"threads={args.threads} dtype={args.dtype} clock={args.clock}")
    print(header)
    for name, best, winner, ratio_auto, ratio_best in rows:
        cells = "".join(f"{best.get(a, float('nan')) * 1e3:13.3f}" for a in algos)
        print(f"{name:<28}{best['torch'] * 1e3:10.3f}{cells}{best['auto'] * 1e3:10.3f}  "
              f"{winner[10:]:<10}{ratio_auto:11.2f}{ratio_best:11.2f}")
    gm_auto = math.exp(sum(math.log(r[3]) for r in rows) / len(rows))
    gm_best = math.exp(sum(math.log(r[4]) for r in rows) / len(rows))
    print(f"geometric mean torch/auto = {gm_auto:.2f}, torch/best = {gm_best:.2f}")


if __name__ == "__main__":
    main()
