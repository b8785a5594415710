"""Transposed convolution: ``conv_transpose1d/2d/3d`` and their three algorithms.

Every result is compared with :func:`reference_transpose.conv_transpose_reference` (the
scatter-add definition in float64 / long double) under the summation error bound; the adjoint
identity ``<conv(x, w), y> == <x, conv_transpose(y, w)>`` ties them to ``pcf.conv*d``; integer
data must come out exact; and PyTorch, when installed, must agree.
"""

import itertools

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api, _transpose
from pyconvfast._algorithms import registry
from pyconvfast.tuning import autotune as _autotune
from pyconvfast.tuning import heuristic as _heuristic
from pyconvfast._algorithms import transpose_gemm, transpose_taps
from tests.helpers.reference import CHANNELS_FIRST, CHANNELS_LAST
from tests.helpers.reference_transpose import (
    assert_transpose_matches, conv_transpose_reference, out_size,
)

CONV_T = {1: pcf.conv_transpose1d, 2: pcf.conv_transpose2d, 3: pcf.conv_transpose3d}
CONV = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}
ALGORITHMS = ("transpose_gemm", "transpose_subpixel", "transpose_direct")
SWEEP_SEED = 5_2026


def _usable(x_shape, w_shape, **kwargs):
    return pcf.list_algorithms(x_shape, w_shape, transposed=True, **kwargs)


def _data(rng, x_shape, w_shape, dtype, bias=True, groups=1):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * groups).astype(dtype) if bias else None
    return x, w, b


def _check_all(x, w, b, **kwargs):
    """Every usable algorithm and auto, against the reference."""
    n_spatial = w.ndim - 2
    names = _usable(x.shape, w.shape, **{k: v for k, v in kwargs.items() if k != "n_threads"})
    for name in names + ["auto"]:
        got = CONV_T[n_spatial](x, w, b, algorithm=name, **kwargs)
        context = f"algorithm={name} x.shape={x.shape} w.shape={w.shape} {kwargs}"
        assert_transpose_matches(got, x, w, b, context=context, **kwargs)
    return names


# --- the definition, fixed cases ----------------------------------------------------------------

@pytest.mark.parametrize("n_spatial", [1, 2, 3])
@pytest.mark.parametrize("layout_kind", ["first", "last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference(rng, n_spatial, layout_kind, dtype):
    layout = (CHANNELS_FIRST if layout_kind == "first" else CHANNELS_LAST)[n_spatial]
    in_size = {1: (11,), 2: (5, 7), 3: (3, 4, 5)}[n_spatial]
    kernel = {1: (5,), 2: (4, 3), 3: (3, 2, 3)}[n_spatial]
    c_in, k_g, groups = 6, 5, 2
    x_cf_shape = (2, c_in) + in_size
    x_shape = (2,) + in_size + (c_in,) if layout_kind == "last" else x_cf_shape
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((c_in, k_g) + kernel).astype(dtype)
    b = rng.standard_normal(k_g * groups).astype(dtype)
    names = _check_all(x, w, b, stride=2, padding=1, output_padding=1, groups=groups,
                       layout=layout)
    assert names == list(ALGORITHMS)


def test_doc_example_values():
    x = np.arange(3, dtype=np.float64).reshape(1, 1, 3)
    w = np.array([[[1.0, 10.0]]])
    # out[i*2 + t] += x[i] * w[t]: [0, 0, 1, 10, 2, 20]
    for name in ALGORITHMS:
        got = pcf.conv_transpose1d(x, w, stride=2, algorithm=name)
        np.testing.assert_array_equal(got, [[[0, 0, 1, 10, 2, 20]]])
        got = pcf.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1, algorithm=name)
        np.testing.assert_array_equal(got, [[[0, 1, 10, 2, 20]]])
    assert pcf.conv_transpose1d(x, w, stride=3, algorithm="transpose_gemm").tolist() == [
        [[0, 0, 0, 1, 10, 0, 2, 20]]]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_kernel_smaller_than_stride_leaves_bias_only_positions(name):
    # kernel 2, stride 3: every third output is reached by no tap and holds the bias alone.
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((2, 3, 2, 2), np.float32)
    b = np.array([1.5, -2.0, 0.25], np.float32)
    got = pcf.conv_transpose2d(x, w, b, stride=3, output_padding=2, algorithm=name)
    assert got.shape == (1, 3, 13, 13)
    np.testing.assert_array_equal(got[:, :, 2::3, :], np.broadcast_to(b[:, None, None],
                                                                       (1, 3, 4, 13)))
    assert_transpose_matches(got, x, w, b, stride=3, output_padding=2)


def test_exact_on_integers(rng):
    for n_spatial, (x_shape, w_shape, kwargs) in enumerate((
        ((3, 8, 17), (8, 3, 5), dict(stride=3, padding=2, dilation=2, output_padding=1)),
        ((2, 6, 9, 7), (6, 2, 4, 4), dict(stride=2, padding=1, groups=3)),
        ((1, 4, 3, 5, 4), (4, 3, 3, 3, 2), dict(stride=(1, 2, 3), padding=(0, 1, 1))),
    ), start=1):
        x = rng.integers(-3, 4, x_shape).astype(np.float32)
        w = rng.integers(-3, 4, w_shape).astype(np.float32)
        b = rng.integers(-3, 4, w_shape[1] * kwargs.get("groups", 1)).astype(np.float32)
        ref = conv_transpose_reference(x, w, b, **kwargs)
        for name in _usable(x_shape, w_shape, **kwargs):
            got = CONV_T[n_spatial](x, w, b, algorithm=name, **kwargs)
            np.testing.assert_array_equal(got, ref, err_msg=f"{name} {kwargs}")


# --- the adjoint of conv ------------------------------------------------------------------------

@pytest.mark.parametrize("case", [
    ((2, 6, 13), (6, 4, 5), dict(stride=2, padding=2, dilation=1, groups=2)),
    ((2, 4, 9, 8), (4, 3, 3, 4), dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1))),
    ((1, 4, 5, 6, 5), (4, 4, 3, 3, 3), dict(stride=2, padding=1, groups=4)),
    ((3, 3, 17), (3, 6, 4), dict(stride=4, padding=0, dilation=3, groups=3)),
])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_adjoint_of_conv(rng, case, flip, name):
    """<conv(z, w), y> == <z, conv_transpose(y, w)>, the transposed weight being the forward one
    read as (C_in, C_out // groups, *k): conv's (C_out, C_in // groups, *k) weight viewed by the
    transpose of the map, i.e. the same array."""
    z_shape, w_shape, kwargs = case
    n_spatial = len(z_shape) - 2
    z = rng.standard_normal(z_shape)
    # The forward conv maps C channels (z) to C' = w_shape[0] channels; its transpose maps C'
    # back to C with the same weight array.
    groups = kwargs.get("groups", 1)
    c_fwd_out = w_shape[1] * groups
    w_fwd = rng.standard_normal((c_fwd_out, z_shape[1] // groups) + w_shape[2:])
    y_fwd = CONV[n_spatial](z, w_fwd, flip=flip, **kwargs)
    y = rng.standard_normal(y_fwd.shape)
    # output_size makes the transpose land exactly on z's size (the part conv's stride skipped).
    back = CONV_T[n_spatial](y, w_fwd, flip=flip, output_size=z_shape[2:], algorithm=name,
                             **kwargs)
    assert back.shape == z.shape
    lhs, rhs = np.vdot(y_fwd, y), np.vdot(z, back)
    scale = np.vdot(np.abs(y_fwd), np.abs(y)) + np.vdot(np.abs(z), np.abs(back))
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)


# --- randomized sweep ---------------------------------------------------------------------------

def _random_case(seed, index):
    rng = np.random.default_rng([seed, index])
    n_spatial = int(rng.integers(1, 4))
    max_in = {1: 12, 2: 6, 3: 4}[n_spatial]
    max_k = {1: 6, 2: 4, 3: 3}[n_spatial]
    groups = int(rng.choice([1, 1, 2, 3]))
    c_g = int(rng.choice([1, 2, 3, 5]))
    k_g = int(rng.choice([1, 2, 4, 7]))
    batch = int(rng.choice([1, 2, 3]))
    in_size = tuple(int(v) for v in rng.integers(1, max_in + 1, n_spatial))
    kernel = tuple(int(v) for v in rng.integers(1, max_k + 1, n_spatial))
    stride = tuple(int(v) for v in rng.integers(1, 4, n_spatial))
    dilation = tuple(int(v) for v in rng.choice([1, 1, 2, 3], n_spatial))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    padding = []
    for i, k, s, d, op in zip(in_size, kernel, stride, dilation, output_padding):
        full = (i - 1) * s + d * (k - 1) + 1 + op  # the output size before cropping
        before = int(rng.integers(0, min(3, full - 1) + 1))
        after = int(rng.integers(0, min(3, full - 1 - before) + 1))
        if rng.random() < 0.7:
            before = after = min(before, (full - 1) // 2)
        padding.append((before, after))
    if all(b == a for b, a in padding) and rng.random() < 0.7:
        padding = tuple(b for b, _ in padding)
    layout = (CHANNELS_FIRST if rng.random() < 0.6 else CHANNELS_LAST)[n_spatial]
    dtype = np.float32 if rng.random() < 0.7 else np.float64
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation, groups=groups, layout=layout, flip=bool(rng.random() < 0.2))
    c_in = c_g * groups
    x_shape = (batch, c_in) + in_size
    if layout == CHANNELS_LAST[n_spatial]:
        x_shape = (batch,) + in_size + (c_in,)
    if rng.random() < 0.15:
        x_shape = x_shape[1:]
    x = rng.standard_normal(x_shape).astype(dtype)
    if rng.random() < 0.2:
        x = x[(Ellipsis,) + (slice(None, None, -1),)]  # a negatively strided view
    w = rng.standard_normal((c_in, k_g) + kernel).astype(dtype)
    b = rng.standard_normal(k_g * groups).astype(dtype) if rng.random() < 0.6 else None
    names = _usable(x.shape, w.shape, **kwargs)
    algorithm = str(rng.choice(names + ["auto"]))
    use_out = rng.random() < 0.3
    return n_spatial, x, w, b, kwargs, algorithm, use_out


def _run_case(seed, index):
    n_spatial, x, w, b, kwargs, algorithm, use_out = _random_case(seed, index)
    context = (f"case ({seed}, {index}): algorithm={algorithm} x.shape={x.shape} "
               f"w.shape={w.shape} bias={b is not None} {kwargs}")
    out = None
    if use_out:
        ref_shape = conv_transpose_reference(x, w, b, **kwargs).shape
        out = np.full(ref_shape, np.nan, dtype=x.dtype)
    got = CONV_T[n_spatial](x, w, b, algorithm=algorithm, out=out, **kwargs)
    if out is not None:
        assert got is out, context
    assert_transpose_matches(got, x, w, b, context=context, **kwargs)


@pytest.mark.parametrize("index", range(300))
def test_sweep(index):
    _run_case(SWEEP_SEED, index)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(300, 3300))
def test_sweep_slow(index):
    _run_case(SWEEP_SEED, index)


def test_sweep_covers_the_space():
    seen = {"n_spatial": set(), "algorithm": set(), "layout_last": set(), "op": set(),
            "groups": set(), "dtype": set(), "stride": set(), "dilation": set()}
    for index in range(300):
        n_spatial, x, w, b, kwargs, algorithm, _ = _random_case(SWEEP_SEED, index)
        seen["n_spatial"].add(n_spatial)
        seen["algorithm"].add(algorithm)
        seen["layout_last"].add(kwargs["layout"] == CHANNELS_LAST[n_spatial])
        seen["op"].add(max(kwargs["output_padding"]) > 0)
        seen["groups"].add(kwargs["groups"])
        seen["dtype"].add(x.dtype.name)
        seen["stride"].update(kwargs["stride"])
        seen["dilation"].update(kwargs["dilation"])
    assert seen["n_spatial"] == {1, 2, 3}
    assert seen["algorithm"] == set(ALGORITHMS) | {"auto"}
    assert seen["layout_last"] == {False, True}
    assert seen["op"] == {False, True}
    assert seen["groups"] == {1, 2, 3}
    assert seen["dtype"] == {"float32", "float64"}
    assert seen["stride"] == {1, 2, 3} and seen["dilation"] == {1, 2, 3}


# --- tile edges, channel tails, task blocks -----------------------------------------------------

@pytest.mark.parametrize("c_in, k_g", [(13, 17), (17, 33), (33, 13), (1, 3)])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_channel_tails(rng, c_in, k_g, n_threads):
    x, w, b = _data(rng, (3, c_in, 7, 6), (c_in, k_g, 4, 4), np.float32)
    _check_all(x, w, b, stride=2, padding=1, n_threads=n_threads)


@pytest.mark.parametrize("params", [{}, {"k_block": 4}, {"k_block": 16}, {"k_block": 64}])
def test_gemm_blocks(rng, params):
    """Every channel block of the exhaustive tuner, with tails (k_g = 17, 65)."""
    for k_g in (17, 65):
        x, w, b = _data(rng, (5, 6, 5, 5), (6, k_g, 3, 3), np.float32)
        problem = _transpose.make_problem(x.shape, w.shape, n_spatial=2, stride=2,
                                          has_bias=True, dtype=x.dtype)
        algorithm = registry.get("transpose_gemm")
        out = np.full(problem.out_shape, np.nan, np.float32)
        algorithm.run(problem, _api._channels_first_5d(x, problem),
                      algorithm.prepare(problem, _api.weight_5d(w, problem)), b,
                      _api._channels_first_5d(out, problem), 2, params)
        assert_transpose_matches(out, x, w, b, stride=2)


def test_gemm_workspace_bound_splits_samples(rng, monkeypatch):
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", "0.01")
    x, w, b = _data(rng, (6, 5, 9, 9), (5, 7, 4, 4), np.float32)
    problem = _transpose.make_problem(x.shape, w.shape, n_spatial=2, stride=2, dtype=x.dtype)
    assert transpose_gemm.gemm_blocks(problem, 2, 4) == (1, 1)
    _check_all(x, w, b, stride=2, padding=1)


def test_subpixel_phases_partition_the_output():
    for in_size, out, k, s, d, p in itertools.product(
            (1, 4, 7), (None,), (1, 2, 3, 5), (1, 2, 3, 4), (1, 2, 3), (0, 1, 2)):
        out = (in_size - 1) * s + d * (k - 1) + 1 - 2 * p
        if out < 1:
            continue
        phases = transpose_taps.subpixel_phases(in_size, out, k, s, d, p)
        taps = transpose_taps.transposed_taps(in_size, out, k, s, d, p)
        assert [r for r, _, _ in phases] == list(range(min(s, out)))
        for r, phase_taps, table in phases:
            for q in range(table.shape[0]):
                o = r + q * s
                expected = {t: taps[o, t] for t in range(k) if taps[o, t] >= 0}
                got = {t: i for t, i in zip(phase_taps, table[q]) if i >= 0}
                assert got == expected


# --- options ------------------------------------------------------------------------------------

def test_output_size_picks_output_padding(rng):
    x, w, b = _data(rng, (2, 3, 5, 6), (3, 4, 3, 3), np.float32)
    for size in ((13, 11), (14, 12), (15, 11)):
        got = pcf.conv_transpose2d(x, w, b, stride=(3, 2), padding=1, output_size=size)
        assert got.shape == (2, 4) + size
        op = (size[0] - 13, size[1] - 11)
        np.testing.assert_array_equal(
            got, pcf.conv_transpose2d(x, w, b, stride=(3, 2), padding=1, output_padding=op))
    full = pcf.conv_transpose2d(x, w, b, stride=(3, 2), padding=1, output_size=(2, 4, 14, 12))
    assert full.shape == (2, 4, 14, 12)
    last = pcf.conv_transpose2d(np.moveaxis(x, 1, -1), w, b, stride=(3, 2), padding=1,
                                output_size=(2, 14, 12, 4), layout="NHWC")
    np.testing.assert_allclose(np.moveaxis(last, -1, 1), full, rtol=1e-5, atol=1e-5)


def test_output_padding_with_dilation(rng):
    # PyTorch allows output_padding < dilation even at stride 1.
    x, w, b = _data(rng, (1, 2, 6), (2, 3, 3), np.float64)
    got = pcf.conv_transpose1d(x, w, b, dilation=3, output_padding=2)
    assert got.shape == (1, 3, 14)
    assert_transpose_matches(got, x, w, b, dilation=3, output_padding=2)


def test_unbatched_and_out(rng):
    x, w, b = _data(rng, (4, 6, 5), (4, 2, 3, 3), np.float64, groups=2)
    got = pcf.conv_transpose2d(x, w, b, stride=2, groups=2)
    assert got.shape == (4, 13, 11)
    assert_transpose_matches(got, x, w, b, stride=2, groups=2)
    out = np.empty((4, 13, 11))
    assert pcf.conv_transpose2d(x, w, b, stride=2, groups=2, out=out) is out
    np.testing.assert_array_equal(out, got)
    batched = pcf.conv_transpose2d(x[None], w, b, stride=2, groups=2)
    np.testing.assert_array_equal(batched[0], got)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_channels_last_is_zero_copy_and_strided_out(rng, name):
    x, w, b = _data(rng, (2, 5, 6, 3), (3, 4, 4, 4), np.float32)
    out_cf = np.empty((2, 4, 10, 12), np.float32)
    out = np.moveaxis(out_cf, 1, -1)  # an NHWC view of an NCHW buffer: strided channels
    got = pcf.conv_transpose2d(x, w, b, stride=2, padding=1, layout="NHWC", out=out,
                               algorithm=name)
    assert got is out
    assert_transpose_matches(got, x, w, b, stride=2, padding=1, layout="NHWC")


def test_empty_batch():
    got = pcf.conv_transpose2d(np.zeros((0, 3, 4, 4), np.float32),
                               np.zeros((3, 2, 2, 2), np.float32), stride=2)
    assert got.shape == (0, 2, 8, 8)


def test_n_threads_do_not_change_direct(rng):
    # (transpose_gemm and transpose_subpixel cut their GEMMs by thread count, so their bits may
    # differ in the last place; direct promises a fixed summation order.)
    x, w, b = _data(rng, (3, 8, 9, 9), (8, 6, 4, 4), np.float32)
    for name in ("transpose_direct",):
        runs = [pcf.conv_transpose2d(x, w, b, stride=2, padding=1, algorithm=name,
                                     n_threads=t) for t in (1, 2, 4)]
        for other in runs[1:]:
            np.testing.assert_array_equal(runs[0], other)


# --- PyTorch ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_matches_torch(seed):
    torch = pytest.importorskip("torch")
    n_spatial, x, w, b, kwargs, algorithm, _ = _random_case(SWEEP_SEED + 1, seed)
    # PyTorch pads transposed convolutions symmetrically: an asymmetric case keeps the smaller
    # side on both (which keeps the output non-empty).
    padding = kwargs["padding"]
    if isinstance(padding, list):
        padding = tuple(min(pair) for pair in padding)
    kwargs = dict(kwargs, padding=padding)
    channels_last = kwargs["layout"] == CHANNELS_LAST[n_spatial]
    x_cf = np.moveaxis(x, -1, 1 if x.ndim == n_spatial + 2 else 0) if channels_last else x
    w_t = w[(Ellipsis,) + (slice(None, None, -1),) * n_spatial] if kwargs["flip"] else w
    function = getattr(torch.nn.functional, f"conv_transpose{n_spatial}d")
    expected = function(
        torch.from_numpy(x_cf.copy()), torch.from_numpy(w_t.copy()),
        None if b is None else torch.from_numpy(b), stride=kwargs["stride"],
        padding=padding, output_padding=kwargs["output_padding"],
        groups=kwargs["groups"], dilation=kwargs["dilation"]).numpy()
    got = CONV_T[n_spatial](x, w, b, algorithm=algorithm, **kwargs)
    if channels_last:
        got = np.moveaxis(got, -1, 1 if got.ndim == n_spatial + 2 else 0)
    tol = 1e-4 if x.dtype == np.float32 else 1e-11
    scale = np.abs(conv_transpose_reference(np.abs(x), np.abs(w), None, **kwargs))
    if channels_last:
        scale = np.moveaxis(scale, -1, 1 if scale.ndim == n_spatial + 2 else 0)
    assert np.all(np.abs(got - expected) <= tol * (scale + 1)), (algorithm, kwargs)


# --- tuning, registry, plan ---------------------------------------------------------------------

def test_registry_keeps_kinds_apart():
    assert set(pcf.list_algorithms(transposed=True)) == set(ALGORITHMS)
    assert not set(pcf.list_algorithms()) & set(ALGORITHMS)
    assert _usable((1, 4, 8, 8), (4, 2, 3, 3)) == ["transpose_gemm", "transpose_direct"]
    assert "subpixel" not in " ".join(_usable((1, 4, 8, 8), (4, 2, 3, 3)))
    forward = pcf.list_algorithms((1, 4, 8, 8), (4, 4, 3, 3))
    assert not set(forward) & set(ALGORITHMS)


def test_forward_conv_refuses_transposed_algorithm():
    x, w = np.zeros((1, 4, 8, 8), np.float32), np.zeros((2, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="algorithm='transpose_gemm' cannot run this problem: "
                                         "a transposed-convolution algorithm"):
        pcf.conv2d(x, w, algorithm="transpose_gemm")


def test_transposed_refuses_forward_algorithm():
    x, w = np.zeros((1, 4, 8, 8), np.float32), np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"unknown algorithm='im2col' for a transposed "
                                         r"convolution; choose 'auto' or one of"):
        pcf.conv_transpose2d(x, w, algorithm="im2col")
    with pytest.raises(ValueError, match="algorithm='transpose_subpixel' cannot run this "
                                         "problem: needs a stride > 1"):
        pcf.conv_transpose2d(x, w, algorithm="transpose_subpixel")


def test_direct_refuses_huge_gathers():
    big = _transpose.make_problem((1, 21, 16, 16), (21, 21, 64, 64), n_spatial=2, stride=32)
    reason = registry.get("transpose_direct").supports(big)
    assert reason.startswith("the gather loop would visit 5.35e+11 (output, channel, tap) "
                             "triples, above 2.68e+08: use transpose_gemm")
    assert registry.names(big) == ["transpose_gemm", "transpose_subpixel"]


def test_heuristic_picks_a_transposed_algorithm():
    small = _transpose.make_problem((1, 2, 3, 3), (2, 2, 2, 2), n_spatial=2, stride=2)
    big = _transpose.make_problem((16, 256, 8, 8), (256, 128, 4, 4), n_spatial=2, stride=2,
                                  padding=1)
    assert _heuristic.choose(small) == "transpose_direct"
    assert _heuristic.choose(big) == "transpose_gemm"


def test_auto_is_tuned_and_cached_under_its_own_key(rng, monkeypatch):
    monkeypatch.setenv("PYCONVFAST_TUNE", "measure")
    pcf.tuning.clear()
    x, w, b = _data(rng, (2, 8, 7, 7), (8, 4, 4, 4), np.float32)
    got = pcf.conv_transpose2d(x, w, b, stride=2, padding=1, n_threads=1)
    assert_transpose_matches(got, x, w, b, stride=2, padding=1)
    # The forward convolution with the same arrays' shapes is a different problem.
    pcf.conv2d(np.zeros((2, 4, 7, 7), np.float32), np.zeros((8, 4, 4, 4), np.float32),
               n_threads=1)
    entries = {entry["key"]: entry for entry in pcf.tuning.report()}
    key = ("conv_transpose2d|n2|c8|k4|g1|in7x7|w4x4|s2x2|d1x1|p1x1-1x1|op0x0|float32|NCHW|"
           "flip0|threads1")
    assert key in entries
    assert entries[key]["algorithm"] in ALGORITHMS
    assert set(entries[key]["timings"]) == set(ALGORITHMS)
    assert any(k.startswith("conv2d|") for k in entries)
    problem = _transpose.make_problem(x.shape, w.shape, n_spatial=2, stride=2, padding=1,
                                      has_bias=True, dtype=np.float32)
    assert _autotune.cache_key(problem, 1) == key


def test_exhaustive_tunes_gemm_blocks(rng, monkeypatch):
    monkeypatch.setenv("PYCONVFAST_TUNE", "exhaustive")
    pcf.tuning.clear()
    x, w, b = _data(rng, (2, 8, 5, 5), (8, 20, 3, 3), np.float32)
    got = pcf.conv_transpose2d(x, w, b, stride=2, n_threads=1)
    assert_transpose_matches(got, x, w, b, stride=2)
    (entry,) = [e for e in pcf.tuning.report() if e["key"].startswith("conv_transpose2d")]
    assert "transpose_gemm[k_block=4]" in entry["timings"]
    assert "transpose_gemm[k_block=16]" in entry["timings"]


def test_plan_transposed(rng):
    x, w, b = _data(rng, (2, 6, 5, 5), (6, 3, 4, 4), np.float32)
    for algorithm in ALGORITHMS + ("auto",):
        p = pcf.plan(x.shape, w, b, stride=2, padding=1, output_size=(11, 10),
                     transposed=True, algorithm=algorithm)
        got = p(x)
        assert got.shape == (2, 3, 11, 10)
        assert_transpose_matches(got, x, w, b, stride=2, padding=1, output_padding=(1, 0))
        assert p.problem.key.startswith("conv_transpose2d|")
        assert "usable algorithms: transpose_gemm, transpose_subpixel, transpose_direct" \
            in p.explain()


def test_plan_refusals():
    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="output_padding and output_size are for transposed"):
        pcf.plan((1, 4, 8, 8), w, output_padding=1)
    with pytest.raises(ValueError, match="pads with zeros only, got padding_mode='reflect'"):
        pcf.plan((1, 4, 8, 8), w, transposed=True, padding_mode="reflect")
    with pytest.raises(TypeError, match="transposed must be a bool, got transposed=1"):
        pcf.plan((1, 4, 8, 8), w, transposed=1)
    with pytest.raises(ValueError, match="unknown algorithm='direct' for a transposed"):
        pcf.plan((1, 4, 8, 8), w, transposed=True, algorithm="direct")


def test_flops():
    problem = _transpose.make_problem((2, 8, 4, 4), (8, 3, 4, 4), n_spatial=2, stride=2)
    assert problem.flops == 2 * 2 * 8 * 3 * 16 * 16
    assert problem.out_size == out_size((4, 4), (4, 4), 2, 0, 0, 1) == (10, 10)


# --- bad inputs ---------------------------------------------------------------------------------

X2 = np.zeros((2, 4, 5, 5), np.float32)
W2 = np.zeros((4, 3, 3, 3), np.float32)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(output_padding=2, stride=2), ValueError,
     "output_padding must be smaller than stride or dilation on every axis; spatial axis 0 has "
     "output_padding 2, stride 2, dilation 1 (output_padding=2)"),
    (dict(output_padding=(0, 1)), ValueError,
     "spatial axis 1 has output_padding 1, stride 1, dilation 1 (output_padding=(0, 1))"),
    (dict(output_padding=-1), ValueError, "output_padding must be >= 0, got output_padding=-1"),
    (dict(output_padding=1.0, stride=2), TypeError,
     "output_padding must be an int, got float: output_padding=1.0"),
    (dict(output_padding=(1, 1, 1), stride=2), ValueError,
     "output_padding must be an int or 2 ints"),
    (dict(output_size=(13, 12), stride=2), ValueError,
     "output_size=(13, 12) cannot be reached: spatial axis 0 can have sizes 11 to 12"),
    (dict(output_size=(10, 11), stride=2), ValueError,
     "output_size=(10, 11) cannot be reached: spatial axis 0 can have sizes 11 to 12"),
    (dict(output_size=(11, 13), stride=2), ValueError,
     "output_size=(11, 13) cannot be reached: spatial axis 1 can have sizes 11 to 12"),
    (dict(output_size=(11,), stride=2), ValueError,
     "output_size must be 2 ints (the spatial sizes) or a whole 4-D shape"),
    (dict(output_size=11, stride=2), ValueError, "output_size must be 2 ints"),
    (dict(output_size=(11, 0), stride=2), ValueError, "output_size must be >= 1"),
    (dict(output_size=(11, 11.5), stride=2), TypeError, "output_size must be an int, got float"),
    (dict(output_size=(12, 12), output_padding=1, stride=2), ValueError,
     "give output_padding or output_size, not both"),
    (dict(padding="same"), ValueError,
     "padding of a transposed convolution must be an int, one int per axis or one (before, "
     "after) pair per axis, got padding='same'"),
    (dict(padding=4), ValueError, "padding=4 is too large: the output would have size -1"),
    (dict(padding=-1), ValueError, "padding must be >= 0, got padding=-1"),
    (dict(stride=0), ValueError, "stride must be >= 1, got stride=0"),
    (dict(dilation=(1, 0)), ValueError, "dilation must be >= 1, got dilation=(1, 0)"),
    (dict(stride=True), TypeError, "stride must be an int, got bool: stride=True"),
    (dict(groups=3), ValueError, "groups=3 must divide C_in=4"),
    (dict(groups=0), ValueError, "groups must be >= 1, got groups=0"),
    (dict(layout="NCL"), ValueError,
     "layout must be 'NCHW' or 'NHWC' for conv_transpose2d, got layout='NCL'"),
    (dict(flip=1), TypeError, "flip must be a bool, got flip=1"),
    (dict(algorithm="fast"), ValueError, "unknown algorithm='fast' for a transposed convolution"),
    (dict(n_threads=0), ValueError, "n_threads must be None or between 1"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error) as info:
        pcf.conv_transpose2d(X2, W2, **kwargs)
    assert message in str(info.value)


def test_bad_arrays():
    with pytest.raises(ValueError, match=r"x has C_in=3 channels but weight.shape\[0\]=4"):
        pcf.conv_transpose2d(np.zeros((2, 3, 5, 5), np.float32), W2)
    with pytest.raises(ValueError, match=r"x must be 4-D \(NCHW\) or 3-D \(unbatched\), got "
                                         r"x.shape=\(5, 5\)"):
        pcf.conv_transpose2d(np.zeros((5, 5), np.float32), W2)
    with pytest.raises(ValueError, match=r"weight must be 4-D \(C_in, C_out // groups, \*kernel\)"):
        pcf.conv_transpose2d(X2, np.zeros((4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="weight must have no empty axis"):
        pcf.conv_transpose2d(X2, np.zeros((4, 0, 3, 3), np.float32))
    with pytest.raises(ValueError, match="x must have at least one channel"):
        pcf.conv_transpose2d(np.zeros((2, 4, 0, 5), np.float32), W2)
    with pytest.raises(TypeError, match="x is float32 but weight is float64"):
        pcf.conv_transpose2d(X2, W2.astype(np.float64))
    with pytest.raises(TypeError, match="x has dtype int64"):
        pcf.conv_transpose2d(X2.astype(np.int64), W2)
    with pytest.raises(TypeError, match="x is float32 but bias is float64"):
        pcf.conv_transpose2d(X2, W2, np.zeros(3))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got bias.shape=\(4,\)"):
        pcf.conv_transpose2d(X2, W2, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(2, 3, 5, 5\), but the result has "
                                         r"shape \(2, 3, 7, 7\)"):
        pcf.conv_transpose2d(X2, W2, out=np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(TypeError, match="out has dtype float64, but the result is float32"):
        pcf.conv_transpose2d(X2, W2, out=np.zeros((2, 3, 7, 7)))
    with pytest.raises(ValueError, match="weight must be 3-, 4- or 5-D"):
        pcf.list_algorithms((1, 4, 5), (4, 3), transposed=True)


@pytest.mark.parametrize("min_columns", [1, 7, 13, 40])
def test_gemm_chunks_split_samples_and_rows(rng, monkeypatch, min_columns):
    """Chunks of input rows that end inside a sample, span samples, and cover one row."""
    monkeypatch.setattr(transpose_gemm, "GEMM_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(transpose_gemm, "GEMM_MIN_COLUMNS", min_columns)
    for x_shape, w_shape, kwargs in (
        ((3, 5, 6, 7), (5, 4, 4, 3), dict(stride=(2, 3), padding=1)),
        ((2, 4, 3, 4, 5), (4, 3, 2, 3, 3), dict(stride=2, padding=(0, 1, 1), output_padding=1)),
        ((3, 6, 11), (6, 5, 5), dict(stride=3, dilation=2, groups=2)),
    ):
        groups = kwargs.get("groups", 1)
        x, w, b = _data(rng, x_shape, w_shape, np.float32, groups=groups)
        n_spatial = len(x_shape) - 2
        got = CONV_T[n_spatial](x, w, b, algorithm="transpose_gemm", **kwargs)
        assert_transpose_matches(got, x, w, b, **kwargs)
