"""GEMM lowerings: ``im2col`` (convolution as BLAS GEMM, also the 1x1 pointwise path) and
``col2im`` (transposed convolution as GEMM then scatter-add).
"""
