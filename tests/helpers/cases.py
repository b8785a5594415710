"""Seeded random convolution problems, shared by the sweep and the exactness tests.

``make_case(seed, index)`` draws everything from ``np.random.default_rng([seed, index])``, so one
failing case is reproduced from the two numbers printed in its failure message:

    >>> from cases import make_case, run_case          # doctest: +SKIP
    >>> run_case(make_case(20240611, 17))              # doctest: +SKIP
"""

from dataclasses import dataclass, field

import numpy as np

import pyconvfast as pcf
from tests.helpers.reference import (
    CHANNELS_FIRST, CHANNELS_LAST, algorithm_tolerance, assert_within_bound, conv_reference,
    conv_scale, n_terms, normwise_tolerance, padding_pairs, reference_dtype,
)

CONV = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
CHANNEL_COUNTS = (1, 3, 13, 17, 33, 2, 4, 8)
MEMORY_KINDS = ("c", "f", "sliced", "negative", "permuted")
OUT_KINDS = (None, None, "c", "f", "sliced", "negative")

# Per number of spatial axes: largest input size and kernel size drawn (kept small: fast).
MAX_SIZE = {1: 24, 2: 10, 3: 6}
MAX_KERNEL = {1: 7, 2: 4, 3: 3}
# Upper bound on multiply-adds of one case, to keep the default sweep quick.
MAX_MACS = 400_000

# Algorithms that are NOT exact on small integers: integer-valued cases run them (and "auto"
# wherever it may pick one of them) but do not compare their values. Their error bound cannot
# stand in for equality either: it is relative to the magnitudes of a whole transformed tile,
# and integer data has outputs of scale 0 (all products zero) inside tiles of nonzero data.
# Random-data tests hold them to their bound.
# winograd_f4x4_3x3: its weight transform G holds 1/6 and 1/24, which binary floating point
# rounds. fft: the transforms' twiddle factors are irrational, every output is rounded. (winograd_f2x2_3x3 stays exact: its G holds only halves, so every transformed value
# is a multiple of 1/4, and the sums of these small integers stay far below 2**22.)
# winograd_f2x2_5x5: its G holds the same 1/6 and 1/24.
NOT_EXACT_ON_INTEGERS = frozenset({"winograd_f4x4_3x3", "winograd_f2x2_5x5", "fft"})


def exact_on_integers(algorithm, usable):
    """Whether ``algorithm`` (or, for "auto", whatever of ``usable`` it picks) must give exactly
    the reference on integer-valued data."""
    names = usable if algorithm == "auto" else [algorithm]
    return not NOT_EXACT_ON_INTEGERS.intersection(names)


@dataclass
class Case:
    seed: int
    index: int
    n_spatial: int
    x_shape: tuple          # logical shape, in the case's layout
    w_shape: tuple
    has_bias: bool
    dtype: np.dtype
    kwargs: dict            # stride, padding, dilation, groups, padding_mode, flip, layout
    x_memory: str
    w_memory: str
    out_kind: object
    b_memory: str = "c"
    integer: bool = False
    memory_rng_state: dict = field(default=None, repr=False)

    def describe(self):
        return (
            f"reproduce with: cases.run_case(cases.make_case({self.seed}, {self.index}"
            f"{', integer=True' if self.integer else ''}))\n"
            f"  conv{self.n_spatial}d x.shape={self.x_shape} weight.shape={self.w_shape} "
            f"bias={'yes' if self.has_bias else 'no'} dtype={np.dtype(self.dtype).name}\n"
            f"  kwargs={self.kwargs}\n"
            f"  x memory={self.x_memory!r} weight memory={self.w_memory!r} "
            f"bias memory={self.b_memory!r} out={self.out_kind!r} integer-valued={self.integer}"
        )

    def arrays(self):
        """(x, weight, bias) with the case's values and memory layouts."""
        rng = np.random.default_rng([self.seed, self.index, 1])

        def values(shape):
            if self.integer:
                return rng.integers(-3, 4, size=shape).astype(self.dtype)
            return rng.standard_normal(shape).astype(self.dtype)

        x = with_memory(values(self.x_shape), self.x_memory, rng)
        w = with_memory(values(self.w_shape), self.w_memory, rng)
        b = with_memory(values((self.w_shape[0],)), self.b_memory, rng) if self.has_bias else None
        return x, w, b

    def make_out(self, shape):
        """A NaN-filled ``out`` of the case's kind (NaN shows any element left unwritten)."""
        if self.out_kind is None:
            return None
        rng = np.random.default_rng([self.seed, self.index, 2])
        return with_memory(np.full(shape, np.nan, dtype=self.dtype), self.out_kind, rng)


def with_memory(array, kind, rng):
    """An array equal to ``array`` but laid out in memory as ``kind`` says."""
    if kind == "c":
        view = np.ascontiguousarray(array)
    elif kind == "f":
        view = np.asfortranarray(array)
    elif kind == "sliced":
        # Every axis strided by 2 inside a larger buffer, with an offset.
        base = np.full(tuple(2 * s + 1 for s in array.shape), np.nan, dtype=array.dtype)
        view = base[tuple(slice(1, 1 + 2 * s, 2) for s in array.shape)]
        view[...] = array
    elif kind == "negative":
        axes = [a for a in range(array.ndim) if rng.random() < 0.6] or [array.ndim - 1]
        flips = tuple(slice(None, None, -1) if a in axes else slice(None) for a in range(array.ndim))
        view = np.ascontiguousarray(array[flips])[flips]
    elif kind == "permuted":
        perm = rng.permutation(array.ndim)
        view = np.ascontiguousarray(array.transpose(perm)).transpose(np.argsort(perm))
    else:
        raise ValueError(kind)
    assert view.shape == array.shape and np.array_equal(view, array, equal_nan=True)
    return view


def _valid(in_size, kernel, stride, dilation, padding, padding_mode):
    pairs = padding_pairs(padding, in_size, kernel, stride, dilation)
    for size, k, d, (before, after) in zip(in_size, kernel, dilation, pairs):
        if d * (k - 1) + 1 > size + before + after:
            return None
        if padding_mode == "reflect" and max(before, after) >= size:
            return None
    out = [
        (size + b + a - d * (k - 1) - 1) // s + 1
        for size, k, s, d, (b, a) in zip(in_size, kernel, stride, dilation, pairs)
    ]
    return out


def _draw_padding(rng, n_spatial):
    form = rng.choice(["int", "per_axis", "pairs", "valid", "same", "same"])
    if form == "int":
        return int(rng.integers(0, 4))
    if form == "per_axis":
        values = [int(v) for v in rng.integers(0, 4, size=n_spatial)]
        return tuple(values) if rng.random() < 0.5 else values
    if form == "pairs":
        return tuple((int(a), int(b)) for a, b in rng.integers(0, 4, size=(n_spatial, 2)))
    return str(form)


def _per_axis_or_int(rng, values):
    """One int when all axes agree and a coin says so, else a tuple/list of one per axis."""
    values = [int(v) for v in values]
    if len(set(values)) == 1 and rng.random() < 0.5:
        return values[0]
    return tuple(values) if rng.random() < 0.7 else values


def make_case(seed, index, integer=False, big=False):
    """The convolution problem number ``index`` of the sweep seeded by ``seed``."""
    rng = np.random.default_rng([seed, index])
    n_spatial = int(rng.integers(1, 4))
    max_size = MAX_SIZE[n_spatial] * (2 if big else 1)
    max_kernel = MAX_KERNEL[n_spatial] + (2 if big else 0)

    group_kind = rng.choice(["one", "one", "depthwise", "grouped"])
    if group_kind == "one":
        groups = 1
        c_in, c_out = (int(c) for c in rng.choice(CHANNEL_COUNTS, size=2))
    elif group_kind == "depthwise":
        c_in = int(rng.choice([1, 3, 13, 17]))
        groups, c_out = c_in, c_in * int(rng.choice([1, 2, 3]))
    else:
        groups = int(rng.choice([2, 3, 4]))
        c_in = groups * int(rng.choice([1, 2, 3, 5]))
        c_out = groups * int(rng.choice([1, 2, 3, 5]))
    batch = rng.choice(["0", "1", "2", "3", "unbatched", "1", "2"])

    for _ in range(1000):
        in_size = [int(v) for v in rng.integers(1, max_size + 1, size=n_spatial)]
        kernel = [int(v) for v in rng.integers(1, max_kernel + 1, size=n_spatial)]
        stride = [int(v) for v in rng.choice([1, 1, 2, 3], size=n_spatial)]
        dilation = [int(v) for v in rng.choice([1, 1, 2, 3], size=n_spatial)]
        padding = _draw_padding(rng, n_spatial)
        padding_mode = str(rng.choice(PADDING_MODES))
        out = _valid(in_size, kernel, stride, dilation, padding, padding_mode)
        if out is None:
            continue
        n = 1 if batch in ("0", "unbatched") else int(batch)
        macs = n * c_out * (c_in // groups) * int(np.prod(out)) * int(np.prod(kernel))
        if macs <= MAX_MACS * (8 if big else 1):
            break
    else:
        raise RuntimeError(f"could not draw a valid geometry for case {seed}, {index}")

    layout = str(rng.choice([CHANNELS_FIRST[n_spatial], CHANNELS_LAST[n_spatial]]))
    if layout == CHANNELS_LAST[n_spatial]:
        x_shape = (*in_size, c_in)
    else:
        x_shape = (c_in, *in_size)
    if batch != "unbatched":
        x_shape = (int(batch),) + x_shape
    kwargs = {
        "stride": _per_axis_or_int(rng, stride),
        "padding": padding,
        "dilation": _per_axis_or_int(rng, dilation),
        "groups": groups,
        "padding_mode": padding_mode,
        "flip": bool(rng.random() < 0.3),
        "layout": layout,
    }
    return Case(
        seed=seed, index=index, n_spatial=n_spatial, x_shape=tuple(x_shape),
        w_shape=(c_out, c_in // groups, *kernel), has_bias=bool(rng.random() < 0.5),
        dtype=np.dtype(rng.choice([np.float32, np.float64])), kwargs=kwargs,
        x_memory=str(rng.choice(MEMORY_KINDS)), w_memory=str(rng.choice(MEMORY_KINDS)),
        out_kind=OUT_KINDS[int(rng.integers(len(OUT_KINDS)))], integer=integer,
        b_memory=str(rng.choice(["c", "sliced", "negative"])),
    )


def run_case(case):
    """Run ``case`` with every usable algorithm and "auto"; check each against the reference.

    Integer-valued cases must equal the reference exactly (the algorithms of
    ``NOT_EXACT_ON_INTEGERS`` only run); the others must be within the error bound of
    :mod:`reference`, with each algorithm's tolerance.
    """
    x, w, b = case.arrays()
    x_before, w_before = x.copy(), w.copy()
    conv = CONV[case.n_spatial]
    context = case.describe()
    try:
        algorithms = pcf.list_algorithms(x, w, **case.kwargs)
    except Exception as error:
        raise AssertionError(f"{type(error).__name__}: {error}\n{context}") from error
    assert algorithms, f"no algorithm can run the problem\n{context}"
    assert "direct" in algorithms, f"'direct' must run every problem\n{context}"

    ref_dtype = reference_dtype(case.dtype)
    ref = conv_reference(x, w, b, dtype=ref_dtype, **case.kwargs)
    scale = None
    expected_shape = pcf.conv_output_shape(x.shape, w.shape, **{
        k: v for k, v in case.kwargs.items() if k != "flip"})
    assert expected_shape == ref.shape, f"conv_output_shape {expected_shape} != {ref.shape}\n{context}"

    for algorithm in algorithms + ["auto"]:
        where = f"algorithm={algorithm!r}\n{context}"
        out = case.make_out(ref.shape)
        try:
            result = conv(x, w, b, algorithm=algorithm, out=out, **case.kwargs)
        except Exception as error:  # a valid problem must run: report the case with the error
            raise AssertionError(f"{type(error).__name__}: {error}\n{where}") from error
        if out is not None:
            assert result is out, f"out= was not returned\n{where}"
        assert isinstance(result, np.ndarray) and result.dtype == case.dtype, where
        assert result.shape == ref.shape, f"shape {result.shape} != {ref.shape}\n{where}"
        if case.integer:
            if exact_on_integers(algorithm, algorithms):
                np.testing.assert_array_equal(result, ref.astype(case.dtype), err_msg=where)
        else:
            if scale is None:
                scale = conv_scale(x, w, b, dtype=ref_dtype, **case.kwargs)
            assert_within_bound(result, ref, scale, n_terms(w.shape), case.dtype, ref_dtype,
                                where, tolerance=algorithm_tolerance(algorithm, case.dtype,
                                                                     algorithms),
                                normwise=normwise_tolerance(algorithm, case.dtype, algorithms))
    np.testing.assert_array_equal(x, x_before, err_msg=f"x was modified\n{context}")
    np.testing.assert_array_equal(w, w_before, err_msg=f"weight was modified\n{context}")
