"""The algorithms pyconvfast can run, each saying which problems it supports.

An :class:`Algorithm` pairs ``supports(problem)`` (None when it can run the problem, else the
reason it cannot) with ``prepare(problem, weight)``, which turns the weight into what the kernel
consumes (packed, transformed; done once per weight by a plan), and
``run(problem, x, prepared, bias, out, n_threads, params)``, which computes into ``out``.
``params`` is a dict of the kernel's own tunable parameters (``{}`` for its defaults); the
candidates are listed by ``param_space(problem)``.

``prepare`` receives the weight as a 5-D ``(C_out, C_in // groups, KD, KH, KW)`` view (already
flipped for true convolution); ``run`` receives 5-D channels-first views, ``(N, C, D, H, W)``
activations and outputs, 1-D and 2-D problems having leading singleton axes. Neither parses
arguments.
"""

from dataclasses import dataclass
from typing import Callable, Optional

from pyconvfast._core.problem import ConvProblem


def _keep_weight(problem, weight):
    return weight


def _default_params(problem):
    return [{}]


def _never(problem):
    return False


def any_problem(problem):
    """``supports`` of an algorithm that runs every problem of its kind."""
    return None


@dataclass(frozen=True)
class Algorithm:
    """One registered algorithm.

    Attributes
    ----------
    name : str
        The name users pass as ``algorithm=``.
    summary : str
        One line on what it is good for.
    supports : callable
        ``supports(problem) -> str or None``: None if it can run ``problem``, else why not.
    run : callable
        ``run(problem, x, prepared, bias, out, n_threads, params) -> None``.
    prepare : callable, optional
        ``prepare(problem, weight) -> prepared``; by default the weight view itself.
    param_space : callable, optional
        ``param_space(problem) -> list of dict``: the parameter sets exhaustive tuning tries,
        the defaults first; by default ``[{}]``.
    bind : callable, optional
        ``bind(problem, prepared, bias, n_threads, params) -> call``, where ``call(x, out)``
        does what ``run`` does with those arguments: what does not depend on the arrays (tap
        tables, the bias or an empty array, scalar geometry) is worked out once, for a plan
        to call many times. By default ``call`` calls ``run``; see :func:`bound`.
    preferred : callable, optional
        ``preferred(problem) -> bool``: whether the heuristic should try it first on
        ``problem`` (an algorithm that pays only on some problems says which, so that the
        heuristic reads the registry instead of importing the algorithm's module). Default:
        never.
    accurate : bool, optional
        Whether its rounding error stays within the plain summation bound (and non-finite
        values stay where a plain summation puts them); only such algorithms run a problem
        with ``precision="accurate"``. Default True.
    kind : str, optional
        The problems it computes: ``"conv"`` (a ConvProblem, the default) or
        ``"conv_transpose"`` (a ConvTransposeProblem); a problem's ``kind`` attribute says which
        it is, and :func:`names` lists only the algorithms of the problem's kind.
    """

    name: str
    summary: str
    supports: Callable[[ConvProblem], Optional[str]]
    run: Callable[..., None]
    prepare: Callable[..., object] = _keep_weight
    param_space: Callable[[ConvProblem], list] = _default_params
    kind: str = "conv"
    accurate: bool = True
    preferred: Callable[[ConvProblem], bool] = _never
    bind: Optional[Callable[..., Callable]] = None

    def __reduce__(self):
        # An algorithm pickles as its name and loads as the one registered under it (the
        # registry is the same in every process; its functions need not be shipped).
        return get, (self.name,)

    def refusal(self, problem):
        """None if it can run ``problem``, else why not (its own reason, or the precision)."""
        if not self.accurate and getattr(problem, "precision", "fast") == "accurate":
            return ("its rounding error exceeds the plain summation bound, which "
                    "precision='accurate' asks for")
        return self.supports(problem)


def bound(algorithm, problem, prepared, bias, n_threads, params):
    """``call(x, out)``: ``algorithm`` run on ``problem`` with these arguments, its per-call
    work done once where the algorithm registers a ``bind``."""
    if algorithm.bind is not None:
        return algorithm.bind(problem, prepared, bias, n_threads, params)
    run = algorithm.run
    return lambda x, out: run(problem, x, prepared, bias, out, n_threads, params)


_ALGORITHMS: dict[str, "Algorithm"] = {}


def register(algorithm):
    """Add ``algorithm`` to the registry under its name (a name is registered once)."""
    if algorithm.name in _ALGORITHMS or algorithm.name == "auto":
        raise ValueError(f"an algorithm named {algorithm.name!r} is already registered")
    _ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get(name):
    """The algorithm registered as ``name``; a ValueError listing the names if there is none."""
    try:
        return _ALGORITHMS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown algorithm={name!r}; choose 'auto' or one of {sorted(_ALGORITHMS)}"
        ) from None


def names(problem=None, kind=None) -> list[str]:
    """Registered names in registration order; with ``problem``, only those that can run it.

    Only algorithms of one kind are listed: ``kind``, else the problem's ``kind`` attribute,
    else ``"conv"`` (plain convolutions).
    """
    if kind is None:
        kind = getattr(problem, "kind", "conv")
    return [
        name for name, algorithm in _ALGORITHMS.items()
        if algorithm.kind == kind and (problem is None or algorithm.refusal(problem) is None)
    ]


def can_run(name, problem):
    """Whether ``name`` is a registered algorithm of the problem's kind that can run it (asks
    only that algorithm, where :func:`names` asks them all)."""
    algorithm = _ALGORITHMS.get(name) if isinstance(name, str) else None
    return (algorithm is not None and algorithm.kind == getattr(problem, "kind", "conv")
            and algorithm.refusal(problem) is None)
