"""The Python-side cost of a call on a cached problem: ``conv2d`` and a plan over the raw kernel.

    python bench/overhead.py

On problems so small that the kernel takes a few microseconds (1x8x8x8 with a 3x3 and with a
1x1 weight, 8 output channels), times the registered kernel called directly with prepared
arguments (``Algorithm.run``), ``pcf.conv2d`` and a :func:`pyconvfast.plan` call, and prints
the overhead of each over the kernel, per algorithm (a dense random weight); then ``conv2d``
with ``algorithm="auto"`` after its choice is made, over the kernel that choice runs, and an
``auto`` call with a rank-1 weight (a box filter), which is recognized on every call. The
targets (issue 13): a plan call at most 3 us over its kernel, a plain call at most 8 us.

The calls are timed in interleaved rounds of :data:`CALLS` calls each, and each overhead is
the median over :data:`ROUNDS` rounds of the difference *within* a round: on a shared machine
whose speed drifts from second to second, the difference of two separate best times moved by
10 microseconds from one run to the next. The times are the calling thread's CPU time
(``time.thread_time``; every call runs on one thread): on a machine loaded by other
processes, wall-clock times also count the slices the scheduler gives them, which doubled
every figure from one minute to the next.
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
    """Median CPU seconds per call of each of ``calls``, and the median per-round difference
    of each from the first, over interleaved rounds."""
    for call in calls:
        call()
    per_round = np.empty((ROUNDS, len(calls)))
    for index in range(ROUNDS):
        for position, call in enumerate(calls):
            start = time.thread_time()
            for _ in range(CALLS):
                call()
            per_round[index, position] = (time.thread_time() - start) / CALLS
    return np.median(per_round, axis=0), np.median(per_round - per_round[:, :1], axis=0)


def overheads(kernel_size):
    """Print the per-algorithm and ``auto`` overheads on a 1x8x8x8 input, ``kernel_size``
    square kernel, 8 output channels, "same" padding, one thread."""
    rng = np.random.default_rng(0)
    padding = kernel_size // 2
    x = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    # dense: np.ones would be rank-1
    w = rng.standard_normal((8, 8, kernel_size, kernel_size)).astype(np.float32)
    out = np.empty((1, 8, 8, 8), np.float32)
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=padding)
    x5, out5 = _api._channels_first_5d(x, problem), _api._channels_first_5d(out, problem)
    w5 = _api.weight_5d(w, problem)

    def kernel_of(name, params=None):
        algorithm = registry.get(name)
        prepared = algorithm.prepare(problem, w5)
        return lambda: algorithm.run(problem, x5, prepared, None, out5, 1, params or {})

    print(f"1x8x8x8, weight 8x8x{kernel_size}x{kernel_size}, padding {padding}")
    print(f"{'algorithm':<20} {'kernel us':>10} {'conv2d us':>10} {'overhead':>9} "
          f"{'plan us':>8} {'overhead':>9}")
    for name in pcf.list_algorithms(x, w, padding=padding):
        plan = pcf.plan(x.shape, w, padding=padding, algorithm=name, n_threads=1)
        (kernel, called, planned), (_, called_over, planned_over) = paired([
            kernel_of(name),
            lambda name=name: pcf.conv2d(x, w, padding=padding, algorithm=name, out=out,
                                         n_threads=1),
            lambda plan=plan: plan(x, out=out)])
        print(f"{name:<20} {kernel * 1e6:>10.2f} {called * 1e6:>10.2f} {called_over * 1e6:>9.2f} "
              f"{planned * 1e6:>8.2f} {planned_over * 1e6:>9.2f}")
    pcf.conv2d(x, w, padding=padding, out=out, n_threads=1)  # tunes, or reads the cache
    # what that call runs from its second call on (the weight seen before: the plan's choice)
    choice = _autotune.choose(problem, 1, x5, w5, None, out5).for_plan()
    plan = pcf.plan(x.shape, w, padding=padding, n_threads=1)
    while not plan.settled:
        plan(x, out=out)
    box = np.ones_like(w)
    pcf.conv2d(x, box, padding=padding, out=out, n_threads=1)
    (kernel, auto, planned, box_auto), (_, auto_over, planned_over, _) = paired([
        kernel_of(choice.algorithm, choice.params),
        lambda: pcf.conv2d(x, w, padding=padding, out=out, n_threads=1),
        lambda: plan(x, out=out),
        lambda: pcf.conv2d(x, box, padding=padding, out=out, n_threads=1)])
    label = "auto -> " + choice.algorithm
    if plan.algorithm != choice.algorithm:
        label += f" (plan {plan.algorithm})"
    print(f"{label:<20} {kernel * 1e6:>10.2f} {auto * 1e6:>10.2f} {auto_over * 1e6:>9.2f} "
          f"{planned * 1e6:>8.2f} {planned_over * 1e6:>9.2f}")
    if kernel_size >= 3:
        print(f"{'rank-1 auto':<20} {'':>10} {box_auto * 1e6:>10.2f}")


def main():
    for kernel_size in (3, 1):
        overheads(kernel_size)
        print()


if __name__ == "__main__":
    main()
