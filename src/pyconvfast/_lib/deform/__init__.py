"""The deformable convolution kernel: deformable im2col then BLAS GEMM.
"""
