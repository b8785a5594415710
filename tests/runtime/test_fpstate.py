"""Flush-to-zero inside the kernels: subnormals become zero, the caller's MXCSR is untouched.

Where the kernels flush (x86), a product that would be subnormal is 0 (FTZ) and a subnormal
input is read as 0 (DAZ); elsewhere subnormals are computed as such. Both are checked here
without timing anything (``bench/subnormals.py`` times them).
"""

import numpy as np
import pytest
from pyconvfast._lib.common.openmp_info import flushes_subnormals, fp_state
from tests.helpers.reference import assert_conv_matches

import pyconvfast as pcf

# (algorithm, x shape, w shape, groups): every kernel, each on a problem it runs.
KERNELS = [
    ("direct", (2, 5, 13, 11), (6, 5, 3, 3), 1),  # the channel-blocked kernel
    ("direct", (2, 5, 13, 11), (2, 5, 3, 3), 1),  # the plain loop (too few output channels)
    ("im2col", (2, 5, 13, 11), (6, 5, 3, 3), 1),
    ("depthwise", (2, 5, 13, 11), (10, 1, 3, 3), 5),
    ("winograd_f2x2_3x3", (2, 5, 13, 11), (6, 5, 3, 3), 1),
    ("winograd_f4x4_3x3", (2, 5, 13, 11), (6, 5, 3, 3), 1),
]
# Values whose products (or which themselves) are subnormal in each dtype.
TINY = {np.float32: (1e-20, 1e-40), np.float64: (1e-160, 1e-315)}
MXCSR_FTZ_DAZ = 0x8040
# MXCSR's low 6 bits are sticky exception flags, which NumPy itself clears around its own
# operations (a call runs some); the kernels' promise is about the control bits.
MXCSR_FLAGS = 0x3F


def _control_state():
    state = fp_state()
    return state if state == -1 else state & ~MXCSR_FLAGS


def _tiny_conv(algorithm, x_shape, w_shape, groups, dtype, x_value, w_value, n_threads):
    x = np.full(x_shape, x_value, dtype=dtype)
    w = np.full(w_shape, w_value, dtype=dtype)
    return pcf.conv2d(x, w, padding=1, groups=groups, algorithm=algorithm, n_threads=n_threads)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("algorithm, x_shape, w_shape, groups", KERNELS)
def test_caller_fp_state_unchanged(algorithm, x_shape, w_shape, groups, n_threads, rng):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    before = _control_state()
    got = pcf.conv2d(x, w, padding=1, groups=groups, algorithm=algorithm, n_threads=n_threads)
    assert _control_state() == before
    if flushes_subnormals():
        assert before & MXCSR_FTZ_DAZ == 0, "the test process itself should not flush"
    else:
        assert before == -1
    # and normal data still gives the right result
    assert_conv_matches(got, x, w, padding=1, groups=groups, algorithm=algorithm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("algorithm, x_shape, w_shape, groups", KERNELS)
def test_subnormal_products_flush_to_zero(algorithm, x_shape, w_shape, groups, n_threads, dtype):
    """x * w is subnormal for every tap: 0 with FTZ, a tiny positive sum without."""
    small, _ = TINY[dtype]
    got = _tiny_conv(algorithm, x_shape, w_shape, groups, dtype, small, small, n_threads)
    if flushes_subnormals():
        assert np.count_nonzero(got) == 0, f"{np.count_nonzero(got)} outputs not flushed"
    else:
        assert got.min() > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm, x_shape, w_shape, groups", KERNELS)
def test_subnormal_inputs_read_as_zero(algorithm, x_shape, w_shape, groups, dtype):
    """A subnormal x times a weight of 1: 0 with DAZ, a subnormal (or tiny normal) sum
    without; the caller's state is restored."""
    _, subnormal = TINY[dtype]
    assert 0 < subnormal < np.finfo(dtype).tiny
    before = _control_state()
    got = _tiny_conv(algorithm, x_shape, w_shape, groups, dtype, subnormal, 1.0, 2)
    assert _control_state() == before
    if flushes_subnormals():
        assert np.count_nonzero(got) == 0
    else:
        assert got.min() > 0


def test_normal_results_near_the_subnormal_range_are_kept():
    """Only subnormals flush: products just above the normal threshold survive."""
    dtype = np.float32
    value = np.sqrt(np.finfo(dtype).tiny) * 2  # x * w = 4 * tiny, normal
    got = _tiny_conv("direct", (1, 2, 5, 5), (3, 2, 3, 3), 1, dtype, value, value, 1)
    assert got.min() > 0
    np.testing.assert_allclose(got[0, 0, 2, 2], 18 * value * value, rtol=1e-6)


# The other families' kernels: (name, call(x_value, w_value, dtype, n_threads)).
def _transpose(algorithm):
    def call(x_value, w_value, dtype, n_threads):
        x = np.full((2, 5, 7, 6), x_value, dtype=dtype)
        w = np.full((5, 4, 4, 4), w_value, dtype=dtype)
        return pcf.conv_transpose2d(x, w, stride=2, padding=1, algorithm=algorithm,
                                    n_threads=n_threads)
    return call


def _deform(x_value, w_value, dtype, n_threads):
    x = np.full((2, 4, 9, 8), x_value, dtype=dtype)
    offset = np.full((2, 18, 9, 8), 0.25, dtype=dtype)
    w = np.full((5, 4, 3, 3), w_value, dtype=dtype)
    return pcf.deform_conv2d(x, offset, w, padding=1, n_threads=n_threads)


def _separable(x_value, w_value, dtype, n_threads):
    x = np.full((2, 4, 9, 8), x_value, dtype=dtype)
    depthwise = np.full((4, 1, 3, 3), w_value, dtype=dtype)
    pointwise = np.ones((6, 4, 1, 1), dtype=dtype)
    return pcf.separable_conv2d(x, depthwise, pointwise, padding=1, n_threads=n_threads)


FAMILIES = [
    ("transpose_gemm", _transpose("transpose_gemm")),
    ("transpose_subpixel", _transpose("transpose_subpixel")),
    ("transpose_direct", _transpose("transpose_direct")),
    ("deform_conv2d", _deform),
    ("separable_conv2d", _separable),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name, call", FAMILIES)
def test_other_families_flush_and_restore(name, call, n_threads, dtype):
    small, _ = TINY[dtype]
    before = _control_state()
    got = call(small, small, dtype, n_threads)
    assert _control_state() == before
    if flushes_subnormals():
        assert np.count_nonzero(got) == 0, f"{name}: {np.count_nonzero(got)} outputs not flushed"
    else:
        assert got.min() > 0
    normal = call(1.0, 1.0, dtype, n_threads)
    assert normal.max() > 0
