"""The Python-side cost of a call on a cached problem: ``conv2d`` and a plan over the raw kernel.

    python bench/overhead.py

On a problem so small that the kernel takes a few microseconds, times the registered kernel
called directly with prepared arguments, ``pcf.conv2d`` and a :func:`pyconvfast.plan` call, and
prints the overhead of each over the kernel, per algorithm (a dense random weight); then
``conv2d`` with ``algorithm="auto"`` after its choice is made, over the kernel that choice runs
(a plain call may choose otherwise than a plan: it pays the weight's preparation on every
call), and an ``auto`` call with a rank-1 weight (a box filter), which is recognized on every
call. The three are timed in interleaved rounds of :data:`CALLS` calls each, and each overhead
is the median over :data:`ROUNDS` rounds of the difference *within* a round: on a shared
machine whose speed drifts from second to second, the difference of two separate best times
moved by 10 microseconds from one run to the next.
"""

import time

import numpy as np

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast.tuning import autotune as _autotune

CALLS = 2_000
ROUNDS = 31


def paired(calls):
    """Median seconds per call of each of ``calls``, and the median per-round difference of
    each from the first, over interleaved rounds."""
    for call in calls:
        call()
    per_round = np.empty((ROUNDS, len(calls)))
    for index in range(ROUNDS):
        for position, call in enumerate(calls):
            start = time.perf_counter()
            for _ in range(CALLS):
                call()
            per_round[index, position] = (time.perf_counter() - start) / CALLS
    return np.median(per_round, axis=0), np.median(per_round - per_round[:, :1], axis=0)


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)  # dense: np.ones would be rank-1
    out = np.empty((1, 4, 8, 8), np.float32)
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=1)
    x5, out5 = _api._channels_first_5d(x, problem), _api._channels_first_5d(out, problem)
    w5 = _api.weight_5d(w, problem)

    def kernel_of(name, params=None):
        algorithm = registry.get(name)
        prepared = algorithm.prepare(problem, w5)
        return lambda: algorithm.run(problem, x5, prepared, None, out5, 1, params or {})

    print(f"{'algorithm':<20} {'kernel us':>10} {'conv2d us':>10} {'overhead':>9} "
          f"{'plan us':>8} {'overhead':>9}")
    for name in pcf.list_algorithms(x, w, padding=1):
        plan = pcf.plan(x.shape, w, padding=1, algorithm=name, n_threads=1)
        (kernel, called, planned), (_, called_over, planned_over) = paired([
            kernel_of(name),
            lambda name=name: pcf.conv2d(x, w, padding=1, algorithm=name, out=out, n_threads=1),
            lambda plan=plan: plan(x, out=out)])
        print(f"{name:<20} {kernel * 1e6:>10.2f} {called * 1e6:>10.2f} {called_over * 1e6:>9.2f} "
              f"{planned * 1e6:>8.2f} {planned_over * 1e6:>9.2f}")
    pcf.conv2d(x, w, padding=1, out=out, n_threads=1)  # tunes, or reads the cache
    choice = _autotune.choose(problem, 1, x5, w5, None, out5)  # what that call runs
    box = np.ones_like(w)
    pcf.conv2d(x, box, padding=1, out=out, n_threads=1)
    (kernel, auto, box_auto), (_, auto_over, _) = paired([
        kernel_of(choice.algorithm, choice.params),
        lambda: pcf.conv2d(x, w, padding=1, out=out, n_threads=1),
        lambda: pcf.conv2d(x, box, padding=1, out=out, n_threads=1)])
    print(f"{'auto -> ' + choice.algorithm:<20} {kernel * 1e6:>10.2f} {auto * 1e6:>10.2f} "
          f"{auto_over * 1e6:>9.2f}")
    print(f"{'rank-1 auto':<20} {'':>10} {box_auto * 1e6:>10.2f}")


if __name__ == "__main__":
    main()
