"""The algorithms pyconvfast can run, each saying which problems it supports.

An :class:`Algorithm` pairs ``supports(problem)`` (None when it can run the problem, else the
reason it cannot) with ``run(problem, x, weight, bias, out, n_threads)``, which computes into
``out``. ``run`` receives 5-D channels-first views, ``(N, C, D, H, W)`` activations and
``(C_out, C_in // groups, KD, KH, KW)`` weights (already flipped for true convolution), with 1-D
and 2-D problems given leading singleton axes; it parses no arguments.
"""

from dataclasses import dataclass
from typing import Callable, Optional

from pyconvfast._problem import ConvProblem


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
        ``run(problem, x, weight, bias, out, n_threads) -> None``.
    """

    name: str
    summary: str
    supports: Callable[[ConvProblem], Optional[str]]
    run: Callable[..., None]


_ALGORITHMS = {}


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


def names(problem=None):
    """Registered names in registration order; with ``problem``, only those that can run it."""
    return [
        name for name, algorithm in _ALGORITHMS.items()
        if problem is None or algorithm.supports(problem) is None
    ]
