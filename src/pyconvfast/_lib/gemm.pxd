# One GEMM for every kernel that multiplies through SciPy's BLAS (sgemm or dgemm by dtype).
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(char transa, char transb, int m, int n, int k, const floating* a, int lda,
                      const floating* b, int ldb, floating* c, int ldc) noexcept nogil:
    """Column-major ``C[m, n] = op(A) @ op(B)`` (``op`` is ``'N'`` or ``'T'``), overwriting C."""
    cdef floating one = 1, zero = 0
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &one, <float*> a, &lda, <float*> b, &ldb, &zero,
              c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &one, <double*> a, &lda, <double*> b, &ldb, &zero,
              c, &ldc)
