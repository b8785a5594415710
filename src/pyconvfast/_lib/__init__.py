"""Compiled kernels: ``cpu/`` (the one SIMD level detection and dispatch), ``common/`` (what every
family shares) and one folder per kernel family, each holding its ``.pyx``, ``.pxd`` and C headers.
"""
