"""The ``grouped`` kernel (``kernel``): lowering per group and a register-tile micro-kernel with
one variant per SIMD level (``simd*.h``).
"""
