"""``transpose_direct``: the exact-order gather loop of ``direct`` (each output sums its taps in
a fixed order) with tables saying which input each (output, tap) pair reads; small layers.
See :mod:`pyconvfast._algorithms.transpose_taps`.
"""

import functools
import math

from pyconvfast._core.kernel_args import bias_or_empty
from pyconvfast._lib.direct.generic import conv_direct
from pyconvfast._algorithms.registry import Algorithm, register
from pyconvfast._algorithms.transpose_taps import (KIND, forward_weight, only_transposed,
                                                   transposed_taps)

@functools.lru_cache(maxsize=256)
def _direct_tables(problem):
    tables = []
    for args in zip(*(problem.as_3d()[name] for name in
                      ("in_size", "out_size", "kernel", "stride", "dilation", "pad_before"))):
        table = transposed_taps(*args)
        table.flags.writeable = False
        tables.append(table)
    return tuple(tables)



# Above this many (output, input channel, tap) visits the gather loop is refused: it visits
# every tap of every output, stride**d times the useful products, so a large upsampling layer
# would take seconds to minutes (FCN's kernel-64 stride-32 layer: 5e11 visits) and "auto" would
# spend that much timing it once.
DIRECT_MAX_VISITS = 2**28


def _direct_supports(problem):
    reason = only_transposed(problem)
    if reason is not None:
        return reason
    visits = (problem.batch * problem.c_out * math.prod(problem.out_size)
              * (problem.c_in // problem.groups) * math.prod(problem.kernel))
    if visits > DIRECT_MAX_VISITS:
        return (f"the gather loop would visit {visits:.3g} (output, channel, tap) triples, "
                f"above {DIRECT_MAX_VISITS:.3g}: use transpose_gemm or transpose_subpixel")
    return None


# Below this many output elements x input channels per group the gather loop's exact order
# costs less than setting up a GEMM (the heuristic tries it first there).
DIRECT_PREFERRED_BELOW = 4096


def _direct_preferred(problem):
    return math.prod(problem.out_shape) * problem.c_in // problem.groups < DIRECT_PREFERRED_BELOW


def _direct_prepare(problem, weight):
    return forward_weight(problem, weight)


def _run_direct(problem, x, weight, bias, out, n_threads, params):
    conv_direct(x, weight, bias_or_empty(bias, x.dtype), out, *_direct_tables(problem),
                n_threads)


register(Algorithm(
    name="transpose_direct",
    summary="exact-order gather loop (each output sums its taps in a fixed order): small layers",
    supports=_direct_supports,
    run=_run_direct,
    prepare=_direct_prepare,
    preferred=_direct_preferred,
    kind=KIND,
))
