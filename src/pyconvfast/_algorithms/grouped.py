"""The ``grouped`` algorithm: grouped layers with a few channels per group, every group in one
parallel kernel (:mod:`pyconvfast._lib.grouped.kernel`).

Registered by :mod:`pyconvfast._algorithms` (which imports this module).
"""

import functools
import math

import numpy as np

from pyconvfast._core.kernel_args import bias_or_empty, tap_tables
from pyconvfast._lib.grouped.kernel import K_BLOCK, conv_grouped, conv_grouped_shifted
from pyconvfast._core.padding import tap_table
from pyconvfast._algorithms.registry import Algorithm, register
from pyconvfast._core.workspace import aligned_empty, work_chunk

# Elements of one task's lowered input block (taps x pixels) aimed at: 64 KiB of float32, so
# that the block stays in L2 while every output-channel block of the group sweeps over it.
_BLOCK_ELEMENTS = 16384
# Fewest and most output pixels per task.
_MIN_PIXELS, _MAX_PIXELS = 64, 4096


def grouped_supports(problem):
    """None if the ``grouped`` kernel runs ``problem``, else why not."""
    if problem.groups == 1:
        return "needs groups > 1 (a dense layer is im2col's or Winograd's)"
    if problem.c_in // problem.groups == 1:
        return "needs more than one input channel per group (groups == C_in is depthwise's)"
    return None


def pixel_block(problem, n_threads, max_pixels=None):
    """Output pixels per task: as many as keep the lowered block near ``_BLOCK_ELEMENTS``, a
    multiple of 16, and few enough that every thread gets at least 4 tasks where possible."""
    return work_chunk(math.prod(problem.out_size), problem.c_in // problem.groups
                      * math.prod(problem.kernel), _BLOCK_ELEMENTS,
                      cap=max_pixels or _MAX_PIXELS, multiple=16, minimum=_MIN_PIXELS,
                      units=problem.batch * problem.groups, min_tasks=4 * n_threads)


def _prepare(problem, weight):
    """The weight packed per group in blocks of K_BLOCK output channels (zero rows past the
    group's last): ``(groups, k_blocks, depth, K_BLOCK)``, C-contiguous."""
    groups = problem.groups
    k_per_group = problem.c_out // groups
    k_blocks = -(-k_per_group // K_BLOCK)
    depth = problem.c_in // groups * math.prod(weight.shape[2:])
    rows = np.zeros((groups, k_blocks * K_BLOCK, depth), dtype=weight.dtype)
    rows[:, :k_per_group] = weight.reshape(groups, k_per_group, depth)
    blocked = rows.reshape(groups, k_blocks, K_BLOCK, depth).transpose(0, 1, 3, 2)
    packed = aligned_empty(blocked.shape, weight.dtype)
    packed[...] = blocked
    return packed


def _param_space(problem):
    """The default block, then fixed blocks of output pixels per task."""
    plane = math.prod(problem.out_size)
    return [{}] + [{"max_pixels": size} for size in (64, 256, 1024) if size < plane]


def _shifts_apply(problem):
    """Whether the taps are read as shifts of phases of the padded input
    (``conv_grouped_shifted``, no lowering): where every phase is read, i.e. no stride exceeds
    the kernel's extent ``dilation * (k - 1) + 1`` (else most of the input would be copied for
    nothing, and the lowered path copies only what the taps read)."""
    return all(s <= d * (k - 1) + 1
               for s, d, k in zip(problem.stride, problem.dilation, problem.kernel))


@functools.lru_cache(maxsize=512)
def _phase_lines(problem):
    """(line_d, line_h, line_w, shifts, phases) for ``conv_grouped_shifted``.

    Per axis with stride s, ``line[r, j]`` is the input index of padded position ``j * s + r``
    (-1 for a zero, or past the last position any tap reads); per tap in (kd, kh, kw) order,
    its offset in the flattened phase volume and its phase number.
    """
    geometry = problem.as_3d()
    lines, offsets, tap_phases = [], [], []
    for size, out, k, s, d, pad in zip(geometry["in_size"], geometry["out_size"],
                                       geometry["kernel"], geometry["stride"],
                                       geometry["dilation"], geometry["pad_before"]):
        extent = (out - 1) * s + (k - 1) * d + 1
        length = -(-extent // s)
        padded = np.full(length * s, -1, dtype=np.int64)
        padded[:extent] = tap_table(size, extent, 1, 1, 1, pad, problem.padding_mode)[:, 0]
        line = np.ascontiguousarray(padded.reshape(length, s).T)
        line.flags.writeable = False  # built once per problem, shared by every call
        lines.append(line)
        taps = np.arange(k) * d
        offsets.append(taps // s)
        tap_phases.append(taps % s)
    (_, h_len), (_, w_len) = lines[1].shape, lines[2].shape
    (_, s_h, s_w) = geometry["stride"]
    shifts = (offsets[0][:, None, None] * h_len * w_len + offsets[1][None, :, None] * w_len
              + offsets[2][None, None, :])
    phases = ((tap_phases[0][:, None, None] * s_h + tap_phases[1][None, :, None]) * s_w
              + tap_phases[2][None, None, :])
    shifts = np.ascontiguousarray(shifts.reshape(-1), dtype=np.int64)
    phases = np.ascontiguousarray(phases.reshape(-1), dtype=np.int64)
    shifts.flags.writeable = phases.flags.writeable = False
    return (*lines, shifts, phases)


def _run(problem, x, packed, bias, out, n_threads, params):

    geometry = problem.as_3d()
    if _shifts_apply(problem):
        conv_grouped_shifted(
            x, packed, bias_or_empty(bias, x.dtype), out, *_phase_lines(problem),
            geometry["pad_before"][2], pixel_block(problem, n_threads, **params), n_threads,
        )
        return
    conv_grouped(
        x, packed, bias_or_empty(bias, x.dtype), out, *tap_tables(problem),
        geometry["stride"][2], geometry["dilation"][2], geometry["pad_before"][2],
        pixel_block(problem, n_threads, **params), n_threads,
    )


register(Algorithm(
    name="grouped",
    summary="groups > 1 with a few channels per group (ResNeXt, ShuffleNet): every group in one "
            "kernel, register tiles of 4 output channels x SIMD pixels",
    supports=grouped_supports,
    run=_run,
    prepare=_prepare,
    param_space=_param_space,
))
