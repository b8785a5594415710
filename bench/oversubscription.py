"""OpenMP threads x BLAS threads: what oversubscription costs, and what the policy avoids.

    python bench/oversubscription.py --threads 2 --repeats 7

pyconvfast's kernels that call BLAS (im2col, its 1x1 path, Winograd) run ``n_threads`` OpenMP
threads, each calling BLAS, and limit SciPy's BLAS to one thread for the call. This script
times, on a 3x3 and a 1x1 ResNet-50 layer (float32, batch 1 and 8):

* ``policy``: ``pcf.conv2d`` as shipped (BLAS limited to 1 inside our threads);
* ``blas N``: the same kernel with BLAS left at ``--threads`` threads inside each of our
  threads (N x N threads on the cores);
* ``two python threads``: two Python threads each running ``policy`` at once, against the
  same two calls run one after the other (``sequential``): over 1 means running them at once
  costs more than running them in turn.

Each time is the best of ``--repeats`` interleaved runs.
"""

import argparse
import os
import threading
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast._core.threads import blas_threads

LAYERS = {  # name: (x shape, w shape, padding)
    "3x3 64ch 56x56": ((1, 64, 56, 56), (64, 64, 3, 3), 1),
    "3x3 64ch 56x56 N=8": ((8, 64, 56, 56), (64, 64, 3, 3), 1),
    "1x1 256->64 56x56": ((1, 256, 56, 56), (64, 256, 1, 1), 0),
    "1x1 256->64 56x56 N=8": ((8, 256, 56, 56), (64, 256, 1, 1), 0),
}


def _best(calls, repeats):
    best = dict.fromkeys(calls, float("inf"))
    for call in calls.values():
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _calls(x_shape, w_shape, padding, threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    out = np.empty(pcf.conv_output_shape(x_shape, w_shape, padding=padding), np.float32)
    _, _, _, problem = _api.validated_arrays(2, x, w, None, {"padding": padding})
    im2col = registry.get("im2col")
    x5, o5 = _api._channels_first_5d(x, problem), _api._channels_first_5d(out, problem)
    prepared = im2col.prepare(problem, _api.weight_5d(w, problem))

    def policy():
        pcf.conv2d(x, w, padding=padding, algorithm="im2col", out=out, n_threads=threads)

    def blas_inside():
        # the kernel as shipped, but with BLAS's own threads left on inside ours
        saved = blas_threads.limit
        blas_threads.limit = lambda n: saved(threads)
        try:
            im2col.run(problem, x5, prepared, None, o5, threads, {})
        finally:
            blas_threads.limit = saved

    out2 = np.empty_like(out)

    def other():
        pcf.conv2d(x, w, padding=padding, algorithm="im2col", out=out2, n_threads=threads)

    def two_python_threads():
        worker = threading.Thread(target=other)
        worker.start()
        policy()
        worker.join()

    def sequential():
        policy()
        other()

    return {"policy": policy, f"blas {threads}": blas_inside,
            "sequential": sequential, "two python threads": two_python_threads}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    library = blas_threads._libraries[0]
    print(f"{args.threads} OpenMP threads, BLAS {library.internal_api} {library.version}; "
          f"ms, best of {args.repeats} (ratio)")
    for name, (x_shape, w_shape, padding) in LAYERS.items():
        best = _best(_calls(x_shape, w_shape, padding, args.threads), args.repeats)
        blas = f"blas {args.threads}"
        print(f"{name:<24} policy {best['policy'] * 1e3:7.2f}  {blas} "
              f"{best[blas] * 1e3:7.2f} ({best[blas] / best['policy']:.2f})  "
              f"sequential {best['sequential'] * 1e3:7.2f}  two python threads "
              f"{best['two python threads'] * 1e3:7.2f} "
              f"({best['two python threads'] / best['sequential']:.2f})")


if __name__ == "__main__":
    main()
