"""The choice of algorithm without timing anything: ``PYCONVFAST_TUNE=estimate`` or ``off``, and
the candidate the tuner times first.

An ordered preference per kind of problem, each rule a measured crossover; the measurements
behind every threshold (which bench, which machine, which layers, the ratios) are in
docs/guide/algorithms.rst, section "The rules of thumb of estimate", not here. The heuristic
reads what it needs from the registry (an algorithm's ``preferred`` hook, ``can_run``) rather
than importing algorithm modules.
"""

import math

from pyconvfast._algorithms import registry

# Taps per axis from which fft wins (see above): (1-D, 2-D) for dense layers; with one input
# channel per group, (1-D single channel, 1-D several channels, 2-D).
_FFT_MIN_TAPS_DENSE = {1: 63, 2: 21}
_FFT_MIN_TAPS_ONE_CHANNEL = {(1, True): 511, (1, False): 255, (2, True): 21, (2, False): 21}


def _fft_pays(problem):
    if problem.stride != (1,) * problem.n_spatial or problem.n_spatial == 3:
        return False
    if problem.c_in // problem.groups == 1:
        threshold = _FFT_MIN_TAPS_ONE_CHANNEL[problem.n_spatial, problem.c_in == 1]
    elif min(problem.c_in, problem.c_out) // problem.groups < 16:
        return False  # measured with 16 and 64 channels (in and out) only
    elif problem.n_spatial == 1 and problem.c_in // problem.groups > 32:
        return False  # 64 channels: direct still 1.6x faster at 63 taps
    else:
        threshold = _FFT_MIN_TAPS_DENSE[problem.n_spatial]
    return min(problem.kernel) >= threshold


# Input channels per group up to which ``grouped`` goes first (measured: wins up to 160, ties
# from 192 to 320).
_GROUPED_MAX_PER_GROUP = 160

# Output tiles of 4x4 (all samples together) from which F(4x4, 3x3) beats im2col, measured on
# dense layers. A dilated layer runs by phases, each a dense layer of about 1/d of the rows and
# columns, whose tiles are numbered together: its tiles are those of all phases (measured:
# phases of 8x8, d = 4 on 512ch 32x32, 64 tiles, F4 2.4x direct and 1.8x im2col). 5x5 layers
# against the channel-blocked direct, F(2x2, 5x5) (bench/winograd_layers.py and interleaved
# A/B runs, 2 threads): 0.93x to 1.43x on 64ch 56x56 (196 tiles of 4x4), 0.61x on 128ch 56x56,
# 0.88x on 192ch 28x28 and 0.75x on 4 x 192ch 28x28: past 64 channels its transformed weight
# (36 C K values) no longer stays in L2 while every block of tiles reads all of it.
_WINOGRAD_MIN_TILES = {(3, 3): 48, (5, 5): 128}
_WINOGRAD_MAX_CHANNELS = {(3, 3): None, (5, 5): 64}
# The Winograd algorithm per kernel size.
_WINOGRAD = {(3, 3): "winograd_f4x4_3x3", (5, 5): "winograd_f2x2_5x5"}


def _winograd_choice(problem):
    """The Winograd algorithm that pays on ``problem``, or None."""
    if (problem.n_spatial != 2 or problem.kernel not in _WINOGRAD or problem.stride != (1, 1)
            or problem.dtype != "float32"):
        return None
    c_g, k_g = problem.c_in // problem.groups, problem.c_out // problem.groups
    most = _WINOGRAD_MAX_CHANNELS[problem.kernel]
    if min(c_g, k_g) < 16 or (most is not None and max(c_g, k_g) > most):
        return None
    (d_h, d_w), (h_out, w_out) = problem.dilation, problem.out_size
    h_phase, w_phase = -(-h_out // d_h), -(-w_out // d_w)
    tiles = problem.batch * d_h * d_w * -(-h_phase // 4) * -(-w_phase // 4)
    return _WINOGRAD[problem.kernel] if tiles >= _WINOGRAD_MIN_TILES[problem.kernel] else None


def _direct_pays(problem):
    """Whether ``direct``'s channel-blocked kernel beats im2col, measured (see above)."""
    return (problem.dtype == "float32" and math.prod(problem.kernel) > 1
            and problem.c_in // problem.groups >= 2 and problem.c_out // problem.groups >= 16)


def _preference(problem):
    if getattr(problem, "kind", "conv") == "conv_transpose":
        if registry.get("transpose_direct").preferred(problem):
            return ("transpose_direct", "transpose_gemm")
        return ("transpose_gemm", "transpose_subpixel", "transpose_direct")
    if registry.can_run("separable", problem) and registry.get("separable").preferred(problem):
        return ("separable", "depthwise", "im2col", "direct")
    if _fft_pays(problem):
        return ("fft", "im2col", "direct")
    if problem.c_in // problem.groups == 1:
        multiplier = problem.c_out // problem.c_in
        if problem.channels_last and 1 < problem.c_in < 4 and multiplier >= 8:
            return ("im2col", "depthwise", "direct")
        return ("depthwise", "direct", "im2col")
    winograd = _winograd_choice(problem)
    if winograd is not None:
        return (winograd,) + (("direct", "im2col") if _direct_pays(problem) else
                              ("im2col", "direct"))
    if problem.groups > 1 and problem.c_in // problem.groups <= _GROUPED_MAX_PER_GROUP:
        return ("grouped", "im2col", "direct")
    if (registry.can_run("pointwise_packed", problem)
            and registry.get("pointwise_packed").preferred(problem)):
        return ("pointwise_packed", "im2col", "direct")
    if _direct_pays(problem):
        return ("direct", "im2col")
    return ("im2col", "grouped", "direct")


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
    usable = registry.names(problem)
    for name in _preference(problem):
        if name in usable:
            return name
    return usable[0]
