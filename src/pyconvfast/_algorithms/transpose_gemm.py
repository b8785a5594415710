"""``transpose_gemm``: a transposed convolution as one GEMM per group over a block of samples
(every product once) and ``col2im`` adding them into the output
(:mod:`pyconvfast._lib.gemm_lowering.col2im`); any stride, padding, dilation and groups.
See :mod:`pyconvfast._algorithms.transpose_taps`.
"""

import math

import numpy as np

from pyconvfast._core.kernel_args import bias_or_empty
from pyconvfast._core.threads import blas_threads
from pyconvfast._core.workspace import workspace_bytes
from pyconvfast._lib.common.blas import BLAS_INT_MAX
from pyconvfast._lib.gemm_lowering.col2im import conv_transpose_gemm
from pyconvfast._algorithms.registry import Algorithm, register
from pyconvfast._algorithms.transpose_taps import KIND, only_transposed

def _gemm_prepare(problem, weight):
    """The weight as ``(groups, C_in // groups, K_g * T)``, C-contiguous: a reshape, no transpose.

    The GEMM reads it transposed (``op(B) = B^T``), which BLAS packs for free; transposing it
    here instead cost a strided copy of the whole weight on every call without a plan (8 MiB,
    about 8 ms, on DCGAN's 512->256 layer, twice the GEMM itself).
    """
    c_g = problem.c_in // problem.groups
    k_g = problem.c_out // problem.groups
    n_taps = math.prod(weight.shape[2:])
    return np.ascontiguousarray(weight).reshape(problem.groups, c_g, k_g * n_taps)


def gemm_blocks(problem, n_threads, itemsize, k_block=None):
    """(output channels, samples) per ``transpose_gemm`` task.

    As many of both as each thread's share of the workspace bound allows, all samples first (the
    GEMM's long side), then channels up to :data:`GEMM_TARGET_ROWS` (channel, tap) rows; cut
    down until every thread has a task.
    """
    k_g = problem.c_out // problem.groups
    n_taps = math.prod(problem.kernel)
    p_in = math.prod(problem.in_size)
    budget = max(1, workspace_bytes() // (n_threads * itemsize))
    per_channel_sample = n_taps * p_in
    n_block = max(1, min(problem.batch, budget // per_channel_sample))
    if k_block is None:
        k_block = max(1, min(k_g, budget // (per_channel_sample * n_block),
                             GEMM_TARGET_ROWS // n_taps))
    k_block = min(k_block, k_g)

    def n_tasks():
        return problem.groups * -(-k_g // k_block) * -(-problem.batch // n_block)

    while n_tasks() < n_threads and k_block > 1:
        k_block = -(-k_block // 2)
    while n_tasks() < n_threads and n_block > 1:
        n_block = -(-n_block // 2)
    return k_block, n_block


# (output channel, tap) rows of one GEMM: enough for BLAS to run at full speed, few enough that
# a large kernel gets one channel per task. Measured on FCN-32s' kernel-64 layer (4096 taps):
# 1 channel per task 23 ms, 4 channels 39 ms, all 21 (the budget's choice) 83 ms; DCGAN's 4x4
# layers run best at 64-128 channels (1024-2048 rows).
GEMM_TARGET_ROWS = 2048

# Elements of the column buffer one GEMM fills before col2im adds it into the output: small
# enough to stay in a core's L2 cache between the two (512 KiB of float32), and never fewer
# than GEMM_MIN_COLUMNS input positions, below which the GEMM gets too thin.
GEMM_CHUNK_ELEMENTS = 1 << 17
GEMM_MIN_COLUMNS = 256


def gemm_chunk_columns(problem, k_block):
    """Input positions per GEMM (rounded up to whole input rows by the kernel)."""
    return max(GEMM_MIN_COLUMNS, GEMM_CHUNK_ELEMENTS // (k_block * math.prod(problem.kernel)))


def _gemm_param_space(problem):
    k_g = problem.c_out // problem.groups
    return [{}] + [{"k_block": k} for k in (1, 2, 4, 16, 64) if k < k_g]


def _run_gemm(problem, x, w, bias, out, n_threads, params):
    k_block, n_block = gemm_blocks(problem, n_threads, x.itemsize, **params)
    # The kernel packs the input as (C_in, samples * positions), whose row length is a BLAS
    # leading dimension (a 32-bit int): a batch whose rows would be longer runs in slices of
    # samples. (A single sample longer than that still runs: gemm.pxd then splits its GEMMs.)
    p_in = math.prod(problem.in_size)
    per_call = max(1, min(problem.batch, BLAS_INT_MAX // max(p_in, 1)))
    buffer = np.empty(problem.c_in * per_call * p_in, dtype=x.dtype)
    geometry = problem.as_3d()
    bias = bias_or_empty(bias, x.dtype)
    with blas_threads.limit(1):
        for n0 in range(0, problem.batch, per_call):
            n1 = min(n0 + per_call, problem.batch)
            xpack = buffer[:problem.c_in * (n1 - n0) * p_in].reshape(
                problem.c_in, (n1 - n0) * p_in)
            conv_transpose_gemm(
                x[n0:n1], w, bias, out[n0:n1], xpack, geometry["kernel"],
                geometry["stride"], geometry["dilation"], geometry["pad_before"],
                k_block, n_block, gemm_chunk_columns(problem, k_block), n_threads)


register(Algorithm(
    name="transpose_gemm",
    summary="transposed convolution as GEMM (all samples of a task at once) + col2im: "
            "any stride, padding, dilation, groups",
    supports=only_transposed,
    run=_run_gemm,
    prepare=_gemm_prepare,
    param_space=_gemm_param_space,
    kind=KIND,
))
