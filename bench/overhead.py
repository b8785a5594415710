"""The Python-side cost of a call on a cached problem: ``conv2d`` and a plan over the raw kernel.

    python bench/overhead.py

On a problem so small that the kernel takes a few microseconds, times (best of 7 rounds of
20,000 calls) the registered kernel called directly with prepared arguments, ``pcf.conv2d`` with
``algorithm="auto"`` after its choice is made, and a :func:`pyconvfast.plan` call, and prints the
overhead of each over the kernel, per algorithm (a dense random weight), and the time of an
``auto`` call with a rank-1 weight (a box filter), which is recognized on every call.
"""

import time

import numpy as np

import pyconvfast as pcf
from pyconvfast import _api, _registry


def per_call(call, calls=20_000, rounds=7):
    call()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)  # dense: np.ones would be rank-1
    out = np.empty((1, 4, 8, 8), np.float32)
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=1)
    x5, out5 = _api._channels_first_5d(x, problem), _api._channels_first_5d(out, problem)
    print(f"{'algorithm':<20} {'kernel us':>10} {'conv2d us':>10} {'overhead':>9} "
          f"{'plan us':>8} {'overhead':>9}")
    kernels = {}
    for name in pcf.list_algorithms(x, w, padding=1):
        algorithm = _registry.get(name)
        prepared = algorithm.prepare(problem, _api.weight_5d(w, problem))
        kernel = kernels[name] = per_call(
            lambda: algorithm.run(problem, x5, prepared, None, out5, 1, {}))
        plan = pcf.plan(x.shape, w, padding=1, algorithm=name, n_threads=1)
        planned = per_call(lambda: plan(x, out=out))
        called = per_call(lambda: pcf.conv2d(x, w, padding=1, algorithm=name, out=out,
                                             n_threads=1))
        print(f"{name:<20} {kernel * 1e6:>10.2f} {called * 1e6:>10.2f} "
              f"{(called - kernel) * 1e6:>9.2f} {planned * 1e6:>8.2f} "
              f"{(planned - kernel) * 1e6:>9.2f}")
    chosen = pcf.plan(x.shape, w, padding=1, n_threads=1).algorithm  # tunes or reads the cache
    auto = per_call(lambda: pcf.conv2d(x, w, padding=1, out=out, n_threads=1))
    print(f"{'auto -> ' + chosen:<20} {kernels[chosen] * 1e6:>10.2f} {auto * 1e6:>10.2f} "
          f"{(auto - kernels[chosen]) * 1e6:>9.2f}")
    # A rank-1 kernel (a box filter) is recognized on every call, from a cache by content.
    box = np.ones_like(w)
    chosen = pcf.plan(x.shape, box, padding=1, n_threads=1).algorithm
    auto = per_call(lambda: pcf.conv2d(x, box, padding=1, out=out, n_threads=1))
    print(f"{'rank-1 auto -> ' + chosen:<20} {'':>10} {auto * 1e6:>10.2f}")


if __name__ == "__main__":
    main()
