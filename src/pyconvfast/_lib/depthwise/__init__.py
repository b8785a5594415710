"""The ``depthwise`` kernel (``kernel``) and its SIMD loops (``simd.pxd`` / ``simd*.h``, one
variant per SIMD level), which the fused separable kernel shares.
"""
