"""Work buffers for the kernels, kept from one call to the next.

A kernel's per-thread buffers (im2col's columns, Winograd's transformed tiles) can reach tens
of MiB. Allocated and freed on every call, they are fresh pages each time the allocator hands
memory back to the system: a few ms of page faults per call, paid in full by the first call
of a process. They are therefore NumPy arrays (NumPy asks the kernel for transparent huge pages
on large arrays, which makes their first touch several times cheaper) borrowed from a small
pool and given back after the call.

Python threads convolving at the same time never share a buffer: a borrowed buffer leaves the
pool until it is given back, and a call that finds none large enough allocates its own. The
pool keeps at most :data:`MAX_KEPT` buffers; a call that needs a larger one than any kept drops
the largest kept buffer too small for it, so one thread convolving keeps a single buffer, as
large as its largest call needed (at most the workspace bound, ``PYCONVFAST_WORKSPACE_MB``).
"""

import math
import threading

import numpy as np

from pyconvfast._config import get_setting
from pyconvfast._lib.common.memory import bytes_to_boundary

def workspace_bytes():
    """The bound on the work buffers of a call, all threads together: the ``workspace_mb``
    setting (``PYCONVFAST_WORKSPACE_MB``, default 128 MiB; :mod:`pyconvfast._config`).

    Returns
    -------
    int

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> with pcf.config_context(workspace_mb=2):
    ...     workspace_bytes()
    2097152
    """
    return int(get_setting("workspace_mb") * 2**20)



def work_chunk(n_items, item_bytes, budget_bytes, *, cap=None, multiple=1, minimum=1, units=1,
               min_tasks=1) -> int:
    """Items (output positions, rows, pixels) one task handles at once: the one rule by which
    every kernel adapter sizes its work.

    As many as ``budget_bytes`` holds (a thread's share of the workspace bound, or a cache
    size), at most ``cap``; then, where fewer ``units`` (independent pieces of work: samples x
    groups) than ``min_tasks`` are given, at most an even split of a unit into enough tasks;
    rounded down to a ``multiple`` and kept at least ``minimum`` (and at most ``n_items``).

    Parameters
    ----------
    n_items : int
        Items of one unit (e.g. output positions of one sample and group).
    item_bytes : int
        Buffer bytes one item needs (any unit consistent with ``budget_bytes``).
    budget_bytes : int
        What one task's buffers may hold.
    cap, multiple, minimum : int, optional
        Upper bound (a tuning parameter, None for none), granularity and lower bound.
    units, min_tasks : int, optional
        Independent units of ``n_items`` each, and the tasks wanted in all (the thread count,
        or a multiple of it for load balance).

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> work_chunk(1000, 8, 4096)  # the budget holds 512 items
    512
    >>> work_chunk(1000, 8, 4096, units=1, min_tasks=4)  # 4 even tasks
    250
    >>> work_chunk(1000, 8, 4096, units=3, min_tasks=4)  # 2 tasks per unit
    500
    >>> work_chunk(1000, 8, 4096, cap=100, multiple=16)
    96
    """
    if n_items <= 0:
        return 1
    chunk = min(n_items, cap or n_items, max(1, budget_bytes // max(1, item_bytes)))
    if units < min_tasks:
        chunk = min(chunk, -(-n_items // -(-min_tasks // units)))
    chunk = max(minimum, chunk // multiple * multiple)
    return max(1, min(chunk, n_items))


# Buffers kept between calls: one per Python thread convolving at the same time, up to this.
MAX_KEPT = 2
# Each thread's slice starts on its own cache line (no false sharing, aligned SIMD loads).
_ALIGN_BYTES = 64


class WorkspacePool:
    """Reusable raw buffers, safe to use from several Python threads.

    Examples
    --------
    >>> pool = WorkspacePool()
    >>> buffer, work = pool.borrow(2, 100, np.float32)
    >>> work.shape, work.dtype, work.ctypes.data % 64
    ((224,), dtype('float32'), 0)
    >>> pool.give_back(buffer)
    >>> pool.kept_bytes() >= 224 * 4
    True
    """

    def __init__(self, max_kept=MAX_KEPT):
        self._lock = threading.Lock()
        self._free = []
        self._max_kept = max_kept

    def borrow(self, n_slices, slice_elements, dtype):
        """A buffer for ``n_slices`` aligned slices of ``slice_elements`` each.

        Returns
        -------
        buffer : ndarray of uint8
            To be passed to :meth:`give_back` once the kernel is done.
        work : ndarray of ``dtype``, shape ``(n_slices * stride,)``
            The aligned view the kernel uses: slice ``t`` starts at ``t * stride``, where
            ``stride = work.size // n_slices`` is ``slice_elements`` rounded up to 64 bytes.
        """
        itemsize = np.dtype(dtype).itemsize
        per_line = _ALIGN_BYTES // itemsize
        stride = -(-max(slice_elements, 1) // per_line) * per_line
        n_bytes = n_slices * stride * itemsize
        buffer = None
        with self._lock:
            fitting = [b for b in self._free if b.nbytes >= n_bytes + _ALIGN_BYTES]
            if fitting:
                buffer = min(fitting, key=lambda b: b.nbytes)
                self._remove(buffer)
            elif self._free:
                self._remove(max(self._free, key=lambda b: b.nbytes))
        if buffer is None:
            buffer = np.empty(n_bytes + _ALIGN_BYTES, dtype=np.uint8)
        return buffer, _aligned_view(buffer, n_bytes, dtype)

    def give_back(self, buffer):
        """Return a buffer from :meth:`borrow` to the pool (the smallest goes when it is full)."""
        with self._lock:
            self._free.append(buffer)
            if len(self._free) > self._max_kept:
                self._remove(min(self._free, key=lambda b: b.nbytes))

    def kept_bytes(self):
        """Bytes held by the buffers waiting in the pool."""
        with self._lock:
            return sum(b.nbytes for b in self._free)

    def clear(self):
        """Drop every kept buffer (their memory goes back once no call uses them)."""
        with self._lock:
            self._free.clear()

    def _remove(self, buffer):
        # By identity: == on arrays compares elements.
        for i, kept in enumerate(self._free):
            if kept is buffer:
                del self._free[i]
                return


pool = WorkspacePool()


def aligned_empty(shape, dtype):
    """An uninitialized C-contiguous array whose data starts on a cache line, for prepared
    weights: a kernel's vector loads from an array that starts mid-line straddle two lines
    (``direct`` on ResNet-50's layer4 3x3 ran 6% slower from a weight 16 bytes off a line).

    Parameters
    ----------
    shape : tuple of int
    dtype : dtype

    Returns
    -------
    ndarray of ``dtype``, shape ``shape``

    Examples
    --------
    >>> a = aligned_empty((3, 5), np.float32)
    >>> a.shape, a.flags.c_contiguous, a.ctypes.data % 64
    ((3, 5), True, 0)
    """
    # math.prod: np.prod on a tuple costs 5 us, a quarter of a small call's budget
    dtype = np.dtype(dtype)
    n_bytes = math.prod(shape) * dtype.itemsize
    buffer = np.empty(n_bytes + _ALIGN_BYTES, dtype=np.uint8)
    return _aligned_view(buffer, n_bytes, dtype).reshape(shape)


def _aligned_view(buffer, n_bytes, dtype):
    """The first ``n_bytes`` of ``buffer`` from its first cache-line boundary, as ``dtype``."""
    offset = bytes_to_boundary(buffer, _ALIGN_BYTES)
    return buffer[offset:offset + n_bytes].view(dtype)
