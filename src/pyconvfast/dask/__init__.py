"""pyconvfast on Dask arrays: the same functions, lazily, block by block, with exact halos.

``import pyconvfast.dask as pcfd`` (``import pyconvfast`` does not import Dask). Each function
takes and returns a :class:`dask.array.Array` (a NumPy ``x`` is wrapped with ``da.asarray``)
with the signature of its NumPy namesake, and the computed result equals the NumPy function's
on the whole array: bitwise with ``algorithm="direct"``, within the algorithm's usual rounding
otherwise.

How blocks are cut
------------------
* The channel axis must be one chunk (``x.rechunk({axis: -1})``); batch chunks are kept.
* A spatial axis in one chunk is padded by the kernel itself, with the requested
  ``padding_mode`` and no copy, exactly as the NumPy function does.
* A spatial axis in several chunks is padded once, as a Dask array (``da.pad`` with NumPy's
  ``constant`` / ``reflect`` / ``edge`` / ``wrap`` for ``zeros`` / ``reflect`` / ``replicate`` /
  ``circular``), and each block then runs a "valid" convolution on exactly the padded input
  range its outputs read. Output ``j`` belongs to the input chunk holding sample
  ``j * stride`` (the last chunk where that is past the end), so input chunk ``i`` produces
  output chunk ``i``: the output has as many chunks per axis as the input, the chunks of
  ``x[..., ::stride]`` with ``padding="same"`` (those of ``x`` itself at stride 1), fewer
  outputs in the last chunks with less padding, and empty chunks where ``stride`` skips a
  chunk. Output ``j`` reads padded samples ``j * stride`` to ``j * stride + dilation * (k -
  1)``: a block reads its own outputs' windows, whatever the chunk sizes (chunks smaller than
  the halo, one-element chunks and uneven last chunks included).

One algorithm per graph
-----------------------
With ``algorithm="auto"`` one :func:`pyconvfast.plan` is made on the client, for the most
common block shape, timed with ``n_threads`` threads (one when ``n_threads`` is None), as
``PYCONVFAST_TUNE`` says. The plan goes into the graph once, as its own key, and is pickled to
each worker (loading prepares the weight there, once per worker process). Blocks of the planned
shape run the plan; blocks of another shape (edges, a shorter last batch chunk) run the same
algorithm by name, with its default parameters, except where it cannot run that shape, which
then runs ``direct``.

Threads
-------
``n_threads=None`` means, inside each task, ``max(1, cores // worker_threads)``: ``cores`` is
pyconvfast's own default (OpenMP's, which honours ``OMP_NUM_THREADS``; Dask's nanny sets it to 1
in worker processes) and ``worker_threads`` the threads of the worker running the task (a
``distributed`` worker's ``nthreads``; the threaded scheduler's ``num_workers``, default the CPU
count; 1 for the synchronous scheduler). Pass ``n_threads=`` to override.
"""

try:
    import dask  # noqa: F401
    import dask.array  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "pyconvfast.dask needs Dask: pip install 'pyconvfast[dask]' (or 'dask[array]')"
    ) from error

from pyconvfast.dask._blocks import task_threads
from pyconvfast.dask._convolution import (conv1d, conv2d, conv3d, conv_transpose1d,
                                          conv_transpose2d, conv_transpose3d)
from pyconvfast.dask._resize import resize_conv2d
from pyconvfast.dask._separable import (channel_shuffle, flattened_conv2d, separable_conv2d,
                                        spatially_separable_conv2d)

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "separable_conv2d", "spatially_separable_conv2d", "flattened_conv2d", "resize_conv2d",
    "channel_shuffle", "task_threads",
]
