"""The machinery under :mod:`pyconvfast.dask`: threads per task, how blocks and their halos
are cut, the plan chosen once per graph and the functions each block runs."""

from __future__ import annotations

import pickle
import sys
import threading
from collections import Counter
from collections.abc import Callable
from itertools import product
from typing import Any

import numpy as np
import dask
import dask.array as da

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._plan import Plan
from pyconvfast._core.problem import CHANNELS_LAST
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast._typing import ArrayLike, FloatArray

# make_block_function(block shapes, padding per block) -> (run_block, extra task arguments)
MakeBlockFunction = Callable[[Counter[tuple[int, ...]], Any], tuple[Any, tuple[Any, ...]]]


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


def _axis_blocks(chunks: tuple[int, ...], out_size: int, stride: int, extent: int,
                 ) -> list[tuple[int, int, int, int]]:
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


def blockwise_spatial(x: da.Array, n_spatial: int, layout: str, geometry: Geometry,
                      make_block_function: MakeBlockFunction, dtype: Any,
                      function: str) -> da.Array:
    """Apply a block function block by block with exact halos (see the module docstring).

    ``make_block_function(shapes, padding)`` is called once, with the Counter of the input
    block shapes the graph will hold and the ``padding`` (one ``(before, after)`` pair per
    spatial axis) each block must still apply itself: the requested padding on axes in one
    chunk, none on the others. It returns ``(run_block, args)``; each task then computes
    ``run_block(block, padding, *args)`` on a NumPy block holding every input its outputs read.
    """
    channel_axis, spatial_axes = layout_axes(x.ndim, n_spatial, layout)
    check_channel_chunks(x, channel_axis, function)
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
    inputs: dict[tuple[int, ...], Any] = {}
    shapes: Counter[tuple[int, ...]] = Counter()
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
    result = assemble(pieces, [len(blocks) for blocks in per_axis], spatial_axes)
    assert result is not None  # every output position belongs to an input chunk
    # Input chunk i gives output chunk i, on every axis: chunks without outputs stay, empty.
    out_chunks = list(base_chunks)
    for i, axis in enumerate(spatial_axes):
        out_chunks[axis] = tuple(j1 - j0 for j0, j1, _, _ in per_axis[i])
    if result.chunks != tuple(out_chunks):
        result = result.rechunk(tuple(out_chunks))
    return result


def assemble(pieces: dict[tuple[int, ...], da.Array], n_blocks: list[int],
             axes: tuple[int, ...], prefix: tuple[int, ...] = ()) -> da.Array | None:
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


def block_shapes(x: da.Array) -> Counter[tuple[int, ...]]:
    return Counter(product(*x.chunks))


def require_whole_spatial_axes(x: da.Array, spatial_axes: tuple[int, ...], function: str,
                               ) -> None:
    cut = [axis for axis in spatial_axes if len(x.chunks[axis]) > 1]
    if cut:
        fix = ", ".join(f"{axis}: -1" for axis in cut)
        raise ValueError(
            f"{function} on Dask splits x along the batch axis only; spatial axes {cut} of x "
            f"are in several chunks ({[x.chunks[axis] for axis in cut]}): rechunk them first, "
            f"x = x.rechunk({{{fix}}})")


# --- plans and block functions -----------------------------------------------------------------

def settled_plan(shapes: Counter[tuple[int, ...]], weight: FloatArray, bias: FloatArray | None,
                 algorithm: str, n_threads: int | None, transposed: bool,
                 kwargs: dict[str, Any]) -> tuple[Plan, dict[tuple[int, ...], str]]:
    """A plan for the most common block shape, settled on one algorithm, and the algorithm for
    each other block shape it cannot run (``direct``)."""
    common = max(shapes, key=lambda shape: (shapes[shape], shape))
    plan = pcf.plan(common, weight, bias, algorithm=algorithm, transposed=transposed,
                    n_threads=1 if n_threads is None else n_threads, **kwargs)
    if not plan.settled:
        # Loading a pickled plan settles it on the tuner's pick: blocks never race finalists.
        plan = pickle.loads(pickle.dumps(plan))
    fallback = "transpose_direct" if transposed else "direct"
    algorithm_for_shape: dict[tuple[int, ...], str] = {}
    for shape in shapes:
        if shape != common and plan.algorithm not in pcf.list_algorithms(
                shape, weight, dtype=weight.dtype, transposed=transposed, **kwargs):
            algorithm_for_shape[shape] = fallback
    return plan, algorithm_for_shape


class PlannedBlock:
    """Convolves one block: with the plan where the block has its shape, else with the plan's
    algorithm by name (or the fallback for that shape). The plan is a task argument, one key of
    the graph, so that each worker process loads (and prepares) it once."""

    def __init__(self, function: str, algorithm_for_shape: dict[tuple[int, ...], str],
                 n_threads: int | None, kwargs: dict[str, Any]) -> None:
        self.function = function
        self.algorithm_for_shape = algorithm_for_shape
        self.n_threads = n_threads
        self.kwargs = kwargs

    def __call__(self, block: FloatArray, padding: Any, plan: Plan) -> FloatArray:
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
        result: FloatArray = getattr(pcf, self.function)(
            block, plan._weight, plan._bias, padding=padding, algorithm=algorithm,
            n_threads=n_threads, **self.kwargs)
        return result


class FunctionBlock:
    """Calls ``pcf.<function>(block, *arrays, padding=..., n_threads=..., **kwargs)``."""

    def __init__(self, function: str, arrays: tuple[Any, ...], n_threads: int | None,
                 kwargs: dict[str, Any], takes_padding: bool = True) -> None:
        self.function = function
        self.arrays = arrays
        self.n_threads = n_threads
        self.kwargs = kwargs
        self.takes_padding = takes_padding

    def __call__(self, block: FloatArray, padding: Any = None) -> FloatArray:
        kwargs = dict(self.kwargs)
        if self.takes_padding:
            kwargs["padding"] = padding
        result: FloatArray = getattr(pcf, self.function)(
            block, *self.arrays, n_threads=task_threads(self.n_threads), **kwargs)
        return result


def float_arrays(x: da.Array, **arrays: ArrayLike | None) -> dict[str, FloatArray | None]:
    """The named arrays as NumPy float arrays (None kept), dtypes checked against ``x``."""
    converted = {name: None if value is None else _api._as_float_array(name, np.asarray(value))
                 for name, value in arrays.items()}
    check_dtypes(x, *converted.items())
    return converted


