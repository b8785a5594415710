"""``direct``: every problem, read in place; channel-blocked SIMD register tiles
(:mod:`pyconvfast._lib.direct.blocked`) from a few output channels per group, else the generic
loop (:mod:`pyconvfast._lib.direct.generic`), whose summation order ``depthwise`` reproduces
bit for bit.
"""

import math

from pyconvfast._lib.direct.generic import conv_direct
from pyconvfast._lib.direct.blocked import conv_direct_blocked
from pyconvfast._lib.direct.blocked import pack_weights as direct_pack_weights
from pyconvfast._core.kernel_args import bias_or_empty, tap_tables
from pyconvfast._core.workspace import aligned_empty
from pyconvfast._algorithms.registry import Algorithm, any_problem, register

# From this many output channels per group, a problem runs the channel-blocked SIMD kernel
# (_lib/direct/blocked.pyx) rather than the generic loop (_lib/direct/generic.pyx): its vectors
# hold 16 float32 or 8 float64 output channels of one group. Problems with one input channel
# per group keep the generic loop, whose summation order (no fused multiply-add) ``depthwise``
# reproduces bit for bit.
DIRECT_BLOCKED_MIN_CHANNELS = 4
# The blocked kernel's row tilings (``tiles=`` of conv_direct_blocked) the tuner may force over
# the default ("auto": by row width): "full" cuts every output row into tiles of equal width,
# border pixels included (zero padding); "split" keeps the interior columns and the border
# columns in separate tiles.
DIRECT_TILES = ("full", "split")


def _direct_blocked_applies(problem):
    return (problem.c_out // problem.groups >= DIRECT_BLOCKED_MIN_CHANNELS
            and problem.c_in // problem.groups >= 2
            and problem.dtype in ("float32", "float64"))


def _direct_prepare(problem, weight):
    """(packed, weight): the weight packed in channel blocks where the blocked kernel applies
    (else None), and the weight itself for the generic loop."""
    packed = direct_pack_weights(weight, problem.groups, aligned_empty) \
        if _direct_blocked_applies(problem) else None
    return packed, weight


def _item_strides(x, out):
    """Whether every stride of both arrays (of one dtype) is a whole number of items."""
    return math.gcd(*x.strides, *out.strides) % x.itemsize == 0


def _bind_direct(problem, prepared, bias, n_threads, params):
    """The kernel call with its tables and scalars worked out once (see ``Algorithm.bind``)."""
    packed, weight = prepared
    bias = bias_or_empty(bias, weight.dtype)
    tables = tap_tables(problem)

    def generic(x, out):
        conv_direct(x, weight, bias, out, *tables, n_threads)

    if packed is None:
        return generic
    geometry = problem.as_3d()
    c_out, stride, dilation, pad = (problem.c_out, geometry["stride"][2],
                                    geometry["dilation"][2], geometry["pad_before"][2])
    tiles, c_chunk = params.get("tiles", "auto"), params.get("c_chunk", 0)

    def blocked(x, out):
        if _item_strides(x, out):
            conv_direct_blocked(x, packed, c_out, bias, out, *tables, stride, dilation, pad,
                                n_threads, tiles=tiles, c_chunk=c_chunk)
        else:
            generic(x, out)

    return blocked


def _run_direct(problem, x, prepared, bias, out, n_threads, params):
    _bind_direct(problem, prepared, bias, n_threads, params)(x, out)


def _direct_param_space(problem):
    """The tiling chosen by row width first, then each one forced."""
    if not _direct_blocked_applies(problem):
        return [{}]
    return [{}] + [{"tiles": tiles} for tiles in DIRECT_TILES]


register(Algorithm(
    name="direct",
    summary="any stride, dilation, padding mode and groups; channel-blocked SIMD register tiles "
            f"from {DIRECT_BLOCKED_MIN_CHANNELS} output channels per group",
    supports=any_problem,
    run=_run_direct,
    prepare=_direct_prepare,
    param_space=_direct_param_space,
    bind=_bind_direct,
))


