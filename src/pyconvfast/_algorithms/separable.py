"""Rank-1 (spatially separable) 2-D kernels: ``pcf.separate_kernel`` and the ``separable``
algorithm that ``auto`` can pick for them.

How ``auto`` gets to run a Gaussian, Sobel or box filter as two 1-D passes without ever giving
a silently wrong result, although an algorithm's ``supports(problem)`` sees only the problem,
never the weight:

* The API (``conv2d``, ``plan``, ``list_algorithms`` given a weight array) calls :func:`mark`
  with the weight. For 2-D kernels of at least 3x3 and at most :data:`MAX_SLICES` ``(C_out, C_in
  // groups)`` slices, not all zero (a placeholder weight keeps the key of a dense one), cheap
  tests (one 2x2 minor, then a pivot test of the first slice; a dense weight fails them in well
  under a microsecond) pick the candidates, and for them an SVD checks that every slice is rank-1
  within :func:`default_rtol`; if so it returns the problem with ``rank1_kernel=True``. The SVD
  is cached per weight *content* (xxHash's 128-bit XXH3 digest of its bytes, with dtype and
  shape), so a weight used again costs one hash, and a weight changed in place is checked again.
* ``separable`` supports a problem only when ``rank1_kernel`` is True, so it is offered (to the
  tuner, to the heuristic, to ``algorithm="separable"``) only for a weight found rank-1. The flag
  is part of the problem's cache key, so a choice measured for a rank-1 weight is never replayed
  for a dense weight of the same shape.
* ``prepare`` factors the weight it is given (through the same cache) and raises ValueError if
  that weight is not rank-1, so even a caller of the registry that sets the flag by hand cannot
  get a wrong result.

The two passes compute the convolution with the factored weight ``column[k, c, r] * row[k, c,
s]``, which differs from the given weight by at most ``rtol`` times each slice's Frobenius norm.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading

import numpy as np
import xxhash

from pyconvfast._algorithms import passes
from pyconvfast._algorithms.registry import Algorithm, register
from pyconvfast._typing import ArrayLike, FloatArray

# Weights with more (C_out, C_in // groups) slices are not checked: learned layers are never
# rank-1, and filters (blur, edges) have a few slices.
MAX_SLICES = 256
# The pre-filter's tolerance: far looser than any rtol used, it only spares the SVD and the hash.
_PREFILTER_RTOL = 1e-3
# Factorizations remembered (per weight content).
_CACHE_SIZE = 64
_CACHE: collections.OrderedDict[object, object] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()


def default_rtol(dtype):
    """The default ``rtol`` of :func:`separate_kernel`: 16 machine epsilons of ``dtype``.

    A kernel built as an outer product and rounded once to its dtype (``np.outer(g, g)``, a
    Gaussian normalized by its sum, Sobel, box) has a rank-1 residual of at most about one
    epsilon of its norm, and the SVD (computed in float64) adds a few more; 16 epsilons pass
    all of these, while a kernel that is not rank-1 (a Laplacian, a random one) has a residual
    of order one. float32: 1.9e-6; float64: 3.6e-15.
    """
    return 16 * float(np.finfo(dtype).eps)


def _pivot_factors(work):
    """The column and row of each (R, S) slice of ``work`` through its entry of largest
    magnitude, the row divided by that entry: ``outer(column, row)`` equals a rank-1 slice up
    to rounding, and exactly for small-integer kernels (Sobel, box)."""
    flat = np.abs(work).reshape(len(work), -1).argmax(axis=1)
    i, j = np.unravel_index(flat, work.shape[1:])
    index = np.arange(len(work))
    pivot = work[index, i, j]
    safe = np.where(pivot == 0, 1.0, pivot)
    return work[index, :, j], work[index, i, :] / safe[:, None]


def _could_be_rank1(slices):
    """A cheap necessary test of rank-1-ness of a (P, R, S) array: each slice minus the outer
    product of its pivot factors (:func:`_pivot_factors`) must be below
    :data:`_PREFILTER_RTOL` of its norm. For a slice that is rank-1 within ``rtol`` that
    residual is at most about ``(1 + sqrt(R) + sqrt(S)) * rtol`` of its norm, so the test
    never rejects what the default tolerance accepts; a dense weight fails it at once."""
    work = slices.astype(np.float64)
    if not np.isfinite(work).all():  # NaN or inf weights are not rank-1, and warn in the math
        return False
    column, row = _pivot_factors(work)
    residual = work - column[:, :, None] * row[:, None, :]
    return bool(np.all(np.sum(residual**2, axis=(1, 2))
                       <= _PREFILTER_RTOL**2 * np.sum(work**2, axis=(1, 2))))


def _factor(slices, rtol):
    """(column, row) with ``slices[i] ~= outer(column[i], row[i])`` for a (P, R, S) float
    array, or None when one slice's residual ``sqrt(sum_{j >= 2} sigma_j**2)`` exceeds ``rtol``
    times its Frobenius norm (the SVD, in float64, decides). Per slice, the factors are the
    pivot factors (:func:`_pivot_factors`: exact for small-integer kernels, so that a Sobel or
    box filter run as two passes stays exact on integer data) when they reproduce the slice
    within ``rtol``, else the SVD's, sharing the top singular value as ``sqrt(sigma_1)``; the
    sign is chosen so that the row's largest entry is positive."""
    work = slices.astype(np.float64)
    if not np.isfinite(work).all():
        return None
    u, sigma, vt = np.linalg.svd(work, full_matrices=False)
    norm = np.sqrt(np.sum(sigma**2, axis=-1))
    residual = np.sqrt(np.sum(sigma[:, 1:] ** 2, axis=-1))
    if not np.all(residual <= rtol * norm):
        return None
    scale = np.sqrt(sigma[:, :1])
    column, row = u[:, :, 0] * scale, vt[:, 0, :] * scale
    pivot_column, pivot_row = _pivot_factors(work)
    pivot_residual = np.sqrt(np.sum(
        (work - pivot_column[:, :, None] * pivot_row[:, None, :]) ** 2, axis=(1, 2)))
    use_pivot = (pivot_residual <= rtol * norm)[:, None]
    column = np.where(use_pivot, pivot_column, column)
    row = np.where(use_pivot, pivot_row, row)
    top = np.take_along_axis(row, np.argmax(np.abs(row), axis=1)[:, None], axis=1)
    sign = np.where(top < 0, -1.0, 1.0)
    return column * sign, row * sign


def _cached_factor(weight4, rtol, prefilter=False):
    """:func:`_factor` of a (K, Cg, R, S) array, as ((K, Cg, R), (K, Cg, S)) arrays of its
    dtype, or None; remembered per (content, dtype, shape, rtol). With ``prefilter`` (for the
    default rtol only, far below the pre-filter's), a weight failing :func:`_could_be_rank1`
    is None without an SVD."""
    contiguous = np.ascontiguousarray(weight4)
    key = (contiguous.dtype.str, contiguous.shape, float(rtol),
           xxhash.xxh3_128_digest(contiguous))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    k, per_group, n_rows, n_cols = contiguous.shape
    slices = contiguous.reshape(k * per_group, n_rows, n_cols)
    if prefilter and not _could_be_rank1(slices):
        factors = None
    else:
        factors = _factor(slices, rtol)
    if factors is not None:
        column, row = (f.astype(contiguous.dtype) for f in factors)
        column, row = column.reshape(k, per_group, n_rows), row.reshape(k, per_group, n_cols)
        column.flags.writeable = row.flags.writeable = False
        factors = (column, row)
    with _CACHE_LOCK:
        _CACHE[key] = factors
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return factors


def separate_kernel(weight: ArrayLike, rtol: float | None = None,
                    ) -> tuple[FloatArray, FloatArray] | None:
    """Factor rank-1 2-D kernels: ``weight[k, c] ~= outer(column[k, c], row[k, c])``.

    Each slice ``weight[k, c]`` (an ``R x S`` matrix) is factored by SVD. The result is the
    pair of 1-D factors when *every* slice is rank-1 within ``rtol`` (its residual
    ``sqrt(sum_{j >= 2} sigma_j**2)`` at most ``rtol`` times its Frobenius norm), else None.
    The factors can be given to :func:`spatially_separable_conv2d`, which then computes the same
    convolution as ``conv2d(x, weight)`` in ``K * C/groups * (R + S)`` instead of
    ``K * C/groups * R * S`` multiply-adds per output position. ``conv2d(..., algorithm="auto")``
    does this by itself for rank-1 kernels of 3x3 and larger (the ``"separable"`` algorithm).

    Parameters
    ----------
    weight : ndarray of float32 or float64, shape ``(K, C // groups, R, S)`` or ``(R, S)``
        A convolution weight, or a single kernel.
    rtol : float, optional
        Relative tolerance on each slice's residual. Default 16 machine epsilons of the dtype
        (float32: 1.9e-6, float64: 3.6e-15): a kernel that is an outer product rounded once to
        its dtype (Gaussian, Sobel, box, ``np.outer(a, b)``) passes; one that is not rank-1
        (Laplacian, random) does not. A larger ``rtol`` accepts approximately separable
        kernels, which then run with the best rank-1 approximation.

    Returns
    -------
    (column, row) or None
        ``column`` of shape ``(K, C // groups, R)`` and ``row`` of shape ``(K, C // groups, S)``
        (``(R,)`` and ``(S,)`` for a 2-D ``weight``), in the weight's dtype; None if some
        slice is not rank-1 within ``rtol``. Per slice, the factors are its own column and
        row through its largest entry (the row divided by it) when these reproduce the slice
        within ``rtol``, which makes them exact for small-integer kernels (Sobel gives
        ``[1, 2, 1]`` and ``[1, 0, -1]``); else the SVD's, sharing the top singular value as
        ``sqrt(sigma_1)``. The sign makes the row's largest entry positive.

    Raises
    ------
    TypeError
        A weight that is not float32 or float64, an ``rtol`` that is not a real number.
    ValueError
        A weight that is not 2-D or 4-D, or has an empty axis; a negative or NaN ``rtol``.

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
    >>> column, row = pcf.separate_kernel(sobel)
    >>> column, row
    (array([1., 2., 1.]), array([ 1.,  0., -1.]))
    >>> np.array_equal(np.outer(column, row), sobel)
    True
    >>> laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    >>> pcf.separate_kernel(laplacian) is None
    True
    """
    weight = np.asarray(weight)
    if weight.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"weight has dtype {weight.dtype}; separate_kernel takes float32 or "
                        f"float64 (cast it, e.g. weight.astype(np.float64))")
    if weight.ndim not in (2, 4):
        raise ValueError(f"weight must be 4-D (K, C // groups, R, S) or 2-D (R, S), "
                         f"got weight.shape={weight.shape}")
    if min(weight.shape) < 1:
        raise ValueError(f"weight must have no empty axis, got weight.shape={weight.shape}")
    if rtol is None:
        rtol = default_rtol(weight.dtype)
    if isinstance(rtol, (bool, np.bool_)) or not isinstance(rtol, (int, float, np.floating,
                                                                   np.integer)):
        raise TypeError(f"rtol must be a real number, got rtol={rtol!r}")
    if not rtol >= 0:
        raise ValueError(f"rtol must be a non-negative number, got rtol={rtol!r}")
    factors = _cached_factor(weight.reshape((1, 1) + weight.shape[-2:]) if weight.ndim == 2
                             else weight, float(rtol))
    if factors is None:
        return None
    column, row = (np.array(f) for f in factors)  # writable copies for the caller
    if weight.ndim == 2:
        return column[0, 0], row[0, 0]
    return column, row


def mark(problem, weight):
    """``problem`` with ``rank1_kernel=True`` if ``weight`` (the user's array, not flipped) is
    rank-1 in every slice within the default tolerance, else ``problem`` itself; only 2-D
    kernels of at least 3x3 with at most :data:`MAX_SLICES` slices, not all zero, are
    checked."""
    if problem.n_spatial != 2 or min(problem.kernel) < 3:
        return problem
    if problem.c_out * (problem.c_in // problem.groups) > MAX_SLICES:
        return problem
    # One 2x2 minor of the first slice, in Python floats (well under a microsecond): a rank-1
    # slice has every minor zero up to rounding, and almost every dense weight stops here.
    (a, b), (c, d) = weight[0, 0, :2, :2].tolist()
    if not abs(a * d - b * c) <= _PREFILTER_RTOL * (abs(a * d) + abs(b * c)):
        return problem
    if not weight.any():
        # rank 0, but almost surely a placeholder (a plan made from shapes): keep the problem,
        # and its cache key, of a dense weight of this shape
        return problem
    # Remembered by content: a rank-1 weight used again costs a hash and a lookup (checking it
    # again on every call cost 74 us, most of a small call's time).
    if _cached_factor(weight, default_rtol(weight.dtype), prefilter=True) is None:
        return problem
    return _marked(problem)


@functools.lru_cache(maxsize=256)
def _marked(problem):
    return dataclasses.replace(problem, rank1_kernel=True)


def _supports(problem):
    if not getattr(problem, "rank1_kernel", False):
        return ("needs a 2-D kernel of at least 3x3 that is rank-1 in every (C_out, C_in) "
                "slice (pcf.separate_kernel(weight) is not None), as the API found for this "
                f"weight; this one was not (kernel {'x'.join(map(str, problem.kernel))})")
    return None


def _prepare(problem, weight):
    """(column, row), ``(K, C // groups, R)`` and ``(K, C // groups, S)``, of the 5-D weight
    view (already flipped for true convolution)."""
    factors = _cached_factor(weight[:, :, 0], default_rtol(weight.dtype))
    if factors is None:
        raise ValueError("algorithm='separable' needs a weight that is rank-1 in every "
                         "(C_out, C_in) slice; this one is not")
    return factors


def _run(problem, x, prepared, bias, out, n_threads, params):
    column, row = prepared
    passes.two_pass(
        x, column, row, bias, out, groups=problem.groups, stride=problem.stride,
        dilation=problem.dilation, pad_before=problem.pad_before, pad_after=problem.pad_after,
        padding_mode=problem.padding_mode, n_threads=n_threads,
    )


# Kernel area from which the two passes are the heuristic's first choice for a rank-1 kernel:
# measured (float32, one thread, Gaussian blurs, groups=C), 3x3 runs 0.8x to 0.9x the speed of
# depthwise, 5x5 1.05x to 1.3x, 7x7 1.8x to 2x.
PAYS_FROM_TAPS = 25


def pays(problem):
    """Whether the heuristic should run this (rank-1) problem as two passes."""
    return (getattr(problem, "rank1_kernel", False)
            and problem.kernel[0] * problem.kernel[1] >= PAYS_FROM_TAPS)


register(Algorithm(
    name="separable",
    summary="rank-1 2-D kernels (Gaussian, Sobel, box) as two 1-D depthwise passes: "
            "K*C*(R+S) instead of K*C*R*S multiply-adds; offered only for a weight found rank-1",
    supports=_supports,
    run=_run,
    prepare=_prepare,
    preferred=pays,
))
