"""The machinery under :mod:`pyconvfast.dask`: threads per task, how blocks and their halos
are cut, the plan chosen once per graph and the functions each block runs."""

from __future__ import annotations

import pickle
import sys
import threading
from collections import Counter, namedtuple
from collections.abc import Callable
from itertools import product
from typing import Any

import numpy as np
import dask
import dask.array as da
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._plan import Plan
from pyconvfast._core.problem import CHANNELS_LAST
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast._typing import ArrayLike, FloatArray

# make_block_function(block shapes, padding per block) -> (run_block, extra task arguments)
MakeBlockFunction = Callable[..., Any]


NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                  "circular": "wrap"}


# --- threads -----------------------------------------------------------------------------------

def _worker_threads() -> int:
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


def task_threads(n_threads: int | None = None) -> int:
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

def as_dask(x: da.Array | ArrayLike) -> da.Array:
    return x if isinstance(x, da.Array) else da.asarray(x)


def check_dtypes(x: da.Array, *arrays: tuple[str, FloatArray | None]) -> None:
    """TypeErrors as the NumPy functions raise them, without computing ``x``."""
    if x.dtype not in _api._FLOAT_DTYPES:
        raise TypeError(
            f"x has dtype {x.dtype}; pyconvfast computes in float32 or float64 (native byte "
            f"order): cast it, e.g. x.astype(np.float32)")
    for name, array in arrays:
        if array is not None and array.dtype != x.dtype:
            raise TypeError(
                f"x is {x.dtype} but {name} is {array.dtype}; cast one to the other's dtype")


def layout_axes(ndim: int, n_spatial: int, layout: str) -> tuple[int, tuple[int, ...]]:
    """(channel axis, spatial axes) of an activation of ``ndim`` axes in ``layout``."""
    lead = ndim - n_spatial - 1  # 1 batched, 0 unbatched
    if layout == CHANNELS_LAST[n_spatial]:
        return ndim - 1, tuple(range(lead, lead + n_spatial))
    return lead, tuple(range(lead + 1, lead + 1 + n_spatial))


def check_channel_chunks(x: da.Array, channel_axis: int, function: str) -> None:
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
    """Compute each output block from the slice of ``source`` it reads, in one task.

    ``per_axis[i]`` holds one :class:`AxisPiece` per output chunk of spatial axis ``i``;
    ``chunks`` the output chunks of the other axes (the batch chunks of ``source``, one chunk
    on channels). The task of an output block takes the chunks of ``source`` its range
    overlaps, copies the range into one array (or takes a view where it lies in one chunk) and
    calls ``run_block(block, extra, *args)``, ``extra`` the call's per-block keyword arguments
    as ``(name, value)`` pairs (``padding``, and ``output_padding`` where the pieces have one).
    So the graph holds one task per output block, no halo exchange, concatenation or rechunk
    of its own. ``make_block_function(variants)`` gets the Counter of ``(block shape, extra)``
    over every task and returns ``(run_block, args)`` (``args`` may hold Delayed objects, one
    key each in the graph). Output blocks with no outputs are empty arrays.
    """
    bounds = [np.cumsum((0,) + source.chunks[axis]).tolist() for axis in spatial_axes]
    other_axes = [axis for axis in range(source.ndim) if axis not in spatial_axes]
    others = list(product(*(range(len(source.chunks[axis])) for axis in other_axes)))
    blocks, variants = {}, Counter()
    for index in product(*(range(len(pieces)) for pieces in per_axis)):
        pieces = [per_axis[i][b] for i, b in enumerate(index)]
        if any(piece.count == 0 for piece in pieces):
            blocks[index] = None
            continue
        extra = (("padding", tuple((piece.before, piece.after) for piece in pieces)),)
        if pieces[0].output_padding is not None:
            extra += (("output_padding", tuple(piece.output_padding for piece in pieces)),)
        blocks[index] = pieces, extra
        for other in others:
            shape = [source.chunks[axis][b] for axis, b in zip(other_axes, other)]
            shape = dict(zip(other_axes, shape))
            shape.update((axis, piece.stop - piece.start)
                         for axis, piece in zip(spatial_axes, pieces))
            variants[(tuple(shape[axis] for axis in range(source.ndim)), extra)] += 1
    run_block, args = make_block_function(variants)

    token = dask.base.tokenize(source, per_axis, run_block, args)
    name = f"pyconvfast-{function}-{token}"
    dependencies = [source]
    task_args = []
    for arg in args:
        if isinstance(arg, Delayed):
            dependencies.append(arg)
            task_args.append(arg.key)
        else:
            task_args.append(arg)
    out_chunks = list(chunks)
    for i, axis in enumerate(spatial_axes):
        out_chunks[axis] = tuple(piece.count for piece in per_axis[i])
    graph = {}
    for index, block in blocks.items():
        for other in others:
            key_index = [0] * source.ndim
            for axis, b in zip(other_axes, other):
                key_index[axis] = b
            for axis, b in zip(spatial_axes, index):
                key_index[axis] = b
            key = (name, *key_index)
            if block is None:
                shape = tuple(out_chunks[axis][b] for axis, b in enumerate(key_index))
                graph[key] = (np.empty, shape, dtype)
                continue
            pieces, extra = block
            parts = []  # per axis: (source chunk, slice in it, slice in the block)
            for i, piece in enumerate(pieces):
                edges = bounds[i]
                first = int(np.searchsorted(edges, piece.start, side="right")) - 1
                axis_parts = []
                for c in range(first, len(edges) - 1):
                    lo, hi = max(piece.start, edges[c]), min(piece.stop, edges[c + 1])
                    if lo >= hi:
                        break
                    axis_parts.append((c, slice(lo - edges[c], hi - edges[c]),
                                       slice(lo - piece.start, hi - piece.start)))
                parts.append(axis_parts)
            keys, copies = [], []
            for combination in product(*parts):
                source_index = list(key_index)
                for axis, (c, _, _) in zip(spatial_axes, combination):
                    source_index[axis] = c
                keys.append((source.name, *source_index))
                copies.append(tuple((within, into) for _, within, into in combination))
            shape = list(source.chunks[axis][b] for axis, b in enumerate(key_index))
            for axis, piece in zip(spatial_axes, pieces):
                shape[axis] = piece.stop - piece.start
            crops = tuple((piece.crop, piece.count) for piece in pieces)
            graph[key] = (_gather_call, keys, copies, tuple(shape), spatial_axes, run_block,
                          extra, crops, *task_args)
    graph = HighLevelGraph.from_collections(name, graph, dependencies=dependencies)
    return da.Array(graph, name, tuple(out_chunks), meta=np.empty((0,) * source.ndim, dtype))


def _gather_call(parts, copies, shape, spatial_axes, run_block, extra, crops, *args):
    """One output block's task: its input range gathered from the source chunks ``parts``
    (a view where it lies in one chunk), ``run_block``'s result on it, cropped to the block's
    outputs where the call made more (see :class:`AxisPiece`)."""
    if len(parts) == 1:
        selection = [slice(None)] * len(shape)
        for axis, (within, _) in zip(spatial_axes, copies[0]):
            selection[axis] = within
        block = parts[0][tuple(selection)]
    else:
        block = np.empty(shape, dtype=parts[0].dtype)
        for part, copy in zip(parts, copies):
            source, target = [slice(None)] * len(shape), [slice(None)] * len(shape)
            for axis, (within, into) in zip(spatial_axes, copy):
                source[axis], target[axis] = within, into
            block[tuple(target)] = part[tuple(source)]
    result = run_block(block, extra, *args)
    selection = [slice(None)] * result.ndim
    for axis, (crop, count) in zip(spatial_axes, crops):
        if crop or result.shape[axis] != count:
            selection[axis] = slice(crop, crop + count)
    return result[tuple(selection)]


class Geometry:
    """What the block cutting needs of a problem: per spatial axis its kernel extent, stride,
    padding and output size, the padding mode, and the output's channel count."""

    def __init__(self, extent: Any, stride: Any, pad_before: Any, pad_after: Any,
                 out_size: Any, padding_mode: str, c_out: int) -> None:
        self.extent, self.stride = tuple(extent), tuple(stride)
        self.pad_before, self.pad_after = tuple(pad_before), tuple(pad_after)
        self.out_size, self.padding_mode, self.c_out = tuple(out_size), padding_mode, c_out

    @classmethod
    def of(cls, problem: Any) -> Geometry:
        extent = [d * (k - 1) + 1 for k, d in zip(problem.kernel, problem.dilation)]
        return cls(extent, problem.stride, problem.pad_before, problem.pad_after,
                   problem.out_size, problem.padding_mode, problem.c_out)


def pad_chunked_axes(x, spatial_axes, which, pad_before, pad_after, padding_mode):
    """``x`` padded with ``padding_mode`` (as NumPy's ``np.pad`` mode) on the spatial axes
    where ``which`` is true."""
    pad_width = [(0, 0)] * x.ndim
    for axis, pad, before, after in zip(spatial_axes, which, pad_before, pad_after):
        if pad:
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


def blockwise_spatial(x: da.Array, n_spatial: int, layout: str, geometry: Geometry,
                      make_block_function: MakeBlockFunction, dtype: Any,
                      function: str) -> da.Array:
    """Apply a block function block by block with exact halos (see the module docstring).

    Output ``j`` reads padded samples ``j * stride`` to ``j * stride + extent - 1``; each block
    gets the samples of ``x`` its outputs read, and the padding they read past the outer faces
    is applied by the block's call, as the NumPy function applies it (so a spatial axis in one
    chunk is one call's). The exceptions are "circular" (a face block would need the far end)
    and a face block too short for the "reflect" it must apply (or with no sample of ``x`` at
    all): such an axis is padded once as a Dask array (:func:`pad_chunked_axes`) and its
    blocks read the padded samples, with no padding. ``make_block_function`` and the block
    calls are those of :func:`sliced_blocks`.
    """
    channel_axis, spatial_axes = layout_axes(x.ndim, n_spatial, layout)
    check_channel_chunks(x, channel_axis, function)
    per_axis, padded_axes = [], []
    for i, axis in enumerate(spatial_axes):
        out_size, stride, extent = geometry.out_size[i], geometry.stride[i], geometry.extent[i]
        before, after, size = geometry.pad_before[i], geometry.pad_after[i], x.shape[axis]
        if len(x.chunks[axis]) == 1:
            per_axis.append([AxisPiece(0, size, out_size, before, after)])
            padded_axes.append(False)
            continue
        counts = output_owners(x.chunks[axis], out_size, stride)
        pieces, j0 = [], 0
        for count in counts:
            lo = j0 * stride - before  # the block reads samples [lo, hi) of x, or padding
            hi = (j0 + count - 1) * stride + extent - before
            start, stop = min(max(lo, 0), size), max(min(hi, size), 0)
            pieces.append(AxisPiece(start, stop, count, start - lo, hi - stop)
                          if count else AxisPiece(0, 0, 0))
            j0 += count
        kernel_pads = geometry.padding_mode != "circular" and all(
            piece.stop > piece.start and (geometry.padding_mode != "reflect" or max(
                piece.before, piece.after) < piece.stop - piece.start)
            for piece in pieces if piece.count)
        if not kernel_pads:
            pieces, j0 = [], 0
            for count in counts:
                pieces.append(AxisPiece(j0 * stride, (j0 + count - 1) * stride + extent, count)
                              if count else AxisPiece(0, 0, 0))
                j0 += count
        per_axis.append(pieces)
        padded_axes.append(not kernel_pads)
    source = pad_chunked_axes(x, spatial_axes, padded_axes, geometry.pad_before,
                              geometry.pad_after, geometry.padding_mode)
    chunks = list(x.chunks)
    chunks[channel_axis] = (geometry.c_out,)
    return sliced_blocks(source, spatial_axes, per_axis, chunks, make_block_function, dtype,
                         function)


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


def float_arrays(x: da.Array, **arrays: ArrayLike | None) -> dict[str, FloatArray | None]:
    """The named arrays as NumPy float arrays (None kept), dtypes checked against ``x``."""
    converted = {name: None if value is None else _api._as_float_array(name, np.asarray(value))
                 for name, value in arrays.items()}
    check_dtypes(x, *converted.items())
    return converted


