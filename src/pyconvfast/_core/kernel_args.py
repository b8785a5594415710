"""What every algorithm's adapter hands its compiled kernel besides the arrays: the tap tables
of a problem and the bias (or an empty array).

Shared by the algorithm modules (:mod:`pyconvfast._algorithms`) and the front ends that run
kernels themselves (``_separable``, ``_resize``), below all of them, so that none imports another
for these.
"""

import functools

import numpy as np

from pyconvfast._core.padding import tap_table


@functools.lru_cache(maxsize=512)
def tap_tables(problem):
    """The (depth, height, width) tap tables of a problem, built once per problem (read-only).

    Parameters
    ----------
    problem : ConvProblem

    Returns
    -------
    tuple of 3 ndarray of int64, shapes ``(out_size, kernel)`` per axis (leading axes of 1)
        See :func:`pyconvfast._core.padding.tap_table`.

    Examples
    --------
    >>> import numpy as np
    >>> from pyconvfast import _api
    >>> problem = _api.make_problem((1, 1, 3), (1, 1, 3), n_spatial=1, padding=1,
    ...                             padding_mode="reflect")
    >>> tap_tables(problem)[2]
    array([[1, 0, 1],
           [0, 1, 2],
           [1, 2, 1]])
    """
    geometry = problem.as_3d()
    tables = []
    for i, o, k, s, d, p in zip(
        geometry["in_size"], geometry["out_size"], geometry["kernel"],
        geometry["stride"], geometry["dilation"], geometry["pad_before"],
    ):
        table = tap_table(i, o, k, s, d, p, problem.padding_mode)
        table.flags.writeable = False
        tables.append(table)
    return tuple(tables)


def bias_or_empty(bias, dtype):
    """``bias``, or an empty array of ``dtype`` (the kernels' "no bias").

    Parameters
    ----------
    bias : ndarray of shape (C_out,) or None
    dtype : numpy dtype

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> bias_or_empty(None, np.float32).shape
    (0,)
    """
    if bias is not None:
        return bias
    try:
        return _EMPTY[dtype]
    except KeyError:
        empty = _EMPTY[dtype] = np.empty(0, dtype=dtype)
        empty.flags.writeable = False
        return empty


# One read-only empty array per dtype (allocating one cost a small call 0.2 us).
_EMPTY: dict[np.dtype, np.ndarray] = {}
