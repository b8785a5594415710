"""The effective thread count of a call."""

import operator

from pyconvfast._lib.openmp_info import max_threads

# OpenMP takes an int; far beyond any core count, this bound also keeps BLAS's setters in range.
MAX_THREADS = 2**15


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
        If ``n_threads`` is not in ``[1, MAX_THREADS]``.
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
    if not 1 <= count <= MAX_THREADS:
        raise ValueError(
            f"n_threads must be None or between 1 and {MAX_THREADS}, got n_threads={count}"
        )
    return count


class _BlasThreads:
    """Sets the thread count of the BLAS that ``scipy.linalg.cython_blas`` calls.

    Only the BLAS libraries bundled with SciPy are touched (NumPy's own copy is left alone), and
    the controller is built once: a ``limit()`` then costs a few microseconds.
    """

    def __init__(self):
        self._controller = None

    def _scipy_blas(self):
        if self._controller is None:
            import scipy.linalg  # noqa: F401  (loads SciPy's BLAS so threadpoolctl can see it)
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController().select(user_api="blas")
            scipy_own = [lib for lib in controller.lib_controllers if "scipy" in lib.filepath]
            if scipy_own:
                controller.lib_controllers = scipy_own
            self._controller = controller
        return self._controller

    def limit(self, n_threads):
        """Context manager running BLAS with ``n_threads`` threads inside it."""
        return self._scipy_blas().limit(limits=n_threads)


blas_threads = _BlasThreads()
