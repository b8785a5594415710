"""The public API's conventions: layouts, batching, out=, dtypes, shapes, padding="same",
list_algorithms, and inputs of every memory layout numpy can produce."""

import math
import pickle

import numpy as np
import pytest

import pyconvfast as pcf
from tests.helpers.cases import CONV, make_case
from tests.helpers.reference import assert_conv_matches, conv_reference, same_padding

CF = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
CL = {1: "NLC", 2: "NHWC", 3: "NDHWC"}
SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 6)}
KERNEL = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}


def problem(rng, n_spatial, dtype=np.float32, batch=2, c_in=4, c_out=6, groups=1):
    x = rng.standard_normal((batch, c_in) + SPATIAL[n_spatial]).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups) + KERNEL[n_spatial]).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


# --- public names --------------------------------------------------------------------------------

def test_public_names():
    for name in ("conv1d", "conv2d", "conv3d", "conv_output_shape", "list_algorithms",
                 "__version__"):
        assert name in pcf.__all__ and hasattr(pcf, name)
    assert isinstance(pcf.__version__, str) and pcf.__version__


# --- layouts and batching ------------------------------------------------------------------------

@pytest.mark.parametrize("n_spatial", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_last_equals_moveaxis_of_channels_first(n_spatial, dtype, rng):
    x, w, b = problem(rng, n_spatial, dtype)
    kwargs = dict(stride=2, padding=1, padding_mode="reflect")
    conv = CONV[n_spatial]
    first = conv(x, w, b, **kwargs)
    assert_conv_matches(first, x, w, b, **kwargs)
    for x_last in (np.moveaxis(x, 1, -1),                                   # a view
                   np.ascontiguousarray(np.moveaxis(x, 1, -1))):            # real NHWC memory
        last = conv(x_last, w, b, layout=CL[n_spatial], **kwargs)
        assert last.shape == np.moveaxis(first, 1, -1).shape
        assert_conv_matches(last, x_last, w, b, layout=CL[n_spatial], **kwargs)
        # "direct" runs a fixed summation order whatever the layout: bitwise the same.
        last_direct = conv(x_last, w, b, layout=CL[n_spatial], algorithm="direct", **kwargs)
        first_direct = conv(x, w, b, algorithm="direct", **kwargs)
        np.testing.assert_array_equal(last_direct, np.moveaxis(first_direct, 1, -1))
    # the explicit channels-first name is the default
    np.testing.assert_array_equal(conv(x, w, b, layout=CF[n_spatial], **kwargs), first)


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_unbatched(n_spatial, channels_last, rng):
    x, w, b = problem(rng, n_spatial, batch=1)
    kwargs = dict(padding="same", dilation=2)
    if channels_last:
        x = np.moveaxis(x, 1, -1)
        kwargs["layout"] = CL[n_spatial]
    batched = CONV[n_spatial](x, w, b, **kwargs)
    single = CONV[n_spatial](x[0], w, b, **kwargs)
    assert single.ndim == n_spatial + 1 and single.shape == batched.shape[1:]
    np.testing.assert_array_equal(single, batched[0])
    assert_conv_matches(single, x[0], w, b, **kwargs)
    out = np.empty_like(single)
    assert CONV[n_spatial](x[0], w, b, out=out, **kwargs) is out
    np.testing.assert_array_equal(out, single)


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_empty_batch(n_spatial, channels_last, rng):
    x, w, b = problem(rng, n_spatial, batch=0)
    kwargs = {"padding": 1, "stride": 2}
    if channels_last:
        x = np.moveaxis(x, 1, -1)
        kwargs["layout"] = CL[n_spatial]
    expected_shape = conv_reference(x, w, b, **kwargs).shape
    assert expected_shape[0] == 0
    got = CONV[n_spatial](x, w, b, **kwargs)
    assert got.shape == expected_shape == pcf.conv_output_shape(x.shape, w.shape, **kwargs)
    assert got.dtype == np.float32
    out = np.empty(expected_shape, np.float32)
    assert CONV[n_spatial](x, w, b, out=out, **kwargs) is out


# --- out= ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_spatial", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_is_returned_and_fully_written(n_spatial, dtype, rng):
    x, w, b = problem(rng, n_spatial, dtype)
    expected = CONV[n_spatial](x, w, b, padding=1)
    for algorithm in pcf.list_algorithms(x, w, padding=1) + ["auto"]:
        out = np.full(expected.shape, np.nan, dtype=dtype)
        result = CONV[n_spatial](x, w, b, padding=1, out=out, algorithm=algorithm)
        assert result is out
        assert not np.isnan(out).any()
        assert_conv_matches(out, x, w, b, padding=1, algorithm=algorithm)
        # Stale contents of out are overwritten, never accumulated into.
        out[...] = 1e30
        CONV[n_spatial](x, w, b, padding=1, out=out, algorithm=algorithm)
        assert_conv_matches(out, x, w, b, padding=1, algorithm=algorithm)


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
def test_out_channels_last(n_spatial, rng):
    x, w, b = problem(rng, n_spatial)
    x_last = np.moveaxis(x, 1, -1)
    shape = pcf.conv_output_shape(x_last.shape, w.shape, layout=CL[n_spatial])
    assert shape[-1] == w.shape[0]
    expected = np.moveaxis(CONV[n_spatial](x, w, b), 1, -1)
    # a C-contiguous NHWC out, and an NHWC-shaped view of NCHW memory
    for out in (np.full(shape, np.nan, np.float32),
                np.moveaxis(np.full(expected.shape[:1] + expected.shape[-1:]
                                    + expected.shape[1:-1], np.nan, np.float32), 1, -1)):
        assert CONV[n_spatial](x_last, w, b, layout=CL[n_spatial], out=out) is out
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
        assert_conv_matches(out, x_last, w, b, layout=CL[n_spatial])


def test_out_strided_view_leaves_neighbours_alone(rng):
    x, w, b = problem(rng, 2)
    shape = pcf.conv_output_shape(x.shape, w.shape)
    base = np.full((shape[0], shape[1] * 2, shape[2] + 3, shape[3] * 3), -7.0, np.float32)
    out = base[:, ::2, 1:-2, ::-3]
    assert out.shape == shape
    assert pcf.conv2d(x, w, b, out=out) is out
    assert_conv_matches(out, x, w, b)
    mask = np.ones(base.shape, bool)
    mask[:, ::2, 1:-2, ::-3] = False
    assert (base[mask] == -7.0).all(), "conv wrote outside the out view"


# --- dtypes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_spatial", [1, 2, 3])
def test_dtype_kept(n_spatial, rng):
    x, w, b = problem(rng, n_spatial, np.float64)
    r64 = CONV[n_spatial](x, w, b)
    r32 = CONV[n_spatial](x.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
    assert r64.dtype == np.float64 and r32.dtype == np.float32
    assert_conv_matches(r64, x, w, b)
    assert_conv_matches(r32, x.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
    # float64 really is computed in float64: it is far closer to the exact result than float32
    exact = conv_reference(x, w, b, dtype=np.longdouble)
    err64 = np.abs(r64 - exact).max()
    err32 = np.abs(r32.astype(np.float64) - exact).max()
    assert err64 < err32 * 1e-6


def test_array_likes_are_accepted(rng):
    x = [[[1.0, 2.0, 3.0, 4.0]]]
    w = [[[1.0, -1.0]]]
    got = pcf.conv1d(x, w)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_array_equal(got, [[[-1.0, -1.0, -1.0]]])


# --- conv_output_shape ---------------------------------------------------------------------------

def test_conv_output_shape_docs_examples():
    assert pcf.conv_output_shape((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3) == \
        (1, 64, 112, 112)
    assert pcf.conv_output_shape((32, 32, 3), (8, 3, 3, 3), padding="same", layout="NHWC") == \
        (32, 32, 8)
    assert pcf.conv_output_shape((2, 5, 10), (4, 5, 3)) == (2, 4, 8)
    assert pcf.conv_output_shape((5, 10), (4, 5, 3), padding=1) == (4, 10)
    assert pcf.conv_output_shape([2, 6, 9, 9, 9], [6, 2, 3, 3, 3], groups=3, stride=(1, 2, 3),
                                 dilation=2) == (2, 6, 5, 3, 2)
    # arrays are accepted in place of shapes
    assert pcf.conv_output_shape(np.empty((1, 3, 8)), np.empty((2, 3, 3))) == (1, 2, 6)


@pytest.mark.parametrize("block", range(4))
def test_conv_output_shape_agrees_with_result(block):
    for index in range(block * 60, block * 60 + 60):
        case = make_case(4242, index)
        x, w, b = case.arrays()
        kwargs = {k: v for k, v in case.kwargs.items() if k != "flip"}
        predicted = pcf.conv_output_shape(x.shape, w.shape, **kwargs)
        assert isinstance(predicted, tuple) and all(type(v) is int for v in predicted)
        got = CONV[case.n_spatial](x, w, b, **case.kwargs)
        assert got.shape == predicted == conv_reference(x, w, b, **case.kwargs).shape, \
            case.describe()


# --- padding="same" ------------------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_same_padding_shape_and_split(stride, rng):
    for size in range(1, 13):
        for k in range(1, 6):
            for dilation in (1, 2, 3):
                x = rng.standard_normal((1, 2, size))
                w = rng.standard_normal((3, 2, k))
                kwargs = dict(stride=stride, dilation=dilation)
                got = pcf.conv1d(x, w, padding="same", **kwargs)
                assert got.shape[-1] == math.ceil(size / stride), (size, k, stride, dilation)
                # the same result as the explicit (before, after) pair of the rule
                before, after = same_padding(size, k, stride, dilation)
                explicit = pcf.conv1d(x, w, padding=((before, after),), **kwargs)
                np.testing.assert_array_equal(got, explicit, err_msg=str((size, k, stride)))
                assert_conv_matches(got, x, w, padding="same", **kwargs)


def test_same_padding_extra_element_at_the_end():
    x = np.array([[[1.0, 2.0, 3.0]]])
    # k=2: total 1, before 0, after 1 -> [1+2, 2+3, 3+0]
    np.testing.assert_array_equal(pcf.conv1d(x, np.ones((1, 1, 2)), padding="same"),
                                  [[[3.0, 5.0, 3.0]]])
    # k=4: total 3, before 1, after 2 -> padded [0,1,2,3,0,0] (not [0,0,1,2,3,0]: 3, 6, 6)
    np.testing.assert_array_equal(pcf.conv1d(x, np.ones((1, 1, 4)), padding="same"),
                                  [[[6.0, 6.0, 5.0]]])
    # stride 2 on 6 samples, k=3 (TensorFlow): out 3, total 1 -> before 0, after 1
    x6 = np.arange(1.0, 7.0)[None, None]
    np.testing.assert_array_equal(pcf.conv1d(x6, np.ones((1, 1, 3)), padding="same", stride=2),
                                  [[[6.0, 12.0, 11.0]]])
    # 2-D, per-axis strides: H 5, k 2, s 2 -> total 1; W 6, k 3, s 4 -> out 2, total 1
    x2 = np.arange(30.0).reshape(1, 1, 5, 6)
    w2 = np.ones((1, 1, 2, 3))
    got = pcf.conv2d(x2, w2, padding="same", stride=(2, 4))
    assert got.shape == (1, 1, 3, 2)
    np.testing.assert_array_equal(
        got, conv_reference(x2, w2, padding=((0, 1), (0, 1)), stride=(2, 4)))


# --- list_algorithms -----------------------------------------------------------------------------

def test_list_algorithms_without_problem():
    names = pcf.list_algorithms()
    assert isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    assert "direct" in names and "auto" not in names
    assert len(set(names)) == len(names)


def test_list_algorithms_with_problem(rng):
    everything = pcf.list_algorithms()
    x, w, b = problem(rng, 2)
    for kwargs in ({}, {"stride": 2, "padding": "same"}, {"dilation": 2, "padding_mode": "reflect",
                   "padding": 2}, {"flip": True}, {"layout": "NHWC"}):
        xx = np.moveaxis(x, 1, -1) if kwargs.get("layout") == "NHWC" else x
        usable = pcf.list_algorithms(xx, w, **kwargs)
        assert "direct" in usable and set(usable) <= set(everything)
        assert usable == [n for n in everything if n in usable]  # registration order
        for name in usable:
            got = pcf.conv2d(xx, w, b, algorithm=name, **kwargs)
            assert_conv_matches(got, xx, w, b, algorithm=name, **kwargs)
        # shapes work as well as arrays
        assert pcf.list_algorithms(xx.shape, w.shape, dtype=np.float32, **kwargs) == usable
    dw = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    assert "direct" in pcf.list_algorithms((1, 8, 32, 32), dw.shape, groups=8)
    assert "direct" in pcf.list_algorithms((1, 8, 32, 32), (8, 1, 3, 3), groups=8,
                                           dtype=np.float64)


def test_problem_hash_is_kept_and_a_pickled_copy_makes_its_own():
    from pyconvfast._api import make_problem

    first = make_problem((2, 3, 9, 9), (4, 3, 3, 3), n_spatial=2, padding=1)
    twin = make_problem((2, 3, 9, 9), (4, 3, 3, 3), n_spatial=2, padding=1)
    other = make_problem((2, 3, 9, 9), (4, 3, 3, 3), n_spatial=2, padding=0)
    assert first is not twin and first == twin and hash(first) == hash(twin) == hash(first)
    assert first != other and len({first, twin, other}) == 2
    copy = pickle.loads(pickle.dumps(first))
    # the kept hash is of this process's string hashes: it must not travel with the copy
    assert "_hash" not in copy.__dict__ and copy == first and hash(copy) == hash(first)


# --- inputs of every memory layout ---------------------------------------------------------------

def test_read_only_inputs(rng):
    x, w, b = problem(rng, 2)
    expected = pcf.conv2d(x, w, b, padding=1)
    for array in (x, w, b):
        array.setflags(write=False)
    np.testing.assert_array_equal(pcf.conv2d(x, w, b, padding=1), expected)
    np.testing.assert_array_equal(pcf.conv2d(x, w, b, padding=1, flip=True, algorithm="direct"),
                                  pcf.conv2d(x.copy(), w.copy(), b.copy(), padding=1, flip=True,
                                             algorithm="direct"))


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
def test_fortran_ordered_inputs(n_spatial, rng):
    x, w, b = problem(rng, n_spatial, np.float64)
    xf, wf = np.asfortranarray(x), np.asfortranarray(w)
    assert xf.flags.f_contiguous and not xf.flags.c_contiguous
    got = CONV[n_spatial](xf, wf, b, padding=1, stride=2)
    assert_conv_matches(got, x, w, b, padding=1, stride=2)
    # "direct" sums in a fixed order whatever the strides: bitwise the same as C order
    np.testing.assert_array_equal(
        CONV[n_spatial](xf, wf, b, padding=1, stride=2, algorithm="direct"),
        CONV[n_spatial](x, w, b, padding=1, stride=2, algorithm="direct"))


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
def test_broadcast_inputs(n_spatial, rng):
    """Zero-stride arrays from np.broadcast_to (read-only, overlapping memory)."""
    c_in, c_out = 3, 5
    row = rng.standard_normal(SPATIAL[n_spatial][-1]).astype(np.float32)
    x = np.broadcast_to(row, (2, c_in) + SPATIAL[n_spatial])
    assert x.strides[0] == 0 and x.strides[1] == 0
    w = np.broadcast_to(rng.standard_normal(KERNEL[n_spatial]).astype(np.float32),
                        (c_out, c_in) + KERNEL[n_spatial])
    b = np.broadcast_to(np.float32(0.25), (c_out,))
    for kwargs in ({}, {"padding": 1, "padding_mode": "circular"}, {"flip": True, "stride": 2}):
        got = CONV[n_spatial](x, w, b, **kwargs)
        assert_conv_matches(got, x, w, b, **kwargs)
    # a broadcast along the last (innermost) spatial axis: x_step of 0 inside the kernel
    col = rng.standard_normal((2, c_in) + SPATIAL[n_spatial][:-1] + (1,)).astype(np.float32)
    x = np.broadcast_to(col, (2, c_in) + SPATIAL[n_spatial])
    assert x.strides[-1] == 0
    got = CONV[n_spatial](x, w, b, padding=2, padding_mode="reflect")
    assert_conv_matches(got, x, w, b, padding=2, padding_mode="reflect")


def test_negative_and_odd_strides(rng):
    x = rng.standard_normal((3, 4, 9, 10))
    w = rng.standard_normal((5, 4, 3, 3))
    xv = x[::-1, ::-2, 1:, ::-3]
    wv = np.ascontiguousarray(np.swapaxes(w, 2, 3)[:, ::-1]).swapaxes(2, 3)[:, :2]
    got = pcf.conv2d(xv, wv, padding=1)
    assert_conv_matches(got, xv, wv, padding=1)


def test_unaligned_input(rng):
    x = rng.standard_normal((1, 2, 11))
    buffer = np.zeros(x.nbytes + 1, np.uint8)
    unaligned = np.frombuffer(buffer[1:].data, dtype=np.float64).reshape(x.shape)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    w = rng.standard_normal((3, 2, 3))
    np.testing.assert_array_equal(pcf.conv1d(unaligned, w, padding=1), pcf.conv1d(x, w, padding=1))


def test_structured_field_view(rng):
    """A field of a structured array: stride 12 bytes for 8-byte floats."""
    records = np.zeros((1, 2, 10), dtype=[("a", np.float64), ("b", np.float32)])
    records["a"] = rng.standard_normal(records.shape)
    x = records["a"]
    w = rng.standard_normal((3, 2, 3))
    got = pcf.conv1d(x, w, padding=1)
    assert_conv_matches(got, x, w, padding=1)


def test_inputs_not_modified(rng):
    x, w, b = problem(rng, 2)
    copies = [a.copy() for a in (x, w, b)]
    pcf.conv2d(x, w, b, padding=2, padding_mode="reflect", flip=True)
    for array, copy in zip((x, w, b), copies):
        np.testing.assert_array_equal(array, copy)


# --- scalar arguments ----------------------------------------------------------------------------

def test_numpy_integer_and_list_arguments(rng):
    x, w, b = problem(rng, 2)
    expected = pcf.conv2d(x, w, b, stride=(2, 1), padding=((1, 0), (2, 2)), dilation=(1, 2))
    got = pcf.conv2d(x, w, b, stride=[np.int64(2), np.int32(1)],
                     padding=[[np.int8(1), 0], (np.uint16(2), 2)], dilation=[1, np.int64(2)],
                     groups=np.int64(1), flip=np.bool_(False), n_threads=np.int64(1))
    np.testing.assert_array_equal(got, expected)


def test_n_threads_values(rng):
    x, w, b = problem(rng, 2)
    expected = pcf.conv2d(x, w, b, algorithm="direct", n_threads=1)
    for n_threads in (None, 1, 2, 7, np.int32(3)):
        np.testing.assert_array_equal(pcf.conv2d(x, w, b, algorithm="direct",
                                                 n_threads=n_threads), expected)


# --- huge geometry values: index arithmetic must not overflow ------------------------------------

def test_huge_geometry_without_huge_output():
    x = np.arange(1.0, 5.0).reshape(1, 1, 4)
    one = np.ones((1, 1, 1))
    # taps at padded positions 0, 2**62, 2**63 (outputs -2**62, 0, 2**62 in input coordinates)
    np.testing.assert_array_equal(pcf.conv1d(x, one, padding=2**62, stride=2**62), [[[0, 1, 0]]])
    np.testing.assert_array_equal(
        pcf.conv1d(x, one, padding=2**62, stride=2**62, padding_mode="circular"), [[[1, 1, 1]]])
    np.testing.assert_array_equal(
        pcf.conv1d(x, one, padding=2**62, stride=2**62, padding_mode="replicate"), [[[1, 1, 4]]])
    w3 = np.array([[[1.0, 10.0, 100.0]]])
    # "same" with dilation 2**62: only the centre tap lands inside the input
    np.testing.assert_array_equal(pcf.conv1d(x, w3, padding="same", dilation=2**62),
                                  [[[10, 20, 30, 40]]])
    # circular: the outer taps are 2**62 away, a multiple of 4, so they read the same sample
    np.testing.assert_array_equal(
        pcf.conv1d(x, w3, padding="same", dilation=2**62, padding_mode="circular"),
        [[[111, 222, 333, 444]]])
    np.testing.assert_array_equal(
        pcf.conv1d(x, w3, padding="same", dilation=2**62, padding_mode="replicate"),
        [[[411, 421, 431, 441]]])
    # TF "same", stride 2**62: out 1, total 2**62 - 3, before 2**61 - 2: centre tap reads x[2]
    np.testing.assert_array_equal(
        pcf.conv1d(x, w3, padding="same", dilation=2**61, stride=2**62), [[[30]]])


def test_nan_and_inf_reach_only_the_outputs_that_read_them(rng):
    """'direct' multiplies only taps that exist: a NaN/inf in x spoils exactly the outputs whose
    window contains it, as in the reference."""
    x = rng.standard_normal((1, 2, 9, 10))
    x[0, 1, 4, 0] = np.nan
    x[0, 0, 8, 9] = np.inf
    w = rng.standard_normal((3, 2, 3, 3))
    for kwargs in ({"padding": 1}, {"stride": 2, "padding": "same", "padding_mode": "circular"}):
        got = pcf.conv2d(x, w, algorithm="direct", **kwargs)
        ref = conv_reference(x, w, **kwargs)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        assert np.isfinite(got).sum() > 0


def test_an_algorithm_that_cannot_run_says_why():
    """Asking for a registered algorithm that list_algorithms leaves out is a ValueError saying
    why (vacuous while every algorithm runs every problem)."""
    everything = pcf.list_algorithms()
    for index in range(100):
        case = make_case(99, index)
        x, w, b = case.arrays()
        usable = pcf.list_algorithms(x, w, **case.kwargs)
        for name in everything:
            if name in usable:
                continue
            with pytest.raises(ValueError, match=f"algorithm={name!r} cannot run this problem: "):
                CONV[case.n_spatial](x, w, b, algorithm=name, **case.kwargs)
