"""``algorithm="auto"``: choose by timing the usable candidates, remember the choice.

The tuner knows nothing of files: it asks :func:`pyconvfast.tuning.store.get_cache` for an earlier
choice and hands it new ones. What it does on a miss follows ``PYCONVFAST_TUNE``:

- ``measure`` (default): time every usable algorithm with its default parameters;
- ``exhaustive``: also every parameter set of each algorithm's ``param_space``;
- ``estimate``: the heuristic, no timing (the cache is not consulted either);
- ``off``: the heuristic, and no file is touched.

Timing runs the real kernels on the caller's arrays, writing into the caller's output (the call
then overwrites it). The heuristic's pick runs first, so that a clearly losing candidate (first
run more than :data:`CLEARLY_LOSING` times the best so far) is dropped after one run; the others
get up to :data:`REPEATS` runs within :data:`BUDGET_S` seconds, and the minimum counts. Then the
finalists (the two fastest runs, and the fastest call with its weight preparation) are timed
again in :data:`CONFIRM_ROUNDS` rounds within another half budget, each round after flushing the
caches and reading the input back (a network's previous layer has just written it), in
alternating order, each finalist once with its weight flushed and once more at once;
a weighted geometric mean of the two best times decides, the flushed time weighing more the
larger the candidate's prepared weight (:func:`decisive_times`). Timed back to back only, a
candidate keeps its prepared weight in cache, which a layer inside a network may not (see
:class:`_CacheFlush`); and close contenders differ by less than a burst of load lasts, so one
moment must not decide.

A large problem is timed on a representative slice of it (:func:`timing_slice`): the first
samples of the batch, and for one huge sample a block of its first outputs, about
:data:`TIMING_FLOPS` floating-point operations in all. Every candidate's run then costs tens of
milliseconds rather than up to a whole slow call, so the first call costs a small multiple of
the winner's time whatever the problem's size; the slice's times are scaled to the whole
(:func:`scaled_timings`) before they decide (a 174-GFLOP layer tuned every candidate to
completion before: 28 times its steady time). The algorithms' relative speed depends on the
geometry (channels, kernel, stride, padding), which the slice keeps, far more than on the
number of rows or samples. The ``pyconvfast`` logger says when a slice is timed.

Two choices come out of one measurement. A plain call prepares the weight (Winograd transform,
packing, sub-pixel kernels) on every call, so its choice minimizes run + prepare time; a
:func:`pyconvfast.plan` prepares once, so its choice minimizes the run alone. They differ where
a preparation is expensive (FCN-32s' transposed layer: sub-pixel runs in 35 ms but prepares its
1024 phase kernels in 260 ms; GEMM + col2im runs in 68 ms and prepares nothing).
"""

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from pyconvfast._algorithms import registry
from pyconvfast.tuning import heuristic
from pyconvfast._config import get_setting

REPEATS = 5
BUDGET_S = 1.0
CLEARLY_LOSING = 2.0
CONFIRM_ROUNDS = 5
# Floating-point operations above which candidates are timed on a slice of the problem:
# tens of milliseconds per run at the kernels' speed on one or two cores.
TIMING_FLOPS = 4e9
# A slice keeps at least this many outputs along each spatial axis (several tiles of every
# blocked kernel), whatever TIMING_FLOPS asks.
MIN_SLICE_OUTPUTS = 32

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
    plan_algorithm: str = None
    plan_params: dict = None
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
_CHOICES = {}
_CHOICES_MUTEX = threading.Lock()


def _remember(key, choice):
    """``_CHOICES[key] = choice``, the oldest dropped past :data:`CHOICES_MAX` (lookups stay a
    plain dict access; only this, after a miss, takes the lock)."""
    with _CHOICES_MUTEX:
        while len(_CHOICES) >= CHOICES_MAX:
            _CHOICES.pop(next(iter(_CHOICES)), None)
        _CHOICES[key] = choice


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


def forget():
    """Drop the choices this process remembers (after the cache was cleared or loaded)."""
    with _CHOICES_MUTEX:
        _CHOICES.clear()


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
    problem, x, out = timing_slice(problem, x, out)
    if problem is not full_problem:
        logger.info("tuning %s on a slice of it, %s (%.3g of %.3g GFLOP)", full_problem.key,
                    problem.key, problem.flops / 1e9, full_problem.flops / 1e9)
    candidates = {label: (name, params)
                  for label, (name, params) in labelled_candidates(problem, exhaustive).items()
                  if _can_run(full_problem, name, params)}
    prepared_weights, prepare_timings = {}, {}
    for name, _ in candidates.values():
        if name not in prepared_weights:
            prepared_weights[name], prepare_timings[name] = _timed_prepare(
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


def timing_slice(problem, x, out, flops=None):
    """The problem the candidates are timed on: ``problem`` itself, or for a large one a
    representative slice of it, with views of ``x`` and ``out`` to match.

    The slice keeps everything but the batch (its first samples) and, where one sample alone
    is over ``flops``, the spatial size: a block of the first outputs, the same share of
    every axis, read from the first inputs with the same pads, so that tiles and rows keep
    their shapes. It aims at ``flops`` operations, never below one sample and
    :data:`MIN_SLICE_OUTPUTS` outputs per axis. Transposed problems are sliced by the batch
    only.

    Parameters
    ----------
    problem : ConvProblem or ConvTransposeProblem
    x, out : ndarray
        The call's 5-D views, ``(N, C, D, H, W)``.
    flops : float, optional
        Operations to aim at (default :data:`TIMING_FLOPS`).

    Returns
    -------
    (problem, x, out)
        The same objects where the problem is small enough.

    Examples
    --------
    >>> import numpy as np
    >>> from pyconvfast import _api
    >>> problem = _api.make_problem((8, 64, 56, 56), (64, 64, 3, 3), n_spatial=2, padding=1,
    ...                             dtype=np.float32)
    >>> x, out = np.empty((8, 64, 1, 56, 56), np.float32), np.empty((8, 64, 1, 56, 56), np.float32)
    >>> piece, x_piece, out_piece = timing_slice(problem, x, out, flops=3e8)
    >>> piece.batch, piece.in_size, x_piece.shape, out_piece.shape
    (1, (56, 56), (1, 64, 1, 56, 56), (1, 64, 1, 56, 56))
    >>> piece, x_piece, out_piece = timing_slice(problem, x, out, flops=1e8)
    >>> piece.batch, piece.in_size, piece.out_size, x_piece.shape
    (1, (36, 36), (36, 36), (1, 64, 1, 36, 36))
    """
    flops = TIMING_FLOPS if flops is None else flops
    if problem.flops <= flops or problem.batch == 0:
        return problem, x, out
    per_sample = problem.flops / problem.batch
    batch = max(1, min(problem.batch, int(flops // per_sample)))
    if batch < problem.batch:
        problem = dataclasses.replace(problem, batch=batch)
        x, out = x[:batch], out[:batch]
    crop = _spatial_crop(problem, flops)
    if crop is not None:
        lead = (slice(None),) * (2 + 3 - problem.n_spatial)
        x = x[lead + tuple(slice(0, size) for size in crop.in_size)]
        out = out[lead + tuple(slice(0, size) for size in crop.out_size)]
        problem = crop
    return problem, x, out


def _spatial_crop(problem, flops):
    """The problem cut to a block of its first outputs along every spatial axis (the same
    share of each axis, at least :data:`MIN_SLICE_OUTPUTS` outputs per axis) so as to cost
    about ``flops``, or None where it cannot be cut or need not be."""
    from pyconvfast._core.problem import ConvProblem

    if problem.flops <= flops or not isinstance(problem, ConvProblem):
        return None
    share = (flops / problem.flops) ** (1.0 / problem.n_spatial)
    in_size = []
    for size, rows, k, s, d, before, after in zip(
            problem.in_size, problem.out_size, problem.kernel, problem.stride,
            problem.dilation, problem.pad_before, problem.pad_after):
        want = min(rows, max(MIN_SLICE_OUTPUTS, int(rows * share)))
        in_rows = (want - 1) * s + d * (k - 1) + 1 - before - after
        # Every padding mode must stay valid on the crop (reflect: pads below its size).
        in_size.append(min(size, max(in_rows, before + 1, after + 1, 1)))
    crop = dataclasses.replace(problem, in_size=tuple(in_size))
    if crop.in_size == problem.in_size or min(crop.out_size) < 1:
        return None
    return crop


def scaled_timings(warm, cold, scale):
    """The times measured on a slice, as estimates for the whole problem.

    A run's time grows with the work, by ``scale``; the extra time of a run that finds its
    weight flushed is the weight's one reading from memory, the same for the slice and the
    whole, so it is added unscaled. (Scaled with the run, it would make the slice favour small
    prepared weights: Winograd F(2x2) over F(4x4) on a 256-channel 384x384 layer, 1.5x slower.)

    Parameters
    ----------
    warm, cold : dict of str to float
        As :func:`time_candidates` returns them for the slice.
    scale : float
        The whole problem's operations over the slice's.

    Returns
    -------
    (warm, cold)
        New dicts of estimated seconds.

    Examples
    --------
    >>> warm, cold = scaled_timings({"a": 0.010, "b": 0.020}, {"a": 0.015}, 10.0)
    >>> {label: round(t, 6) for label, t in warm.items()}, round(cold["a"], 6)
    ({'a': 0.1, 'b': 0.2}, 0.105)
    """
    scaled_warm = {label: seconds * scale for label, seconds in warm.items()}
    scaled_cold = {label: scaled_warm[label] + max(0.0, seconds - warm[label])
                   for label, seconds in cold.items()}
    return scaled_warm, scaled_cold


def time_candidates(labels, run, budget_s=BUDGET_S, extra_cost=None, prime=None):
    """Time ``run(label)`` for each label, as the module docstring says.

    Parameters
    ----------
    labels : list of str
        The candidates, the most promising first.
    run : callable
        ``run(label)`` runs one candidate once.
    budget_s : float
        Seconds for the first pass; the confirmation rounds get half as much again.
    extra_cost : callable, optional
        ``extra_cost(label)``: seconds a call of the candidate costs beyond its run (weight
        preparation); the fastest run plus extra cost joins the finalists.
    prime : callable, optional
        Called after each flush to bring back what a network would have in cache: the input,
        which the previous layer has just written.

    Returns
    -------
    warm : dict of str to float
        Best seconds of each candidate run back to back (its data in cache).
    cold : dict of str to float
        Best seconds of each finalist in the confirmation rounds, caches flushed before each
        round (empty when there was a single candidate). The choice is made on these and the
        warm times together (:func:`decisive_times`).
    """
    warm, cold = {}, {}
    best_time = float("inf")
    deadline = time.perf_counter() + budget_s

    def timed(label, timings):
        start = time.perf_counter()
        run(label)
        timings[label] = min(timings.get(label, float("inf")), time.perf_counter() - start)

    for label in labels:
        # Warm-up, untimed: a kernel's first run in a process pays one-time costs (page faults on
        # fresh buffers, lazily built tables) that would otherwise drop a fast candidate as
        # "clearly losing" after one cold run (measured: depthwise 8 ms cold, 0.3 ms warm).
        # Past the budget, one timed run per candidate is all there is.
        if time.perf_counter() < deadline:
            run(label)
        for repeat in range(REPEATS):
            timed(label, warm)
            if warm[label] > CLEARLY_LOSING * best_time or time.perf_counter() > deadline:
                break
        best_time = min(best_time, warm[label])
    finalists = sorted(warm, key=warm.get)[:2]
    if extra_cost is not None:
        fastest_call = min(warm, key=lambda label: warm[label] + extra_cost(label))
        if fastest_call not in finalists:
            finalists.append(fastest_call)
    if len(finalists) > 1:
        flush = _CacheFlush()
        confirm_deadline = time.perf_counter() + budget_s / 2
        for round_index in range(CONFIRM_ROUNDS):
            flush()
            if prime is not None:
                prime()
            # Alternate the order, so that neither finalist always runs right after the other.
            for label in finalists[::-1] if round_index % 2 else finalists:
                timed(label, cold)  # its data flushed (the other finalist's runs do not reload it)
                timed(label, warm)  # at once again: its data in cache
            if time.perf_counter() > confirm_deadline:
                break
    return warm, cold


def decisive_times(warm, cold, weight_bytes):
    """What the choice minimizes: for each finalist, ``warm ** (1 - s) * cold ** s``, its best
    times with its data in cache and with the caches flushed, weighed by the share ``s`` of
    runs likely to find its data gone; the warm times when nothing was flushed.

    ``s = 0.5 + 0.5 * min(1, weight_bytes / (LLC / 4))``, with ``weight_bytes`` the size of
    the candidate's prepared weight (:func:`prepared_bytes`) and ``LLC`` the last-level cache.
    Both timings find the input in cache (the previous layer has just written it) and write
    the output afresh; what differs is the weight. Other work between two calls evicts any
    layer's weight from the cores' own caches, so the flushed time counts at least as much as
    the warm one; a weight of a quarter of the last-level cache or more is gone from it too,
    since a few such arrays fill it. Back to back, Winograd F(2x2) beat ``direct`` by 24% on
    ResNet-50's layer4 3x3 (512 channels, 7x7: its 16.8 MB transformed weight stays in a
    32 MB cache), yet ``direct`` (9.4 MB) was 10-18% faster interleaved with other work. On
    MobileNetV2's small 1x1 layers neither time alone picks the faster among other work.

    Parameters
    ----------
    warm, cold : dict of str to float
        As :func:`time_candidates` returns them.
    weight_bytes : dict of str to int
        The size of each candidate's prepared weight.

    Returns
    -------
    dict of str to float
        Seconds per finalist (per candidate when ``cold`` is empty).
    """
    if not cold:
        return dict(warm)
    quarter_cache = _last_level_cache_bytes() / 4
    decisive = {}
    for label in cold:
        share = 0.5 + 0.5 * min(1.0, weight_bytes[label] / quarter_cache)
        decisive[label] = warm[label] ** (1.0 - share) * cold[label] ** share
    return decisive


def prepared_bytes(prepared):
    """The bytes of the largest array of a prepared weight (a tuple may keep the plain weight
    too, read only for a few edge outputs).

    Parameters
    ----------
    prepared : ndarray, tuple of ndarray, or an object with ``nbytes``
        What the algorithm's ``prepare`` returned.

    Returns
    -------
    int
    """
    if isinstance(prepared, (tuple, list)):
        return max((prepared_bytes(part) for part in prepared), default=0)
    return getattr(prepared, "nbytes", 0)


class _CacheFlush:
    """Writes over a buffer the size of the last-level cache, so that the next run finds its
    weights in memory, as a layer of a network does after the other layers ran (the tuner then
    reads the input back into cache: the previous layer has just written it).

    Timed back to back, an algorithm with a large prepared weight keeps it in cache and looks
    faster than it is inside a network: ResNet-50's layer3 3x3 (256 channels, 14x14) ran
    Winograd F(4x4) in 0.68-0.85 ms and F(2x2) in 0.87 ms back to back, but F(2x2) was 1.2x
    faster once other layers' data passed through the cache between calls (F(4x4)'s transformed
    weight is 9.4 MB, F(2x2)'s 4.2 MB).
    """

    def __init__(self):
        self.buffer = np.empty(_last_level_cache_bytes() // 8, dtype=np.float64)

    def __call__(self):
        self.buffer.fill(1.0)


def _last_level_cache_bytes():
    """The largest data cache's size (32 MiB when the system does not say; 256 MiB at most)."""
    try:
        size = os.sysconf("SC_LEVEL3_CACHE_SIZE") or os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (ValueError, OSError, AttributeError):
        size = 0
    return min(size, 256 << 20) if size and size > 0 else 32 << 20


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


def _timed_prepare(algorithm, problem, weight):
    """The prepared weight and the seconds preparing takes (the faster of two tries when the
    first is quick: a first call may build lazily cached tables)."""
    start = time.perf_counter()
    prepared = algorithm.prepare(problem, weight)
    seconds = time.perf_counter() - start
    if seconds < 0.01:
        start = time.perf_counter()
        prepared = algorithm.prepare(problem, weight)
        seconds = min(seconds, time.perf_counter() - start)
    return prepared, seconds
