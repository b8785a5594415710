"""``pcf.plan``: choose the algorithm and prepare the weight once, then convolve many inputs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from pyconvfast import _api
from pyconvfast._algorithms import separable
from pyconvfast._algorithms import registry
from pyconvfast.tuning import autotune
from pyconvfast.tuning import heuristic
from pyconvfast._core.problem import ConvProblem
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast._typing import (
    ArrayLike, FloatArray, Ints, Layout, Padding, PaddingMode, Precision, Shape,
)

if TYPE_CHECKING:  # imported when used: _transpose imports this module's siblings
    from pyconvfast._transpose import ConvTransposeProblem

# (choice, algorithm, prepared weight): what one call runs
_Runner = tuple[Any, Any]  # (choice, call(x5, out5))

# An auto plan times again, on its own first calls, the tuner's finalists that came within this
# factor of its pick (back to back or with the caches flushed) ...
TRIAL_MARGIN = 1.5
# ... in this many rounds of one call each (the first round untimed), and keeps the finalist
# whose median time over the pick's in the same round is lowest, if that beats the pick by
# this fraction and was faster than the pick in all but this many of the timed rounds (under
# pure noise, 7 wins of 9 rounds come about one time in eleven).
TRIAL_ROUNDS = 10
TRIAL_SWITCH = 0.05
TRIAL_LOSSES = 2


class Plan:
    """A convolution with its algorithm chosen and its weight prepared.

    Made by :func:`plan`, not directly.

    Parameters
    ----------
    problem : ConvProblem
        The validated geometry, dtype and layout.
    choice : Choice
        The algorithm, its parameters, and how they were chosen.
    weight : ndarray, shape ``(C_out, C_in // groups, *kernel)``
    bias : ndarray, shape ``(C_out,)``, or None
    n_threads : int

    Attributes
    ----------
    algorithm : str
        The algorithm the calls run.
    params : dict
        Its kernel parameters (``{}``: defaults).
    settled : bool
        False while the plan still compares close finalists on its own calls (see below).
    problem : ConvProblem
        The geometry, dtype and layout the plan was made for.
    n_threads : int

    Notes
    -----
    When the tuner's finalists came within ``TRIAL_MARGIN`` (50%) of each other (warm or with
    the caches flushed), an ``auto`` plan prepares each of them and runs them in turn on its
    first calls: ``TRIAL_ROUNDS`` (10) rounds of one call each, in an order that rotates from
    round to round, the first round untimed. Each finalist's time is divided by the pick's in
    the same round, milliseconds apart, so that a machine whose speed drifts from second to
    second meets both alike; the finalist with the lowest median ratio replaces the pick if
    that median is 5% or more below 1 and the finalist was faster in all but ``TRIAL_LOSSES``
    (2) of the timed rounds, and the others' prepared weights are dropped. A plain call that
    has seen its weight before runs the plan's choice: from then on the finalist a plan
    settled on. Besides the close finalists, the plan times the plain call's own pick (which
    counts the weight's preparation) whatever its times, so that a plan never settles on an
    algorithm it did not compare with what the plain call runs. Those
    calls run where the plan is used, among the rest of the program's work and in this
    process, which the tuner's separate measurement can only approximate (on MobileNetV2's
    expanding 1x1 layers, the tuner picked ``direct`` in one process where ``im2col`` was 24%
    faster in the next). Until it is :attr:`settled`, a plan's results may come from either
    algorithm, each within the usual rounding.

    A plan pickles (for Dask, :mod:`multiprocessing`): as its problem, the algorithm and
    parameters it runs now (by name), the weight and bias as they are when pickled, and
    ``n_threads``. Loading prepares the weight again in the loading process; a loaded plan is
    settled, and gives bitwise the results of the plan it was pickled from once that one has
    settled on the same algorithm.

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> p = pcf.plan((1, 2, 5), np.ones((3, 2, 3)), algorithm="direct")
    >>> p(np.ones((1, 2, 5)))
    array([[[6., 6., 6.],
            [6., 6., 6.],
            [6., 6., 6.]]])
    >>> print(p.explain().splitlines()[2])
    algorithm: direct (requested)
    """

    def __init__(self, problem: ConvProblem | ConvTransposeProblem, choice: Any,
                 weight: FloatArray, bias: FloatArray | None, n_threads: int) -> None:
        self._set_problem(problem, weight, bias)
        self.n_threads = n_threads
        self._tune_mode = autotune.tune_mode()  # the trial's verdict is remembered under it
        plan_choice = choice.for_plan()
        weight_5d = _api.weight_5d(weight, problem)
        # A runner is one tuple (choice, kernel call), replaced whole, so that a call from
        # another thread never mixes one algorithm with another's prepared weight.
        self._runners: list[_Runner] | None = [
            self._runner_of(candidate, weight_5d) for candidate in
            [plan_choice] + _close_finalists(problem, plan_choice, choice)]
        self._runner = self._runners[0]
        # seconds[round][finalist]; the medians of the finalists' ratios to the pick, once done
        self._trial_seconds = np.full((TRIAL_ROUNDS, len(self._runners)), np.nan)
        self._trial_ratios: FloatArray | None = None
        self._trial_labels: list[str] = []
        self._trial_calls = 0
        if len(self._runners) == 1:
            self._runners = None

    @property
    def algorithm(self) -> str:
        """The name of the algorithm the calls run (until :attr:`settled`, the tuner's pick)."""
        name: str = self._runner[0].algorithm
        return name

    @property
    def params(self) -> dict[str, Any]:
        """The algorithm's kernel parameters (``{}``: its defaults)."""
        return dict(self._runner[0].params)

    @property
    def settled(self) -> bool:
        """Whether every call now runs :attr:`algorithm` (no close finalists left to time)."""
        return self._runners is None

    def _set_problem(self, problem: ConvProblem | ConvTransposeProblem, weight: FloatArray,
                     bias: FloatArray | None) -> None:
        """Keep the problem, weight and bias, and what every call checks against them (worked
        out once here: a call's whole budget over its kernel is a few microseconds)."""
        self.problem = problem
        self._weight = weight
        self._bias = bias
        spatial = problem.in_size
        shape = ((problem.batch, *spatial, problem.c_in) if problem.channels_last
                 else (problem.batch, problem.c_in, *spatial))
        self._x_shape = shape[1:] if problem.unbatched else shape
        self._dtype = np.dtype(problem.dtype)

    @property
    def x_shape(self) -> tuple[int, ...]:
        """The input shape every call must have."""
        return self._x_shape

    def __call__(self, x: ArrayLike, out: FloatArray | None = None) -> FloatArray:
        """Convolve ``x``, of the planned shape and dtype, into ``out`` (allocated if None).

        Parameters
        ----------
        x : ndarray, shape :attr:`x_shape`, the plan's dtype
        out : ndarray, optional
            Preallocated result; returned.

        Returns
        -------
        ndarray
            The result, shaped as :func:`conv_output_shape` says.
        """
        x = _api._as_float_array("x", x)
        if x.dtype != self._dtype:
            raise TypeError(f"this plan is for {self.problem.dtype} input, got x of dtype {x.dtype}")
        if x.shape != self._x_shape:
            raise ValueError(f"this plan is for x.shape={self._x_shape}, got x.shape={x.shape}")
        problem = self.problem
        out = _api.output_array(out, problem, self._dtype,
                                {"x": x, "weight": self._weight, "bias": self._bias})
        if problem.batch:
            x5 = _api._channels_first_5d(x, problem)
            out5 = _api._channels_first_5d(out, problem)
            if self._runners is None:
                self._run(self._runner, x5, out5)
            else:
                self._trial_call(x5, out5)
        return out

    def _runner_of(self, choice: Any, weight_5d: FloatArray) -> _Runner:
        """(choice, call): ``call(x5, out5)`` runs ``choice`` on the weight prepared now, its
        kernel's arguments worked out once (:func:`pyconvfast._algorithms.registry.bound`)."""
        algorithm = registry.get(choice.algorithm)
        prepared = algorithm.prepare(self.problem, weight_5d)
        return choice, registry.bound(algorithm, self.problem, prepared, self._bias,
                                      self.n_threads, choice.params)

    def _run(self, runner: _Runner, x5: FloatArray, out5: FloatArray) -> None:
        runner[1](x5, out5)

    def _trial_call(self, x5: FloatArray, out5: FloatArray) -> None:
        """Run the next close finalist of the current round and time it; after
        :data:`TRIAL_ROUNDS` rounds, keep the finalist with the lowest median time over the
        pick's (the first round, which may fault in fresh work buffers, does not count)."""
        runners = self._runners
        if runners is None:  # settled by another thread meanwhile
            self._run(self._runner, x5, out5)
            return
        call = self._trial_calls
        self._trial_calls += 1
        round_index, position = divmod(call, len(runners))
        # The order rotates so that no finalist always runs right after the same other one.
        index = (position + round_index) % len(runners)
        start = time.perf_counter()
        self._run(runners[index], x5, out5)
        seconds = time.perf_counter() - start
        if round_index < TRIAL_ROUNDS:
            self._trial_seconds[round_index, index] = seconds
        if call + 1 == TRIAL_ROUNDS * len(runners):
            timed = self._trial_seconds[1:]
            per_round = timed / timed[:, :1]
            ratios = np.nanmedian(per_round, axis=0)
            fastest = int(np.argmin(ratios))
            # Not clearly faster than the tuner's pick, which had more runs: keep the pick. On
            # a loaded machine whose scheduler decides a 2-thread call's time (two 12 ms
            # kernels both took 60 ms, alternately 0.95x and 1.05x of each other), the median
            # of nine ratios alone moved a 3-channel stem from ``direct`` to ``im2col``, 1.3x
            # slower once the load was gone; winning most rounds takes a real lead.
            if (ratios[fastest] * (1 + TRIAL_SWITCH) > 1
                    or np.sum(~(per_round[:, fastest] < 1)) > TRIAL_LOSSES):
                fastest = 0
            self._trial_ratios = ratios
            self._trial_labels = [autotune.candidate_label(choice.algorithm, choice.params)
                                  for choice, _ in runners]
            self._runner = runners[fastest]
            self._runners = None
            if fastest:
                # A plain call that has seen this weight before runs the plan's choice: from
                # now on, the one this plan found faster (else the plan could run slower than
                # the plain call of its own problem, or the other way round).
                autotune.settle(self.problem, self.n_threads, self._tune_mode,
                                self._runner[0])

    def explain(self) -> str:
        """A few lines on the problem, how the algorithm was chosen, and the timings."""
        choice = self._runner[0]
        lines = [f"problem: {self.problem.key}", f"threads: {self.n_threads}",
                 f"algorithm: {autotune.candidate_label(self.algorithm, self.params)} "
                 f"({choice.source})"]
        if choice.timings:
            cold = choice.cold_timings
            lines.append("candidates (best run back to back; caches flushed, which decides):")
            for label, seconds in sorted(choice.timings.items(), key=lambda kv: kv[1]):
                flushed = f"{cold[label] * 1e3:10.3f} ms" if label in cold else ""
                lines.append(f"  {label:<32} {seconds * 1e3:10.3f} ms {flushed}".rstrip())
        if self._runners is not None:
            labels = [autotune.candidate_label(c.algorithm, c.params) for c, _ in self._runners]
            lines.append(f"close finalists, timed on this plan's first calls: {', '.join(labels)}")
        elif self._trial_ratios is not None:
            lines.append("close finalists on this plan's first calls, median time over "
                         f"{self._trial_labels[0]}'s in the same round:")
            for label, ratio in zip(self._trial_labels, self._trial_ratios):
                lines.append(f"  {label:<32} {ratio:10.3f}")
        usable = registry.names(self.problem)
        lines.append(f"usable algorithms: {', '.join(usable)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<pyconvfast.Plan {self.algorithm} for x.shape={self.x_shape}>"

    # Pickling (for Dask and multiprocessing): a plan pickles as its problem, the choice it
    # runs now, the weight and bias as they are at that moment, and n_threads; loading looks
    # the algorithm up in the registry by name and prepares the weight again, in the loading
    # process (prepared weights are process-local, e.g. aligned buffers, and often larger than
    # the weight). Close finalists not yet compared are dropped: a loaded plan is settled and
    # runs :attr:`algorithm` with :attr:`params` on every call, in every process.
    _PICKLE_VERSION = 1

    def __getstate__(self) -> dict[str, Any]:
        return {
            "version": self._PICKLE_VERSION,
            "problem": self.problem,
            "choice": self._runner[0],
            "weight": self._weight,
            "bias": self._bias,
            "n_threads": self.n_threads,
            "trial_ratios": self._trial_ratios,
            "trial_labels": self._trial_labels or None,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("version") != self._PICKLE_VERSION:
            raise ValueError(
                f"this pyconvfast Plan was pickled by an incompatible version (pickle format "
                f"{state.get('version')!r}, this version reads {self._PICKLE_VERSION}); make "
                f"the plan again")
        self._set_problem(state["problem"], state["weight"], state["bias"])
        self.n_threads = state["n_threads"]
        self._runner = self._runner_of(state["choice"],
                                       _api.weight_5d(self._weight, self.problem))
        self._runners = None
        self._trial_seconds = np.full((TRIAL_ROUNDS, 1), np.nan)
        self._trial_ratios = state["trial_ratios"]
        self._trial_labels = state["trial_labels"] or []
        self._trial_calls = 0


def _close_finalists(problem: ConvProblem | ConvTransposeProblem, choice: Any,
                     call_choice: Any) -> list[Any]:
    """The tuner's other finalists within :data:`TRIAL_MARGIN` of ``choice``, with the caches
    flushed or back to back, as Choices (none unless ``choice`` was measured or cached); and
    ``call_choice``, what a plain call on a new weight runs, whatever its times: a plan must
    never end up slower than the plain call of its problem, so it times that one too."""
    cold, warm = choice.cold_timings, choice.timings
    chosen = autotune.candidate_label(choice.algorithm, choice.params)
    if choice.source not in ("measured", "cache") or chosen not in cold or chosen not in warm:
        return []
    called = autotune.candidate_label(call_choice.algorithm, call_choice.params)
    labelled = autotune.labelled_candidates(problem, exhaustive=True)
    close = []
    for label in cold:
        if label == chosen or label not in labelled or label not in warm:
            continue
        if (label == called
                or min(cold[label] / cold[chosen], warm[label] / warm[chosen]) <= TRIAL_MARGIN):
            name, params = labelled[label]
            close.append(autotune.Choice(name, dict(params), warm, choice.source,
                                          choice.prepare_timings, cold_timings=cold))
    return close


def plan(x_shape: Shape, weight: ArrayLike, bias: ArrayLike | None = None, *, stride: Ints = 1,
         padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
         padding_mode: PaddingMode = "zeros", flip: bool = False, layout: Layout | None = None,
         algorithm: str = "auto", n_threads: int | None = None, transposed: bool = False,
         output_padding: Ints = 0, output_size: Shape | None = None,
         precision: Precision | None = None) -> Plan:
    """Choose the algorithm for a convolution and prepare its weight, to run it many times.

    With ``algorithm="auto"`` the choice comes from the tuning cache, or is measured now on
    random data of ``x_shape`` (``PYCONVFAST_TUNE`` applies as for :func:`conv2d`). The weight is
    transformed or packed for the algorithm once; each call then only runs the kernel.

    Parameters
    ----------
    x_shape : tuple of int
        Shape of the inputs the plan will take, as for :func:`conv1d` / :func:`conv2d` /
        :func:`conv3d` (the number of spatial axes is ``weight.ndim - 2``).
    weight : ndarray of float32 or float64, shape ``(C_out, C_in // groups, *kernel)``
        Copied by the plan where the algorithm packs it; later changes to the array are not
        seen by a plan that packed it, so make a new plan for new weights.
    bias : ndarray, shape ``(C_out,)``, optional
    stride, padding, dilation, groups, padding_mode, flip, layout, algorithm, n_threads
        As for :func:`conv2d`; ``layout=None`` means channels-first.
    precision : {"fast", "accurate"}, optional
        As for :func:`conv2d`, fixed for the plan when it is made (None: the configured
        default at that moment).
    transposed : bool, default False
        Plan a transposed convolution (:func:`conv_transpose2d` and friends): ``weight`` is then
        ``(C_in, C_out // groups, *kernel)``, ``output_padding`` and ``output_size`` apply, and
        ``padding_mode`` must stay "zeros".
    output_padding, output_size
        As for :func:`conv_transpose2d`; only with ``transposed=True``.

    Returns
    -------
    Plan
        Call it as ``plan(x, out=None)``; ``plan.algorithm`` and ``plan.explain()`` say what it
        runs and why.

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> w = np.ones((8, 3, 3, 3), dtype=np.float32)
    >>> p = pcf.plan((4, 3, 32, 32), w, padding=1, algorithm="im2col")
    >>> p.algorithm
    'im2col'
    >>> p(np.ones((4, 3, 32, 32), dtype=np.float32)).shape
    (4, 8, 32, 32)
    """
    weight = _api._as_float_array("weight", weight)
    x_shape = _api._shape_of("x_shape", x_shape)
    if not isinstance(transposed, (bool, np.bool_)):
        raise TypeError(f"transposed must be a bool, got transposed={transposed!r}")
    problem: ConvProblem | ConvTransposeProblem
    if transposed:
        problem = _transpose_problem(x_shape, weight, bias, stride, padding, output_padding,
                                     dilation, groups, output_size, padding_mode, flip, layout,
                                     precision)
    else:
        if output_padding != 0 or output_size is not None:
            raise ValueError(
                f"output_padding and output_size are for transposed convolutions (pass "
                f"transposed=True), got output_padding={output_padding!r}, "
                f"output_size={output_size!r}"
            )
        problem = _api.make_problem(
            x_shape, weight.shape, n_spatial=_api.n_spatial_of(weight.shape), stride=stride,
            padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
            layout=layout, flip=flip, has_bias=bias is not None, dtype=weight.dtype,
            precision=precision,
        )
    bias = _api.checked_bias(bias, problem, weight.dtype)
    if not transposed:  # the rank-1 two-pass algorithm is for plain convolutions only
        problem = separable.mark(problem, weight)
    n_threads = resolve_n_threads(n_threads)
    if algorithm != "auto":
        if transposed:
            from pyconvfast._transpose import explicit_algorithm

            explicit_algorithm(algorithm, problem)
        else:
            _api.explicit_algorithm(algorithm, problem)
        choice = autotune.Choice(algorithm, source="requested")
    elif problem.batch == 0:
        choice = autotune.Choice(heuristic.choose(problem), source="heuristic")
    else:
        rng = np.random.default_rng(0)
        # Drawn in the weight's dtype: a float64 draw cast down took twice the input's memory.
        x = rng.standard_normal(x_shape, dtype=weight.dtype)
        out = np.empty(problem.out_shape, dtype=weight.dtype)
        choice = autotune.choose(
            problem, n_threads, _api._channels_first_5d(x, problem),
            _api.weight_5d(weight, problem), bias, _api._channels_first_5d(out, problem),
        )
    return Plan(problem, choice, weight, bias, n_threads)


def _transpose_problem(x_shape: tuple[int, ...], weight: FloatArray, bias: ArrayLike | None,
                       stride: Ints, padding: Padding, output_padding: Ints, dilation: Ints,
                       groups: int, output_size: Shape | None, padding_mode: str, flip: bool,
                       layout: Layout | None, precision: Precision | None,
                       ) -> ConvTransposeProblem:
    from pyconvfast import _transpose

    if padding_mode != "zeros":
        raise ValueError(
            f"a transposed convolution pads with zeros only, got padding_mode={padding_mode!r}")
    return _transpose.make_problem(
        x_shape, weight.shape, n_spatial=_transpose.n_spatial_of(weight.shape), stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=output_size, layout=layout, flip=flip, has_bias=bias is not None,
        dtype=weight.dtype, precision=precision,
    )
