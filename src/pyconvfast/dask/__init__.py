"""pyconvfast on Dask arrays: the same functions, lazily, block by block, with exact halos.

``import pyconvfast.dask as pcfd`` (``import pyconvfast`` does not import Dask). Each function
takes and returns a :class:`dask.array.Array` (a NumPy ``x`` is wrapped with ``da.asarray``)
with the signature of its NumPy namesake, and the computed result equals the NumPy function's
on the whole array: bitwise with ``algorithm="direct"``, within the algorithm's usual rounding
otherwise.

How blocks are cut
------------------
* The channel axis must be one chunk (``x.rechunk({axis: -1})``); batch chunks are kept.
* Each output block is one task: it gathers the input range its outputs read from the chunks
  that hold it (a view where one chunk does) and runs the NumPy function on it, so the graph
  has no halo-exchange, concatenation or rechunk layers of its own.
* Convolutions: output ``j`` belongs to the input chunk holding sample ``j * stride`` (the last
  chunk where that is past the end), so input chunk ``i`` produces output chunk ``i``: as many
  chunks per axis as the input, those of ``x[..., ::stride]`` with ``padding="same"`` (those
  of ``x`` at stride 1), empty chunks where ``stride`` skips a chunk. Output ``j`` reads padded
  samples ``j * stride`` to ``j * stride + dilation * (k - 1)``. The padding past the outer
  faces is applied by the face blocks' own calls, as the NumPy function applies it; an axis
  padded "circular" (or where a face block is too short for its "reflect") is padded once as
  a Dask array instead (``da.pad`` for one axis size, tiling past it).
* Transposed convolutions: input ``i`` adds into uncropped outputs ``i * stride`` to ``i *
  stride + dilation * (k - 1)``; input chunk ``[c0, c1)`` gives output chunk ``[c0 * stride -
  pad_before, c1 * stride - pad_before)`` (clipped; the last runs to the end, output_padding
  included). Its block holds inputs ``ceil((o0 + pad_before - dilation * (k - 1)) / stride)``
  to ``floor((o1 - 1 + pad_before) / stride)`` and is called with the padding that crops its
  outputs to ``[o0, o1)`` and the output_padding (below ``stride``) that reaches ``o1``.
* ``resize_conv2d``: see :mod:`pyconvfast.dask._resize`.

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
