"""``algorithm="auto"``: choose by timing the usable candidates, remember the choice.

The tuner knows nothing of files: it asks :func:`pyconvfast.tuning.store.get_cache` for an earlier
choice and hands it new ones. What it does on a miss follows ``PYCONVFAST_TUNE``:

- ``measure`` (default): time every usable algorithm with its default parameters;
- ``exhaustive``: also every parameter set of each algorithm's ``param_space``;
- ``estimate``: the heuristic, no timing (the cache is not consulted either);
- ``off``: the heuristic, and no file is touched.

Timing (:mod:`pyconvfast.tuning.timing`) runs the real kernels on the caller's arrays, writing
into the caller's output (the call then overwrites it), the heuristic's pick first; a problem
of more than :data:`TIMING_FLOPS` operations is timed on a slice of itself.

Two choices come out of one measurement. A plain call prepares the weight (Winograd transform,
packing, sub-pixel kernels) on every call, so its choice minimizes run + prepare time; a
:func:`pyconvfast.plan` prepares once, so its choice minimizes the run alone. They differ where
a preparation is expensive, as the sub-pixel kernels of a transposed layer with a large kernel
and stride are (docs/guide/autotuning.rst has the figures).
"""

import dataclasses
import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from pyconvfast._algorithms import registry
from pyconvfast.tuning import heuristic
from pyconvfast._config import get_setting
# By name, so that a test can replace what the tuner calls (time_candidates).
from pyconvfast.tuning.timing import (
    BUDGET_S, decisive_times, prepared_bytes, scaled_timings, time_candidates, timed_prepare,
    timing_slice,
)

# Floating-point operations above which candidates are timed on a slice of the problem:
# tens of milliseconds per run at the kernels' speed on one or two cores.
TIMING_FLOPS = 4e9

logger = logging.getLogger("pyconvfast")


@dataclass(frozen=True)
class Choice:
    """The algorithm chosen for a problem, and how.

    Attributes
    ----------
    algorithm : str
    params : dict
        The kernel parameters (``{}``: its defaults).
    timings : dict of str to float
        Best seconds per run of each candidate timed, weight already prepared (empty when
        nothing was timed).
    source : {"measured", "cache", "heuristic", "requested"}
    prepare_timings : dict of str to float
        Seconds each timed algorithm took to prepare the weight.
    plan_algorithm, plan_params : str and dict, or None
        The choice for a plan, which prepares the weight once (None: the same as for a call).
    cold_timings : dict of str to float
        Best seconds per run of the finalists with the caches flushed before each run, which
        decided the choice.
    """

    algorithm: str
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    source: str = "heuristic"
    prepare_timings: dict = field(default_factory=dict)
    plan_algorithm: str | None = None
    plan_params: dict | None = None
    cold_timings: dict = field(default_factory=dict)

    def for_plan(self):
        """The Choice a plan runs: the fastest run, its weight prepared once."""
        if self.plan_algorithm is None or (self.plan_algorithm, self.plan_params) == (
                self.algorithm, self.params):
            return self
        return Choice(self.plan_algorithm, dict(self.plan_params or {}), self.timings,
                      self.source, self.prepare_timings, cold_timings=self.cold_timings)


def tune_mode():
    """The tuning effort: ``PYCONVFAST_TUNE`` or the ``tune`` setting (default ``"measure"``;
    see :mod:`pyconvfast._config`)."""
    return get_setting("tune")


def cache_key(problem, n_threads):
    """The key of a problem's choice: its exact geometry, dtype and layout, and the threads."""
    return f"{problem.key}|threads{n_threads}"


def candidate_label(name, params):
    """How a candidate is named in timings: ``im2col`` or ``im2col[max_chunk=256]``."""
    if not params:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]"


#: Choices remembered in the process (a choice with its timings is ~2 KB). Past this many, the
#: oldest remembered is forgotten: it costs one lookup in the tuning cache if it comes back.
CHOICES_MAX = 4096
_CHOICES: dict[object, Choice] = {}
_CHOICES_MUTEX = threading.Lock()
# Counts the changes to _CHOICES, so that what was resolved from a remembered choice (a plain
# call's remembered resolution, pyconvfast._api) can tell that it may be stale: a list, so that
# it is read and bumped in place.
_GENERATION = [0]


def generation():
    """A number that changes whenever a remembered choice is added, replaced or forgotten.

    Returns
    -------
    int
    """
    return _GENERATION[0]


def _remember(key, choice):
    """``_CHOICES[key] = choice``, the oldest dropped past :data:`CHOICES_MAX` (lookups stay a
    plain dict access; only this, after a miss, takes the lock)."""
    with _CHOICES_MUTEX:
        while len(_CHOICES) >= CHOICES_MAX:
            _CHOICES.pop(next(iter(_CHOICES)), None)
        _CHOICES[key] = choice
        _GENERATION[0] += 1


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
        choice = Choice(heuristic.choose(problem))
    else:
        from pyconvfast.tuning.store import get_cache

        cache = get_cache()
        key = cache_key(problem, n_threads)
        choice = _from_entry(problem, cache.lookup(key))
        if choice is None:
            choice = measure(problem, n_threads, x, weight, bias, out,
                             exhaustive=mode == "exhaustive")
            if logger.isEnabledFor(logging.INFO):
                logger.info("auto chose %s for %s (plans: %s); best times: %s",
                            candidate_label(choice.algorithm, choice.params), key,
                            choice.plan_algorithm, ", ".join(
                                f"{label} {seconds * 1e3:.3f} ms" for label, seconds in
                                sorted(choice.timings.items(), key=lambda kv: kv[1])))
            cache.store(key, {"algorithm": choice.algorithm, "params": choice.params,
                              "timings": choice.timings,
                              "prepare_timings": choice.prepare_timings,
                              "plan_algorithm": choice.plan_algorithm,
                              "plan_params": choice.plan_params,
                              "cold_timings": choice.cold_timings})
    _remember((problem, n_threads, mode), choice)
    return choice


def settle(problem, n_threads, mode, plan_choice):
    """Make ``plan_choice`` the plan's choice of the remembered Choice for ``problem``: what
    a plan's own first calls found faster than the tuner's plan pick, so that a plain call
    that has seen its weight before (and so runs the plan's choice) runs it too. In this
    process only: the tuning cache keeps what the tuner measured.

    Parameters
    ----------
    problem : ConvProblem or ConvTransposeProblem
    n_threads : int
    mode : str
        The tuning mode the plan was made under.
    plan_choice : Choice
    """
    remembered = _CHOICES.get((problem, n_threads, mode))
    if remembered is not None:
        _remember((problem, n_threads, mode), dataclasses.replace(
            remembered, plan_algorithm=plan_choice.algorithm,
            plan_params=dict(plan_choice.params)))


def forget():
    """Drop the choices this process remembers (after the cache was cleared or loaded)."""
    with _CHOICES_MUTEX:
        _CHOICES.clear()
        _GENERATION[0] += 1


def _from_entry(problem, entry):
    """A cached entry as a Choice, or None if it cannot be trusted for this problem."""
    if entry is None:
        return None
    name, params = entry.get("algorithm"), entry.get("params", {})
    plan_name, plan_params = entry.get("plan_algorithm"), entry.get("plan_params", {})
    if not _can_run(problem, name, params):
        return None
    if plan_name is not None and not _can_run(problem, plan_name, plan_params):
        return None  # (an entry from before plans had their own choice has no plan_algorithm)
    return Choice(name, dict(params), dict(entry.get("timings", {})), "cache",
                  dict(entry.get("prepare_timings", {})), plan_name,
                  None if plan_name is None else dict(plan_params),
                  dict(entry.get("cold_timings", {})))


def _can_run(problem, name, params):
    """Whether algorithm ``name`` with kernel parameters ``params`` can run ``problem``."""
    return (registry.can_run(name, problem) and isinstance(params, dict)
            and (not params or params in registry.get(name).param_space(problem)))


def labelled_candidates(problem, exhaustive):
    """``{label: (name, params)}`` for every candidate the tuner times in this mode (the
    heuristic's pick first; with ``exhaustive``, every parameter set too, each space starting
    with the defaults ``{}``)."""
    return {candidate_label(name, params): (name, params)
            for name, params in _candidates(problem, exhaustive)}


def _candidates(problem, exhaustive):
    first = heuristic.choose(problem)
    names = [first] + [name for name in registry.names(problem) if name != first]
    for name in names:
        spaces = registry.get(name).param_space(problem) if exhaustive else [{}]
        for params in spaces:
            yield name, params


def measure(problem, n_threads, x, weight, bias, out, exhaustive=False):
    """Time the candidates on the given arrays; the fastest become the Choice.

    Returns
    -------
    Choice
        With ``source="measured"``, the best run time of every candidate timed, each
        algorithm's preparation time, the fastest call (run + prepare) as ``algorithm`` and the
        fastest run as ``plan_algorithm``.
    """
    full_problem = problem
    problem, x, out = timing_slice(problem, x, out, TIMING_FLOPS)
    if problem is not full_problem:
        logger.info("tuning %s on a slice of it, %s (%.3g of %.3g GFLOP)", full_problem.key,
                    problem.key, problem.flops / 1e9, full_problem.flops / 1e9)
    candidates = {label: (name, params)
                  for label, (name, params) in labelled_candidates(problem, exhaustive).items()
                  if _can_run(full_problem, name, params)}
    prepared_weights, prepare_timings = {}, {}
    for name, _ in candidates.values():
        if name not in prepared_weights:
            prepared_weights[name], prepare_timings[name] = timed_prepare(
                registry.get(name), problem, weight)

    def run(label):
        name, params = candidates[label]
        registry.get(name).run(problem, x, prepared_weights[name], bias, out, n_threads, params)

    def prepare_time(label):
        return prepare_timings[candidates[label][0]]

    # A slice's run times scale to the whole problem by its share of the work; the weight
    # preparation is of the whole weight already, so it is scaled down to compare with them.
    scale = full_problem.flops / problem.flops if problem.flops else 1.0
    warm, cold = time_candidates(list(candidates), run, BUDGET_S * (4 if exhaustive else 1),
                                 lambda label: prepare_time(label) / scale,
                                 prime=lambda: np.add.reduce(x, axis=None))
    if scale != 1.0:
        warm, cold = scaled_timings(warm, cold, scale)
    decisive = decisive_times(warm, cold, {
        label: prepared_bytes(prepared_weights[name]) for label, (name, _) in candidates.items()})
    plan_pick = candidates[min(decisive, key=decisive.get)]
    call_pick = candidates[min(decisive, key=lambda label: decisive[label] + prepare_time(label))]
    return Choice(call_pick[0], dict(call_pick[1]), warm, "measured", prepare_timings,
                  plan_pick[0], dict(plan_pick[1]), cold)


def choose_among(key, names, run, weight_bytes, prime=None):
    """Tune an operation outside the registry: the fastest of ``names``, cached under ``key``.

    Used by :func:`pyconvfast.resize_conv2d`, whose phase convolutions run on one of a few
    kernels. ``PYCONVFAST_TUNE`` applies as for ``conv2d``: ``off`` and ``estimate`` take
    ``names[0]`` without timing or touching the cache.

    Parameters
    ----------
    key : str
        The cache key: the operation and its exact geometry, dtype, layout and threads.
    names : sequence of str
        The candidates, the default first.
    run : callable
        ``run(name)`` runs the whole operation once with that candidate.
    weight_bytes : int
        The size of the weights one run reads, whichever the candidate (see
        :func:`decisive_times`).
    prime : callable, optional
        Reads the operation's input back into cache (see :func:`time_candidates`).

    Returns
    -------
    str
        The chosen name.
    """
    mode = tune_mode()
    remembered = _CHOICES.get((key, mode))
    if remembered is not None:
        return remembered
    if mode in ("off", "estimate"):
        name = names[0]
    else:
        from pyconvfast.tuning.store import get_cache

        cache = get_cache()
        entry = cache.lookup(key)
        name = entry.get("algorithm") if entry else None
        if name not in names:
            warm, cold = time_candidates(list(names), run, prime=prime)
            decisive = decisive_times(warm, cold, dict.fromkeys(names, weight_bytes))
            name = min(decisive, key=decisive.get)
            cache.store(key, {"algorithm": name, "params": {}, "timings": warm,
                              "cold_timings": cold})
    _remember((key, mode), name)
    return name


