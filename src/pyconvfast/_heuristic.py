"""The choice of algorithm without timing anything (``algorithm="auto"`` until the tuner lands).

Measured on the ResNet-18, depthwise and grouped layers of ``bench``-like shapes: ``im2col``
wins by 1.5x to 30x wherever each group has more than one input channel (a GEMM of some depth);
with one input channel per group (depthwise) its tiny GEMMs lose to ``direct``.
"""

from pyconvfast import _registry


def _preference(problem):
    if problem.c_in // problem.groups == 1:
        return ("direct", "im2col")
    return ("im2col", "direct")


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
    for name in _preference(problem):
        if name in usable:
            return name
    return usable[0]
