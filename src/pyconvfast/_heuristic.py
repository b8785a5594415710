"""The choice of algorithm without timing anything (``algorithm="auto"`` for now)."""

from pyconvfast import _registry

# Most preferred first; the first one that supports the problem wins.
PREFERENCE = ("direct",)


def choose(problem):
    """Name of the algorithm the heuristic picks for ``problem``.

    Parameters
    ----------
    problem : ConvProblem

    Returns
    -------
    str
        A registered name whose ``supports(problem)`` is None.
    """
    usable = _registry.names(problem)
    for name in PREFERENCE:
        if name in usable:
            return name
    return usable[0]
