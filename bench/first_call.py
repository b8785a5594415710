"""A second process on a warm cache: how its first call compares with the steady state.

    python -m pyconvfast tune --model resnet50     # once, to warm the cache
    python bench/first_call.py --model resnet50 --processes 5

In a new process, each layer's first ``conv2d`` call with ``algorithm="auto"`` (which finds
its choice in the cache file, builds the index tables, prepares the weight and allocates the
result) is timed, then the same call's steady state (best of several, into ``out=``); prints
the ratio per layer and the worst. With ``--processes N`` the measurement runs in N fresh
processes one after the other, and each time is the best over them (on a shared machine, a
process's first call is as exposed to other load as any other call). ``--threads 1 --clock
thread`` times the calling thread's CPU time instead, page faults included, which other load
barely changes.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def measure(model, threads, clock=time.perf_counter):
    """{layer name: (first seconds, steady seconds)} in this process."""
    import pyconvfast as pcf
    from pyconvfast._models import model_layers

    conv = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}
    rng = np.random.default_rng(1)
    layers = model_layers(model)
    arrays = [(rng.standard_normal(layer.x_shape).astype(np.float32),
               rng.standard_normal(layer.w_shape).astype(np.float32)) for layer in layers]
    times = {}
    for layer, (x, w) in zip(layers, arrays):
        call = conv[layer.n_spatial]
        start = clock()
        out = call(x, w, n_threads=threads, **layer.kwargs)
        first = clock() - start
        steady = float("inf")
        for _ in range(5):
            start = clock()
            call(x, w, out=out, n_threads=threads, **layer.kwargs)
            steady = min(steady, clock() - start)
        times[layer.name] = (first, steady)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--processes", type=int, default=1,
                        help="fresh processes to measure in; each time is the best over them")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="thread: the calling thread's CPU time (page faults included), "
                             "which other load on a shared machine barely changes; needs "
                             "--threads 1, where all the work runs on that thread")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clock == "thread" and args.threads != 1:
        parser.error("--clock thread needs --threads 1")
    if args.json:
        clock = time.thread_time if args.clock == "thread" else time.perf_counter
        print(json.dumps(measure(args.model, args.threads, clock)))
        return
    runs = []
    for _ in range(args.processes):
        command = [sys.executable, __file__, "--json", "--model", args.model,
                   "--threads", str(args.threads), "--clock", args.clock]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"the measuring process failed:\n{result.stderr}")
        runs.append(json.loads(result.stdout))
    worst = 0.0
    print(f"{'layer':<26} {'first ms':>9} {'steady ms':>10} {'ratio':>6}")
    for name in runs[0]:
        first = min(run[name][0] for run in runs)
        steady = min(run[name][1] for run in runs)
        worst = max(worst, first / steady)
        print(f"{name:<26} {first * 1e3:>9.2f} {steady * 1e3:>10.2f} {first / steady:>6.2f}")
    print(f"worst first/steady: {worst:.2f}")


if __name__ == "__main__":
    main()
