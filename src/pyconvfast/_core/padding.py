"""Padding by index arithmetic: which input index each output position reads at each tap.

Kernels never see a padded copy of the input. Instead, for one spatial axis, a table
``taps[o, t]`` gives the input index that output ``o`` reads at kernel tap ``t``, with the padding
mode already applied, or -1 where the tap falls on an implicit zero (``padding_mode="zeros"``).
The tables cost ``out_size * kernel_size`` integers per axis, far less than a padded input.
"""

import numpy as np


def tap_table(in_size, out_size, kernel, stride, dilation, pad_before, padding_mode):
    """Input index read by every (output position, kernel tap) pair along one axis.

    Parameters
    ----------
    in_size, out_size, kernel, stride, dilation, pad_before : int
        The geometry of one spatial axis (already validated).
    padding_mode : {"zeros", "reflect", "replicate", "circular"}

    Returns
    -------
    taps : ndarray of int64, shape (out_size, kernel), C-contiguous
        ``taps[o, t]`` is in ``[0, in_size)``, or -1 for a zero tap.

    Examples
    --------
    >>> tap_table(3, 3, 3, 1, 1, 1, "reflect")
    array([[1, 0, 1],
           [0, 1, 2],
           [1, 2, 1]])
    """
    position = (
        np.arange(out_size, dtype=np.int64)[:, None] * stride
        - pad_before
        + np.arange(kernel, dtype=np.int64)[None, :] * dilation
    )
    if padding_mode == "zeros":
        position[(position < 0) | (position >= in_size)] = -1
    elif padding_mode == "replicate":
        np.clip(position, 0, in_size - 1, out=position)
    elif padding_mode == "circular":
        np.mod(position, in_size, out=position)
    elif padding_mode == "reflect":
        # Reflection about the edge samples (no edge repeat), periodic with period 2*(n-1).
        period = 2 * (in_size - 1)
        if period == 0:
            position[:] = 0
        else:
            np.mod(position, period, out=position)
            position = np.where(position < in_size, position, period - position)
    else:
        raise ValueError(f"unknown padding_mode={padding_mode!r}")
    return np.ascontiguousarray(position, dtype=np.int64)
