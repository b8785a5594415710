"""The ``direct`` algorithm against ``im2col``, PyTorch and onnxruntime, interleaved.

    env -u OPENBLAS_CORETYPE python bench/direct_vs_peers.py --models deeplab,tcn --threads 2

For every layer, the four runners are called in turn, round after round (``--rounds``), each
turn after a pause (the previous library's spinning worker threads would otherwise slow the
next one) and a warm-up call, and each keeps its fastest timed call: on a shared machine a burst
of load then hits all of them alike rather than one column. Prints ms per call and the speed-up of ``direct`` over each (> 1: direct is
faster), and per network the geometric mean of the speed-up over the faster peer. With
``--threads 1`` the calls are timed in CPU time of the calling thread (every runner computes on
it), which other processes of a shared machine do not inflate.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._models import model_layers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import onnxruntime_runner, torch_runner


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vgg16,deeplab,tcn")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds of sleep before each runner's turn")
    parser.add_argument("--layers", default="", help="only layers whose name holds this text")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)
    # One thread: every runner computes on the calling thread, so its CPU time is the kernel's
    # time without the other processes of a shared machine.
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    print(f"{args.threads} thread(s), {dtype}, best of {args.rounds} interleaved rounds, "
          f"{'CPU time of the calling thread' if args.threads == 1 else 'wall-clock time'}")
    for model in args.models.split(","):
        print(f"\n{model}\n{'layer':<24} {'direct ms':>9} {'GFLOP/s':>8} {'im2col':>7} "
              f"{'torch':>7} {'ort':>7}   (speed-up of direct over each)")
        speedups = []
        for layer in model_layers(model):
            if args.layers not in layer.name:
                continue
            x = rng.standard_normal(layer.x_shape).astype(dtype)
            weight = rng.standard_normal(layer.w_shape).astype(dtype)
            runners = {}
            for name in ("direct", "im2col"):
                plan = pcf.plan(x.shape, weight, n_threads=args.threads, algorithm=name,
                                **layer.kwargs)
                out = plan(x)
                runners[name] = (lambda plan=plan, x=x, out=out: plan(x, out=out))
            flops = plan.problem.flops
            for name, make in (("torch", torch_runner), ("ort", onnxruntime_runner)):
                try:
                    runner = make(layer, x, weight, args.threads)
                except Exception as error:  # noqa: BLE001 - e.g. onnxruntime has no float64 Conv
                    print(f"  ({name} cannot run {layer.name}: {type(error).__name__})")
                    runner = None
                if runner is not None:
                    runners[name] = runner
            best = {name: float("inf") for name in runners}
            for name, call in runners.items():
                call()
            for _ in range(args.rounds):
                for name, call in runners.items():
                    # The other runners' worker threads (each library has its own pool) spin a
                    # while after their call: let them go to sleep first.
                    time.sleep(args.pause)
                    call()  # warm this runner's own threads and caches
                    start = clock()
                    call()
                    best[name] = min(best[name], clock() - start)
            ratio = {name: best[name] / best["direct"] for name in best}
            peers = [ratio[name] for name in ("torch", "ort") if name in ratio]
            if peers:
                speedups.append(min(peers))
            cells = [f"{ratio[name]:6.2f}x" if name in ratio else f"{'-':>7}"
                     for name in ("im2col", "torch", "ort")]
            print(f"{layer.name:<24} {best['direct'] * 1e3:9.2f} "
                  f"{flops / best['direct'] / 1e9:8.1f} " + " ".join(cells))
        if speedups:
            geomean = math.exp(sum(map(math.log, speedups)) / len(speedups))
            print(f"{'geometric mean speed-up of direct over the faster peer':<58} {geomean:.2f}x")


if __name__ == "__main__":
    main()
