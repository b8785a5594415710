"""The choice of algorithm without timing anything: ``PYCONVFAST_TUNE=estimate`` or ``off``, and
the candidate the tuner times first.

Measured on the ResNet-18, depthwise and grouped layers of ``bench``-like shapes: ``im2col``
wins by 1.5x to 30x wherever each group has more than one input channel (a GEMM of some depth);
with one input channel per group (depthwise) its tiny GEMMs lose to ``direct``.

With one input channel per group, ``depthwise`` (``bench/depthwise_vs_torch.py``, float32, one
and two threads, AVX-512 machine) beats ``direct`` by 2x to 60x and ``im2col`` by 4x to 120x
on the MobileNetV2 layers (3x3, stride 1 and 2, 7x7 to 112x112 planes, both layouts), 5x5,
dilated 3x3, 1-D k=31/63 and 3x3x3 layers, and also on single-channel inputs with a channel
multiplier up to 64 (1.2x to 1.6x over im2col). The one loss measured: channels-last inputs of
2 or 3 channels with a multiplier of 8 or more (64x64, C=3, m=8: im2col 1.27x faster), where
the channels are too few to vectorize over and the rows are strided; ``im2col`` goes first there.
Tiny problems (a few hundred outputs) are decided by call overhead, a few microseconds either
way.
"""

from pyconvfast import _registry


def _preference(problem):
    if problem.c_in // problem.groups == 1:
        multiplier = problem.c_out // problem.c_in
        if problem.channels_last and 1 < problem.c_in < 4 and multiplier >= 8:
            return ("im2col", "depthwise", "direct")
        return ("depthwise", "direct", "im2col")
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
