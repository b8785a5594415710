"""The ``fft`` algorithm: stride-1 convolution by real FFTs in overlap-save blocks.

Results are held to the float64 reference under the norm-wise tolerance of
``reference.NORMWISE_TOLERANCE`` (the FFT's rounding error follows the norms of whole blocks,
not each output's scale; the measured figures are there). The sweep and tile-edge tests run fft
too wherever it is usable; here: large kernels, long signals cut into many blocks, 2-D and 3-D,
groups, layouts, padding modes, dilation, the exact bias of all-padding windows, prepared
spectra, tuning parameters and the refusals.
"""

import numpy as np
import pytest
from tests.helpers.cases import CONV, with_memory
from tests.helpers.reference import CHANNELS_LAST, assert_conv_matches, conv_reference

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import fft
from pyconvfast._algorithms import registry
from pyconvfast._core import workspace
from pyconvfast.tuning import heuristic as _heuristic

ALGORITHM = registry.get("fft")


def check(x, w, b=None, **kwargs):
    got = CONV[w.ndim - 2](x, w, b, algorithm="fft", **kwargs)
    assert_conv_matches(got, x, w, b, algorithm="fft", context=(
        f"x.shape={x.shape} w.shape={w.shape} kwargs={kwargs}"), **kwargs)
    return got


def problem_of(x_shape, w_shape, **kwargs):
    return _api.make_problem(x_shape, w_shape, n_spatial=len(w_shape) - 2, **kwargs)


def n_blocks(problem):
    _, block, _ = fft._block_plan(problem, workspace.workspace_bytes(), None)
    live = fft._live_range(problem)
    return int(np.prod([-(-(stop - start) // b) for (start, stop), b in zip(live, block)]))


@pytest.mark.parametrize("k", (31, 63, 127))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_1d_kernels(k, dtype, rng):
    for length in (k - 5, k, k + 1, 3 * k + 2, 1000):
        x = rng.standard_normal((2, 3, length)).astype(dtype)
        w = rng.standard_normal((5, 3, k)).astype(dtype)
        b = rng.standard_normal(5).astype(dtype)
        check(x, w, b, padding="same")
        if length >= k:
            check(x, w)


@pytest.mark.parametrize("workspace_mb", ["0.05", "0.2"])
def test_long_signals_across_block_boundaries(workspace_mb, monkeypatch, rng):
    """A small workspace bound cuts long signals into many overlap-save blocks; outputs on
    both sides of every block boundary, and the last partial block, must be right."""
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", workspace_mb)
    for length, k, dilation in ((20000, 31, 1), (12345, 63, 2), (5001, 127, 1)):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((2, 2, length)).astype(dtype)
            w = rng.standard_normal((3, 2, k)).astype(dtype)
            problem = problem_of(x.shape, w.shape, padding="same", dilation=dilation)
            assert n_blocks(problem) >= 4, (length, k, fft._block_plan(
                problem, workspace.workspace_bytes(), None))
            check(x, w, rng.standard_normal(3).astype(dtype), padding="same", dilation=dilation)


def test_samples_split_into_passes(monkeypatch, rng):
    """When a batch's buffers do not fit the workspace at once, samples go in several passes."""
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", "0.1")
    x = rng.standard_normal((7, 4, 300)).astype(np.float32)
    w = rng.standard_normal((4, 4, 15)).astype(np.float32)
    _, _, n_samples = fft._block_plan(problem_of(x.shape, w.shape),
                                        workspace.workspace_bytes(), None)
    assert n_samples < 7
    check(x, w)


@pytest.mark.parametrize("k", (15, 31, 63))
def test_large_2d_kernels(k, rng):
    for size in ((k + 3, k + 10), (2 * k + 1, k)):
        x = rng.standard_normal((1, 2) + size).astype(np.float32)
        w = rng.standard_normal((3, 2, k, k)).astype(np.float32)
        check(x, w, padding="same")
        check(x, w)
    x = rng.standard_normal((1, 2, 40, 33))
    w = rng.standard_normal((2, 2, k, 7))  # non-square kernel, float64
    check(x, w, padding="same", padding_mode="circular")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_3d(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 10, 11)).astype(dtype)
    for kernel in ((3, 3, 3), (5, 1, 7), (9, 9, 9)):
        w = rng.standard_normal((4, 3) + kernel).astype(dtype)
        check(x, w, padding="same")
        check(x, w, padding=4, dilation=(1, 2, 1))


@pytest.mark.parametrize("channels", (1, 3, 13, 17, 33))
def test_groups_depthwise_and_channel_tails(channels, rng):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, channels, 50)).astype(dtype)
        w = rng.standard_normal((2 * channels, 1, 9)).astype(dtype)  # depthwise, multiplier 2
        check(x, w, rng.standard_normal(2 * channels).astype(dtype), groups=channels,
              padding="same")
        x = rng.standard_normal((1, 3 * channels, 12, 13)).astype(dtype)
        w = rng.standard_normal((3 * (channels + 2), channels, 5, 5)).astype(dtype)
        check(x, w, groups=3, padding=2)


@pytest.mark.parametrize("n_spatial", (1, 2, 3))
def test_channels_last_and_memory_layouts(n_spatial, rng):
    spatial = {1: (40,), 2: (11, 12), 3: (6, 7, 5)}[n_spatial]
    kernel = {1: (7,), 2: (5, 3), 3: (3, 3, 2)}[n_spatial]
    x = rng.standard_normal((2,) + spatial + (5,)).astype(np.float32)
    w = rng.standard_normal((6, 5) + kernel).astype(np.float32)
    layout = CHANNELS_LAST[n_spatial]
    check(x, w, padding="same", layout=layout)
    for kind in ("f", "sliced", "negative", "permuted"):
        memory = with_memory(x, kind, rng)
        check(memory, with_memory(w, kind, rng), padding=1, layout=layout, flip=True)
    out = with_memory(np.zeros((2,) + spatial + (6,), np.float32), "sliced", rng)
    got = CONV[n_spatial](x, w, padding="same", layout=layout, algorithm="fft", out=out)
    assert got is out
    assert_conv_matches(out, x, w, padding="same", layout=layout, algorithm="fft")


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_modes_and_dilation(padding_mode, rng):
    for x_shape, w_shape, padding, dilation in (
        ((2, 3, 30), (4, 3, 5), ((4, 7),), 3),
        ((1, 2, 13, 14), (3, 2, 3, 4), ((2, 5), (3, 0)), (2, 3)),
        ((1, 2, 6, 7, 8), (2, 2, 2, 3, 2), 2, (1, 2, 3)),
    ):
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        check(x, w, padding=padding, dilation=dilation, padding_mode=padding_mode)
        check(x, w, padding="same", dilation=dilation, padding_mode=padding_mode)


def test_windows_of_zero_padding_give_exactly_the_bias(rng):
    """Outputs whose taps all fall on zero padding are the bias, bit for bit: beyond the input
    (padding wider than the dilated kernel) and between live outputs (dilation skipping a
    one-sample input)."""
    x = rng.standard_normal((1, 2, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    got = check(x, w, b, padding=8)
    np.testing.assert_array_equal(got[..., :6], np.broadcast_to(b[:, None], (1, 3, 6)))
    np.testing.assert_array_equal(got[..., -6:], np.broadcast_to(b[:, None], (1, 3, 6)))
    x = rng.standard_normal((1, 1, 1)).astype(np.float64)
    w = rng.standard_normal((1, 1, 3)).astype(np.float64)
    got = pcf.conv1d(x, w, padding=7, dilation=3, algorithm="fft")
    expected = conv_reference(x, w, padding=7, dilation=3)
    dead = expected == 0
    assert dead.sum() == expected.size - 3 and not dead[..., 4]  # live outputs 1, 4 and 7
    np.testing.assert_array_equal(got[dead], 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_prepared_spectra_reused_and_block_sizes_of_param_space(rng):
    x_shape, w = (2, 4, 3000), rng.standard_normal((5, 4, 63)).astype(np.float32)
    plan = pcf.plan(x_shape, w, padding="same", algorithm="fft")
    for _ in range(2):  # the same prepared spectra serve every input
        x = rng.standard_normal(x_shape).astype(np.float32)
        assert_conv_matches(plan(x), x, w, padding="same", algorithm="fft")
    problem = plan.problem
    space = ALGORITHM.param_space(problem)
    assert space[0] == {} and len(space) >= 2
    prepared = ALGORITHM.prepare(problem, _api.weight_5d(w, problem))
    x = rng.standard_normal(x_shape).astype(np.float32)
    for params in space:
        out = np.full(problem.out_shape, np.nan, np.float32)
        ALGORITHM.run(problem, _api._channels_first_5d(x, problem), prepared, None,
                      _api._channels_first_5d(out, problem), 1, params)
        assert_conv_matches(out, x, w, padding="same", algorithm="fft", context=str(params))
    # every size tried is kept with the prepared weight, for the next call
    assert len(prepared._spectra) == len({tuple(p["fft_size"]) for p in space[1:]} | {
        fft._block_plan(problem, workspace.workspace_bytes(), None)[0]})


@pytest.mark.parametrize("n_threads", (1, 2, 3))
def test_thread_counts(n_threads, rng):
    x = rng.standard_normal((2, 16, 700)).astype(np.float32)
    w = rng.standard_normal((16, 16, 31)).astype(np.float32)
    got = pcf.conv1d(x, w, padding="same", algorithm="fft", n_threads=n_threads)
    assert_conv_matches(got, x, w, padding="same", algorithm="fft")


def test_supports_says_why_not(monkeypatch):
    reason = ALGORITHM.supports(problem_of((1, 2, 50), (3, 2, 5), stride=2))
    assert reason == "needs stride 1, got stride=(2,)"
    reason = ALGORITHM.supports(problem_of((1, 2, 9, 9), (3, 2, 3, 3), stride=(1, 3)))
    assert reason == "needs stride 1, got stride=(1, 3)"
    with pytest.raises(ValueError, match=r"algorithm='fft' cannot run this problem: needs "
                                         r"stride 1, got stride=\(2, 2\)"):
        pcf.conv2d(np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3)), stride=2, algorithm="fft")
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", "0.001")
    reason = ALGORITHM.supports(problem_of((1, 64, 100, 100), (64, 64, 9, 9)))
    assert "do not fit the workspace bound" in reason and "PYCONVFAST_WORKSPACE_MB" in reason
    assert "fft" not in pcf.list_algorithms((1, 64, 100, 100), (64, 64, 9, 9))
    assert ALGORITHM.supports(problem_of((1, 1, 100), (1, 1, 9))) is None


def test_huge_geometry_is_refused_quickly():
    problem = problem_of((1, 1, 4), (1, 1, 3), padding="same", dilation=2**62)
    assert "workspace" in ALGORITHM.supports(problem)


def test_estimate_picks_fft_beyond_the_crossover():
    """The heuristic's rule (docs/guide/algorithms.rst, bench/fft_crossover.py)."""
    assert _heuristic.choose(problem_of((1, 16, 4096), (16, 16, 127), padding="same")) == "fft"
    assert _heuristic.choose(problem_of((1, 16, 4096), (16, 16, 31), padding="same")) != "fft"
    assert _heuristic.choose(problem_of((1, 64, 4096), (64, 64, 63), padding="same")) != "fft"
    assert _heuristic.choose(problem_of((1, 16, 64, 64), (16, 16, 9, 9), padding="same")) != "fft"
    assert _heuristic.choose(problem_of((1, 16, 128, 128), (16, 16, 31, 31),
                                        padding="same")) == "fft"
    assert _heuristic.choose(problem_of((1, 16, 4096), (16, 16, 3), padding="same")) != "fft"
    assert _heuristic.choose(problem_of((1, 64, 56, 56), (64, 64, 3, 3), padding=1)) != "fft"
    assert _heuristic.choose(problem_of((1, 16, 4096), (16, 16, 127), stride=2)) != "fft"


def test_measure_mode_times_fft(monkeypatch, tmp_path, rng):
    monkeypatch.setenv("PYCONVFAST_TUNE", "measure")
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path))
    x = rng.standard_normal((1, 4, 2000)).astype(np.float32)
    w = rng.standard_normal((4, 4, 63)).astype(np.float32)
    plan = pcf.plan(x.shape, w, padding="same")
    assert "fft" in plan.explain()
    assert_conv_matches(plan(x), x, w, padding="same", algorithm="auto")
