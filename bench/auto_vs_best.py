"""Is ``auto`` as fast as the best algorithm named explicitly, on every benchmark layer?

    python bench/auto_vs_best.py --models resnet50,mobilenet_v2 --threads 2 --tune-first

With ``--tune-first``, another process first tunes every layer (``python -m pyconvfast tune``),
as a user who pre-warms the cache would, so that this one measures the steady state. For each
layer, plans every usable algorithm and ``auto`` (tuned on first use, so run it on a
warm cache to see the steady state, or on a cold one to include tuning), then times the plans in
interleaved rounds: one call of each per round, in a shuffled order, ``--rounds`` rounds.

The figure per layer is a paired one. In each round, ``auto``'s time is divided by each other
plan's time *in the same round*, milliseconds apart; a contender's ratio is the median of those
per-round ratios, and ``auto/best`` is the largest of them (the contender ``auto`` trails most).
On a shared machine whose speed drifts by tens of percent over seconds, and whose fastest calls
come in rare lucky moments, this is a far steadier estimate than the ratio of each plan's best
call: the drift hits both calls of a pair alike, and a median ignores the lucky and unlucky
tails. The column ``q1-q3`` gives the quartiles of the per-round ratios against the best
contender, to show how wide the noise was.

An ``auto`` plan's rounds count once it has settled (its first calls may time close finalists in
turn: ``Plan.settled``), and the rounds go on until it has made :data:`MIN_AUTO_CALLS` such
calls. A contender more than :data:`OUT_OF_THE_RACE` times slower than the fastest on a first
timed call stays out of the rounds. With ``--passes``, the sweep is repeated, every plan made
anew (so ``auto`` meets each layer as more than one fresh process would: its picks are shown
as "a/b" where they differed) and the per-round ratios of all passes are pooled. Prints the
worst ratio at the end, and the ``explain()`` of ``auto``'s plan on layers above
:data:`EXPLAIN_ABOVE`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._models import MODELS, model_layers


OUT_OF_THE_RACE = 3.0
# Rounds go on until the auto plan has made this many calls once settled.
MIN_AUTO_CALLS = 5
# Layers where auto is this much slower than the best get its plan's explain() at the end.
EXPLAIN_ABOVE = 1.10


def time_layer(layer, threads, rounds, rng, ratios):
    """Plan every usable algorithm and ``auto`` for ``layer`` and time them in shuffled
    interleaved rounds; append to ``ratios[name]`` auto's time over ``name``'s in each round
    where auto's plan had settled. Returns the ``auto`` plan."""
    x = rng.standard_normal(layer.x_shape).astype(np.float32)
    w = rng.standard_normal(layer.w_shape).astype(np.float32)
    plans = {}
    for name in pcf.list_algorithms(x, w, **layer.kwargs) + ["auto"]:
        plan = pcf.plan(x.shape, w, algorithm=name, n_threads=threads, **layer.kwargs)
        plans[name] = (plan, plan(x))
    first = {name: _timed_call(plan, x, out) for name, (plan, out) in plans.items()}
    # A contender several times slower than the fastest cannot be the best, and some disturb the
    # others for a while after each call (fft on a small dilated layer took 70x direct's time,
    # and NumPy's BLAS threads then spun for 0.1 s: the next direct calls ran 2x slow): it stays
    # out of the rounds.
    fastest = min(first.values())
    names = [name for name in plans if name == "auto" or first[name] <= OUT_OF_THE_RACE * fastest]
    auto_plan = plans["auto"][0]
    round_index = auto_counted = 0
    while round_index < rounds or auto_counted < MIN_AUTO_CALLS:
        round_index += 1
        settled = auto_plan.settled  # a plan settles during a call: judge the round from its start
        rng.shuffle(names)  # no contender always runs right after the same other one
        seconds = {name: _timed_call(plans[name][0], x, plans[name][1]) for name in names}
        if settled:
            auto_counted += 1
            for name in names:
                if name != "auto":
                    ratios.setdefault(name, []).append(seconds["auto"] / seconds[name])
    return auto_plan


def tune_in_another_process(layers, threads):
    """Run ``python -m pyconvfast tune`` on ``layers``, written to a temporary shapes file."""
    specs = [{"name": f"{model}:{layer.name}", "x_shape": layer.x_shape,
              "w_shape": layer.w_shape, **layer.kwargs} for model, layer in layers]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "layers.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(specs, handle)  # tuples become lists, which the tune command reads back
        subprocess.run([sys.executable, "-m", "pyconvfast", "tune", path,
                        "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL)


def _timed_call(plan, x, out):
    start = time.perf_counter()
    plan(x, out=out)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--passes", type=int, default=1,
                        help="sweep all layers this many times with fresh plans, pooling the "
                             "per-round ratios of all passes (a machine whose speed drifts for "
                             "seconds at a time then meets every layer in more than one state)")
    parser.add_argument("--tune-first", action="store_true",
                        help="tune every layer in another process first (the steady state)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    layers = [(model, layer) for model in args.models.split(",") for layer in model_layers(model)]
    if args.tune_first:
        tune_in_another_process(layers, args.threads)
    ratios = {index: {} for index in range(len(layers))}
    auto_picks = {index: [] for index in range(len(layers))}  # per pass: (algorithm, explain)
    for _ in range(args.passes):
        for index, (model, layer) in enumerate(layers):
            plan = time_layer(layer, args.threads, args.rounds, rng, ratios[index])
            auto_picks[index].append((plan.algorithm, plan.explain()))
    worst, slow = 0.0, []
    print(f"{'model:layer':<36} {'auto picks':>18} {'best explicit':>18} {'auto/best':>9} "
          f"{'q1-q3':>11}")
    for index, (model, layer) in enumerate(layers):
        medians = {name: float(np.median(values)) for name, values in ratios[index].items()}
        best = max(medians, key=medians.get)
        ratio = medians[best]
        q1, q3 = np.percentile(ratios[index][best], [25, 75])
        worst = max(worst, ratio)
        picks = "/".join(dict.fromkeys(algorithm for algorithm, _ in auto_picks[index]))
        print(f"{model + ':' + layer.name:<36} {picks:>18} {best:>18} {ratio:>9.2f} "
              f"{q1:>5.2f}-{q3:<5.2f}")
        if ratio > EXPLAIN_ABOVE:
            slow.append((model, layer, auto_picks[index][-1][1]))
    print(f"worst auto/best: {worst:.2f}")
    for model, layer, explanation in slow:
        print(f"\n{model}:{layer.name}, auto's plan in the last pass:\n{explanation}")


if __name__ == "__main__":
    main()
