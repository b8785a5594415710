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

import pickle
import sys
import threading
from collections import Counter
from itertools import product

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as error:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "pyconvfast.dask needs Dask: pip install 'pyconvfast[dask]' (or 'dask[array]')"
    ) from error

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import separable
from pyconvfast._config import resolve_precision
from pyconvfast._plan import Plan
from pyconvfast._core.problem import CHANNELS_FIRST, CHANNELS_LAST
from pyconvfast._core.threads import resolve_n_threads

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "separable_conv2d", "spatially_separable_conv2d", "channel_shuffle", "task_threads",
]

NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                  "circular": "wrap"}


# --- threads -----------------------------------------------------------------------------------

def _worker_threads():
    """Threads of the Dask worker (or scheduler pool) running the current task."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            worker = distributed.get_worker()
        except ValueError:
            worker = None
        if worker is not None:
            return max(1, int(getattr(worker, "nthreads", None) or worker.state.nthreads))
    if threading.current_thread() is threading.main_thread():
        return 1  # the synchronous scheduler, or a plain call
    pool = dask.config.get("pool", None)
    threads = getattr(pool, "_max_workers", None) or dask.config.get("num_workers", None)
    return max(1, int(threads or dask.system.CPU_COUNT))


def task_threads(n_threads=None):
    """The threads one block's kernel uses inside a Dask task.

    Parameters
    ----------
    n_threads : int, optional
        An explicit count, returned as checked by pyconvfast; None: ``max(1, cores //
        worker_threads)``, where ``cores`` is pyconvfast's default thread count (OpenMP's,
        honouring ``OMP_NUM_THREADS``) and ``worker_threads`` the thread count of the Dask
        worker running the task (1 outside a task and under the synchronous scheduler).

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> import pyconvfast.dask as pcfd
    >>> pcfd.task_threads(2)
    2
    >>> pcfd.task_threads() >= 1
    True
    """
    if n_threads is not None:
        return resolve_n_threads(n_threads)
    return max(1, resolve_n_threads(None) // _worker_threads())


# --- geometry ----------------------------------------------------------------------------------

def _as_dask(x):
    return x if isinstance(x, da.Array) else da.asarray(x)


def _check_dtypes(x, *arrays):
    """TypeErrors as the NumPy functions raise them, without computing ``x``."""
    if x.dtype not in _api._FLOAT_DTYPES:
        raise TypeError(
            f"x has dtype {x.dtype}; pyconvfast computes in float32 or float64 (native byte "
            f"order): cast it, e.g. x.astype(np.float32)")
    for name, array in arrays:
        if array is not None and array.dtype != x.dtype:
            raise TypeError(
                f"x is {x.dtype} but {name} is {array.dtype}; cast one to the other's dtype")


def _axes(ndim, n_spatial, layout):
    """(channel axis, spatial axes) of an activation of ``ndim`` axes in ``layout``."""
    lead = ndim - n_spatial - 1  # 1 batched, 0 unbatched
    if layout == CHANNELS_LAST[n_spatial]:
        return ndim - 1, tuple(range(lead, lead + n_spatial))
    return lead, tuple(range(lead + 1, lead + 1 + n_spatial))


def _check_channel_chunks(x, channel_axis, function):
    if len(x.chunks[channel_axis]) > 1:
        raise ValueError(
            f"{function} needs the channel axis (axis {channel_axis}) of x in one chunk, got "
            f"chunks {x.chunks[channel_axis]} on it; rechunk it first: "
            f"x = x.rechunk({{{channel_axis}: -1}})")


def _axis_blocks(chunks, out_size, stride, extent):
    """For one spatial axis cut into ``chunks``: per input chunk, the outputs it produces
    ``(j0, j1)`` and the range of the padded input they read ``(lo, hi)``.

    Output ``j`` belongs to the chunk holding sample ``j * stride`` (clamped to the last
    chunk), so that input chunk ``i`` gives output chunk ``i``; its window starts at ``j *
    stride`` in the padded input.
    """
    bounds = np.cumsum((0,) + tuple(chunks))
    starts = np.arange(out_size, dtype=np.int64) * stride
    owner = np.clip(np.searchsorted(bounds, starts, side="right") - 1, 0, len(chunks) - 1)
    counts = np.bincount(owner, minlength=len(chunks))
    blocks, j0 = [], 0
    for count in counts.tolist():
        j1 = j0 + count
        lo, hi = j0 * stride, (j1 - 1) * stride + extent
        blocks.append((j0, j1, lo, hi) if count else (j0, j1, 0, 0))
        j0 = j1
    return blocks


class _Geometry:
    """What the block cutting needs of a problem: per spatial axis its kernel extent, stride,
    padding and output size, the padding mode, and the output's channel count."""

    def __init__(self, extent, stride, pad_before, pad_after, out_size, padding_mode, c_out):
        self.extent, self.stride = tuple(extent), tuple(stride)
        self.pad_before, self.pad_after = tuple(pad_before), tuple(pad_after)
        self.out_size, self.padding_mode, self.c_out = tuple(out_size), padding_mode, c_out

    @classmethod
    def of(cls, problem):
        extent = [d * (k - 1) + 1 for k, d in zip(problem.kernel, problem.dilation)]
        return cls(extent, problem.stride, problem.pad_before, problem.pad_after,
                   problem.out_size, problem.padding_mode, problem.c_out)


def _blockwise_spatial(x, n_spatial, layout, geometry, make_block_function, dtype, function):
    """Apply a block function block by block with exact halos (see the module docstring).

    ``make_block_function(shapes, padding)`` is called once, with the Counter of the input
    block shapes the graph will hold and the ``padding`` (one ``(before, after)`` pair per
    spatial axis) each block must still apply itself: the requested padding on axes in one
    chunk, none on the others. It returns ``(run_block, args)``; each task then computes
    ``run_block(block, padding, *args)`` on a NumPy block holding every input its outputs read.
    """
    channel_axis, spatial_axes = _axes(x.ndim, n_spatial, layout)
    _check_channel_chunks(x, channel_axis, function)
    chunked = [len(x.chunks[axis]) > 1 for axis in spatial_axes]
    block_padding = tuple(
        (0, 0) if cut else (before, after)
        for cut, before, after in zip(chunked, geometry.pad_before, geometry.pad_after))
    pad_width = [(0, 0)] * x.ndim
    for i, axis in enumerate(spatial_axes):
        if chunked[i]:
            pad_width[axis] = (geometry.pad_before[i], geometry.pad_after[i])
    padded = x
    if any(before or after for before, after in pad_width):
        mode = NUMPY_PAD_MODE[geometry.padding_mode]
        padded = da.pad(x, pad_width, mode=mode,
                        **({"constant_values": 0} if mode == "constant" else {}))

    per_axis = []
    for i, axis in enumerate(spatial_axes):
        if chunked[i]:
            per_axis.append(_axis_blocks(x.chunks[axis], geometry.out_size[i],
                                         geometry.stride[i], geometry.extent[i]))
        else:
            per_axis.append([(0, geometry.out_size[i], 0, x.shape[axis])])

    base_chunks = list(x.chunks)
    base_chunks[channel_axis] = (geometry.c_out,)
    inputs, shapes = {}, Counter()
    for index in product(*(range(len(blocks)) for blocks in per_axis)):
        ranges = [per_axis[i][b] for i, b in enumerate(index)]
        if any(j1 == j0 for j0, j1, _, _ in ranges):
            continue  # an input chunk with no outputs (stride larger than the chunk)
        selection = [slice(None)] * x.ndim
        for axis, (_, _, lo, hi) in zip(spatial_axes, ranges):
            if (lo, hi) != (0, padded.shape[axis]):
                selection[axis] = slice(lo, hi)
        piece = padded[tuple(selection)] if any(
            part != slice(None) for part in selection) else padded
        if any(len(piece.chunks[axis]) > 1 for axis in spatial_axes):
            piece = piece.rechunk({axis: -1 for axis in spatial_axes})
        inputs[index] = piece
        shapes.update(product(*piece.chunks))
    run_block, args = make_block_function(shapes, block_padding)

    meta = np.empty((0,) * x.ndim, dtype=dtype)
    pieces = {}
    for index, piece in inputs.items():
        chunks = list(base_chunks)
        for i, axis in enumerate(spatial_axes):
            j0, j1, _, _ = per_axis[i][index[i]]
            chunks[axis] = (j1 - j0,)
        token = dask.base.tokenize(piece, run_block, args)
        pieces[index] = piece.map_blocks(run_block, block_padding, *args, chunks=tuple(chunks),
                                         dtype=dtype, meta=meta,
                                         name=f"pyconvfast-{function}-{token}")
    result = _assemble(pieces, [len(blocks) for blocks in per_axis], spatial_axes)
    # Input chunk i gives output chunk i, on every axis: chunks without outputs stay, empty.
    out_chunks = list(base_chunks)
    for i, axis in enumerate(spatial_axes):
        out_chunks[axis] = tuple(j1 - j0 for j0, j1, _, _ in per_axis[i])
    if result.chunks != tuple(out_chunks):
        result = result.rechunk(tuple(out_chunks))
    return result


def _assemble(pieces, n_blocks, axes, prefix=()):
    """Concatenate the grid of pieces ``{index: array}`` along ``axes`` (the first outermost),
    skipping the missing (empty) ones."""
    if len(prefix) == len(n_blocks):
        return pieces.get(prefix)
    parts = [_assemble(pieces, n_blocks, axes, prefix + (b,))
             for b in range(n_blocks[len(prefix)])]
    parts = [part for part in parts if part is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=axes[len(prefix)])


def _block_shapes(x):
    return Counter(product(*x.chunks))


def _require_whole_spatial_axes(x, spatial_axes, function):
    cut = [axis for axis in spatial_axes if len(x.chunks[axis]) > 1]
    if cut:
        fix = ", ".join(f"{axis}: -1" for axis in cut)
        raise ValueError(
            f"{function} on Dask splits x along the batch axis only; spatial axes {cut} of x "
            f"are in several chunks ({[x.chunks[axis] for axis in cut]}): rechunk them first, "
            f"x = x.rechunk({{{fix}}})")


# --- plans and block functions -----------------------------------------------------------------

def _settled_plan(shapes, weight, bias, algorithm, n_threads, transposed, kwargs):
    """A plan for the most common block shape, settled on one algorithm, and the algorithm for
    each other block shape it cannot run (``direct``)."""
    common = max(shapes, key=lambda shape: (shapes[shape], shape))
    plan = pcf.plan(common, weight, bias, algorithm=algorithm, transposed=transposed,
                    n_threads=1 if n_threads is None else n_threads, **kwargs)
    if not plan.settled:
        # Loading a pickled plan settles it on the tuner's pick: blocks never race finalists.
        plan = pickle.loads(pickle.dumps(plan))
    fallback = "transpose_direct" if transposed else "direct"
    algorithm_for_shape = {}
    for shape in shapes:
        if shape != common and plan.algorithm not in pcf.list_algorithms(
                shape, weight, dtype=weight.dtype, transposed=transposed, **kwargs):
            algorithm_for_shape[shape] = fallback
    return plan, algorithm_for_shape


class _PlannedBlock:
    """Convolves one block: with the plan where the block has its shape, else with the plan's
    algorithm by name (or the fallback for that shape). The plan is a task argument, one key of
    the graph, so that each worker process loads (and prepares) it once."""

    def __init__(self, function, algorithm_for_shape, n_threads, kwargs):
        self.function = function
        self.algorithm_for_shape = algorithm_for_shape
        self.n_threads = n_threads
        self.kwargs = kwargs

    def __call__(self, block, padding, plan):
        n_threads = task_threads(self.n_threads)
        if block.shape == plan.x_shape:
            if plan.n_threads != n_threads:
                # The same prepared weight with this task's thread count.
                clone = Plan.__new__(Plan)
                clone.__dict__.update(plan.__dict__)
                clone.n_threads = n_threads
                plan = clone
            return plan(block)
        algorithm = self.algorithm_for_shape.get(block.shape, plan.algorithm)
        return getattr(pcf, self.function)(
            block, plan._weight, plan._bias, padding=padding, algorithm=algorithm,
            n_threads=n_threads, **self.kwargs)


class _FunctionBlock:
    """Calls ``pcf.<function>(block, *arrays, padding=..., n_threads=..., **kwargs)``."""

    def __init__(self, function, arrays, n_threads, kwargs, takes_padding=True):
        self.function = function
        self.arrays = arrays
        self.n_threads = n_threads
        self.kwargs = kwargs
        self.takes_padding = takes_padding

    def __call__(self, block, padding=None):
        kwargs = dict(self.kwargs)
        if self.takes_padding:
            kwargs["padding"] = padding
        return getattr(pcf, self.function)(block, *self.arrays,
                                           n_threads=task_threads(self.n_threads), **kwargs)


def _float_arrays(x, **arrays):
    """The named arrays as NumPy float arrays (None kept), dtypes checked against ``x``."""
    converted = {name: None if value is None else _api._as_float_array(name, np.asarray(value))
                 for name, value in arrays.items()}
    _check_dtypes(x, *converted.items())
    return converted


# --- convolution -------------------------------------------------------------------------------

def _convolve(n_spatial, x, weight, bias, *, stride, padding, dilation, groups, padding_mode,
              flip, layout, algorithm, n_threads, precision):
    function = f"conv{n_spatial}d"
    x = _as_dask(x)
    arrays = _float_arrays(x, weight=weight, bias=bias)
    weight, bias = arrays["weight"], arrays["bias"]
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    problem = _api.make_problem(
        x.shape, weight.shape, n_spatial=n_spatial, stride=stride, padding=padding,
        dilation=dilation, groups=groups, padding_mode=padding_mode, layout=layout, flip=flip,
        has_bias=bias is not None, dtype=x.dtype, precision=precision)
    bias = _api.checked_bias(bias, problem, x.dtype)
    if algorithm != "auto":
        _api.explicit_algorithm(algorithm, separable.mark(problem, weight))
    if problem.batch == 0:
        return da.empty(problem.out_shape, dtype=x.dtype)
    kwargs = dict(stride=problem.stride, dilation=problem.dilation, groups=groups,
                  padding_mode=padding_mode, flip=flip, layout=layout, precision=precision)

    def make_block_function(shapes, block_padding):
        plan, algorithm_for_shape = _settled_plan(
            shapes, weight, bias, algorithm, n_threads, False,
            dict(kwargs, padding=block_padding))
        run = _PlannedBlock(function, algorithm_for_shape, n_threads, kwargs)
        return run, (dask.delayed(plan, pure=False),)

    return _blockwise_spatial(x, n_spatial, layout, _Geometry.of(problem), make_block_function,
                              x.dtype, function)


_DOC = """{n}-D convolution of a Dask array, lazily: :func:`pyconvfast.conv{n}d` block by block.

The result equals ``pyconvfast.conv{n}d`` on the whole array (bitwise with
``algorithm="direct"``), whatever the chunks: batch chunks are kept, a spatial axis in
several chunks gets exact halos (any kernel size, dilation, stride and asymmetric padding; the
outer faces padded with ``padding_mode`` as the NumPy function pads them), and input chunk
``i`` gives output chunk ``i`` on every axis (empty where ``stride`` skips a chunk).

Parameters
----------
x : dask.array.Array or ndarray of float32 or float64, shape ``(N, C_in, {spatial})``
    Or ``(N, {spatial}, C_in)`` with ``layout="{cl}"``, or either without ``N``; a NumPy
    array is wrapped with ``da.asarray``. The channel axis must be one chunk.
weight : ndarray, shape ``(C_out, C_in // groups, {kernel})``
    Same dtype as ``x``; goes into the graph once, inside the plan.
bias : ndarray, shape ``(C_out,)``, optional
stride, padding, dilation, groups, padding_mode, flip, layout, precision
    As for :func:`pyconvfast.conv{n}d`.
algorithm : str, default "auto"
    "auto" makes one :func:`pyconvfast.plan` on the client for the most common block and runs
    its algorithm in every block (see :mod:`pyconvfast.dask`); a name runs that algorithm.
n_threads : int, optional
    Threads of each block's kernel; None: :func:`task_threads`, ``cores // worker_threads``.

Returns
-------
dask.array.Array, shape ``(N, C_out, {spatial_out})``, or ``(N, {spatial_out}, C_out)``
    Lazy; the dtype and layout of ``x``; as many chunks per axis as ``x`` (one on channels).

Raises
------
ValueError
    The channel axis in several chunks (the message says how to rechunk), and every geometry
    error of :func:`pyconvfast.conv{n}d`, raised when the graph is built.
TypeError
    As :func:`pyconvfast.conv{n}d`.

Examples
--------
>>> import numpy as np
>>> import dask.array as da
>>> import pyconvfast as pcf
>>> import pyconvfast.dask as pcfd
>>> x = np.random.default_rng(0).random({x_shape}, dtype=np.float32)
>>> w = np.ones({w_shape}, dtype=np.float32)
>>> lazy = pcfd.conv{n}d(da.from_array(x, chunks={chunks}), w, padding="same",
...                      padding_mode="reflect", algorithm="direct")
>>> lazy.chunks[-1]
{out_chunks}
>>> np.array_equal(lazy.compute(), pcf.conv{n}d(x, w, padding="same",
...                                            padding_mode="reflect", algorithm="direct"))
True
"""


def _conv_doc(n, x_shape, w_shape, chunks, out_chunks):
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[n]
    spatial_out = {1: "L_out", 2: "H_out, W_out", 3: "D_out, H_out, W_out"}[n]
    kernel = {1: "K", 2: "R, S", 3: "T, R, S"}[n]
    return _DOC.format(n=n, spatial=spatial, spatial_out=spatial_out, kernel=kernel,
                       cl=CHANNELS_LAST[n], x_shape=x_shape, w_shape=w_shape, chunks=chunks,
                       out_chunks=out_chunks)


def conv1d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", flip=False, layout="NCL", algorithm="auto", n_threads=None,
           precision=None):
    return _convolve(1, x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=padding_mode, flip=flip, layout=layout,
                     algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", flip=False, layout="NCHW", algorithm="auto", n_threads=None,
           precision=None):
    return _convolve(2, x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=padding_mode, flip=flip, layout=layout,
                     algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv3d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", flip=False, layout="NCDHW", algorithm="auto", n_threads=None,
           precision=None):
    return _convolve(3, x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=padding_mode, flip=flip, layout=layout,
                     algorithm=algorithm, n_threads=n_threads, precision=precision)


conv1d.__doc__ = _conv_doc(1, "(2, 3, 50)", "(4, 3, 5)", "(1, 3, 16)", "(16, 16, 16, 2)")
conv2d.__doc__ = _conv_doc(2, "(1, 3, 40, 40)", "(4, 3, 3, 3)", "(1, 3, 16, 16)", "(16, 16, 8)")
conv3d.__doc__ = _conv_doc(3, "(1, 2, 12, 12, 12)", "(4, 2, 3, 3, 3)", "(1, 2, 6, 6, 6)",
                           "(6, 6)")


# --- transposed convolution (batch chunks) -----------------------------------------------------

def _convolve_transpose(n_spatial, x, weight, bias, *, stride, padding, output_padding,
                        dilation, groups, output_size, flip, layout, algorithm, n_threads,
                        precision):
    from pyconvfast import _transpose

    function = f"conv_transpose{n_spatial}d"
    x = _as_dask(x)
    arrays = _float_arrays(x, weight=weight, bias=bias)
    weight, bias = arrays["weight"], arrays["bias"]
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation, groups=groups, output_size=output_size, flip=flip,
                  layout=layout, precision=precision)
    problem = _transpose.make_problem(x.shape, weight.shape, n_spatial=n_spatial,
                                      has_bias=bias is not None, dtype=x.dtype, **kwargs)
    bias = _api.checked_bias(bias, problem, x.dtype)
    if algorithm != "auto":
        _transpose.explicit_algorithm(algorithm, problem)
    if problem.batch == 0:
        return da.empty(problem.out_shape, dtype=x.dtype)
    channel_axis, spatial_axes = _axes(x.ndim, n_spatial, layout)
    _check_channel_chunks(x, channel_axis, function)
    _require_whole_spatial_axes(x, spatial_axes, function)
    padding = kwargs.pop("padding")
    plan, algorithm_for_shape = _settled_plan(_block_shapes(x), weight, bias, algorithm,
                                              n_threads, True, dict(kwargs, padding=padding))
    chunks = list(x.chunks)
    out_shape = problem.out_shape
    for axis in [channel_axis, *spatial_axes]:
        chunks[axis] = (out_shape[axis],)
    return x.map_blocks(
        _PlannedBlock(function, algorithm_for_shape, n_threads, kwargs), padding,
        dask.delayed(plan, pure=False), chunks=tuple(chunks), dtype=x.dtype,
        meta=np.empty((0,) * x.ndim, dtype=x.dtype))


_TRANSPOSE_DOC = """{n}-D transposed convolution of a Dask array, split along the batch axis.

:func:`pyconvfast.conv_transpose{n}d` on each batch chunk, with one algorithm chosen on the
client (a plan for the most common chunk, as for :func:`conv{n}d`). The channel and spatial
axes must each be one chunk; spatial chunks are not supported yet.

Parameters
----------
x : dask.array.Array or ndarray of float32 or float64, shape ``(N, C_in, {spatial})``
    Or channels-last with ``layout="{cl}"``, or without ``N``; a NumPy array is wrapped.
weight : ndarray, shape ``(C_in, C_out // groups, {kernel})``
bias : ndarray, shape ``(C_out,)``, optional
stride, padding, output_padding, dilation, groups, output_size, flip, layout, algorithm, precision
    As for :func:`pyconvfast.conv_transpose{n}d`.
n_threads : int, optional
    As for :func:`conv{n}d`.

Returns
-------
dask.array.Array
    Lazy; the result of :func:`pyconvfast.conv_transpose{n}d`, chunked as ``x`` on the batch
    axis.

Raises
------
ValueError
    A channel or spatial axis in several chunks (the message says how to rechunk), and every
    error of :func:`pyconvfast.conv_transpose{n}d`.

Examples
--------
>>> import numpy as np
>>> import dask.array as da
>>> import pyconvfast.dask as pcfd
>>> x = da.ones({x_shape}, chunks={chunks}, dtype=np.float32)
>>> y = pcfd.conv_transpose{n}d(x, np.ones({w_shape}, dtype=np.float32), stride=2)
>>> y.shape, y.chunks[0]
({out_shape}, (1, 1, 1))
"""


def conv_transpose1d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                     dilation=1, groups=1, output_size=None, flip=False, layout="NCL",
                     algorithm="auto", n_threads=None, precision=None):
    return _convolve_transpose(
        1, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv_transpose2d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                     dilation=1, groups=1, output_size=None, flip=False, layout="NCHW",
                     algorithm="auto", n_threads=None, precision=None):
    return _convolve_transpose(
        2, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, n_threads=n_threads, precision=precision)


def conv_transpose3d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                     dilation=1, groups=1, output_size=None, flip=False, layout="NCDHW",
                     algorithm="auto", n_threads=None, precision=None):
    return _convolve_transpose(
        3, x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, flip=flip, layout=layout,
        algorithm=algorithm, n_threads=n_threads, precision=precision)


for _n, _function, _x, _w, _out in (
        (1, conv_transpose1d, "(3, 2, 5)", "(2, 4, 3)", "(3, 4, 11)"),
        (2, conv_transpose2d, "(3, 2, 5, 5)", "(2, 4, 3, 3)", "(3, 4, 11, 11)"),
        (3, conv_transpose3d, "(3, 2, 4, 4, 4)", "(2, 4, 3, 3, 3)", "(3, 4, 9, 9, 9)")):
    _function.__doc__ = _TRANSPOSE_DOC.format(
        n=_n, spatial={1: "L", 2: "H, W", 3: "D, H, W"}[_n],
        kernel={1: "K", 2: "R, S", 3: "T, R, S"}[_n], cl=CHANNELS_LAST[_n], x_shape=_x,
        w_shape=_w, out_shape=_out, chunks=f"(1, -1{', -1' * _n})")


# --- separable convolutions (exact halos) ------------------------------------------------------

def _separable(function, x, arrays, weight_shape, groups, c_out, *, stride, padding, dilation,
               padding_mode, flip, layout, n_threads, precision, extra):
    x = _as_dask(x)
    arrays = _float_arrays(x, **arrays)
    precision = resolve_precision(precision)
    if n_threads is not None:
        resolve_n_threads(n_threads)
    problem = _api.make_problem(
        x.shape, weight_shape(arrays), n_spatial=2, stride=stride, padding=padding,
        dilation=dilation, groups=groups(x, layout) if callable(groups) else groups,
        padding_mode=padding_mode, layout=layout, flip=flip, dtype=x.dtype,
        precision=precision)
    geometry = _Geometry.of(problem)
    geometry.c_out = c_out(arrays)
    kwargs = dict(stride=problem.stride, dilation=problem.dilation, padding_mode=padding_mode,
                  flip=flip, layout=layout, precision=precision, **extra(arrays))
    positional = tuple(arrays[name] for name in ("depthwise", "pointwise", "column", "row",
                                                  "bias") if name in arrays)

    def make_block_function(shapes, block_padding):
        return _FunctionBlock(function, positional, n_threads, kwargs), ()

    return _blockwise_spatial(x, 2, layout, geometry, make_block_function, x.dtype, function)


def _c_in(x, layout):
    lead = x.ndim - 3
    return x.shape[-1] if layout == "NHWC" else x.shape[lead]


def separable_conv2d(x, depthwise, pointwise, bias=None, *, depthwise_bias=None, stride=1,
                     padding=0, dilation=1, padding_mode="zeros", flip=False, layout="NCHW",
                     n_threads=None, precision=None):
    """Depthwise-separable 2-D convolution of a Dask array, lazily, with exact halos.

    :func:`pyconvfast.separable_conv2d` block by block, cut as :func:`conv2d` cuts (the
    halo is the depthwise kernel's); the result equals the NumPy function's on the whole array.

    Parameters
    ----------
    x : dask.array.Array or ndarray, shape ``(N, C, H, W)`` (or ``layout="NHWC"``)
        The channel axis must be one chunk.
    depthwise : ndarray, shape ``(C * m, 1, R, S)``
    pointwise : ndarray, shape ``(K, C * m, 1, 1)``
    bias, depthwise_bias, stride, padding, dilation, padding_mode, flip, layout, precision
        As for :func:`pyconvfast.separable_conv2d`.
    n_threads : int, optional
        As for :func:`conv2d`.

    Returns
    -------
    dask.array.Array, shape ``(N, K, H_out, W_out)`` (or channels-last)

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast as pcf
    >>> import pyconvfast.dask as pcfd
    >>> x = np.random.default_rng(0).random((1, 4, 20, 20))
    >>> dw, pw = np.ones((4, 1, 3, 3)), np.ones((6, 4, 1, 1))
    >>> y = pcfd.separable_conv2d(da.from_array(x, chunks=(1, 4, 7, 7)), dw, pw, padding=1)
    >>> np.allclose(y.compute(), pcf.separable_conv2d(x, dw, pw, padding=1))
    True
    """
    arrays = {"depthwise": depthwise, "pointwise": pointwise, "bias": bias,
              "depthwise_bias": depthwise_bias}
    return _separable(
        "separable_conv2d", x, arrays, lambda a: a["depthwise"].shape, _c_in,
        lambda a: a["pointwise"].shape[0], stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode, flip=flip, layout=layout, n_threads=n_threads,
        precision=precision, extra=lambda a: {"depthwise_bias": a["depthwise_bias"]})


def spatially_separable_conv2d(x, column, row, bias=None, *, groups=1, stride=1, padding=0,
                               dilation=1, padding_mode="zeros", flip=False, layout="NCHW",
                               n_threads=None, precision=None):
    """2-D convolution with a rank-1 kernel of a Dask array, lazily, with exact halos.

    :func:`pyconvfast.spatially_separable_conv2d` block by block, cut as :func:`conv2d` cuts.

    Parameters
    ----------
    x : dask.array.Array or ndarray, shape ``(N, C, H, W)`` (or ``layout="NHWC"``)
        The channel axis must be one chunk.
    column : ndarray, shape ``(K, C // groups, R)``
    row : ndarray, shape ``(K, C // groups, S)``
    bias, groups, stride, padding, dilation, padding_mode, flip, layout, precision
        As for :func:`pyconvfast.spatially_separable_conv2d`.
    n_threads : int, optional
        As for :func:`conv2d`.

    Returns
    -------
    dask.array.Array, shape ``(N, K, H_out, W_out)`` (or channels-last)

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast as pcf
    >>> import pyconvfast.dask as pcfd
    >>> x = np.random.default_rng(0).random((1, 2, 20, 20))
    >>> col, row = np.ones((3, 2, 5)), np.ones((3, 2, 3))
    >>> y = pcfd.spatially_separable_conv2d(da.from_array(x, chunks=(1, 2, 6, 9)), col, row,
    ...                                     padding="same", padding_mode="replicate")
    >>> np.allclose(y.compute(), pcf.spatially_separable_conv2d(
    ...     x, col, row, padding="same", padding_mode="replicate"))
    True
    """
    arrays = {"column": column, "row": row, "bias": bias}
    return _separable(
        "spatially_separable_conv2d", x, arrays,
        lambda a: a["column"].shape + a["row"].shape[2:], groups,
        lambda a: a["column"].shape[0], stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode, flip=flip, layout=layout, n_threads=n_threads,
        precision=precision, extra=lambda a: {"groups": groups})


# --- channel shuffle ---------------------------------------------------------------------------

def channel_shuffle(x, groups, layout="NCHW", *, n_threads=None):
    """Shuffle the channels of a Dask array across ``groups`` (ShuffleNet), block by block.

    Parameters
    ----------
    x : dask.array.Array or ndarray
        As for :func:`pyconvfast.channel_shuffle`; the channel axis must be one chunk, the
        others may be cut anyhow.
    groups : int
        Must divide ``C``.
    layout : {"NCL", "NCHW", "NCDHW", "NLC", "NHWC", "NDHWC"}, default "NCHW"
    n_threads : int, optional
        Passed on to :func:`pyconvfast.channel_shuffle`.

    Returns
    -------
    dask.array.Array
        The same shape, chunks, dtype and layout as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import pyconvfast.dask as pcfd
    >>> x = da.arange(6.0, chunks=3).reshape(1, 6, 1, 1).rechunk((1, 6, 1, 1))
    >>> pcfd.channel_shuffle(x, 2).compute().ravel()
    array([0., 3., 1., 4., 2., 5.])
    """
    x = _as_dask(x)
    n_spatial = len(layout) - 2 if isinstance(layout, str) else 0
    if layout not in (*CHANNELS_FIRST.values(), *CHANNELS_LAST.values()):
        raise ValueError(
            f"layout must be one of {sorted((*CHANNELS_FIRST.values(), *CHANNELS_LAST.values()))}"
            f", got layout={layout!r}")
    if x.ndim not in (n_spatial + 1, n_spatial + 2):
        raise ValueError(f"x must be {n_spatial + 2}-D ({layout}) or {n_spatial + 1}-D "
                         f"(unbatched), got x.shape={x.shape}")
    channel_axis, _ = _axes(x.ndim, n_spatial, layout)
    _check_channel_chunks(x, channel_axis, "channel_shuffle")
    channels = x.shape[channel_axis]
    groups = _api._as_int("groups", groups, 1)
    if channels % groups:
        raise ValueError(f"groups={groups} must divide the {channels} channels of x "
                         f"(x.shape={x.shape}, layout={layout!r})")
    run = _FunctionBlock("channel_shuffle", (groups, layout), n_threads, {},
                         takes_padding=False)
    return x.map_blocks(run, dtype=x.dtype)
