"""Sizes at every edge of kernels, tiles and channel blocks.

Written for every algorithm ``pcf.list_algorithms`` offers for the problem, not just "direct":
Winograd tiles (2, 4, 6 outputs) and channel blocks (8, 16) get checked one below, at and one
above each block size, with output planes smaller and larger than the input, and with large
kernels.
"""

import itertools

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import im2col
from tests.helpers.cases import CONV
from tests.helpers.reference import assert_conv_matches

SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17)
KERNELS = (1, 2, 3, 4, 5)
CHANNELS = (1, 3, 7, 8, 9, 13, 15, 16, 17, 33, 65)


def check_all_algorithms(x, w, b=None, **kwargs):
    n_spatial = w.ndim - 2
    algorithms = pcf.list_algorithms(x, w, **kwargs)
    assert "direct" in algorithms
    for algorithm in algorithms + ["auto"]:
        got = CONV[n_spatial](x, w, b, algorithm=algorithm, **kwargs)
        assert_conv_matches(got, x, w, b, algorithm=algorithm, context=(
            f"algorithm={algorithm!r} x.shape={x.shape} w.shape={w.shape} kwargs={kwargs}"),
            **kwargs)


def _fitting(size, k, padding):
    return k <= size + 2 * padding


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", [0, 1, 2, "same"])
@pytest.mark.parametrize("size", SIZES)
def test_1d_sizes_and_kernels(size, padding, dtype, rng):
    for k in KERNELS:
        pad = (k - 1) if padding == "same" else padding
        if not _fitting(size, k, pad):
            continue
        x = rng.standard_normal((2, 3, size)).astype(dtype)
        w = rng.standard_normal((5, 3, k)).astype(dtype)
        check_all_algorithms(x, w, rng.standard_normal(5).astype(dtype), padding=padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", KERNELS)
@pytest.mark.parametrize("h", SIZES)
def test_2d_sizes_and_kernels(h, k, dtype, rng):
    """Every height against a few widths, square and non-square kernels."""
    for w_size in (1, 4, 7, 8, 9, 16, 17):
        for kernel in ((k, k), (k, 3), (1, k)):
            for padding in (0, 1, "same"):
                pad = max(kernel) if padding == "same" else padding
                if not (_fitting(h, kernel[0], pad) and _fitting(w_size, kernel[1], pad)):
                    continue
                x = rng.standard_normal((1, 2, h, w_size)).astype(dtype)
                w = rng.standard_normal((3, 2) + kernel).astype(dtype)
                check_all_algorithms(x, w, padding=padding)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", (1, 2, 3, 5, 8, 9, 16, 17))
def test_3d_sizes(size, stride, rng):
    for k in (1, 2, 3):
        for padding in (0, "same"):
            x = rng.standard_normal((1, 2, size, max(1, size - 1), size)).astype(np.float32)
            if padding == 0 and k > min(x.shape[2:]):
                continue
            w = rng.standard_normal((3, 2, k, k, k)).astype(np.float32)
            check_all_algorithms(x, w, stride=stride, padding=padding)


@pytest.mark.parametrize("c_in", CHANNELS)
def test_channel_tails(c_in, rng):
    for c_out in CHANNELS:
        x = rng.standard_normal((2, c_in, 5, 6)).astype(np.float32)
        w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32)
        check_all_algorithms(x, w, b, padding=1)
        check_all_algorithms(np.moveaxis(x, 1, -1), w, b, padding=1, layout="NHWC")


@pytest.mark.parametrize("channels", (1, 3, 7, 8, 9, 13, 16, 17, 33, 65))
@pytest.mark.parametrize("multiplier", (1, 2, 3))
def test_depthwise_and_grouped_tails(channels, multiplier, rng):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, channels, 7, 9)).astype(dtype)
        w = rng.standard_normal((channels * multiplier, 1, 3, 3)).astype(dtype)
        check_all_algorithms(x, w, groups=channels, padding=1)
        check_all_algorithms(x, w, groups=channels, stride=2, padding="same")
    # grouped with channel tails in each group
    for groups in (2, 3):
        x = rng.standard_normal((1, channels * groups, 5, 5)).astype(np.float32)
        w = rng.standard_normal((groups * (multiplier + 6), channels, 3, 3)).astype(np.float32)
        check_all_algorithms(x, w, groups=groups, padding=1)


@pytest.mark.parametrize("stride", (1, 2))
@pytest.mark.parametrize("k", (3, 5))
def test_depthwise_rows_around_vector_lengths(k, stride, rng):
    """Channels-first depthwise rows (the "chw" order's vectors along W) one below, at and one
    above 2, 4, 8, 16 and 32 lanes of output, every height 1..9, zero padding up to k."""
    widths = sorted({n + d for n in (2, 4, 8, 16, 32) for d in (-1, 0, 1)} | {1})
    for i, w_out in enumerate(widths):
        h = 1 + i % 9
        padding = i % (k + 1)
        w_size = max(1, (w_out - 1) * stride + k - 2 * padding)
        if not _fitting(h, k, padding):
            continue
        dtype = (np.float32, np.float64)[i % 2]
        x = rng.standard_normal((1, 3, h, w_size)).astype(dtype)
        w = rng.standard_normal((6, 1, k, k)).astype(dtype)
        check_all_algorithms(x, w, rng.standard_normal(6).astype(dtype), groups=3,
                             stride=stride, padding=padding)


@pytest.mark.parametrize("out_size", (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 17, 25))
def test_output_plane_sizes_around_tiles(out_size, rng):
    """3x3 stride-1 outputs one below / at / above multiples of 2, 4 and 6 (Winograd tiles)."""
    for padding in (0, 1):
        in_size = out_size + 2 - 2 * padding
        if in_size < 1:
            continue
        x = rng.standard_normal((1, 8, in_size, out_size + 2 - 2 * padding)).astype(np.float32)
        w = rng.standard_normal((9, 8, 3, 3)).astype(np.float32)
        check_all_algorithms(x, w, padding=padding)
        x = rng.standard_normal((1, 4, in_size, 5)).astype(np.float64)
        w = rng.standard_normal((4, 4, 3, 3)).astype(np.float64)
        check_all_algorithms(x, w, padding=padding)


@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "circular", "reflect"])
def test_output_plane_larger_than_input(padding_mode, rng):
    """Padding larger than the kernel: the output plane is larger than the input."""
    for size, pad, k in ((4, 3, 2), (5, 4, 1), (8, 7, 3), (2, 1, 1)):
        if padding_mode == "reflect":
            pad = min(pad, size - 1)
        x = rng.standard_normal((2, 3, size, size + 1)).astype(np.float32)
        w = rng.standard_normal((2, 3, k, k)).astype(np.float32)
        kwargs = {"padding": pad, "padding_mode": padding_mode}
        assert pcf.conv_output_shape(x.shape, w.shape, **kwargs)[2] >= size
        check_all_algorithms(x, w, **kwargs)
        check_all_algorithms(x, w, **dict(kwargs, stride=(1, 2), dilation=(2, 1)))


@pytest.mark.parametrize("k", (31, 63))
def test_large_1d_kernels(k, rng):
    for length in (k, k + 1, 2 * k, 100):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((2, 3, length)).astype(dtype)
            w = rng.standard_normal((4, 3, k)).astype(dtype)
            check_all_algorithms(x, w)
            check_all_algorithms(x, w, padding="same")
            check_all_algorithms(x, w, padding="same", padding_mode="circular", stride=3)
    x = rng.standard_normal((1, 2, 10)).astype(np.float32)  # kernel longer than the input
    w = rng.standard_normal((3, 2, k)).astype(np.float32)
    check_all_algorithms(x, w, padding="same")
    check_all_algorithms(x, w, padding=(k - 1) // 2 + 1, padding_mode="replicate")


@pytest.mark.parametrize("k", (5, 7, 11))
def test_large_2d_kernels(k, rng):
    for size in (k - 1, k, k + 1, 2 * k + 1):
        x = rng.standard_normal((1, 3, size, size + 2)).astype(np.float32)
        w = rng.standard_normal((4, 3, k, k)).astype(np.float32)
        check_all_algorithms(x, w, padding="same")
        if size >= k:
            check_all_algorithms(x, w)


def test_one_by_one_everything(rng):
    """Kernel 1 on spatial 1 in 1/2/3-D, channel tails: the degenerate 'matrix product' case."""
    for n_spatial, c_in, c_out in itertools.product((1, 2, 3), (1, 13, 65), (1, 17)):
        x = rng.standard_normal((3, c_in) + (1,) * n_spatial)
        w = rng.standard_normal((c_out, c_in) + (1,) * n_spatial)
        check_all_algorithms(x, w)


@pytest.mark.parametrize("workspace_mb", ["0.0001", "0.0005", "0.003", "0.02"])
def test_small_workspace_blocks(workspace_mb, monkeypatch, rng):
    """``PYCONVFAST_WORKSPACE_MB`` bounds the scratch buffers of algorithms that lower the input
    (im2col): a tiny budget forces blocks of one or a few output rows, so the block edges (and the
    last, partial block) are exercised. Algorithms that ignore the variable are checked too."""
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", workspace_mb)
    if workspace_mb == "0.0001":  # ~100 bytes: im2col must fall back to one position a chunk
        problem = _api.make_problem((2, 33, 13, 13), (17, 33, 3, 3), n_spatial=2, padding=1)
        assert im2col.im2col_chunk(problem, 2, 4) == 1
    for x_shape, w_shape, kwargs in (
        ((2, 3, 17), (5, 3, 3), {"padding": 1}),
        ((1, 4, 9, 11), (6, 4, 3, 3), {"padding": "same", "stride": (2, 1)}),
        ((3, 6, 7, 5), (9, 2, 2, 3), {"groups": 3, "dilation": (2, 1), "padding": 1,
                                      "padding_mode": "reflect"}),
        ((1, 2, 5, 6, 7), (4, 2, 3, 3, 3), {"padding": 1, "flip": True}),
        ((2, 33, 13, 13), (17, 33, 3, 3), {"padding": 1}),
    ):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal(x_shape).astype(dtype)
            w = rng.standard_normal(w_shape).astype(dtype)
            b = rng.standard_normal(w_shape[0]).astype(dtype)
            for n_threads in (1, 2, 3):
                n_spatial = w.ndim - 2
                for algorithm in pcf.list_algorithms(x, w, **kwargs) + ["auto"]:
                    got = CONV[n_spatial](x, w, b, algorithm=algorithm, n_threads=n_threads,
                                          **kwargs)
                    assert_conv_matches(got, x, w, b, algorithm=algorithm, context=(
                        f"algorithm={algorithm!r} workspace={workspace_mb} MB "
                        f"n_threads={n_threads} x.shape={x_shape} w.shape={w_shape} {kwargs}"),
                        **kwargs)
