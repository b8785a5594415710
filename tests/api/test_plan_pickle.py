"""A Plan pickles (for Dask and multiprocessing) and the loaded plan computes the same bits.

Every registered algorithm, the transposed ones included, is pickled through a plan made for a
problem it can run; the loaded plan must run the same algorithm with the same parameters and
give bitwise the original plan's result. Pickling by name also means an algorithm whose
functions are lambdas or closures (Winograd's) pickles.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest

import pyconvfast as pcf

# (x shape, weight shape, keyword arguments, weight factory) per algorithm: one problem each can
# run, with padding, bias and flip where the algorithm allows them.
_RNG = np.random.default_rng(20260)


def _rank1_weight(shape, dtype):
    column = _RNG.standard_normal(shape[:2] + shape[2:3]).astype(dtype)
    row = _RNG.standard_normal(shape[:2] + shape[3:4]).astype(dtype)
    return column[..., :, None] * row[..., None, :]


CONV_CASES = {
    "direct": ((2, 5, 9, 11), (4, 5, 3, 2), dict(padding=((1, 0), (2, 1)), stride=(2, 1),
                                                 padding_mode="reflect")),
    "im2col": ((2, 6, 10, 9), (4, 3, 3, 3), dict(padding=1, groups=2, dilation=2)),
    "pointwise_packed": ((2, 6, 7, 9), (20, 3, 1, 1), dict(groups=2, layout="NHWC")),
    "depthwise": ((2, 6, 12, 12), (12, 1, 3, 3), dict(padding="same", groups=6,
                                                      padding_mode="circular")),
    "winograd_f2x2_3x3": ((2, 5, 13, 14), (7, 5, 3, 3), dict(padding=1, flip=True)),
    "winograd_f4x4_3x3": ((1, 6, 16, 15), (8, 6, 3, 3), dict(padding=1, layout="NHWC")),
    "winograd_f2x2_5x5": ((2, 4, 17, 14), (6, 4, 5, 5), dict(padding="same", dilation=(2, 3),
                                                          padding_mode="reflect")),
    "fft": ((1, 3, 40, 37), (4, 3, 11, 11), dict(padding="same", padding_mode="replicate")),
    "grouped": ((2, 8, 10, 10), (8, 2, 3, 3), dict(padding=1, groups=4)),
    "separable": ((2, 3, 14, 14), (4, 3, 5, 5), dict(padding=2), _rank1_weight),
}

TRANSPOSE_CASES = {
    "transpose_gemm": ((2, 4, 6, 7), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    "transpose_subpixel": ((2, 4, 6, 6), (4, 6, 4, 4), dict(stride=2, padding=1, groups=2)),
    "transpose_direct": ((1, 3, 5, 6), (3, 5, 3, 2), dict(stride=(1, 2), dilation=2)),
}


def _x_shape(shape, kwargs):
    if kwargs.get("layout") == "NHWC":
        return (shape[0], *shape[2:], shape[1])
    return shape


def _make(case, dtype, transposed):
    x_shape, w_shape, kwargs, *factory = case
    x_shape = _x_shape(x_shape, kwargs)
    weight = (factory[0](w_shape, dtype) if factory
              else _RNG.standard_normal(w_shape).astype(dtype))
    c_out = w_shape[1] * kwargs.get("groups", 1) if transposed else w_shape[0]
    bias = _RNG.standard_normal(c_out).astype(dtype)
    x = _RNG.standard_normal(x_shape).astype(dtype)
    return x, weight, bias, kwargs


def test_every_algorithm_is_covered():
    assert set(CONV_CASES) == set(pcf.list_algorithms())
    assert set(TRANSPOSE_CASES) == set(pcf.list_algorithms(transposed=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,transposed", [(n, False) for n in CONV_CASES]
                         + [(n, True) for n in TRANSPOSE_CASES])
def test_pickled_plan_gives_the_same_bits(name, transposed, dtype):
    case = (TRANSPOSE_CASES if transposed else CONV_CASES)[name]
    x, weight, bias, kwargs = _make(case, dtype, transposed)
    plan = pcf.plan(x.shape, weight, bias, algorithm=name, transposed=transposed, **kwargs)
    expected = plan(x)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        loaded = pickle.loads(pickle.dumps(plan, protocol=protocol))
        assert type(loaded) is pcf.Plan
        assert loaded.algorithm == plan.algorithm == name
        assert loaded.params == plan.params
        assert loaded.problem == plan.problem
        assert loaded.x_shape == plan.x_shape
        assert loaded.n_threads == plan.n_threads
        assert loaded.settled
        got = loaded(x)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        assert loaded.explain().splitlines()[:3] == plan.explain().splitlines()[:3]


def test_pickled_plan_keeps_precision_and_tuned_params():
    x, weight, bias, kwargs = _make(CONV_CASES["im2col"], np.float32, False)
    plan = pcf.plan(x.shape, weight, bias, algorithm="auto", precision="accurate", **kwargs)
    loaded = pickle.loads(pickle.dumps(plan))
    assert loaded.problem.precision == "accurate"
    assert (loaded.algorithm, loaded.params) == (plan.algorithm, plan.params)
    np.testing.assert_array_equal(loaded(x), plan(x))


def test_pickle_holds_the_weight_not_the_prepared_one():
    # Winograd's transformed weight is (4*4, C_out, C_in) per tile: re-prepared on load, never
    # shipped.
    weight = np.ones((64, 64, 3, 3), np.float32)
    plan = pcf.plan((1, 64, 8, 8), weight, padding=1, algorithm="winograd_f4x4_3x3")
    assert len(pickle.dumps(plan)) < weight.nbytes * 1.2


def test_unknown_pickle_version_is_refused():
    plan = pcf.plan((1, 2, 5), np.ones((3, 2, 3)), algorithm="direct")
    state = plan.__getstate__()
    state["version"] = 999
    restored = pcf.Plan.__new__(pcf.Plan)
    with pytest.raises(ValueError, match="incompatible version"):
        restored.__setstate__(state)


def test_algorithm_pickles_by_name():
    from pyconvfast._algorithms import registry

    for name in pcf.list_algorithms() + pcf.list_algorithms(transposed=True):
        algorithm = registry.get(name)
        assert pickle.loads(pickle.dumps(algorithm)) is algorithm


def test_plan_loads_in_another_process(tmp_path):
    x, weight, bias, kwargs = _make(CONV_CASES["winograd_f2x2_3x3"], np.float32, False)
    plan = pcf.plan(x.shape, weight, bias, algorithm="winograd_f2x2_3x3", **kwargs)
    (tmp_path / "plan.pkl").write_bytes(pickle.dumps(plan))
    np.save(tmp_path / "x.npy", x)
    script = (
        "import pickle, sys, numpy as np\n"
        "plan = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "np.save(sys.argv[3], plan(np.load(sys.argv[2])))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "plan.pkl"),
                    str(tmp_path / "x.npy"), str(tmp_path / "out.npy")],
                   check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), plan(x))


def test_transposed_plan_with_a_rank1_weight():
    # pcf.plan(transposed=True) used to mark the problem for the rank-1 ("separable")
    # algorithm, which only plain convolutions have: a TypeError for any rank-1 3x3 weight.
    x = np.ones((2, 2, 5, 5), np.float32)
    weight = np.ones((2, 4, 3, 3), np.float32)
    plan = pcf.plan(x.shape, weight, stride=2, transposed=True)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(plan))(x),
                                  pcf.conv_transpose2d(x, weight, stride=2))
