"""``pointwise_packed``: 1x1 stride-1 unpadded layers with our own packed GEMM
(:mod:`pyconvfast._lib.pointwise.kernel`) instead of BLAS: the weight packed once into panels of
output channels, the activation panel packed once per thread and reused by every panel, the
bias fused, the threads split over output channels on small planes."""

import math

import numpy as np

from pyconvfast._lib.pointwise.kernel import FORMS, SPLITS, conv_pointwise_packed, pack_weights
from pyconvfast._core.kernel_args import bias_or_empty
from pyconvfast._algorithms.im2col import _is_pointwise
from pyconvfast._algorithms.registry import Algorithm, register

# Input channels per block (kb), in bytes of one channel: 256 float32 or 128 float64 channels
# (a packed activation panel of kb x 48 pixels, 48 KB; the output tile reloaded every kb
# channels). Measured on ResNet-50's 1x1 layers, one thread, NCHW: kb = 256 beat 128 by 5-15%
# on 7x7 and 56x56 planes; 512 was no faster.
POINTWISE_BLOCK_BYTES = 1024
# Channels-first planes of at most this many pixels run the "hwc" tiles too (vectors along
# output channels, none wasted on a 49-pixel row; the kernel stages each task's outputs and
# copies them to the channels-first output). Measured (one thread, float32, kb = 256): on
# ResNet-50's 7x7 layers 71-75% of the FMA peak against 52-59% for "chw", on MobileNetV2's
# 65-68% against 59-63%; on 14x14 planes "chw" stays ahead (82-83% against 77-82%).
POINTWISE_HWC_MAX_PIXELS = 100


def _pointwise_supports(problem):
    if not _is_pointwise(problem):
        return ("needs a 1x1 kernel, stride 1 and no padding, got "
                f"kernel={problem.kernel}, stride={problem.stride}, "
                f"padding={tuple(zip(problem.pad_before, problem.pad_after))}")
    return None


# Channels per group from which the heuristic (PYCONVFAST_TUNE=estimate) runs
# ``pointwise_packed`` before im2col's BLAS path: ResNet-50's and MobileNetV2's 1x1 layers (16
# to 2048 channels; bench/pointwise_packed.py, float32, one thread) ran 1.2-1.3x faster in
# geometric mean in both layouts, 0.86x to 1.95x per layer. Fewer channels and float64 were
# not measured.
POINTWISE_PREFERRED_MIN_CHANNELS = 16


def _pointwise_preferred(problem):
    return (problem.dtype == "float32"
            and min(problem.c_in, problem.c_out) // problem.groups
            >= POINTWISE_PREFERRED_MIN_CHANNELS)


def _pack(problem, weight):
    return pack_weights(weight.reshape(problem.c_out, -1), problem.groups)


def _flat(a):
    """``a`` (N, C, D, H, W) as an (N, C, D * H * W) view, or None where its pixels do not
    flatten without a copy."""
    flat = a.view()
    try:
        flat.shape = (a.shape[0], a.shape[1], -1)
    except AttributeError:
        return None
    return flat


def _pointwise_param_space(problem):
    """The defaults, then each tile form, thread split and input-channel block forced."""
    return ([{}] + [{"form": form} for form in FORMS] + [{"split": split} for split in SPLITS]
            + [{"kb": kb} for kb in (64, 128, 512) if kb < problem.c_in // problem.groups])


def _run_pointwise(problem, x, packed, bias, out, n_threads, params):
    # Inputs whose pixels do not flatten are copied (the kernel packs its tiles anyway); an
    # output that does not flatten gets the result through a temporary.
    x_flat = _flat(x)
    if x_flat is None:
        x_flat = x.reshape(x.shape[0], x.shape[1], -1)
    out_flat = _flat(out)
    target = out_flat if out_flat is not None else np.empty(
        (out.shape[0], out.shape[1], math.prod(out.shape[2:])), out.dtype)
    unit = target.itemsize
    channels_contiguous = target.strides[1] == unit and target.strides[2] != unit
    form = params.get("form")
    if form is None:
        # Vectors along whichever axis the output stores contiguously, or along channels on
        # small planes.
        small = target.shape[2] <= POINTWISE_HWC_MAX_PIXELS
        form = "hwc" if channels_contiguous or small else "chw"
    kb = params.get("kb", POINTWISE_BLOCK_BYTES // x.itemsize)
    conv_pointwise_packed(x_flat, packed, bias_or_empty(bias, x.dtype), target, problem.groups,
                          form, params.get("split", ""), kb, n_threads)
    if out_flat is None:
        out[...] = target.reshape(out.shape)


register(Algorithm(
    name="pointwise_packed",
    summary="1x1 stride-1 unpadded layers: our own packed GEMM micro-kernels (weights packed "
            "once, bias fused, threads over output channels on small planes)",
    supports=_pointwise_supports,
    run=_run_pointwise,
    prepare=_pack,
    param_space=_pointwise_param_space,
    preferred=_pointwise_preferred,
))
