"""Pieces every kernel family shares: BLAS GEMM (``gemm.pxd``, ``blas``), per-thread buffers,
the floating-point state, interrupt polling, the OpenMP shim (``openmp_helpers``,
``openmp_info``) and aligned memory (``memory``).
"""
