"""``algorithm="auto"``: choose by timing the usable candidates, remember the choice.

The tuner knows nothing of files: it asks :func:`pyconvfast._cache.get_cache` for an earlier
choice and hands it new ones. What it does on a miss follows ``PYCONVFAST_TUNE``:

- ``measure`` (default): time every usable algorithm with its default parameters;
- ``exhaustive``: also every parameter set of each algorithm's ``param_space``;
- ``estimate``: the heuristic, no timing (the cache is not consulted either);
- ``off``: the heuristic, and no file is touched.

Timing runs the real kernels on the caller's arrays, writing into the caller's output (the call
then overwrites it). The heuristic's pick runs first, so that a clearly losing candidate (first
run more than :data:`CLEARLY_LOSING` times the best so far) is dropped after one run; the others
get up to :data:`REPEATS` runs within :data:`BUDGET_S` seconds, and the minimum counts.
"""

import os
import time
from dataclasses import dataclass, field

from pyconvfast import _heuristic, _registry

MODES = ("measure", "estimate", "exhaustive", "off")
REPEATS = 5
BUDGET_S = 1.0
CLEARLY_LOSING = 2.0


@dataclass(frozen=True)
class Choice:
    """The algorithm chosen for a problem, and how.

    Attributes
    ----------
    algorithm : str
    params : dict
        The kernel parameters (``{}``: its defaults).
    timings : dict of str to float
        Best seconds per candidate timed (empty when nothing was timed).
    source : {"measured", "cache", "heuristic", "requested"}
    """

    algorithm: str
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    source: str = "heuristic"


def tune_mode():
    """The tuning effort set by ``PYCONVFAST_TUNE`` (default ``"measure"``)."""
    mode = os.environ.get("PYCONVFAST_TUNE", "measure")
    if mode not in MODES:
        raise ValueError(f"PYCONVFAST_TUNE must be one of {MODES}, got {mode!r}")
    return mode


def cache_key(problem, n_threads):
    """The key of a problem's choice: its exact geometry, dtype and layout, and the threads."""
    return f"{problem.key}|threads{n_threads}"


def candidate_label(name, params):
    """How a candidate is named in timings: ``im2col`` or ``im2col[max_chunk=256]``."""
    if not params:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]"


_CHOICES = {}


def choose(problem, n_threads, x, weight, bias, out):
    """The :class:`Choice` for ``problem`` on ``n_threads`` threads.

    Parameters
    ----------
    problem : ConvProblem
    n_threads : int
    x, weight, bias, out
        The call's 5-D views (weight not yet prepared); used only when timing.
    """
    mode = tune_mode()
    remembered = _CHOICES.get((problem, n_threads, mode))
    if remembered is not None:
        return remembered
    if mode in ("off", "estimate"):
        choice = Choice(_heuristic.choose(problem))
    else:
        from pyconvfast._cache import get_cache

        cache = get_cache()
        key = cache_key(problem, n_threads)
        choice = _from_entry(problem, cache.lookup(key))
        if choice is None:
            choice = measure(problem, n_threads, x, weight, bias, out,
                             exhaustive=mode == "exhaustive")
            cache.store(key, {"algorithm": choice.algorithm, "params": choice.params,
                              "timings": choice.timings})
    _CHOICES[(problem, n_threads, mode)] = choice
    return choice


def forget():
    """Drop the choices this process remembers (after the cache was cleared or loaded)."""
    _CHOICES.clear()


def _from_entry(problem, entry):
    """A cached entry as a Choice, or None if it cannot be trusted for this problem."""
    if entry is None:
        return None
    name, params = entry.get("algorithm"), entry.get("params", {})
    if not _registry.can_run(name, problem) or not isinstance(params, dict):
        return None
    if params and params not in _registry.get(name).param_space(problem):
        return None
    return Choice(name, dict(params), dict(entry.get("timings", {})), "cache")


def _candidates(problem, exhaustive):
    first = _heuristic.choose(problem)
    names = [first] + [name for name in _registry.names(problem) if name != first]
    for name in names:
        spaces = _registry.get(name).param_space(problem) if exhaustive else [{}]
        for params in spaces:
            yield name, params


def measure(problem, n_threads, x, weight, bias, out, exhaustive=False):
    """Time the candidates on the given arrays; the fastest becomes the Choice.

    Returns
    -------
    Choice
        With ``source="measured"`` and the best time of every candidate timed.
    """
    timings = {}
    best_time, best = float("inf"), None
    deadline = time.perf_counter() + BUDGET_S * (4 if exhaustive else 1)
    prepared_weights = {}
    for name, params in _candidates(problem, exhaustive):
        algorithm = _registry.get(name)
        if name not in prepared_weights:
            prepared_weights[name] = algorithm.prepare(problem, weight)
        label = candidate_label(name, params)
        # Warm-up, untimed: a kernel's first run in a process pays one-time costs (page faults on
        # fresh buffers, lazily built tables) that would otherwise drop a fast candidate as
        # "clearly losing" after one cold run (measured: depthwise 8 ms cold, 0.3 ms warm).
        # Past the budget, one timed run per candidate is all there is.
        if time.perf_counter() < deadline:
            algorithm.run(problem, x, prepared_weights[name], bias, out, n_threads, params)
        fastest = float("inf")
        for repeat in range(REPEATS):
            start = time.perf_counter()
            algorithm.run(problem, x, prepared_weights[name], bias, out, n_threads, params)
            fastest = min(fastest, time.perf_counter() - start)
            if fastest > CLEARLY_LOSING * best_time or time.perf_counter() > deadline:
                break
        timings[label] = fastest
        if fastest < best_time:
            best_time, best = fastest, (name, params)
    return Choice(best[0], dict(best[1]), timings, "measured")
