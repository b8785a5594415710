"""The ``direct`` kernels: the generic loop nest (``generic``) and the channel-blocked register
tiles with one variant per SIMD level (``blocked``).
"""
