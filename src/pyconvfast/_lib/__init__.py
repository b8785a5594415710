"""Compiled kernels, one Cython module per algorithm family."""
