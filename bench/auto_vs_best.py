"""Is ``auto`` as fast as the best algorithm named explicitly, on every benchmark layer?

    python bench/auto_vs_best.py --models resnet50,mobilenet_v2 --threads 2

For each layer, plans every usable algorithm and ``auto`` (tuned on first use, so run it on a
warm cache to see the steady state, or on a cold one to include tuning), then times the plans
in interleaved rounds (one call of each per round in a shuffled order, ``--rounds`` rounds,
each plan's best call kept), so that a burst of load on the machine hits every contender alike,
and prints ``auto``'s time over the best explicit one. A contender more than
:data:`OUT_OF_THE_RACE` times slower than the fastest on a first timed call stays out of the
rounds. Prints the worst ratio at the end.
"""

import argparse
import os
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._models import MODELS, model_layers


OUT_OF_THE_RACE = 3.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    worst = 0.0
    print(f"{'model:layer':<36} {'auto picks':>18} {'best explicit':>18} {'auto/best':>9}")
    for model in args.models.split(","):
        for layer in model_layers(model):
            x = rng.standard_normal(layer.x_shape).astype(np.float32)
            w = rng.standard_normal(layer.w_shape).astype(np.float32)
            plans = {}
            for name in pcf.list_algorithms(x, w, **layer.kwargs) + ["auto"]:
                plan = pcf.plan(x.shape, w, algorithm=name, n_threads=args.threads,
                                **layer.kwargs)
                plans[name] = (plan, plan(x))
            best_of = dict.fromkeys(plans, float("inf"))
            for name, (plan, out) in plans.items():  # one timed call each, to find the race
                start = time.perf_counter()
                plan(x, out=out)
                best_of[name] = time.perf_counter() - start
            # A contender several times slower than the fastest cannot be the best, and some
            # disturb the others for a while after each call (fft on a small dilated layer
            # takes 70x direct's time and frees hundreds of MB: the next direct calls ran 2x
            # slow): it keeps its single time and stays out of the rounds.
            fastest = min(best_of.values())
            names = [name for name in plans if name == "auto"
                     or best_of[name] <= OUT_OF_THE_RACE * fastest]
            for _ in range(args.rounds):
                rng.shuffle(names)  # no contender always runs right after the same other one
                for name in names:
                    plan, out = plans[name]
                    start = time.perf_counter()
                    plan(x, out=out)
                    best_of[name] = min(best_of[name], time.perf_counter() - start)
            times = {name: (best_of[name], plan.algorithm) for name, (plan, _) in plans.items()}
            auto_time, picked = times.pop("auto")
            best = min(times, key=lambda name: times[name][0])
            ratio = auto_time / times[best][0]
            worst = max(worst, ratio)
            print(f"{model + ':' + layer.name:<36} {picked:>18} {best:>18} {ratio:>9.2f}")
    print(f"worst auto/best: {worst:.2f}")


if __name__ == "__main__":
    main()
