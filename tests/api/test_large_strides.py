"""Arrays whose strides do not fit BLAS's 32-bit ``int`` (issue 18, item 2).

SciPy's BLAS takes every size and leading dimension as a C ``int``. An input whose channel
stride is ``2**31 + 16`` elements made OpenBLAS reject parameter 8 (``lda``) and leave the
output unwritten; at ``2**32 + 16`` the stride wrapped to 16 and the result was silently wrong.

The arrays here are views of *sparse* memory-mapped files (``truncate`` makes a hole, which
costs no disk): only the pages of the few elements a test writes are ever touched, so a file of
``2**32`` float32 elements (16 GiB apparent size) costs a few pages of disk and memory. Each
algorithm that can run a problem is compared with the same algorithm on a compact copy;
integer-valued data make most of them exact.

``gemm_split`` (``_lib/common/blas.pyx``) runs the splitting of ``gemm.pxd`` with a small limit in
place of ``INT_MAX``, so that sizes and leading dimensions above the limit are tested on small
matrices.
"""

import os

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast._algorithms.im2col import POINTWISE_MODES

BIG_STRIDES = [2**31 + 16, 2**32 + 16]  # elements: rejected by BLAS, and wrapping to 16


@pytest.fixture
def sparse_array(tmp_path):
    """``make(shape, strides, dtype)``: a zero array with the given element strides (>= 0),
    a view of a sparse file just large enough to hold it; the files are removed after the
    test."""
    files = []

    def make(shape, strides, dtype=np.float32):
        dtype = np.dtype(dtype)
        n_elements = 1 + sum((size - 1) * stride for size, stride in zip(shape, strides))
        path = tmp_path / f"sparse{len(files)}.bin"
        with open(path, "wb") as f:
            f.truncate(n_elements * dtype.itemsize)
        base = np.memmap(path, dtype=dtype, mode="r+", shape=(n_elements,))
        files.append(path)
        # np.ndarray checks that the strides stay inside the buffer
        return np.ndarray(shape, dtype, buffer=base,
                          strides=tuple(s * dtype.itemsize for s in strides))

    yield make
    for path in files:
        os.remove(path)  # the mapping itself goes with the last view of it


def _integers(rng, shape, dtype=np.float32):
    return rng.integers(-3, 4, size=shape).astype(dtype)


def _channel_strided(sparse_array, values, channel_stride, axis=1):
    """A view with ``values``' contents whose ``axis`` has stride ``channel_stride`` elements,
    every other axis compact (C order), the outer ones spanning the whole channel block."""
    shape = values.shape
    strides = [0] * len(shape)
    step = 1
    for i in reversed(range(len(shape))):
        if i != axis:
            strides[i] = step
            step *= shape[i]
    strides[axis] = channel_stride
    if axis > 0:
        outer = channel_stride * shape[axis]
        for i in reversed(range(axis)):
            strides[i] = outer
            outer *= shape[i]
    x = sparse_array(shape, strides, values.dtype)
    x[...] = values
    assert x.strides[axis] == channel_stride * values.itemsize
    return x


def _check(got, want, dtype, exact):
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def _exact(algorithm):
    return not algorithm.startswith(("winograd_f4", "fft"))


# (input channels, groups, rank-1 weight): dense, depthwise, grouped, and a separable kernel
CONV_CASES = {"dense": (2, 1, False), "depthwise": (2, 2, False), "grouped": (4, 2, False),
              "rank1": (2, 1, True)}


def _conv_weight(rng, case, kernel, dtype=np.float32):
    c_in, groups, rank1 = CONV_CASES[case]
    shape = (4, c_in // groups, kernel, kernel)
    if rank1:
        return _integers(rng, shape[:3] + (1,), dtype) * _integers(rng, shape[:2] + (1, kernel),
                                                                   dtype)
    return _integers(rng, shape, dtype)


@pytest.mark.parametrize("channel_stride", BIG_STRIDES)
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("case", list(CONV_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_input_channel_stride(sparse_array, rng, channel_stride, kernel, case, dtype):
    # 4x4 positions: at 2**32 + 16 the wrapped lda (16) was not even rejected
    c_in, groups, _ = CONV_CASES[case]
    values = _integers(rng, (1, c_in, 4, 4), dtype)
    weight = _conv_weight(rng, case, kernel, dtype)
    bias = _integers(rng, (4,), dtype)
    x = _channel_strided(sparse_array, values, channel_stride)
    kwargs = {"padding": kernel // 2, "groups": groups}
    algorithms = pcf.list_algorithms(values, weight, **kwargs)
    assert "im2col" in algorithms and "direct" in algorithms
    for algorithm in algorithms:
        want = pcf.conv2d(values, weight, bias, algorithm=algorithm, **kwargs)
        got = pcf.conv2d(x, weight, bias, algorithm=algorithm, **kwargs)
        _check(got, want, dtype, _exact(algorithm))


def test_conv2d_cases_cover_every_algorithm(rng):
    covered = set()
    for case, (c_in, groups, _) in CONV_CASES.items():
        for kernel in (1, 3, 5):
            covered.update(pcf.list_algorithms((1, c_in, 4, 4), _conv_weight(rng, case, kernel),
                                               padding=kernel // 2, groups=groups))
    assert covered == set(pcf.list_algorithms())


@pytest.mark.parametrize("channel_stride", BIG_STRIDES)
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_output_channel_stride(sparse_array, rng, channel_stride, kernel, case):
    c_in, groups, _ = CONV_CASES[case]
    x = _integers(rng, (1, c_in, 4, 4))
    weight = _conv_weight(rng, case, kernel)
    kwargs = {"padding": kernel // 2, "groups": groups}
    for algorithm in pcf.list_algorithms(x, weight, **kwargs):
        want = pcf.conv2d(x, weight, algorithm=algorithm, **kwargs)
        out = _channel_strided(sparse_array, np.full_like(want, np.nan), channel_stride)
        got = pcf.conv2d(x, weight, algorithm=algorithm, out=out, **kwargs)
        assert got is out
        _check(np.asarray(out), want, np.float32, _exact(algorithm))


@pytest.mark.parametrize("channel_stride", BIG_STRIDES)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_pointwise_every_mode(sparse_array, rng, channel_stride, groups, n_threads):
    """The 1x1 GEMM on the arrays in each of its modes, input and output both strided."""
    values = _integers(rng, (2, 4, 3, 5))
    weight = _integers(rng, (6, 4 // groups, 1, 1))
    bias = _integers(rng, (6,))
    x = _channel_strided(sparse_array, values, channel_stride)
    x, weight, bias, problem = _api.validated_arrays(2, x, weight, bias, {"groups": groups})
    want = pcf.conv2d(values, weight, bias, groups=groups, algorithm="im2col")
    im2col = registry.get("im2col")
    for mode in POINTWISE_MODES:
        out = _channel_strided(sparse_array, np.full_like(want, np.nan), channel_stride)
        im2col.run(problem, _api._channels_first_5d(x, problem),
                   im2col.prepare(problem, _api.weight_5d(weight, problem)), bias,
                   _api._channels_first_5d(out, problem), n_threads, {"pointwise": mode})
        np.testing.assert_array_equal(out, want, err_msg=f"pointwise={mode!r}")


@pytest.mark.parametrize("channel_stride", BIG_STRIDES)
def test_conv1d_and_conv3d_pointwise(sparse_array, rng, channel_stride):
    for shape in ((1, 2, 16), (1, 2, 2, 2, 4)):
        values = _integers(rng, shape)
        weight = _integers(rng, (3, 2) + (1,) * (len(shape) - 2))
        x = _channel_strided(sparse_array, values, channel_stride)
        conv = {3: pcf.conv1d, 5: pcf.conv3d}[len(shape)]
        want = conv(values, weight, algorithm="im2col")
        np.testing.assert_array_equal(conv(x, weight, algorithm="im2col"), want)


@pytest.mark.parametrize("pixel_stride", BIG_STRIDES)
def test_channels_last_pixel_stride(sparse_array, rng, pixel_stride):
    """NHWC with a huge step between pixels: the channels-last 1x1 GEMM's ldb and ldc."""
    values = _integers(rng, (1, 1, 2, 3))  # N, H, W, C
    weight = _integers(rng, (4, 3, 1, 1))
    x = sparse_array(values.shape, (2 * pixel_stride, 2 * pixel_stride, pixel_stride, 1))
    x[...] = values
    want = pcf.conv2d(values, weight, layout="NHWC", algorithm="im2col")
    out = sparse_array(want.shape, (2 * pixel_stride, 2 * pixel_stride, pixel_stride, 1))
    out[...] = np.nan
    pcf.conv2d(x, weight, layout="NHWC", algorithm="im2col", out=out)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("channel_stride", BIG_STRIDES)
def test_separable_conv2d(sparse_array, rng, channel_stride):
    values = _integers(rng, (1, 2, 5, 5))
    depthwise = _integers(rng, (4, 1, 3, 3))
    pointwise = _integers(rng, (3, 4, 1, 1))
    bias = _integers(rng, (3,))
    x = _channel_strided(sparse_array, values, channel_stride)
    want = pcf.separable_conv2d(values, depthwise, pointwise, bias, padding=1)
    np.testing.assert_array_equal(
        pcf.separable_conv2d(x, depthwise, pointwise, bias, padding=1), want)
    # the output's channel stride is the pointwise GEMM's ldc
    out = _channel_strided(sparse_array, np.full_like(want, np.nan), channel_stride)
    pcf.separable_conv2d(values, depthwise, pointwise, bias, padding=1, out=out)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("channel_stride", BIG_STRIDES)
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_transpose2d(sparse_array, rng, channel_stride, stride):
    values = _integers(rng, (1, 2, 4, 4))
    weight = _integers(rng, (2, 3, 3, 3))
    x = _channel_strided(sparse_array, values, channel_stride)
    algorithms = pcf.list_algorithms(values, weight, transposed=True, stride=stride, padding=1)
    assert "transpose_gemm" in algorithms
    for algorithm in algorithms:
        want = pcf.conv_transpose2d(values, weight, stride=stride, padding=1,
                                    algorithm=algorithm)
        got = pcf.conv_transpose2d(x, weight, stride=stride, padding=1, algorithm=algorithm)
        np.testing.assert_array_equal(got, want)
        out = _channel_strided(sparse_array, np.full_like(want, np.nan), channel_stride)
        pcf.conv_transpose2d(values, weight, stride=stride, padding=1, algorithm=algorithm,
                             out=out)
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("channel_stride", BIG_STRIDES)
def test_deform_conv2d(sparse_array, rng, channel_stride):
    values = _integers(rng, (1, 2, 5, 5))
    weight = _integers(rng, (3, 2, 3, 3))
    offset = rng.integers(-2, 3, size=(1, 18, 5, 5)).astype(np.float32) / 2
    x = _channel_strided(sparse_array, values, channel_stride)
    want = pcf.deform_conv2d(values, offset, weight, padding=1)
    np.testing.assert_array_equal(pcf.deform_conv2d(x, offset, weight, padding=1), want)
    out = _channel_strided(sparse_array, np.full_like(want, np.nan), channel_stride)
    pcf.deform_conv2d(values, offset, weight, padding=1, out=out)
    np.testing.assert_array_equal(out, want)


# --- the splitting itself, with a small limit in place of INT_MAX ---------------------------------

def _stored(rng, rows, cols, ld, dtype):
    """A column-major rows x cols matrix with leading dimension ld in a flat buffer (NaN between
    the columns), and the matrix itself."""
    flat = np.full(max(cols * ld, 1), np.nan, dtype)
    matrix = _integers(rng, (rows, cols), dtype)
    for j in range(cols):
        flat[j * ld:j * ld + rows] = matrix[:, j]
    return flat, matrix


@pytest.mark.parametrize("transa", ["N", "T"])
@pytest.mark.parametrize("transb", ["N", "T"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_split_matches_one_product(rng, transa, transb, dtype):
    from pyconvfast._lib.common.blas import BLAS_INT_MAX, gemm_flat

    for m, n, k in ((5, 4, 3), (1, 7, 2), (6, 1, 9), (3, 2, 0), (0, 3, 2)):
        for pad_a, pad_b, pad_c in ((0, 0, 0), (3, 1, 2), (5, 0, 7)):
            for limit in (1, 2, 3, 4, 1000, BLAS_INT_MAX):
                a_rows, a_cols = (m, k) if transa == "N" else (k, m)
                b_rows, b_cols = (k, n) if transb == "N" else (n, k)
                lda, ldb, ldc = max(a_rows, 1) + pad_a, max(b_rows, 1) + pad_b, max(m, 1) + pad_c
                a, a_matrix = _stored(rng, a_rows, a_cols, lda, dtype)
                b, b_matrix = _stored(rng, b_rows, b_cols, ldb, dtype)
                c = np.full(max(n * ldc, 1), np.nan, dtype)
                gemm_flat(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, limit)
                op_a = a_matrix if transa == "N" else a_matrix.T
                op_b = b_matrix if transb == "N" else b_matrix.T
                want = op_a.astype(np.float64) @ op_b.astype(np.float64)
                context = f"{m=} {n=} {k=} {lda=} {ldb=} {ldc=} {limit=}"
                got = np.stack([c[j * ldc:j * ldc + m] for j in range(n)], axis=1) \
                    if n else np.zeros((m, 0))
                np.testing.assert_array_equal(got, want, err_msg=context)
                # the rows between the columns of C are left alone
                for j in range(n):
                    assert np.isnan(c[j * ldc + m:(j + 1) * ldc]).all(), context


def test_gemm_flat_checks_its_buffers():
    from pyconvfast._lib.common.blas import gemm_flat

    a = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="lda must be >= max"):
        gemm_flat("N", "N", 3, 2, 2, a, 2, a, 2, np.ones(6, np.float32), 3)
    with pytest.raises(ValueError, match="c holds 5 elements"):
        gemm_flat("N", "N", 3, 2, 2, a, 3, a, 2, np.ones(5, np.float32), 3)
    with pytest.raises(ValueError, match="limit must be"):
        gemm_flat("N", "N", 3, 2, 2, a, 3, a, 2, np.ones(6, np.float32), 3, 0)


@pytest.mark.parametrize("limit", [1, 40, 10**6])
def test_transpose_gemm_runs_batch_slices(monkeypatch, rng, limit):
    """transpose_gemm packs (C_in, samples * positions): past the BLAS limit it runs the batch
    in slices of samples (here 1, 2 of 16 positions, or the whole batch)."""
    from pyconvfast._algorithms import transpose_gemm

    x = _integers(rng, (5, 3, 4, 4))
    weight = _integers(rng, (3, 2, 3, 3))
    bias = _integers(rng, (2,))
    want = pcf.conv_transpose2d(x, weight, bias, stride=2, padding=1, algorithm="transpose_gemm")
    monkeypatch.setattr(transpose_gemm, "BLAS_INT_MAX", limit)
    for n_threads in (1, 2):
        got = pcf.conv_transpose2d(x, weight, bias, stride=2, padding=1, n_threads=n_threads,
                                   algorithm="transpose_gemm")
        np.testing.assert_array_equal(got, want)
