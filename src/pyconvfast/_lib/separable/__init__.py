"""The fused depthwise-separable kernel (depthwise SIMD loops into an L2 tile, then GEMM).
"""
