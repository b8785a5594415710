"""Is ``auto`` as fast as the best algorithm named explicitly, on every benchmark layer?

    python bench/auto_vs_best.py --models resnet50,mobilenet_v2 --threads 2

For each layer, plans every usable algorithm and ``auto`` (tuned on first use, so run it on a
warm cache to see the steady state, or on a cold one to include tuning), then times the plans
in interleaved rounds (one call of each per round in a shuffled order, ``--rounds`` rounds,
each plan's best call kept), so that a burst of load on the machine hits every contender alike,
and prints ``auto``'s time over the best explicit one. An ``auto`` plan's calls count once it
has settled (its first calls may time close finalists in turn: ``Plan.settled``), and the rounds
go on until it has made :data:`MIN_AUTO_CALLS` such calls. A contender more than
:data:`OUT_OF_THE_RACE` times slower than the fastest on a first timed call stays out of the
rounds. With ``--passes``, the sweep is repeated and each plan keeps its best call over all
passes. Prints the worst ratio at the end.
"""

import argparse
import os
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._models import MODELS, model_layers


OUT_OF_THE_RACE = 3.0
# Rounds go on until the auto plan has made this many calls once settled.
MIN_AUTO_CALLS = 5
# Layers where auto is this much slower than the best get its plan's explain() at the end.
EXPLAIN_ABOVE = 1.10


def time_layer(layer, threads, rounds, rng, best_of):
    """Plan every usable algorithm and ``auto`` for ``layer``, time them in shuffled interleaved
    rounds and lower ``best_of[name]`` to each plan's best call; the ``auto`` plan."""
    x = rng.standard_normal(layer.x_shape).astype(np.float32)
    w = rng.standard_normal(layer.w_shape).astype(np.float32)
    plans = {}
    for name in pcf.list_algorithms(x, w, **layer.kwargs) + ["auto"]:
        plan = pcf.plan(x.shape, w, algorithm=name, n_threads=threads, **layer.kwargs)
        plans[name] = (plan, plan(x))
    first = {}
    for name, (plan, out) in plans.items():  # one timed call each, to find the race
        first[name] = _timed_call(plan, x, out, name, best_of)
    # A contender several times slower than the fastest cannot be the best, and some disturb the
    # others for a while after each call (fft on a small dilated layer took 70x direct's time,
    # and NumPy's BLAS threads then spun for 0.1 s: the next direct calls ran 2x slow): it keeps
    # its first time and stays out of the rounds.
    fastest = min(first.values())
    names = [name for name in plans if name == "auto" or first[name] <= OUT_OF_THE_RACE * fastest]
    auto_plan = plans["auto"][0]
    round_index = auto_counted = 0
    while round_index < rounds or auto_counted < MIN_AUTO_CALLS:
        round_index += 1
        rng.shuffle(names)  # no contender always runs right after the same other one
        for name in names:
            plan, out = plans[name]
            auto_counted += plan is auto_plan and plan.settled
            _timed_call(plan, x, out, name, best_of)
    return auto_plan


def _timed_call(plan, x, out, name, best_of):
    """Call ``plan`` once; its time, which lowers ``best_of[name]`` if the plan was settled
    (an auto plan's first calls time its close finalists in turn: not its steady state)."""
    settled = plan.settled
    start = time.perf_counter()
    plan(x, out=out)
    seconds = time.perf_counter() - start
    if settled:
        best_of[name] = min(best_of.get(name, float("inf")), seconds)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--passes", type=int, default=1,
                        help="sweep all layers this many times, keeping each plan's best call "
                             "over all passes (a machine whose speed drifts for seconds at a "
                             "time then meets every layer in more than one state)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    layers = [(model, layer) for model in args.models.split(",") for layer in model_layers(model)]
    best_of = {index: {} for index in range(len(layers))}
    auto_picks = {index: [] for index in range(len(layers))}  # per pass: (algorithm, explain)
    for _ in range(args.passes):
        for index, (model, layer) in enumerate(layers):
            plan = time_layer(layer, args.threads, args.rounds, rng, best_of[index])
            auto_picks[index].append((plan.algorithm, plan.explain()))
    worst, slow = 0.0, []
    print(f"{'model:layer':<36} {'auto picks':>18} {'best explicit':>18} {'auto/best':>9}")
    for index, (model, layer) in enumerate(layers):
        times = dict(best_of[index])
        auto_time = times.pop("auto")
        best = min(times, key=times.get)
        ratio = auto_time / times[best]
        worst = max(worst, ratio)
        # Each pass plans anew: "a/b" when the auto plans of the passes settled differently.
        picks = "/".join(dict.fromkeys(algorithm for algorithm, _ in auto_picks[index]))
        print(f"{model + ':' + layer.name:<36} {picks:>18} {best:>18} {ratio:>9.2f}")
        if ratio > EXPLAIN_ABOVE:
            slow.append((model, layer, auto_picks[index][-1][1]))
    print(f"worst auto/best: {worst:.2f}")
    for model, layer, explanation in slow:
        print(f"\n{model}:{layer.name}, auto's plan in the last pass:\n{explanation}")


if __name__ == "__main__":
    main()
