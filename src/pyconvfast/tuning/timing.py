"""How the tuner times candidates: the runs, the confirmation rounds, and the slice of a large
problem they run on.

:mod:`pyconvfast.tuning.autotune` decides what to time and what to keep; this module only
measures, on the caller's arrays, with the real kernels. It knows nothing of the cache.

Why it is shaped so (docs/guide/autotuning.rst has the measurements behind each point):

* The most promising candidate runs first, so that a clearly losing one (first run more than
  :data:`CLEARLY_LOSING` times the best so far) is dropped after one run; the others get up to
  :data:`REPEATS` runs within the budget, and the minimum counts (:func:`time_candidates`).
* Timed back to back only, a candidate keeps its prepared weight in cache, which a layer inside
  a network may not; and close contenders differ by less than a burst of load lasts. So the
  finalists are timed again in :data:`CONFIRM_ROUNDS` rounds, each after flushing the caches
  (:class:`_CacheFlush`) and reading the input back, in alternating order, once flushed and once
  warm; a weighted geometric mean of both decides (:func:`decisive_times`).
* A large problem is timed on a representative slice of it (:func:`timing_slice`): its first
  samples and, for one huge sample, a block of its first outputs. The algorithms' relative speed
  depends on the geometry (channels, kernel, stride, padding), which the slice keeps, far more
  than on the number of rows or samples; so the first call costs a small multiple of the
  winner's time whatever the problem's size. The slice's times are scaled to the whole
  (:func:`scaled_timings`) before they decide.
"""

import dataclasses
import os
import time

import numpy as np

REPEATS = 5
BUDGET_S = 1.0
CLEARLY_LOSING = 2.0
CONFIRM_ROUNDS = 5
# A slice keeps at least this many outputs along each spatial axis (several tiles of every
# blocked kernel), whatever the operations it aims at.
MIN_SLICE_OUTPUTS = 32


def timing_slice(problem, x, out, flops):
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
    flops : float
        Operations to aim at (the tuner's ``TIMING_FLOPS``).

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
    prepared weights.)

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
    """Time ``run(label)`` for each label: a first pass, then confirmation rounds of the
    finalists with the caches flushed (see the module's docstring).

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
        # "clearly losing" after one cold run.
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
    since a few such arrays fill it (docs/guide/autotuning.rst shows a ResNet-50 layer where
    the warm times alone pick the algorithm that is slower among other work).

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
    reads the input back into cache: the previous layer has just written it). Timed back to
    back, an algorithm with a large prepared weight keeps it in cache and looks faster than it
    is inside a network.
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


def timed_prepare(algorithm, problem, weight):
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
