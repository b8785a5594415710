"""The choice of algorithm without timing anything: ``PYCONVFAST_TUNE=estimate`` or ``off``, and
the candidate the tuner times first.

Measured on the ResNet-18, depthwise and grouped layers of ``bench``-like shapes: ``im2col``
wins by 1.5x to 30x over ``direct`` wherever each group has more than one input channel (a GEMM
of some depth).

With one input channel per group, ``depthwise`` (``bench/depthwise_vs_torch.py``, float32, one
and two threads, AVX-512 machine) beats ``direct`` by 2x to 60x and ``im2col`` by 4x to 120x
on the MobileNetV2 layers (3x3, stride 1 and 2, 7x7 to 112x112 planes, both layouts), 5x5,
dilated 3x3, 1-D k=31/63 and 3x3x3 layers, and also on single-channel inputs with a channel
multiplier up to 64 (1.2x to 1.6x over im2col). The one loss measured: channels-last inputs of
2 or 3 channels with a multiplier of 8 or more (64x64, C=3, m=8: im2col 1.27x faster), where
the channels are too few to vectorize over and the rows are strided; ``im2col`` goes first there.
Tiny problems (a few hundred outputs) are decided by call overhead, a few microseconds either
way.

Winograd F(4x4, 3x3), float32, measured end to end (``pcf.conv2d``, weight transform included,
as "auto" runs it), single-thread CPU time, against im2col: 1.3x to 3.6x faster on 3x3 stride-1
layers with 16 to 512 channels per group (in and out) and at least 49 output tiles of 4x4 in the
batch (e.g. 64ch 56x56: 3.6x; 128ch 28x28: 2.0x; 256ch 14x14 x4: 1.3x; 16ch 28x28: 1.3x);
slower below about 32 tiles, where transforming the weights and reading the 4x larger
transformed weights outweigh the saved multiplies (512ch 7x7: 0.2x at N=1, 0.9x at N=8;
256ch 14x14: 0.75x at N=1). At 2 threads with prepared weights (bench/winograd.py) F4 runs
1.5x to 4x faster than im2col on the ResNet 3x3 layers, except 512ch 7x7 at N=1 (1.0x). In
float64 the margin is thin or negative beyond 64 channels, so float64 stays with im2col.

Kernels found rank-1 (``problem.rank1_kernel``, see ``pyconvfast._rank1``): ``separable`` (two
1-D depthwise passes) from 5x5 on. Measured, float32, one thread, Gaussian blurs with
``groups=C`` against ``depthwise``: 3x3 0.8x to 0.9x (1, 3 and 32 channels), 5x5 1.05x to 1.3x,
7x7 1.8x to 2x, 11x11 3x to 9x, 31x31 24x to 117x (``bench/separable_kernels.py``, 512x512).

``direct``'s channel-blocked kernel (at least 2 input and 4 output channels per group), float32,
one thread, CPU time (``bench/direct_vs_peers.py --threads 1``), against im2col: faster on every
kernel larger than 1x1 measured on ResNet-50, DeepLab and the TCN: conv1 7x7 stride 2: 2.2x;
3x3 stride 1: 1.05x to 2.2x; 3x3 stride 2: 1.1x to 1.4x; dilated 3x3 (DeepLab, d = 2 to 18):
1.2x to 2.0x, except 512 channels at d = 4 (0.97x); dilated conv1d k=3 (TCN): about 2x. On 1x1
layers it is as often slower (0.8x to 1.7x), so those stay with im2col; groups of fewer than 16
output channels (ResNeXt) were not measured and stay with im2col too.

FFT (``env -u OPENBLAS_CORETYPE python bench/fft_crossover.py --threads 2 --passes 2``,
float32, N=1, padding "same"; AMD EPYC, 2 threads, against the channel-blocked ``direct``):
``fft`` beats every other algorithm from a kernel of 63 taps in 1-D with 16 channels (4096
samples; with 64 channels direct was still 1.6x faster at 63), of 21x21 in 2-D with 16
channels (64x64) and 15x15 with 64 channels (32x32), of 21x21 in 2-D with one channel
(256x256), and, with one input channel per group, from 255 taps in 1-D (64 channels,
depthwise) and 511 (a single channel). The rule below follows these crossovers, counting taps
(a dilated kernel costs direct no more) and, for dense layers, only from 16 input and 16
output channels per group (the channel counts measured), in 1-D only up to 32; 3-D was not
measured, so "estimate" leaves it to the others (measure mode times fft there too).

Grouped layers with 2 to 160 input channels per group (bench/grouped.py, float32, 1 and 2
threads, AVX-512 machine, shared and loaded): ``grouped`` beats ``im2col`` 1.05x to 6x on the
ResNeXt-50 3x3 layers (32 groups of 4 to 32 channels, stride 1 and 2; least on the 7x7 planes)
and 1.2x to 2.2x on ShuffleNet's grouped 1x1 layers with 24 to 160 channels per group; from
192 to 320 channels per group (the widest ShuffleNet layers) they tie within the noise. Where Winograd pays (16+ channels per
group and enough tiles), it goes first.
"""

import math

from pyconvfast import _rank1, _registry

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

# Output tiles of 4x4 (all samples together) from which F(4x4, 3x3) beats im2col, measured.
_WINOGRAD_MIN_TILES = 48


def _winograd_pays(problem):
    if (problem.n_spatial != 2 or problem.kernel != (3, 3) or problem.stride != (1, 1)
            or problem.dilation != (1, 1) or problem.dtype != "float32"):
        return False
    if problem.c_in // problem.groups < 16 or problem.c_out // problem.groups < 16:
        return False
    h_out, w_out = problem.out_size
    return problem.batch * -(-h_out // 4) * -(-w_out // 4) >= _WINOGRAD_MIN_TILES


def _direct_pays(problem):
    """Whether ``direct``'s channel-blocked kernel beats im2col, measured (see above)."""
    return (problem.dtype == "float32" and math.prod(problem.kernel) > 1
            and problem.c_in // problem.groups >= 2 and problem.c_out // problem.groups >= 16)


def _preference(problem):
    if getattr(problem, "kind", "conv") == "conv_transpose":
        from pyconvfast._transpose_algorithms import preference

        return preference(problem)
    if _rank1.pays(problem):
        return ("separable", "depthwise", "im2col", "direct")
    if _fft_pays(problem):
        return ("fft", "im2col", "direct")
    if problem.c_in // problem.groups == 1:
        multiplier = problem.c_out // problem.c_in
        if problem.channels_last and 1 < problem.c_in < 4 and multiplier >= 8:
            return ("im2col", "depthwise", "direct")
        return ("depthwise", "direct", "im2col")
    if _winograd_pays(problem):
        return ("winograd_f4x4_3x3", "im2col", "direct")
    if problem.groups > 1 and problem.c_in // problem.groups <= _GROUPED_MAX_PER_GROUP:
        return ("grouped", "im2col", "direct")
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
    usable = _registry.names(problem)
    for name in _preference(problem):
        if name in usable:
            return name
    return usable[0]
