"""The transposed-convolution algorithms (``kind="conv_transpose"`` in the registry).

Each ``run`` receives 5-D channels-first views: ``x`` ``(N, C_in, D, H, W)``, the weight
``(C_in, C_out // groups, KD, KH, KW)`` (already flipped for ``flip=True``) and ``out``
``(N, C_out, D_out, H_out, W_out)``. None of them zero-inserts the input:

- ``transpose_gemm``: per group, one GEMM ``W^T @ X`` over a block of samples gives every
  (output channel, tap, input position) product once; ``col2im`` adds them into the output
  (``_lib/col2im.pyx``).
- ``transpose_subpixel``: the sub-pixel decomposition. Along an axis of stride ``s``, the outputs
  ``o = r + q * s`` of phase ``r`` are reached only by the taps ``t`` with
  ``(r + pad - t * dilation) % s == 0``, each reading input ``q + (r + pad - t * dilation) / s``:
  a stride-1 convolution with a sub-kernel. The ``s^d`` phase convolutions run on the im2col
  kernel, written straight into the strided phase views of ``out``.
- ``transpose_direct``: the exact-order gather loop of ``direct``, with tap tables saying which
  input each (output, tap) pair reads, or -1 where the tap falls between input samples.
"""

import functools
import math

import numpy as np

from pyconvfast._algorithms import lowered_gemm, positions_chunk
from pyconvfast._kernel_args import bias_or_empty
from pyconvfast._lib.common.blas import BLAS_INT_MAX
from pyconvfast._lib.gemm_lowering.col2im import conv_transpose_gemm
from pyconvfast._lib.direct.generic import conv_direct
from pyconvfast._workspace import workspace_bytes
from pyconvfast._registry import Algorithm, register
from pyconvfast._threads import blas_threads

KIND = "conv_transpose"


def _only_transposed(problem):
    if getattr(problem, "kind", "conv") != KIND:
        return ("a transposed-convolution algorithm: call pcf.conv_transpose1d/2d/3d "
                "(or pass transposed=True)")
    return None


def _as_3d(values, n_spatial, fill):
    return (fill,) * (3 - n_spatial) + tuple(values)


# --- tap tables ---------------------------------------------------------------------------------

def transposed_taps(in_size, out_size, kernel, stride, dilation, pad_before):
    """``taps[o, t]``: the input index output ``o`` reads at tap ``t``, or -1 for none.

    Output ``o`` receives input ``i`` through tap ``t`` when
    ``o = i * stride - pad + t * dilation``.
    """
    position = (np.arange(out_size, dtype=np.int64)[:, None] + pad_before
                - np.arange(kernel, dtype=np.int64)[None, :] * dilation)
    index = position // stride
    valid = (position % stride == 0) & (index >= 0) & (index < in_size)
    return np.ascontiguousarray(np.where(valid, index, -1), dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _direct_tables(problem):
    tables = []
    for args in zip(*(problem.as_3d()[name] for name in
                      ("in_size", "out_size", "kernel", "stride", "dilation", "pad_before"))):
        table = transposed_taps(*args)
        table.flags.writeable = False
        tables.append(table)
    return tuple(tables)


def subpixel_phases(in_size, out_size, kernel, stride, dilation, pad_before):
    """The phases of one axis: ``(r, taps, table)`` for every residue ``r < min(stride, out)``.

    ``taps`` lists the kernel taps reaching outputs ``r, r + s, ...``; ``table[q, j]`` is the input
    index output ``r + q * s`` reads at tap ``taps[j]`` (-1 outside the input).
    """
    phases = []
    for r in range(min(stride, out_size)):
        taps = [t for t in range(kernel) if (r + pad_before - t * dilation) % stride == 0]
        n_q = -(-(out_size - r) // stride)
        offsets = np.array([(r + pad_before - t * dilation) // stride for t in taps],
                           dtype=np.int64)
        table = np.arange(n_q, dtype=np.int64)[:, None] + offsets[None, :]
        table = np.where((table >= 0) & (table < in_size), table, -1).reshape(n_q, len(taps))
        table = np.ascontiguousarray(table)
        table.flags.writeable = False
        phases.append((r, tuple(taps), table))
    return phases


@functools.lru_cache(maxsize=256)
def _subpixel_axes(problem):
    geometry = problem.as_3d()
    return tuple(
        subpixel_phases(*args) for args in zip(*(geometry[name] for name in (
            "in_size", "out_size", "kernel", "stride", "dilation", "pad_before")))
    )


# --- transpose_gemm -----------------------------------------------------------------------------

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
    supports=_only_transposed,
    run=_run_gemm,
    prepare=_gemm_prepare,
    param_space=_gemm_param_space,
    kind=KIND,
))


# --- transpose_subpixel -------------------------------------------------------------------------

def _forward_weight(problem, weight):
    """The transposed weight (C_in, K_g, *k) as a forward one, (C_out, C_g, *k)."""
    c_g = problem.c_in // problem.groups
    k_g = problem.c_out // problem.groups
    kernel = weight.shape[2:]
    w = weight.reshape((problem.groups, c_g, k_g) + kernel).swapaxes(1, 2)
    return w.reshape((problem.c_out, c_g) + kernel)


def _subpixel_prepare(problem, weight):
    """Per phase (rd, rh, rw): its three tap tables and its sub-kernel as an im2col matrix
    (None when no tap reaches the phase: its outputs are the bias alone)."""
    forward = _forward_weight(problem, weight)
    phases = []
    axes = _subpixel_axes(problem)
    for (rd, td, tab_d), (rh, th, tab_h), (rw, tw, tab_w) in (
        (a, b, c) for a in axes[0] for b in axes[1] for c in axes[2]
    ):
        if td and th and tw:
            sub = forward[:, :, list(td)][:, :, :, list(th)][:, :, :, :, list(tw)]
            matrix = np.ascontiguousarray(sub).reshape(problem.c_out, -1)
        else:
            matrix = None
        phases.append(((rd, rh, rw), (tab_d, tab_h, tab_w), matrix))
    return phases


def _run_subpixel(problem, x, phases, bias, out, n_threads, params):
    stride = problem.as_3d()["stride"]
    bias = bias_or_empty(bias, x.dtype)
    with blas_threads.limit(1):
        for (rd, rh, rw), tables, matrix in phases:
            view = out[:, :, rd::stride[0], rh::stride[1], rw::stride[2]]
            if matrix is None:
                view[...] = bias.reshape(-1, 1, 1, 1) if bias.size else 0
                continue
            n_positions = math.prod(view.shape[2:])
            chunk = positions_chunk(n_positions, matrix.shape[1], problem.c_out // problem.groups,
                                    problem.batch * problem.groups, n_threads, x.itemsize)
            lowered_gemm(x, matrix, bias, view, tables, problem.groups, chunk, n_threads)


def _subpixel_supports(problem):
    reason = _only_transposed(problem)
    if reason is None and max(problem.stride) == 1:
        return "needs a stride > 1 on some axis (at stride 1 there is a single phase: use " \
               "transpose_gemm or transpose_direct)"
    return reason


register(Algorithm(
    name="transpose_subpixel",
    summary="sub-pixel decomposition: stride^d stride-1 convolutions with sub-kernels, "
            "each by im2col + GEMM into its phase of the output",
    supports=_subpixel_supports,
    run=_run_subpixel,
    prepare=_subpixel_prepare,
    kind=KIND,
))


# --- transpose_direct ---------------------------------------------------------------------------

# Above this many (output, input channel, tap) visits the gather loop is refused: it visits
# every tap of every output, stride**d times the useful products, so a large upsampling layer
# would take seconds to minutes (FCN's kernel-64 stride-32 layer: 5e11 visits) and "auto" would
# spend that much timing it once.
DIRECT_MAX_VISITS = 2**28


def _direct_supports(problem):
    reason = _only_transposed(problem)
    if reason is not None:
        return reason
    visits = (problem.batch * problem.c_out * math.prod(problem.out_size)
              * (problem.c_in // problem.groups) * math.prod(problem.kernel))
    if visits > DIRECT_MAX_VISITS:
        return (f"the gather loop would visit {visits:.3g} (output, channel, tap) triples, "
                f"above {DIRECT_MAX_VISITS:.3g}: use transpose_gemm or transpose_subpixel")
    return None


def _direct_prepare(problem, weight):
    return _forward_weight(problem, weight)


def _run_direct(problem, x, weight, bias, out, n_threads, params):
    conv_direct(x, weight, bias_or_empty(bias, x.dtype), out, *_direct_tables(problem),
                n_threads)


register(Algorithm(
    name="transpose_direct",
    summary="exact-order gather loop (each output sums its taps in a fixed order): small layers",
    supports=_direct_supports,
    run=_run_direct,
    prepare=_direct_prepare,
    kind=KIND,
))


def preference(problem):
    """The no-timing order of the transposed algorithms (see :mod:`pyconvfast.tuning.heuristic`)."""
    if math.prod(problem.out_shape) * problem.c_in // problem.groups < 4096:
        return ("transpose_direct", "transpose_gemm")
    return ("transpose_gemm", "transpose_subpixel", "transpose_direct")
