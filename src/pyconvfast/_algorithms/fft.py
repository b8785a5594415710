"""The ``fft`` algorithm: stride-1 convolution through real FFTs, in overlap-save blocks.

What it runs
------------
For each block of outputs (per spatial axis ``B`` outputs, ``n = B + K_eff - 1`` input samples,
``K_eff = dilation * (k - 1) + 1`` the dilated kernel's extent), the input segment is gathered
into a zero-filled buffer (the zero padding is never materialized beyond the segment), its real
FFT of size ``n`` (``scipy.fft.rfftn``, ``workers=n_threads``, one for small blocks) is
contracted with the weight spectra over the input channels of each group, one batched complex
GEMM over all frequency bins (``numpy.matmul``: ``(C_out/g x C_in/g) @ (C_in/g x N)`` per bin
and group; single-threaded BLAS, the bins split among Python threads), and the inverse FFT
gives ``n`` circular results of which the last ``B`` are the block's outputs (overlap-save:
the first ``K_eff - 1`` are wrapped around and discarded). Cross-correlation is the convolution
with the flipped, dilated kernel.

The weight spectra (``rfftn`` of the flipped, dilated kernel zero-filled to ``n``, computed in
float64, scaled by ``1/prod(n)`` so that the inverse transform needs no scaling, and rounded
once to the problem's dtype) depend on the block size and so on the input size: ``prepare``
computes them for the problem's default block; a plan reuses them. A block size from
``param_space`` (exhaustive tuning) gets its spectra computed on its first run and kept with
the prepared weight.

Block sizes
-----------
Per axis, ``n`` is a fast length (``scipy.fft.next_fast_len``). The default minimizes a cost
model (FFT and GEMM flops per output plus a fixed cost per block) under the workspace bound
(``PYCONVFAST_WORKSPACE_MB``), which holds the weight spectra and one pass's buffers
(segments, spectra, results) together. A pass covers as many samples of the batch as fit.
``supports`` refuses problems whose smallest blocks do not fit.

Accuracy
--------
float32 is transformed in float32 (complex64), float64 in float64. The FFT's rounding error is
spread over a whole block instead of following each output's own magnitude: it is bounded by a
multiple of eps times the norms of the block's input and of the kernel, not by
``|x| (*) |w|`` at each output. Outputs whose window lies entirely in zero padding are exactly
the bias (they are not transformed). See docs/guide/algorithms.rst for the measured error.
"""

import functools
import math
import threading

import numpy as np
import scipy.fft


from pyconvfast._core.padding import tap_table
from pyconvfast._core.threads import thread_count_setter
from pyconvfast._core.workspace import workspace_bytes
from pyconvfast._algorithms.registry import Algorithm, register

# Cost model of one block, in flops: a real FFT of n points ~ 2.5 n log2 n, a complex
# multiply-add 8, and a fixed cost per block pass (Python, gathers, a dozen NumPy and pocketfft
# calls) worth about this many flops (~100 us at ~4 GFLOP/s, measured on one core of the shared
# machine). Weight spectra larger than the cache make the per-bin GEMMs memory bound (measured:
# 64 channels, k=31, 1-D: 128-point blocks 3x faster than one 4096-point block): their flops
# count this many times over.
_FIXED_FLOPS_PER_PASS = 400_000
_CACHE_BYTES = 2 << 20
# Blocks of fewer input values than this (all samples and channels of a pass) run on one
# thread: for them, waking worker threads costs more than it saves (measured: 3 ms a call on a
# loaded 2-core machine, against tens of microseconds for the transform itself).
_MIN_PARALLEL_ELEMENTS = 1 << 15
_OUT_OF_CACHE_FACTOR = 4
# Fast lengths tried per axis, at most.
_MAX_CANDIDATES_PER_AXIS = 12


def supports(problem):
    """None if ``fft`` can run ``problem``, else the reason."""
    if problem.stride != (1,) * problem.n_spatial:
        return f"needs stride 1, got stride={problem.stride}"
    if not _smallest_blocks_fit(problem, workspace_bytes()):
        return (f"its smallest blocks' weight spectra and buffers do not fit the workspace bound "
                f"of {workspace_bytes() / 2**20:.3g} MiB (PYCONVFAST_WORKSPACE_MB)")
    return None


def _extent(problem):
    """Per axis, the dilated kernel's extent ``dilation * (k - 1) + 1``."""
    return tuple(d * (k - 1) + 1 for k, d in zip(problem.kernel, problem.dilation))


@functools.lru_cache(maxsize=512)
def _live_range(problem):
    """Per axis, the (start, stop) of the outputs whose window reads the input.

    With zero padding, outputs whose window lies entirely in the padding are the bias alone;
    with the other modes every window reads the input.
    """
    return tuple((0, out) if dead is None else
                 (int(np.argmin(dead)), len(dead) - int(np.argmin(dead[::-1])))
                 if not dead.all() else (0, 0)
                 for dead, out in zip(_dead_outputs(problem), problem.out_size))


@functools.lru_cache(maxsize=512)
def _dead_outputs(problem):
    """Per axis, a boolean mask of the outputs whose taps all fall on zero padding (None for the
    other padding modes, where every tap reads the input). With dilation, such outputs can lie
    between live ones."""
    if problem.padding_mode != "zeros":
        return (None,) * problem.n_spatial
    masks = []
    for size, out, k, d, pad in zip(problem.in_size, problem.out_size, problem.kernel,
                                     problem.dilation, problem.pad_before):
        mask = (tap_table(size, out, k, 1, d, pad, "zeros") < 0).all(axis=1)
        mask.flags.writeable = False
        masks.append(mask)
    return tuple(masks)


def _n_bins(sizes):
    return math.prod(sizes[:-1]) * (sizes[-1] // 2 + 1)


def _bytes(problem, sizes, n_samples):
    """(weight spectra bytes, buffer bytes of one pass over ``n_samples`` samples)."""
    real = np.dtype(problem.dtype).itemsize
    bins, points = _n_bins(sizes), math.prod(sizes)
    c_g, k_g = problem.c_in // problem.groups, problem.c_out // problem.groups
    weights = problem.groups * k_g * c_g * bins * 2 * real
    # segment (real) and its spectrum, products' spectrum and the inverse transform (real)
    per_sample = (problem.c_in + problem.c_out) * (points * real + bins * 2 * real)
    return weights, n_samples * per_sample


def _axis_candidates(extent, live):
    """Fast FFT lengths to try on one axis: all outputs in one block, and powers of two (and the
    fast lengths just above) from the kernel's extent up."""
    full = extent + live - 1
    lengths = {scipy.fft.next_fast_len(full, real=True)}
    power = 1 << max(0, (extent - 1).bit_length())
    while power < full and len(lengths) < 2 * _MAX_CANDIDATES_PER_AXIS:
        lengths.add(power)
        lengths.add(scipy.fft.next_fast_len(max(extent, power // 4 * 3), real=True))
        power *= 2
    return sorted(n for n in lengths if n >= extent)


def _cost(problem, sizes, blocks_per_axis, n_samples):
    c_g, k_g = problem.c_in // problem.groups, problem.c_out // problem.groups
    points = math.prod(sizes)
    n_blocks = math.prod(blocks_per_axis)
    batch = max(problem.batch, 1)
    passes = n_blocks * -(-batch // n_samples)
    fft_flops = 2.5 * points * math.log2(max(points, 2)) * batch * (problem.c_in + problem.c_out)
    gemm_flops = 8 * _n_bins(sizes) * problem.groups * k_g * c_g * batch
    if _bytes(problem, sizes, 0)[0] > _CACHE_BYTES:
        gemm_flops *= _OUT_OF_CACHE_FACTOR
    return n_blocks * (fft_flops + gemm_flops) + passes * _FIXED_FLOPS_PER_PASS


def _smallest_blocks_fit(problem, workspace):
    """Whether ``_block_plan`` finds a plan, without running its cost model (``supports`` is
    asked on every cached lookup, so it stays cheap): memory grows with the FFT sizes, so a plan
    exists exactly when the smallest candidate size on every axis fits."""
    extent = _extent(problem)
    if sum(_bytes(problem, extent, 1)) > workspace:  # no FFT size can be smaller than extent
        return False
    live = [max(1, stop - start) for start, stop in _live_range(problem)]
    smallest = tuple(min(_axis_candidates(e, n)) for e, n in zip(extent, live))
    return sum(_bytes(problem, smallest, 1)) <= workspace


@functools.lru_cache(maxsize=512)
def _block_plan(problem, workspace, sizes):
    """(FFT sizes, outputs per block, samples per pass) for ``problem``, or None if nothing fits.

    ``sizes`` forces the FFT sizes (a ``param_space`` entry); None picks the cheapest under the
    cost model that fits ``workspace`` bytes.
    """
    extent = _extent(problem)
    live = [max(1, stop - start) for start, stop in _live_range(problem)]
    batch = max(problem.batch, 1)
    if sum(_bytes(problem, extent, 1)) > workspace:  # no FFT size can be smaller than extent
        return None
    if sizes is None:
        choices = _product([_axis_candidates(e, n) for e, n in zip(extent, live)])
    else:
        choices = [tuple(sizes)]
    best = None
    for candidate in choices:
        if any(n < e for n, e in zip(candidate, extent)):
            continue
        weights, one = _bytes(problem, candidate, 1)
        if weights + one > workspace:
            continue
        n_samples = min(batch, (workspace - weights) // one)
        block = tuple(min(n - e + 1, size) for n, e, size in zip(candidate, extent, live))
        blocks_per_axis = [-(-size // b) for size, b in zip(live, block)]
        cost = _cost(problem, candidate, blocks_per_axis, n_samples)
        if best is None or cost < best[0]:
            best = (cost, candidate, block, n_samples)
    return None if best is None else best[1:]


def _product(lists):
    result = [()]
    for values in lists:
        result = [prefix + (v,) for prefix in result for v in values]
    return result


def param_space(problem):
    """The default block, then FFT sizes that halve and double the default's blocks."""
    plan = _block_plan(problem, workspace_bytes(), None)
    if plan is None:
        return [{}]
    sizes, block, _ = plan
    extent = _extent(problem)
    space = [{}]
    for factor in (0.5, 2.0):
        other = [scipy.fft.next_fast_len(e + max(1, int(b * factor)) - 1, real=True)
                 for e, b in zip(extent, block)]
        if other != list(sizes) and {"fft_size": other} not in space and _block_plan(
                problem, workspace_bytes(), tuple(other)) is not None:
            space.append({"fft_size": other})
    return space


def _spectra(problem, weight, sizes):
    """Weight spectra for FFT ``sizes``: (groups, *bins, C_out/g, C_in/g), C-contiguous.

    ``weight`` is the (C_out, C_in/g, *kernel) cross-correlation kernel; the transform is that
    of the flipped, dilated kernel, computed in float64, divided by ``prod(sizes)`` and rounded
    once to the problem's dtype.
    """
    nd = problem.n_spatial
    extent = _extent(problem)
    dilated = np.zeros(weight.shape[:2] + extent, dtype=np.float64)
    dilated[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in problem.dilation)] \
        = weight
    flipped = dilated[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    spectrum = scipy.fft.rfftn(flipped, s=sizes, axes=tuple(range(2, 2 + nd)))
    spectrum /= math.prod(sizes)
    groups = problem.groups
    k_g = problem.c_out // groups
    spectrum = spectrum.reshape((groups, k_g) + spectrum.shape[1:])
    order = (0,) + tuple(range(3, 3 + nd)) + (1, 2)
    complex_dtype = np.result_type(problem.dtype, np.complex64)
    return np.ascontiguousarray(spectrum.transpose(order), dtype=complex_dtype)


class Prepared:
    """The ``fft`` algorithm's prepared weight: spectra per FFT size, made on demand."""

    def __init__(self, problem, weight):
        self.weight = np.array(weight[(slice(None), slice(None))
                                      + (0,) * (3 - problem.n_spatial)])
        self._spectra = {}
        plan = _block_plan(problem, workspace_bytes(), None)
        if plan is not None:
            self.spectra(problem, plan[0])

    def spectra(self, problem, sizes):
        sizes = tuple(sizes)
        if sizes not in self._spectra:
            self._spectra[sizes] = _spectra(problem, self.weight, sizes)
            # pocketfft computes (and caches) its plan for a size and precision on first use,
            # up to tens of milliseconds for a long transform: done here, not in the first run.
            axes = tuple(range(len(sizes)))
            spectrum = scipy.fft.rfftn(np.zeros(sizes, dtype=problem.dtype), axes=axes)
            scipy.fft.irfftn(spectrum, s=sizes, axes=axes)
        return self._spectra[sizes]

    @property
    def nbytes(self):
        """Bytes of the spectra made so far (what a run streams in place of the weight)."""
        return sum(spectrum.nbytes for spectrum in self._spectra.values())


def prepare(problem, weight):
    """The weight spectra for the problem's default block sizes (see :class:`Prepared`)."""
    return Prepared(problem, weight)


@functools.lru_cache(maxsize=512)
def _lines(problem):
    """Per axis, the input index of every padded position a segment can read (-1: a zero)."""
    lines = []
    for size, out, extent, pad in zip(problem.in_size, problem.out_size, _extent(problem),
                                      problem.pad_before):
        line = np.ascontiguousarray(
            tap_table(size, out + extent - 1, 1, 1, 1, pad, problem.padding_mode)[:, 0])
        line.flags.writeable = False
        lines.append(line)
    return tuple(lines)


def _gather(problem, x, segment, starts, lengths):
    """Copy the input samples of one block into ``segment`` (N, g, C/g, *n), zeros elsewhere.

    ``starts``/``lengths``: per axis, the first padded position and the number of positions
    the block reads.
    """
    lines = _lines(problem)
    if problem.padding_mode == "zeros":
        src, dst = [], []
        for line, start, length in zip(lines, starts, lengths):
            index = line[start:start + length]
            valid = np.flatnonzero(index >= 0)
            if valid.size == 0:
                return
            first, last = int(valid[0]), int(valid[-1]) + 1
            src.append(slice(int(index[first]), int(index[first]) + last - first))
            dst.append(slice(first, last))
        segment[(Ellipsis,) + tuple(dst)] = x[(Ellipsis,) + tuple(src)]
        return
    values = x
    for axis, (line, start, length) in enumerate(zip(lines, starts, lengths)):
        values = np.take(values, line[start:start + length], axis=3 + axis)
    segment[(Ellipsis,) + tuple(slice(0, length) for length in lengths)] = values


class _NumpyBlasThreads:
    """Thread count of the BLAS that ``numpy.matmul`` calls (NumPy's own copy).

    Found once, then two calls into the BLAS per :meth:`limit`, like
    :class:`pyconvfast._core.threads._BlasThreads` for SciPy's copy.
    """

    def __init__(self):
        self._libraries = None

    def _find(self):
        import os

        from threadpoolctl import ThreadpoolController

        numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
        libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        own = [lib for lib in libraries
               if lib.filepath.startswith((os.path.join(numpy_dir, "numpy") + os.sep,
                                           os.path.join(numpy_dir, "numpy.libs")))]
        self._libraries = own or libraries
        self._setters = [thread_count_setter(lib) for lib in self._libraries]

    def run(self, n_threads, function, *args):
        if self._libraries is None:
            self._find()
        before = [lib.get_num_threads() for lib in self._libraries]
        for set_count in self._setters:
            set_count(n_threads)
        try:
            return function(*args)
        finally:
            for set_count, count in zip(self._setters, before):
                set_count(count)


_numpy_blas = _NumpyBlasThreads()


def _contract(spectra, x_spectrum, n_threads):
    """(g, *bins, K/g, C/g) x (g, *bins, C/g, N) -> (g, *bins, K/g, N), per bin and group.

    NumPy's BLAS runs single-threaded; the bins are split among ``n_threads`` Python threads
    (``matmul`` releases the GIL). A multi-threaded OpenBLAS call leaves its worker threads
    spinning for about 0.1 s afterwards, which on 2 cores halved the speed of the next
    convolution's OpenMP threads (measured: DeepLab's aspp_d6 on ``direct``, 8.5 ms alone,
    13-47 ms in the three calls after an ``fft`` call).
    """
    if spectra.shape[-1] == 1:  # one input channel per group: an elementwise product
        return spectra * x_spectrum
    groups, k, c, n = spectra.shape[0], spectra.shape[-2], spectra.shape[-1], x_spectrum.shape[-1]
    bins = spectra.shape[1:-2]
    a = spectra.reshape(groups, -1, k, c)
    b = x_spectrum.reshape(groups, -1, c, n)
    result = np.empty((groups, a.shape[1], k, n), dtype=np.result_type(a, b))
    bounds = np.linspace(0, a.shape[1], min(n_threads, a.shape[1]) + 1).astype(int)

    def part(lo, hi):
        np.matmul(a[:, lo:hi], b[:, lo:hi], out=result[:, lo:hi])

    workers = [threading.Thread(target=part, args=(lo, hi))
               for lo, hi in zip(bounds[1:-1], bounds[2:])]
    _numpy_blas.run(1, _run_parts, workers, part, bounds[0], bounds[1])
    return result.reshape((groups, *bins, k, n))


def _run_parts(workers, part, lo, hi):
    """Start the worker threads, do the first part here, wait for the workers."""
    for worker in workers:
        worker.start()
    try:
        part(lo, hi)
    finally:
        for worker in workers:
            worker.join()


def run(problem, x, prepared, bias, out, n_threads, params):
    """Compute ``out`` (N, C_out, D, H, W) from ``x`` (N, C_in, D, H, W), 5-D views."""
    nd = problem.n_spatial
    lead = (slice(None), slice(None)) + (0,) * (3 - nd)
    x, out = x[lead], out[lead]
    workspace = workspace_bytes()
    forced = params.get("fft_size")
    plan = _block_plan(problem, workspace, None if forced is None else tuple(forced))
    if plan is None:
        raise ValueError(f"fft cannot run this problem with params={params}: "
                         f"its blocks do not fit the workspace bound")
    sizes, block, n_samples = plan
    spectra = prepared.spectra(problem, sizes)
    groups = problem.groups
    c_g, k_g = problem.c_in // groups, problem.c_out // groups
    extent = _extent(problem)
    live = _live_range(problem)
    axes = tuple(range(3, 3 + nd))
    batch = problem.batch
    # Outputs that read only zero padding: the bias alone.
    bias_5d = None if bias is None else bias.reshape((-1,) + (1,) * nd)
    if any(start > 0 or stop < size for (start, stop), size in zip(live, problem.out_size)) \
            or any(stop <= start for start, stop in live):
        out[...] = 0 if bias is None else bias_5d
    if any(stop <= start for start, stop in live):
        return
    x_groups = x.reshape((batch, groups, c_g) + x.shape[2:])
    out_groups = out.reshape((batch, groups, k_g) + out.shape[2:])
    block_starts = [range(start, stop, b) for (start, stop), b in zip(live, block)]
    for n0 in range(0, batch, n_samples):
        n1 = min(batch, n0 + n_samples)
        for corner in _product(block_starts):
            count = tuple(min(b, stop - o) for o, b, (_, stop) in zip(corner, block, live))
            # Padded positions o .. o + count + extent - 2 (as tap_table numbers them).
            lengths = tuple(c + e - 1 for c, e in zip(count, extent))
            segment = np.zeros((n1 - n0, groups, c_g) + sizes, dtype=x.dtype)
            # Waking pocketfft's and BLAS's threads costs more than small transforms and GEMMs.
            workers = n_threads if segment.size >= _MIN_PARALLEL_ELEMENTS else 1
            _gather(problem, x_groups[n0:n1], segment, corner, lengths)
            # (N, g, C/g, *n) -> spectrum (N, g, C/g, *bins) -> (g, *bins, C/g, N)
            x_spectrum = scipy.fft.rfftn(segment, s=sizes, axes=axes, workers=workers)
            x_spectrum = np.moveaxis(x_spectrum, (0, 2), (-1, -2))
            y_spectrum = _contract(spectra, np.ascontiguousarray(x_spectrum), workers)
            y = scipy.fft.irfftn(y_spectrum, s=sizes, axes=tuple(range(1, 1 + nd)),
                                 norm="forward", workers=workers)
            # (g, *n, K/g, N): the last `count` of each axis after the wrapped extent - 1.
            window = tuple(slice(e - 1, e - 1 + c) for e, c in zip(extent, count))
            y = y[(slice(None),) + window]
            target = out_groups[(slice(n0, n1), slice(None), slice(None))
                                + tuple(slice(o, o + c) for o, c in zip(corner, count))]
            # target (N, g, K/g, *count) <- y (g, *count, K/g, N)
            target = np.moveaxis(target, (0, 2), (-1, -2))
            if bias is None:
                target[...] = y
            else:
                np.add(y, bias.reshape(groups, *(1,) * nd, k_g, 1), out=target, casting="unsafe")
    for axis, dead in enumerate(_dead_outputs(problem)):
        if dead is not None and dead.any():
            # Outputs that read only padding inside the live range (dilation skips the input).
            index = (slice(None), slice(None)) + (slice(None),) * axis + (np.flatnonzero(dead),)
            out[index] = 0 if bias is None else bias_5d



register(Algorithm(
    name="fft",
    summary="real FFTs in overlap-save blocks (scipy.fft) with a complex GEMM per frequency: "
            "stride-1 layers with large kernels",
    supports=supports,
    run=run,
    prepare=prepare,
    param_space=param_space,
    accurate=False,
))

