"""The effective thread count of a call."""

import operator

from pyconvfast._lib.openmp_info import max_threads


def resolve_n_threads(n_threads):
    """The number of OpenMP threads a kernel should use.

    Parameters
    ----------
    n_threads : int or None
        None means OpenMP's default, which honours ``OMP_NUM_THREADS``.

    Returns
    -------
    int, at least 1

    Raises
    ------
    TypeError
        If ``n_threads`` is neither None nor an integer.
    ValueError
        If ``n_threads < 1``.
    """
    if n_threads is None:
        return max(1, max_threads())
    if isinstance(n_threads, bool):
        raise TypeError(f"n_threads must be an int or None, got n_threads={n_threads!r}")
    try:
        count = operator.index(n_threads)
    except TypeError:
        raise TypeError(
            f"n_threads must be an int or None, got n_threads={n_threads!r}"
        ) from None
    if count < 1:
        raise ValueError(f"n_threads must be >= 1 or None, got n_threads={count}")
    return count
