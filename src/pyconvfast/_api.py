"""Argument normalization, validation, layout handling and dispatch for the public functions.

Everything a user passes is checked here, before any large allocation, and turned into a
:class:`~pyconvfast._core.problem.ConvProblem` plus 5-D channels-first views of the arrays; the chosen
algorithm then computes straight into ``out``. Channels-last arrays and flipped kernels are views
(``np.moveaxis``, negative strides), never copies.
"""

from __future__ import annotations

import operator
import os
from typing import Any

import numpy as np

from pyconvfast._algorithms import im2col
from pyconvfast._algorithms import separable
from pyconvfast._algorithms import registry
from pyconvfast.tuning import autotune
from pyconvfast._core.problem import CHANNELS_FIRST, CHANNELS_LAST, PADDING_MODES, ConvProblem
from pyconvfast._config import get_setting, resolve_precision
from pyconvfast._core import prepared
from pyconvfast._core.threads import resolve_n_threads
from pyconvfast._typing import FloatArray

# Geometry integers above this are refused: it keeps every index arithmetic inside int64.
_MAX_GEOMETRY_INT = 2**62
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --- small validators --------------------------------------------------------------------------

def _as_int(name: str, value: Any, minimum: int, shown: str | None = None) -> int:
    """``value`` as a Python int >= ``minimum``; ``shown`` is how the error names the argument."""
    shown = shown or f"{name}={value!r}"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool: {shown}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {shown}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {shown}")
    if number > _MAX_GEOMETRY_INT:
        raise ValueError(f"{name} must be at most 2**62, got {shown}")
    return number


def _int_tuple(name, value, n_spatial, minimum):
    """An int, or a sequence of one int per spatial axis, as a tuple of ``n_spatial`` ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != n_spatial:
            raise ValueError(
                f"{name} must be an int or {n_spatial} ints (one per spatial axis), "
                f"got {name}={value!r}"
            )
        return tuple(_as_int(name, v, minimum, f"{name}={value!r}") for v in value)
    return (_as_int(name, value, minimum),) * n_spatial


def _padding_pairs(padding, n_spatial, in_size, kernel, stride, dilation,
                   ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Normalize ``padding`` to (before, after) tuples.

    "same" splits the total ``dilation*(k-1)`` with the extra element at the end; with stride > 1
    it follows TensorFlow's SAME rule, which gives ``ceil(in / stride)`` outputs.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * n_spatial, (0,) * n_spatial
        if padding == "same":
            before, after = [], []
            for i, k, s, d in zip(in_size, kernel, stride, dilation):
                out = -(-i // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - i, 0)
                before.append(total // 2)
                after.append(total - total // 2)
            return tuple(before), tuple(after)
        raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', got padding={padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) != n_spatial:
            raise ValueError(
                f"padding must have {n_spatial} entries (one per spatial axis), "
                f"got padding={padding!r}"
            )
        before, after = [], []
        for entry in padding:
            if isinstance(entry, (tuple, list)):
                if len(entry) != 2:
                    raise ValueError(
                        f"each padding pair must be (before, after), got padding={padding!r}"
                    )
                pair = [_as_int("padding", v, 0, f"padding={padding!r}") for v in entry]
            else:
                pair = [_as_int("padding", entry, 0, f"padding={padding!r}")] * 2
            before.append(pair[0])
            after.append(pair[1])
        return tuple(before), tuple(after)
    pad = _as_int("padding", padding, 0)
    return (pad,) * n_spatial, (pad,) * n_spatial


def _physical_memory_bytes():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**47


def _shape_of(name: str, value: Any) -> tuple[int, ...]:
    """The shape of an array, or a shape given as a sequence of ints."""
    if isinstance(value, np.ndarray):
        return value.shape
    if isinstance(value, (tuple, list)):
        return tuple(_as_int(f"{name} shape", v, 0, f"{name}={value!r}") for v in value)
    return np.shape(value)


def n_spatial_of(weight_shape: tuple[int, ...],
                 layout: str = "(C_out, C_in // groups, *kernel)") -> int:
    """Spatial axes of a convolution, from its weight shape (``layout`` names its axes in the
    error message: a transposed convolution's weight is ``(C_in, C_out // groups, *kernel)``)."""
    n_spatial = len(weight_shape) - 2
    if n_spatial not in (1, 2, 3):
        raise ValueError(
            f"weight must be 3-, 4- or 5-D {layout}, got weight shape {tuple(weight_shape)}"
        )
    return n_spatial


# --- problem construction ----------------------------------------------------------------------

def activation_geometry(x_shape, weight_shape, n_spatial, layout, function, weight_axes):
    """Check the layout and the two shapes' ranks, and read the activation's geometry.

    Shared by the convolution and transposed-convolution problems; ``function`` and
    ``weight_axes`` (e.g. ``"C_out, C_in // groups"``) only word the messages.

    Returns
    -------
    (layout, channels_last, unbatched, batch, c_in, in_size)
    """
    if layout is None:
        layout = CHANNELS_FIRST[n_spatial]
    allowed_layouts = (CHANNELS_FIRST[n_spatial], CHANNELS_LAST[n_spatial])
    if not isinstance(layout, str) or layout not in allowed_layouts:
        raise ValueError(
            f"layout must be {allowed_layouts[0]!r} or {allowed_layouts[1]!r} for {function}, "
            f"got layout={layout!r}"
        )
    channels_last = layout == CHANNELS_LAST[n_spatial]
    x_shape, weight_shape = tuple(x_shape), tuple(weight_shape)
    if len(x_shape) not in (n_spatial + 1, n_spatial + 2):
        raise ValueError(
            f"x must be {n_spatial + 2}-D ({layout}) or {n_spatial + 1}-D (unbatched), "
            f"got x.shape={x_shape}"
        )
    if len(weight_shape) != n_spatial + 2:
        raise ValueError(
            f"weight must be {n_spatial + 2}-D ({weight_axes}, *kernel), "
            f"got weight.shape={weight_shape}"
        )
    unbatched = len(x_shape) == n_spatial + 1
    batched_shape = (1,) + x_shape if unbatched else x_shape
    if channels_last:
        c_in, in_size = batched_shape[-1], batched_shape[1:-1]
    else:
        c_in, in_size = batched_shape[1], batched_shape[2:]
    if c_in < 1 or min(in_size) < 1:
        raise ValueError(
            f"x must have at least one channel and one sample per axis, got x.shape={x_shape}")
    return layout, channels_last, unbatched, batched_shape[0], c_in, in_size


def make_problem(
    x_shape, weight_shape, *, n_spatial, stride=1, padding=0, dilation=1, groups=1,
    padding_mode="zeros", layout=None, flip=False, has_bias=False, dtype=np.float32,
    precision=None,
) -> ConvProblem:
    """Validate the geometry of a convolution and return its :class:`ConvProblem`.

    Raises ValueError or TypeError naming the offending argument; allocates nothing.
    """
    layout, _, unbatched, batch, c_in, in_size = activation_geometry(
        x_shape, weight_shape, n_spatial, layout, f"conv{n_spatial}d", "C_out, C_in // groups")
    x_shape, weight_shape = tuple(x_shape), tuple(weight_shape)
    c_out, c_in_per_group, kernel = weight_shape[0], weight_shape[1], weight_shape[2:]
    if c_out < 1 or c_in_per_group < 1 or min(kernel) < 1:
        raise ValueError(f"weight must have no empty axis, got weight.shape={weight_shape}")

    groups = _as_int("groups", groups, 1)
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide both C_in={c_in} and C_out={c_out} "
            f"(x.shape={x_shape}, weight.shape={weight_shape})"
        )
    if c_in_per_group * groups != c_in:
        raise ValueError(
            f"x has C_in={c_in} channels but weight expects weight.shape[1] * groups = "
            f"{c_in_per_group} * {groups} = {c_in_per_group * groups} "
            f"(x.shape={x_shape}, weight.shape={weight_shape}, layout={layout!r})"
        )
    stride = _int_tuple("stride", stride, n_spatial, 1)
    dilation = _int_tuple("dilation", dilation, n_spatial, 1)
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}")
    pad_before, pad_after = _padding_pairs(padding, n_spatial, in_size, kernel, stride, dilation)
    for axis in range(n_spatial):
        size, before, after = in_size[axis], pad_before[axis], pad_after[axis]
        if padding_mode == "reflect" and max(before, after) >= size:
            raise ValueError(
                f"padding_mode='reflect' needs padding smaller than the input size; spatial axis "
                f"{axis} has size {size} and padding ({before}, {after}) (padding={padding!r})"
            )
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        if extent > size + before + after:
            raise ValueError(
                f"the kernel (size {kernel[axis]}, dilation {dilation[axis]}, extent {extent}) is "
                f"larger than the padded input ({size} + {before} + {after}) on spatial axis "
                f"{axis} (x.shape={x_shape}, weight.shape={weight_shape}, padding={padding!r})"
            )
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"flip must be a bool, got flip={flip!r}")
    precision = resolve_precision(precision)

    problem = ConvProblem(
        batch=batch, c_in=c_in, c_out=c_out, groups=groups, in_size=tuple(in_size),
        kernel=tuple(kernel), stride=stride, dilation=dilation, pad_before=pad_before,
        pad_after=pad_after, padding_mode=padding_mode, dtype=np.dtype(dtype).name,
        layout=layout, flip=bool(flip), has_bias=has_bias, unbatched=unbatched,
        precision=precision,
    )
    if max(problem.out_size) > _MAX_GEOMETRY_INT:
        raise ValueError(
            f"the output would have spatial size {problem.out_size}, beyond what an array can "
            f"hold; check padding={padding!r} and stride={stride}"
        )
    n_elements = 1
    for size in problem.out_shape:
        n_elements *= size
    n_bytes = n_elements * np.dtype(dtype).itemsize
    if n_bytes > _physical_memory_bytes():
        raise ValueError(
            f"the output would have shape {problem.out_shape} ({n_bytes:.3g} bytes), more than "
            f"this machine's memory; check padding={padding!r}, stride={stride}, x.shape={x_shape}"
        )
    return problem


_PROBLEMS_MAX = 4096
_SCALAR_TYPES = frozenset((int, str, bool, type(None)))


def remembered(make):
    """``make(x_shape, weight_shape, dtype=..., **geometry)``, remembered per distinct call.

    The key holds the geometry arguments with their types (or, for anything but ints, strings,
    bools and None, their ``repr``), not the bare values: ``2`` and ``2.0``, or ``1`` and
    ``True``, compare equal but only one of each pair is valid, so a key made of the values
    would let a cached valid call vouch for an invalid one. At most :data:`_PROBLEMS_MAX`
    problems are kept.
    """
    problems = {}

    def cached(x_shape, weight_shape, dtype=np.float32, **geometry):
        dtype = np.dtype(dtype)
        if geometry.get("precision") is None:
            # the configured default, which may change between calls, is part of the key
            geometry["precision"] = resolve_precision(None)
        values = tuple(geometry.values())
        types = tuple(map(type, values))
        if _SCALAR_TYPES.issuperset(types):
            # The common call (ints, strings, bools): names, values and types in the caller's
            # order, unsorted (sorting and pairing them cost 2 us of a small call's 20 us
            # budget); the same arguments in another order only make a second entry.
            key = (x_shape, weight_shape, dtype, tuple(geometry), values, types)
        else:
            key = (x_shape, weight_shape, dtype, repr(sorted(geometry.items())))
        problem = problems.get(key)
        if problem is None:
            problem = make(x_shape, weight_shape, dtype=dtype, **geometry)
            if len(problems) >= _PROBLEMS_MAX:
                problems.clear()
            problems[key] = problem
        return problem

    cached.__doc__ = f":func:`{make.__name__}`, remembered per distinct call (:func:`remembered`)."
    return cached


cached_problem = remembered(make_problem)


# --- arrays ------------------------------------------------------------------------------------

def _as_float_array(name: str, value: Any) -> FloatArray:
    array = np.asarray(value)
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {array.dtype}; pyconvfast computes in float32 or float64 "
            f"(native byte order): cast it, e.g. {name}.astype(np.float32)"
        )
    if not array.flags.aligned:
        array = array.copy()
    return array


def _overlap(a, b):
    """True when ``a`` and ``b``, whose memory bounds overlap (``np.may_share_memory``), share
    an element, or when that is too costly to rule out."""
    try:
        return np.shares_memory(a, b, max_work=1000)
    except np.exceptions.TooHardError:
        return True


def _check_out(out, problem, dtype, inputs):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, but the result is {dtype}")
    if out.shape != problem.out_shape:
        raise ValueError(f"out has shape {out.shape}, but the result has shape {problem.out_shape}")
    flags = out.flags  # a new flags object on every read of the attribute
    if not flags.writeable:
        raise ValueError("out is read-only; pass a writable array")
    if not flags.aligned:
        raise ValueError("out is not aligned for its dtype; pass an aligned array")
    for name, array in inputs.items():
        # may_share_memory first: a bounds check, false for almost every call
        if array is not None and np.may_share_memory(out, array) and _overlap(out, array):
            raise ValueError(f"out shares memory with {name}; pass a separate output array")
    return out


def _view_5d_recipe(unbatched, channels_last, n_spatial):
    """``(index, axes)``: ``array[index]`` inserts the missing axes (batch, then leading
    spatial ones) and ``.transpose(axes)`` (None: not needed) brings the channels of a
    channels-last array to axis 1."""
    batch = (np.newaxis if unbatched else slice(None),)
    if channels_last:
        return batch + (np.newaxis,) * (3 - n_spatial), (0, 4, 1, 2, 3)
    return batch + (slice(None),) + (np.newaxis,) * (3 - n_spatial), None


# One indexing and at most one transpose, from a table: np.moveaxis and two indexings cost
# 1.5 us of a small call, three times (x, weight, out).
_VIEW_5D_RECIPES = {(unbatched, channels_last, n_spatial):
                    _view_5d_recipe(unbatched, channels_last, n_spatial)
                    for unbatched in (False, True) for channels_last in (False, True)
                    for n_spatial in (1, 2, 3)}


def _channels_first_5d(array: FloatArray, problem: Any) -> FloatArray:
    """A (N, C, D, H, W) view of a batched-or-not, channels-first-or-last activation."""
    index, axes = _VIEW_5D_RECIPES[problem.unbatched, problem.channels_last, problem.n_spatial]
    array = array[index]
    return array if axes is None else array.transpose(axes)


def weight_5d(weight: FloatArray, problem: Any) -> FloatArray:
    """The weight as a (C_out, C_in // groups, KD, KH, KW) view, flipped for true convolution."""
    if problem.flip:
        weight = weight[(Ellipsis,) + (slice(None, None, -1),) * problem.n_spatial]
    return weight[(slice(None), slice(None)) + (np.newaxis,) * (3 - problem.n_spatial)]


def explicit_algorithm(name, problem):
    """The registered algorithm ``name``, checked to support ``problem``."""
    chosen = registry.get(name)
    reason = chosen.refusal(problem)
    if reason is not None:
        raise ValueError(f"algorithm={name!r} cannot run this problem: {reason}")
    return chosen


def validated_arrays(n_spatial, x, weight, bias, geometry):
    """Check x, weight and bias against each other and the geometry.

    Returns
    -------
    x, weight, bias : ndarrays (bias contiguous, or None)
    problem : ConvProblem
    """
    x = _as_float_array("x", x)
    weight = _as_float_array("weight", weight)
    if weight.dtype != x.dtype:
        raise TypeError(
            f"x is {x.dtype} but weight is {weight.dtype}; cast one to the other's dtype"
        )
    problem = cached_problem(x.shape, weight.shape, n_spatial=n_spatial,
                             has_bias=bias is not None, dtype=x.dtype, **geometry)
    return x, weight, checked_bias(bias, problem, x.dtype), problem


def checked_bias(bias: Any, problem: Any, dtype: Any) -> FloatArray | None:
    """``bias`` as a contiguous (C_out,) array of ``dtype``, or None."""
    if bias is None:
        return None
    bias = _as_float_array("bias", bias)
    if bias.dtype != dtype:
        raise TypeError(f"x is {dtype} but bias is {bias.dtype}; cast one to the other's dtype")
    if bias.shape != (problem.c_out,):
        raise ValueError(f"bias must have shape ({problem.c_out},), got bias.shape={bias.shape}")
    return np.ascontiguousarray(bias)


def output_array(out: Any, problem: Any, dtype: Any, inputs: dict[str, Any]) -> FloatArray:
    """The caller's ``out``, checked, or a new array of the result's shape and layout."""
    if out is None:
        return np.empty(problem.out_shape, dtype=dtype)
    return _check_out(out, problem, dtype, inputs)


# What a plain call resolved (problem, algorithm, parameters), by its arguments, the settings
# it read and its weight's fingerprint: a call that finds its own arguments, settings and
# weight contents here, and the prepared weight still kept, skips building the problem,
# checking the weight for rank 1, asking the tuner and re-checking the algorithm (together
# about 6 us of a small call's 15). At most this many entries; past it the table starts over.
_RESOLVED_MAX = 1024
_resolved: dict[tuple, tuple] = {}


def _call_key(n_spatial, x, weight, bias, algorithm, n_threads, precision, geometry):
    """The key of a call's resolution: everything the problem, the algorithm and its
    parameters depend on besides the weight's contents (unhashable if an argument is).

    The geometry values go in with their types (or, for anything but ints, strings, bools and
    None, as their ``repr``): ``2`` and ``2.0``, or ``1`` and ``True``, compare equal but only
    one of each is valid, and a key made of the values would let a valid call vouch for an
    invalid one. The settings read where an argument is None, and the tuning mode, are part
    of the key, so that a changed configuration resolves again.
    """
    types = tuple(map(type, geometry))
    if not _SCALAR_TYPES.issuperset(types):
        geometry, types = repr(geometry), None
    return (n_spatial, x.shape, weight.shape, x.dtype, bias is None, algorithm, geometry, types,
            precision, n_threads, type(n_threads),
            get_setting("precision") if precision is None else None,
            get_setting("n_threads") if n_threads is None else None, get_setting("tune"))


def convolve(n_spatial: int, x: Any, weight: Any, bias: Any, stride: Any, padding: Any,
             dilation: Any, groups: Any, padding_mode: Any, flip: Any, layout: Any,
             algorithm: str, out: Any, n_threads: int | None,
             precision: str | None) -> FloatArray:
    """Shared body of conv1d/conv2d/conv3d (see their docstrings); the arguments are
    positional, in the order of theirs (passing fifteen by keyword cost 0.3 us a call)."""
    x = _as_float_array("x", x)
    weight = _as_float_array("weight", weight)
    geometry = (stride, padding, dilation, groups, padding_mode, flip, layout)
    call_key = _call_key(n_spatial, x, weight, bias, algorithm, n_threads, precision, geometry)
    try:
        resolved = _resolved.get(call_key)
    except TypeError:  # an unhashable argument (a list): resolved the long way, not kept
        call_key = resolved = None
    if resolved is not None and weight.dtype == x.dtype:
        generation, weight_key, problem, name, params = resolved
        weight_key_now = prepared.fingerprint(weight)
        kept = (prepared.kept(problem, name, weight_key)
                if weight_key_now == weight_key and generation == autotune.generation()
                else None)
        if kept is not None:
            n_threads = resolve_n_threads(n_threads)
            bias = checked_bias(bias, problem, x.dtype)
            out = output_array(out, problem, x.dtype, {"x": x, "weight": weight, "bias": bias})
            registry.get(name).run(problem, _channels_first_5d(x, problem), kept, bias,
                                   _channels_first_5d(out, problem), n_threads, params)
            return out
    generation = autotune.generation()
    x, weight, bias, problem = validated_arrays(n_spatial, x, weight, bias, dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, flip=flip, layout=layout,
        precision=precision))  # None: the remembered problem resolves the default
    problem = separable.mark(problem, weight)  # rank-1 kernels may also run as two 1-D passes
    n_threads = resolve_n_threads(n_threads)
    im2col.warm_blas_in_threads(n_threads)
    chosen = None if algorithm == "auto" else explicit_algorithm(algorithm, problem)
    out = output_array(out, problem, x.dtype, {"x": x, "weight": weight, "bias": bias})
    if problem.batch == 0:
        return out
    x5, w5, out5 = _channels_first_5d(x, problem), weight_5d(weight, problem), \
        _channels_first_5d(out, problem)
    name, params, weight_key, seen = run_chosen(problem, chosen, x5, weight, w5, bias, out5,
                                                n_threads)
    if seen and call_key is not None:
        if len(_resolved) >= _RESOLVED_MAX:
            _resolved.clear()
        _resolved[call_key] = (generation, weight_key, problem, name, params)
    return out


def run_chosen(problem, chosen, x5, weight, w5, bias, out5, n_threads):
    """Run ``chosen`` (None: ``auto``'s choice) on a plain call's 5-D views, with the weight
    kept prepared where these contents were seen before (:mod:`pyconvfast._core.prepared`):
    then ``auto`` runs the plan's choice, the fastest once the weight is prepared.

    Returns
    -------
    (name, params, weight_key, seen)
        The algorithm's name and the parameters it ran with, the weight's fingerprint
        (:func:`pyconvfast._core.prepared.fingerprint`), and whether its contents were seen
        before (what ran is then what every later call with these contents runs).
    """
    key = prepared.fingerprint(weight)
    seen = prepared.seen_before(key)
    params = {}
    if chosen is None:
        choice = autotune.choose(problem, n_threads, x5, w5, bias, out5)
        if seen:
            choice = choice.for_plan()
        chosen, params = registry.get(choice.algorithm), choice.params
    weights = prepared.prepared_weight(problem, chosen, weight, w5, key, keep=seen)
    chosen.run(problem, x5, weights, bias, out5, n_threads, params)
    return chosen.name, params, key, seen
