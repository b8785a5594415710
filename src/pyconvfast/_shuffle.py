"""``channel_shuffle``: ShuffleNet's channel permutation."""

from __future__ import annotations

import operator

import numpy as np

from pyconvfast._core.problem import CHANNELS_FIRST, CHANNELS_LAST
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast._typing import ArrayLike, FloatArray, Layout

_LAYOUTS = tuple(CHANNELS_FIRST.values()) + tuple(CHANNELS_LAST.values())


def channel_shuffle(x: ArrayLike, groups: int, layout: Layout = "NCHW", *,
                    out: FloatArray | None = None, n_threads: int | None = None) -> FloatArray:
    """Shuffle the channels of ``x`` across ``groups`` (ShuffleNet).

    The ``C`` channels are viewed as ``(groups, C // groups)`` and transposed: output channel
    ``i * groups + g`` is input channel ``g * (C // groups) + i``, as
    ``torch.nn.functional.channel_shuffle`` and ``torch.nn.ChannelShuffle``. After a grouped
    convolution, it lets the next grouped convolution see channels of every group.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *spatial)``, or ``(N, *spatial, C)`` for a channels-last layout
        One, two or three spatial axes, as ``layout`` says; drop ``N`` for an unbatched input.
        Any dtype (it is only a permutation); any strides.
    groups : int
        Must divide ``C``.
    layout : {"NCL", "NCHW", "NCDHW", "NLC", "NHWC", "NDHWC"}, default "NCHW"
        Where the channel axis is, and how many spatial axes ``x`` has.
    out : ndarray, optional
        Preallocated result, of the shape and dtype of ``x``, not overlapping it; returned.
    n_threads : int, optional
        Accepted for uniformity with the other functions and validated; the copy is
        memory-bound and runs on the calling thread (``groups`` or ``C // groups`` strided
        NumPy copies, whichever is fewer).

    Returns
    -------
    ndarray, same shape, dtype and layout as ``x``

    Raises
    ------
    TypeError
        ``groups`` not an int; ``out`` not an array or of another dtype.
    ValueError
        A layout not in the list, an ``x`` of the wrong number of axes for it, ``groups`` < 1
        or not dividing ``C``; an ``out`` of another shape, read-only, or sharing memory with
        ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> x = np.arange(6.0).reshape(1, 6, 1, 1)
    >>> pcf.channel_shuffle(x, 2)[0, :, 0, 0]
    array([0., 3., 1., 4., 2., 5.])
    >>> pcf.channel_shuffle(np.arange(6.0).reshape(1, 1, 6), 3, layout="NLC")[0, 0]
    array([0., 2., 4., 1., 3., 5.])
    """
    if not isinstance(layout, str) or layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got layout={layout!r}")
    x = np.asarray(x)
    n_axes = len(layout)
    if x.ndim not in (n_axes, n_axes - 1):
        raise ValueError(
            f"x must be {n_axes}-D ({layout}) or {n_axes - 1}-D (unbatched) for "
            f"layout={layout!r}, got x.shape={x.shape}")
    if isinstance(groups, (bool, np.bool_)):
        raise TypeError(f"groups must be an int, got bool: groups={groups!r}")
    try:
        groups = operator.index(groups)
    except TypeError:
        raise TypeError(
            f"groups must be an int, got {type(groups).__name__}: groups={groups!r}") from None
    resolve_n_threads(n_threads)
    axis = -1 if layout in CHANNELS_LAST.values() else x.ndim - (n_axes - 1)
    channels = x.shape[axis]
    if groups < 1 or channels % groups:
        raise ValueError(
            f"groups must be a positive divisor of the {channels} channels of x "
            f"(x.shape={x.shape}, layout={layout!r}), got groups={groups}")
    if out is None:
        out = np.empty_like(x, order="K")
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        if out.dtype != x.dtype:
            raise TypeError(f"out has dtype {out.dtype}, but x has {x.dtype}")
        if out.shape != x.shape:
            raise ValueError(f"out has shape {out.shape}, but x has shape {x.shape}")
        if not out.flags.writeable:
            raise ValueError("out is read-only; pass a writable array")
        if np.may_share_memory(out, x):
            raise ValueError("out shares memory with x; pass a separate output array")
    per_group = channels // groups
    src = np.moveaxis(x, axis, 0)
    dst = np.moveaxis(out, axis, 0)
    # dst[i * groups + g] = src[g * per_group + i]: one strided copy per g or per i.
    if groups <= per_group:
        for g in range(groups):
            dst[g::groups] = src[g * per_group:(g + 1) * per_group]
    else:
        for i in range(per_group):
            dst[i * groups:(i + 1) * groups] = src[i::per_group]
    return out
