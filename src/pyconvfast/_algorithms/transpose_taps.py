"""What the transposed-convolution algorithms share: their registry kind, which input each
(output, tap) pair reads along an axis, and the weight seen as a forward convolution's.

The algorithms (``kind="conv_transpose"`` in the registry), each in its own module, receive 5-D
channels-first views: ``x`` ``(N, C_in, D, H, W)``, the weight ``(C_in, C_out // groups, KD, KH,
KW)`` (already flipped for ``flip=True``) and ``out`` ``(N, C_out, D_out, H_out, W_out)``. None
of them zero-inserts the input:

- :mod:`~pyconvfast._algorithms.transpose_gemm`: per group, one GEMM ``W^T @ X`` over a block of
  samples gives every (output channel, tap, input position) product once; ``col2im`` adds them
  into the output.
- :mod:`~pyconvfast._algorithms.transpose_subpixel`: the sub-pixel decomposition. Along an axis
  of stride ``s``, the outputs ``o = r + q * s`` of phase ``r`` are reached only by the taps
  ``t`` with ``(r + pad - t * dilation) % s == 0``, each reading input
  ``q + (r + pad - t * dilation) / s``: a stride-1 convolution with a sub-kernel. The ``s^d``
  phase convolutions run on the im2col kernel, written straight into the strided phase views of
  ``out``.
- :mod:`~pyconvfast._algorithms.transpose_direct`: the exact-order gather loop of ``direct``,
  with tap tables saying which input each (output, tap) pair reads, or -1 where the tap falls
  between input samples.
"""

import numpy as np

KIND = "conv_transpose"


def only_transposed(problem):
    if getattr(problem, "kind", "conv") != KIND:
        return ("a transposed-convolution algorithm: call pcf.conv_transpose1d/2d/3d "
                "(or pass transposed=True)")
    return None


def _as_3d(values, n_spatial, fill):
    return (fill,) * (3 - n_spatial) + tuple(values)


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


def forward_weight(problem, weight):
    """The transposed weight (C_in, K_g, *k) as a forward one, (C_out, C_g, *k)."""
    c_g = problem.c_in // problem.groups
    k_g = problem.c_out // problem.groups
    kernel = weight.shape[2:]
    w = weight.reshape((problem.groups, c_g, k_g) + kernel).swapaxes(1, 2)
    return w.reshape((problem.c_out, c_g) + kernel)
