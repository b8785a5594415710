"""The BLAS integer limit, and ``gemm.pxd``'s GEMM callable from Python (for tests).

SciPy's BLAS takes sizes and leading dimensions as 32-bit ints. The kernels call ``gemm``
(``gemm.pxd``), which takes Py_ssize_t and cuts any call whose values exceed ``INT_MAX`` into
calls that fit. :func:`gemm_flat` runs that cutting with a smaller ``limit`` than ``INT_MAX``,
so that tests reach every branch with small matrices.
"""

from cython cimport floating

from pyconvfast._lib.common.gemm cimport INT_MAX, gemm_split

BLAS_INT_MAX = INT_MAX


def _span(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld, str name):
    """Elements a column-major ``rows x cols`` matrix with leading dimension ``ld`` reaches."""
    if ld < max(rows, 1):
        raise ValueError(f"{name} must be >= max(1, {rows}), got {ld}")
    return 0 if rows == 0 or cols == 0 else (cols - 1) * ld + rows


def gemm_flat(str transa, str transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
              const floating[::1] a, Py_ssize_t lda, const floating[::1] b, Py_ssize_t ldb,
              floating[::1] c, Py_ssize_t ldc, Py_ssize_t limit=INT_MAX):
    """Column-major ``C[m, n] = op(A) @ op(B)`` on flat buffers, in BLAS calls whose every size
    and leading dimension is at most ``limit``.

    Parameters
    ----------
    transa, transb : "N" or "T"
    m, n, k : sizes, >= 0
    a, b, c : contiguous 1-D buffers of one dtype holding the column-major matrices
    lda, ldb, ldc : leading dimensions, in elements
    limit : 1 to INT_MAX; ``INT_MAX`` is what the kernels use
    """
    if transa not in ("N", "T") or transb not in ("N", "T"):
        raise ValueError(f"transa and transb must be 'N' or 'T', got {transa!r}, {transb!r}")
    if min(m, n, k) < 0:
        raise ValueError(f"sizes must be >= 0, got m={m}, n={n}, k={k}")
    if not 1 <= limit <= INT_MAX:
        raise ValueError(f"limit must be in [1, {INT_MAX}], got {limit}")
    needed = (_span(m, k, lda, "lda") if transa == "N" else _span(k, m, lda, "lda"),
              _span(k, n, ldb, "ldb") if transb == "N" else _span(n, k, ldb, "ldb"),
              _span(m, n, ldc, "ldc"))
    for name, buffer_size, size in zip("abc", (a.shape[0], b.shape[0], c.shape[0]), needed):
        if buffer_size < size:
            raise ValueError(f"{name} holds {buffer_size} elements, the matrix reaches {size}")
    cdef char ta = ord(transa), tb = ord(transb)
    cdef const floating* pa = &a[0] if a.shape[0] else NULL
    cdef const floating* pb = &b[0] if b.shape[0] else NULL
    cdef floating* pc = &c[0] if c.shape[0] else NULL
    with nogil:
        gemm_split(ta, tb, m, n, k, pa, lda, pb, ldb, pc, ldc, limit)
