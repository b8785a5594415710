# One GEMM for every kernel that multiplies through SciPy's BLAS (sgemm or dgemm by dtype).
#
# SciPy's BLAS takes every size and leading dimension as a 32-bit C int, while our sizes and
# strides are Py_ssize_t: a cast would turn a leading dimension of 2**31 + 16 elements into a
# negative int (OpenBLAS rejects it and leaves C unwritten) and one of 2**32 + 16 into 16
# (silently wrong). So ``gemm`` takes Py_ssize_t and passes them on only where they fit; any
# other call is cut into pieces that fit (``gemm_split``). Kernels choose their layouts so that
# operands with a leading dimension above INT_MAX do not reach it in practice (``pointwise_form``,
# the separable kernel's staged output); the split is the guarantee, not the fast path.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef extern from "<limits.h>":
    const int INT_MAX


cdef inline void _blas_gemm(char transa, char transb, int m, int n, int k, const floating* a,
                            int lda, const floating* b, int ldb, floating beta, floating* c,
                            int ldc) noexcept nogil:
    cdef floating one = 1
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &one, <float*> a, &lda, <float*> b, &ldb, &beta,
              c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &one, <double*> a, &lda, <double*> b, &ldb, &beta,
              c, &ldc)


cdef inline void gemm_split(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            const floating* a, Py_ssize_t lda, const floating* b,
                            Py_ssize_t ldb, floating* c, Py_ssize_t ldc,
                            Py_ssize_t limit) noexcept nogil:
    """``gemm`` as BLAS calls whose every size and leading dimension is at most ``limit``.

    m and n are cut into pieces of at most ``limit``, independent of each other; k too, each
    piece after the first accumulating into C (beta = 1). A leading dimension above ``limit``
    strides between the columns of its stored matrix: that matrix's column axis is then cut
    into pieces one column wide, where the leading dimension is never used and any valid one
    (the column's length) is passed instead. For lda: the k axis of A ('N') or its m axis
    ('T'); ldb: n of B ('N') or k ('T'); ldc: n. The operands are read in place, nothing is
    allocated. Every value passed to BLAS is at most ``limit`` (<= INT_MAX), so the casts are
    exact.
    """
    cdef Py_ssize_t mb = min(m, limit), nb = min(n, limit), kb = min(k, limit)
    cdef Py_ssize_t i0, j0, l0, pm, pn, pk, plda, pldb, pldc
    cdef const floating* pa
    cdef const floating* pb
    cdef bint a_n = transa == c'N' or transa == c'n'
    cdef bint b_n = transb == c'N' or transb == c'n'
    if lda > limit:
        if a_n:
            kb = 1
        else:
            mb = 1
    if ldb > limit:
        if b_n:
            nb = 1
        else:
            kb = 1
    if ldc > limit:
        nb = 1
    # BLAS computes nothing for m == 0 or n == 0; for k == 0 it zeroes C (one piece of k = 0).
    mb, nb, kb = max(mb, 1), max(nb, 1), max(kb, 1)
    j0 = 0
    while j0 < n:
        pn = min(nb, n - j0)
        i0 = 0
        while i0 < m:
            pm = min(mb, m - i0)
            pldc = ldc if ldc <= limit else max(pm, 1)
            l0 = 0
            while True:
                pk = min(kb, k - l0)
                if a_n:
                    pa = a + i0 + l0 * lda
                    plda = lda if lda <= limit else max(pm, 1)
                else:
                    pa = a + l0 + i0 * lda
                    plda = lda if lda <= limit else max(pk, 1)
                if b_n:
                    pb = b + l0 + j0 * ldb
                    pldb = ldb if ldb <= limit else max(pk, 1)
                else:
                    pb = b + j0 + l0 * ldb
                    pldb = ldb if ldb <= limit else max(pn, 1)
                _blas_gemm(transa, transb, <int> pm, <int> pn, <int> pk, pa, <int> plda, pb,
                           <int> pldb, 0 if l0 == 0 else 1, c + i0 + j0 * ldc, <int> pldc)
                l0 = l0 + kb
                if l0 >= k:
                    break
            i0 = i0 + mb
        j0 = j0 + nb


cdef inline void gemm(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                      floating* c, Py_ssize_t ldc) noexcept nogil:
    """Column-major ``C[m, n] = op(A) @ op(B)`` (``op`` is ``'N'`` or ``'T'``), overwriting C.

    Any non-negative sizes and leading dimensions: one BLAS call where all fit in an int (the
    casts below are then exact), else :func:`gemm_split`.
    """
    if (m <= INT_MAX and n <= INT_MAX and k <= INT_MAX
            and lda <= INT_MAX and ldb <= INT_MAX and ldc <= INT_MAX):
        _blas_gemm(transa, transb, <int> m, <int> n, <int> k, a, <int> lda, b, <int> ldb, 0, c,
                   <int> ldc)
    else:
        gemm_split(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, INT_MAX)
