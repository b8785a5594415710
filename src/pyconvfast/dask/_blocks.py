"""The machinery under :mod:`pyconvfast.dask`: threads per task, how blocks and their halos
are cut, the plan chosen once per graph and the functions each block runs."""

import pickle
import sys
import threading
from collections import Counter, namedtuple
from itertools import product

import numpy as np
import dask
import dask.array as da

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._plan import Plan
from pyconvfast._core.problem import CHANNELS_LAST
from pyconvfast._core.threads import resolve_n_threads


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

def as_dask(x):
    return x if isinstance(x, da.Array) else da.asarray(x)


def check_dtypes(x, *arrays):
    """TypeErrors as the NumPy functions raise them, without computing ``x``."""
    if x.dtype not in _api._FLOAT_DTYPES:
        raise TypeError(
            f"x has dtype {x.dtype}; pyconvfast computes in float32 or float64 (native byte "
            f"order): cast it, e.g. x.astype(np.float32)")
    for name, array in arrays:
        if array is not None and array.dtype != x.dtype:
            raise TypeError(
                f"x is {x.dtype} but {name} is {array.dtype}; cast one to the other's dtype")


def layout_axes(ndim, n_spatial, layout):
    """(channel axis, spatial axes) of an activation of ``ndim`` axes in ``layout``."""
    lead = ndim - n_spatial - 1  # 1 batched, 0 unbatched
    if layout == CHANNELS_LAST[n_spatial]:
        return ndim - 1, tuple(range(lead, lead + n_spatial))
    return lead, tuple(range(lead + 1, lead + 1 + n_spatial))


def check_channel_chunks(x, channel_axis, function):
    if len(x.chunks[channel_axis]) > 1:
        raise ValueError(
            f"{function} needs the channel axis (axis {channel_axis}) of x in one chunk, got "
            f"chunks {x.chunks[channel_axis]} on it; rechunk it first: "
            f"x = x.rechunk({{{channel_axis}: -1}})")


def output_owners(chunks, out_size, stride):
    """Outputs per chunk of one axis: output ``j`` belongs to the chunk holding sample ``j *
    stride`` (the last chunk past the end), so that chunk ``i`` gives output chunk ``i``."""
    bounds = np.cumsum((0,) + tuple(chunks))
    starts = np.arange(out_size, dtype=np.int64) * stride
    owner = np.clip(np.searchsorted(bounds, starts, side="right") - 1, 0, len(chunks) - 1)
    return np.bincount(owner, minlength=len(chunks)).tolist()


class AxisPiece(namedtuple("AxisPiece", "start stop count before after output_padding crop")):
    """One output chunk along one spatial axis: the samples ``[start, stop)`` of the source
    its block reads, its ``count`` outputs, the padding ``(before, after)`` (and a transposed
    block's ``output_padding``, else None) its call gets, and the ``crop`` outputs the call
    makes before the chunk's first (a call cannot start at any output: see resize)."""

    def __new__(cls, start, stop, count, before=0, after=0, output_padding=None, crop=0):
        return super().__new__(cls, start, stop, count, before, after, output_padding, crop)


def sliced_blocks(source, spatial_axes, per_axis, chunks, make_block_function, dtype, function):
    """Compute each output block from the slice of ``source`` it reads, in one call.

    ``per_axis[i]`` holds one :class:`AxisPiece` per output chunk of spatial axis ``i``;
    ``chunks`` the output chunks of the other axes. The pieces of one output block are cut
    from ``source``, joined along the spatial axes (batch chunks are kept: one task per batch
    chunk) and passed to ``run_block(block, extra, *args)``, ``extra`` the call's per-block
    keyword arguments as ``(name, value)`` pairs (``padding``, and ``output_padding`` where
    the pieces have one). ``make_block_function(variants)`` gets the Counter of ``(block shape,
    extra)`` over every task and returns ``(run_block, args)``. Output blocks with no outputs
    are left empty; the result has ``len(per_axis[i])`` chunks along spatial axis ``i``.
    """
    tasks, variants = {}, Counter()
    for index in product(*(range(len(pieces)) for pieces in per_axis)):
        pieces = [per_axis[i][b] for i, b in enumerate(index)]
        if any(piece.count == 0 for piece in pieces):
            continue  # an output chunk with no outputs (stride larger than the chunk)
        selection = [slice(None)] * source.ndim
        for axis, piece in zip(spatial_axes, pieces):
            if (piece.start, piece.stop) != (0, source.shape[axis]):
                selection[axis] = slice(piece.start, piece.stop)
        block = source[tuple(selection)] if any(
            part != slice(None) for part in selection) else source
        if any(len(block.chunks[axis]) > 1 for axis in spatial_axes):
            block = block.rechunk({axis: -1 for axis in spatial_axes})
        extra = (("padding", tuple((piece.before, piece.after) for piece in pieces)),)
        if pieces[0].output_padding is not None:
            extra += (("output_padding", tuple(piece.output_padding for piece in pieces)),)
        crops = tuple((piece.crop, piece.count) for piece in pieces)
        tasks[index] = block, extra, crops
        variants.update((shape, extra) for shape in product(*block.chunks))
    run_block, args = make_block_function(variants)

    meta = np.empty((0,) * source.ndim, dtype=dtype)
    results = {}
    for index, (block, extra, crops) in tasks.items():
        block_chunks = list(chunks)
        for i, axis in enumerate(spatial_axes):
            block_chunks[axis] = (per_axis[i][index[i]].count,)
        token = dask.base.tokenize(block, run_block, extra, crops, args)
        results[index] = block.map_blocks(
            _call_block, run_block, extra, crops, spatial_axes, *args,
            chunks=tuple(block_chunks), dtype=dtype, meta=meta,
            name=f"pyconvfast-{function}-{token}")
    result = assemble(results, [len(pieces) for pieces in per_axis], spatial_axes)
    out_chunks = list(chunks)
    for i, axis in enumerate(spatial_axes):
        out_chunks[axis] = tuple(piece.count for piece in per_axis[i])
    if result.chunks != tuple(out_chunks):
        result = result.rechunk(tuple(out_chunks))  # puts back the empty chunks
    return result


def _call_block(block, run_block, extra, crops, spatial_axes, *args):
    """``run_block``'s result on one block, cropped to the block's outputs where the call
    made more (see :class:`AxisPiece`)."""
    result = run_block(block, extra, *args)
    selection = [slice(None)] * result.ndim
    for axis, (crop, count) in zip(spatial_axes, crops):
        if crop or result.shape[axis] != count:
            selection[axis] = slice(crop, crop + count)
    return result[tuple(selection)]


class Geometry:
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


def pad_chunked_axes(x, spatial_axes, chunked, pad_before, pad_after, padding_mode):
    """``x`` padded with ``padding_mode`` (as NumPy's ``np.pad`` mode) on the chunked spatial
    axes only."""
    pad_width = [(0, 0)] * x.ndim
    for axis, cut, before, after in zip(spatial_axes, chunked, pad_before, pad_after):
        if cut:
            pad_width[axis] = (before, after)
    if not any(before or after for before, after in pad_width):
        return x
    mode = NUMPY_PAD_MODE[padding_mode]
    if mode == "wrap":
        # da.pad's "wrap" pads at most the axis's size (and silently less past it).
        for axis, (before, after) in enumerate(pad_width):
            if before or after:
                x = _wrap(x, axis, before, after)
        return x
    return da.pad(x, pad_width, mode=mode, **({"constant_values": 0} if mode == "constant"
                                              else {}))


def _wrap(x, axis, before, after):
    """``x`` padded circularly along ``axis``, for any padding (NumPy's ``mode="wrap"``)."""
    size = x.shape[axis]
    copies_before = -(-before // size)
    copies = copies_before + 1 + -(-after // size)
    tiled = da.concatenate([x] * copies, axis=axis) if copies > 1 else x
    selection = [slice(None)] * x.ndim
    start = copies_before * size - before
    selection[axis] = slice(start, start + before + size + after)
    return tiled[tuple(selection)]


def blockwise_spatial(x, n_spatial, layout, geometry, make_block_function, dtype, function):
    """Apply a block function block by block with exact halos (see the module docstring).

    A spatial axis in one chunk keeps its padding, applied by each block's call; the chunked
    axes are padded once (:func:`pad_chunked_axes`) and each block gets the padded samples its
    outputs read and no padding. ``make_block_function`` and the block calls are those of
    :func:`sliced_blocks`.
    """
    channel_axis, spatial_axes = layout_axes(x.ndim, n_spatial, layout)
    check_channel_chunks(x, channel_axis, function)
    chunked = [len(x.chunks[axis]) > 1 for axis in spatial_axes]
    padded = pad_chunked_axes(x, spatial_axes, chunked, geometry.pad_before, geometry.pad_after,
                              geometry.padding_mode)
    per_axis = []
    for i, axis in enumerate(spatial_axes):
        out_size, stride, extent = geometry.out_size[i], geometry.stride[i], geometry.extent[i]
        if not chunked[i]:
            per_axis.append([AxisPiece(0, x.shape[axis], out_size, geometry.pad_before[i],
                                       geometry.pad_after[i])])
            continue
        pieces, j0 = [], 0
        for count in output_owners(x.chunks[axis], out_size, stride):
            # Output j reads padded samples j * stride to j * stride + extent - 1.
            pieces.append(AxisPiece(j0 * stride, (j0 + count - 1) * stride + extent, count)
                          if count else AxisPiece(0, 0, 0))
            j0 += count
        per_axis.append(pieces)
    chunks = list(x.chunks)
    chunks[channel_axis] = (geometry.c_out,)
    return sliced_blocks(padded, spatial_axes, per_axis, chunks, make_block_function, dtype,
                         function)


def assemble(pieces, n_blocks, axes, prefix=()):
    """Concatenate the grid of pieces ``{index: array}`` along ``axes`` (the first outermost),
    skipping the missing (empty) ones."""
    if len(prefix) == len(n_blocks):
        return pieces.get(prefix)
    parts = [assemble(pieces, n_blocks, axes, prefix + (b,))
             for b in range(n_blocks[len(prefix)])]
    parts = [part for part in parts if part is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=axes[len(prefix)])


def block_shapes(x):
    return Counter(product(*x.chunks))


def require_whole_spatial_axes(x, spatial_axes, function):
    cut = [axis for axis in spatial_axes if len(x.chunks[axis]) > 1]
    if cut:
        fix = ", ".join(f"{axis}: -1" for axis in cut)
        raise ValueError(
            f"{function} on Dask splits x along the batch axis only; spatial axes {cut} of x "
            f"are in several chunks ({[x.chunks[axis] for axis in cut]}): rechunk them first, "
            f"x = x.rechunk({{{fix}}})")


# --- plans and block functions -----------------------------------------------------------------

def settled_plan(variants, weight, bias, algorithm, n_threads, transposed, kwargs):
    """A plan for the most common block variant, settled on one algorithm, and the algorithm
    for each other variant it cannot run (``direct``).

    ``variants`` counts ``(block shape, extra)`` pairs, ``extra`` the per-block keyword
    arguments as ``(name, value)`` pairs (the padding, and a transposed block's
    ``output_padding``) that complete ``kwargs``. Returns ``(plan, planned, algorithm_for)``:
    ``planned`` the variant the plan was made for.
    """
    planned = max(variants, key=lambda variant: (variants[variant], variant))
    shape, extra = planned
    plan = pcf.plan(shape, weight, bias, algorithm=algorithm, transposed=transposed,
                    n_threads=1 if n_threads is None else n_threads, **kwargs, **dict(extra))
    if not plan.settled:
        # Loading a pickled plan settles it on the tuner's pick: blocks never race finalists.
        plan = pickle.loads(pickle.dumps(plan))
    fallback = "transpose_direct" if transposed else "direct"
    algorithm_for = {}
    for variant in variants:
        shape, extra = variant
        if variant != planned and plan.algorithm not in pcf.list_algorithms(
                shape, weight, dtype=weight.dtype, transposed=transposed, **kwargs,
                **dict(extra)):
            algorithm_for[variant] = fallback
    return plan, planned, algorithm_for


class PlannedBlock:
    """Convolves one block: with the plan where the block is the planned variant (its shape
    and per-block arguments), else with the plan's algorithm by name (or the fallback for that
    variant). The plan is a task argument, one key of the graph, so that each worker process
    loads (and prepares) it once."""

    def __init__(self, function, planned, algorithm_for, n_threads, kwargs):
        self.function = function
        self.planned = planned
        self.algorithm_for = algorithm_for
        self.n_threads = n_threads
        self.kwargs = kwargs

    def __call__(self, block, extra, plan):
        n_threads = task_threads(self.n_threads)
        variant = (block.shape, extra)
        if variant == self.planned:
            if plan.n_threads != n_threads:
                # The same prepared weight with this task's thread count.
                clone = Plan.__new__(Plan)
                clone.__dict__.update(plan.__dict__)
                clone.n_threads = n_threads
                plan = clone
            return plan(block)
        algorithm = self.algorithm_for.get(variant, plan.algorithm)
        return getattr(pcf, self.function)(
            block, plan._weight, plan._bias, algorithm=algorithm, n_threads=n_threads,
            **self.kwargs, **dict(extra))


class FunctionBlock:
    """Calls ``pcf.<function>(block, *arrays, n_threads=..., **kwargs, **dict(extra))``."""

    def __init__(self, function, arrays, n_threads, kwargs):
        self.function = function
        self.arrays = arrays
        self.n_threads = n_threads
        self.kwargs = kwargs

    def __call__(self, block, extra=()):
        return getattr(pcf, self.function)(block, *self.arrays,
                                           n_threads=task_threads(self.n_threads),
                                           **self.kwargs, **dict(extra))


def float_arrays(x, **arrays):
    """The named arrays as NumPy float arrays (None kept), dtypes checked against ``x``."""
    converted = {name: None if value is None else _api._as_float_array(name, np.asarray(value))
                 for name, value in arrays.items()}
    check_dtypes(x, *converted.items())
    return converted


