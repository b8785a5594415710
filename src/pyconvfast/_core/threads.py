"""The effective thread count of a call, and BLAS/OpenMP thread coordination."""

import contextlib
import ctypes
import operator
import os
import threading
import warnings

from pyconvfast._config import get_setting
from pyconvfast._lib.common.openmp_info import max_threads

# The largest n_threads accepted at all (OpenMP takes an int). Counts above thread_limit() but
# not above this are run with thread_limit() threads, with a warning; above it, a ValueError.
MAX_THREADS = 2**15


def resolve_n_threads(n_threads) -> int:
    """The number of OpenMP threads a kernel should use.

    Parameters
    ----------
    n_threads : int or None
        None means the ``n_threads`` setting (:func:`pyconvfast.config_context`), else
        OpenMP's default, which honours ``OMP_NUM_THREADS``.

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
        configured = get_setting("n_threads")
        if configured is None:
            return max(1, max_threads())
        n_threads = configured
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
    limit = thread_limit()
    if count > limit:
        warnings.warn(
            f"n_threads={count} is more than the runtimes support here; using {limit} threads "
            f"(pyconvfast.thread_limit())", RuntimeWarning, stacklevel=3)
        return limit
    return count


def thread_limit() -> int:
    """The most threads one call runs, whatever ``n_threads`` asks for.

    Kernels call BLAS from each of their OpenMP threads. OpenBLAS supports as many calling
    threads as it was built for (64 in SciPy's wheels): past that it runs out of memory regions
    and may crash the process, and libgomp ends the process when it cannot create a thread (as
    with tens of thousands). The limit is the smallest thread count the BLAS libraries that
    pyconvfast calls accept (found once, by asking them for more threads than any machine has
    and reading back what they kept), and at most 4 threads per CPU: more never runs faster.

    Parameters
    ----------
    None

    Returns
    -------
    int, at least 1

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> pcf.thread_limit() >= 1
    True
    """
    return blas_threads.max_threads


class _BlasThreads:
    """Sets the thread count of the BLAS that ``scipy.linalg.cython_blas`` calls.

    Only the BLAS libraries bundled with SciPy are touched (NumPy's own copy is left alone). The
    threadpoolctl controllers are found once; after that, a :meth:`limit` costs two calls into
    the BLAS (about a microsecond), where ``threadpoolctl.threadpool_limits`` costs ~10 us.
    """

    def __init__(self):
        # Found at import (a few ms, beside SciPy's own import) rather than on the first
        # convolution, whose time should be the kernel's.
        import scipy.linalg  # loads SciPy's BLAS so that threadpoolctl can see it
        from threadpoolctl import ThreadpoolController

        libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        # SciPy's wheels keep their BLAS in scipy.libs/ beside the package (NumPy's own copy, in
        # numpy.libs/, may have a similar name); a system SciPy shares the system BLAS.
        scipy_dir = os.path.dirname(os.path.dirname(scipy.linalg.__file__))
        scipy_own = [lib for lib in libraries
                     if lib.filepath.startswith((scipy_dir + os.sep, scipy_dir + ".libs"))]
        self._libraries = scipy_own or libraries
        self._setters = [thread_count_setter(lib) for lib in self._libraries]
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = []
        self.max_threads = self._probe_max_threads()

    def _probe_max_threads(self):
        """The smallest thread count any controlled BLAS keeps when asked for MAX_THREADS, and
        at most 4 per CPU (see :func:`thread_limit`); the libraries' counts are restored."""
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        limit = max(64, 4 * (cpus or 1))
        for lib, set_count in zip(self._libraries, self._setters):
            saved = lib.get_num_threads()
            try:
                set_count(MAX_THREADS)
                kept = lib.get_num_threads()
            finally:
                set_count(saved)
            if kept and kept >= 1:
                limit = min(limit, kept)
        return min(limit, MAX_THREADS)

    def describe(self):
        """threadpoolctl's description of each BLAS library :meth:`limit` controls (a list of
        dicts with ``internal_api``, ``version``, ``architecture``, ``threading_layer``...)."""
        return [lib.info() for lib in self._libraries]

    @contextlib.contextmanager
    def limit(self, n_threads):
        """Context manager running SciPy's BLAS with ``n_threads`` threads inside it.

        BLAS's thread count is global to the process, so calls from several Python threads
        share it: the first to enter saves the caller's count, the last to leave restores it
        (nested or overlapping, entries and exits may interleave in any order).
        """
        with self._lock:
            if self._depth == 0:
                self._saved = [lib.get_num_threads() for lib in self._libraries]
            self._depth += 1
            for set_count in self._setters:
                set_count(n_threads)
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    for set_count, count in zip(self._setters, self._saved):
                        set_count(count)


def thread_count_setter(lib):
    """A function that sets ``lib``'s thread count from any Python thread.

    OpenBLAS built on pthreads has one process-wide pool, and threadpoolctl (3.5 on) lets only
    the first Python thread that set its count set it again: from any other thread its
    ``set_num_threads`` silently does nothing. An ``n_threads=1`` call from a worker thread
    (Dask's threaded scheduler, a thread pool) then ran OpenBLAS on every core (measured:
    2.0 CPU seconds per second on 2 cores) and left its threads spinning after the call.
    :class:`_BlasThreads` coordinates the Python threads itself (the first to enter saves the
    count, the last to leave restores it), so it calls OpenBLAS's own
    ``openblas_set_num_threads`` here. Other libraries, and OpenBLAS on OpenMP (whose count is
    per thread), keep threadpoolctl's setter.
    """
    if lib.internal_api == "openblas" and getattr(lib, "threading_layer", None) != "openmp":
        library = ctypes.CDLL(lib.filepath)   # already loaded: the same handle
        for prefix in ("", "scipy_"):
            for suffix in ("", "64_", "_64"):
                setter = getattr(library, f"{prefix}openblas_set_num_threads{suffix}", None)
                if setter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    return lambda count: setter(int(count))
    return lib.set_num_threads


blas_threads = _BlasThreads()
