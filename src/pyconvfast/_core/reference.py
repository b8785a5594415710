"""A float64 reference convolution in plain NumPy, used by the demo to check the kernels.

It shares nothing with the kernels: it pads a copy with ``np.pad``, lowers the input to windows
with ``sliding_window_view`` and contracts them with the weight by ``einsum``. Slow and memory
hungry on purpose-free simplicity; for checking, not for use.
"""

import numpy as np

_NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                    "circular": "wrap"}


def reference_conv(problem, x, weight, bias=None):
    """Convolution of channels-first, batched arrays in float64, as ``problem`` describes it.

    Parameters
    ----------
    problem : ConvProblem
        The geometry (padding, stride, dilation, groups, mode, flip).
    x : ndarray, shape (N, C_in, *spatial)
    weight : ndarray, shape (C_out, C_in // groups, *kernel)
    bias : ndarray, shape (C_out,), optional

    Returns
    -------
    ndarray of float64, shape (N, C_out, *out_size)
    """
    n_spatial = problem.n_spatial
    spatial_axes = tuple(range(2, 2 + n_spatial))
    weight = np.asarray(weight, dtype=np.float64)
    if problem.flip:
        weight = np.flip(weight, axis=spatial_axes)
    pads = [(0, 0), (0, 0)] + list(zip(problem.pad_before, problem.pad_after))
    padded = np.pad(np.asarray(x, dtype=np.float64), pads, mode=_NUMPY_PAD_MODES[problem.padding_mode])
    extents = [d * (k - 1) + 1 for k, d in zip(problem.kernel, problem.dilation)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, extents, axis=spatial_axes)
    windows = windows[
        (slice(None), slice(None))
        + tuple(slice(None, None, s) for s in problem.stride)
        + tuple(slice(None, None, d) for d in problem.dilation)
    ]
    out_size = windows.shape[2:2 + n_spatial]
    groups = problem.groups
    windows = windows.reshape((windows.shape[0], groups, -1) + windows.shape[2:])
    weight = weight.reshape((groups, -1) + weight.shape[1:])
    space, taps = "hwz"[:n_spatial], "rst"[:n_spatial]
    result = np.einsum(f"ngc{space}{taps},gkc{taps}->ngk{space}", windows, weight, optimize=True)
    result = result.reshape((result.shape[0], problem.c_out) + tuple(out_size))
    if bias is not None:
        result += np.asarray(bias, dtype=np.float64).reshape((-1,) + (1,) * n_spatial)
    return result


def error_scale(problem, x, weight, bias=None):
    """``|x| (*) |w| + |b|``: the size of the terms each output sums, to measure error against."""
    return reference_conv(
        problem, np.abs(x), np.abs(weight), None if bias is None else np.abs(bias)
    )
