"""The packed GEMM of the ``pointwise_packed`` algorithm (``kernel``): its register-tile
micro-kernels (``gemm.h`` / ``gemm_impl.h``, one variant per SIMD level)."""
