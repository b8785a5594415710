"""Every bad input gives a ValueError or TypeError that names the argument and its value, raised
before any large allocation."""

import re
import time

import numpy as np
import pytest

import pyconvfast as pcf

F32 = np.float32


@pytest.fixture
def x2():
    return np.zeros((2, 4, 8, 8), F32)


@pytest.fixture
def w2():
    return np.zeros((6, 4, 3, 3), F32)


def esc(text):
    return re.escape(text)


# --- shapes --------------------------------------------------------------------------------------

def test_x_wrong_ndim(w2):
    with pytest.raises(ValueError, match=r"x must be 4-D.*3-D.*x\.shape=\(4, 8\)"):
        pcf.conv2d(np.zeros((4, 8), F32), w2)
    with pytest.raises(ValueError, match=r"x must be 4-D.*x\.shape=\(1, 2, 4, 8, 8\)"):
        pcf.conv2d(np.zeros((1, 2, 4, 8, 8), F32), w2)
    with pytest.raises(ValueError, match=r"x must be 3-D.*x\.shape=\(4,\)"):
        pcf.conv1d(np.zeros(4, F32), np.zeros((1, 1, 1), F32))


def test_weight_wrong_ndim(x2):
    with pytest.raises(ValueError, match=r"weight must be 4-D.*weight\.shape=\(6, 4, 3\)"):
        pcf.conv2d(x2, np.zeros((6, 4, 3), F32))
    with pytest.raises(ValueError, match=r"weight must be 5-D.*weight\.shape=\(6, 4, 3, 3\)"):
        pcf.conv3d(np.zeros((1, 4, 5, 5, 5), F32), np.zeros((6, 4, 3, 3), F32))


def test_conv_output_shape_weight_ndim():
    with pytest.raises(ValueError, match=r"weight must be 3-, 4- or 5-D.*\(6, 4\)"):
        pcf.conv_output_shape((1, 4, 8), (6, 4))


def test_channels_do_not_match(x2):
    with pytest.raises(ValueError, match=r"C_in=4.*weight\.shape\[1\] \* groups = 3 \* 1 = 3"):
        pcf.conv2d(x2, np.zeros((6, 3, 3, 3), F32))
    with pytest.raises(ValueError, match=r"C_in=4.*= 1 \* 2 = 2"):
        pcf.conv2d(x2, np.zeros((6, 1, 3, 3), F32), groups=2)
    # channels-last: C_in is the last axis
    with pytest.raises(ValueError, match=r"C_in=8 .*layout='NHWC'"):
        pcf.conv2d(x2, np.zeros((6, 4, 3, 3), F32), layout="NHWC")


def test_empty_axes(w2):
    with pytest.raises(ValueError, match=r"x must have at least one channel.*x\.shape=\(1, 4, 0, 8\)"):
        pcf.conv2d(np.zeros((1, 4, 0, 8), F32), w2)
    with pytest.raises(ValueError, match=r"x must have at least one channel.*x\.shape=\(1, 0, 8, 8\)"):
        pcf.conv2d(np.zeros((1, 0, 8, 8), F32), np.zeros((6, 0, 3, 3), F32))
    with pytest.raises(ValueError, match=r"weight must have no empty axis.*\(0, 4, 3, 3\)"):
        pcf.conv2d(np.zeros((1, 4, 8, 8), F32), np.zeros((0, 4, 3, 3), F32))
    with pytest.raises(ValueError, match=r"weight must have no empty axis.*\(6, 4, 3, 0\)"):
        pcf.conv2d(np.zeros((1, 4, 8, 8), F32), np.zeros((6, 4, 3, 0), F32))


# --- groups --------------------------------------------------------------------------------------

@pytest.mark.parametrize("groups", [0, -1, -4])
def test_groups_not_positive(x2, w2, groups):
    with pytest.raises(ValueError, match=esc(f"groups must be >= 1, got groups={groups}")):
        pcf.conv2d(x2, w2, groups=groups)


def test_groups_not_dividing_c_in():
    with pytest.raises(ValueError, match=r"groups=3 must divide both C_in=4 and C_out=6"):
        pcf.conv2d(np.zeros((1, 4, 5, 5), F32), np.zeros((6, 1, 3, 3), F32), groups=3)


def test_groups_not_dividing_c_out():
    with pytest.raises(ValueError, match=r"groups=2 must divide both C_in=4 and C_out=5"):
        pcf.conv2d(np.zeros((1, 4, 5, 5), F32), np.zeros((5, 2, 3, 3), F32), groups=2)


def test_groups_float(x2, w2):
    with pytest.raises(TypeError, match=esc("groups must be an int, got float: groups=2.0")):
        pcf.conv2d(x2, np.zeros((6, 2, 3, 3), F32), groups=2.0)


# --- stride, dilation, padding integers ----------------------------------------------------------

@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0), [-2, 1]])
def test_stride_dilation_below_one(x2, w2, name, value):
    with pytest.raises(ValueError, match=esc(f"{name} must be >= 1, got {name}={value!r}")):
        pcf.conv2d(x2, w2, **{name: value})


@pytest.mark.parametrize("value", [-1, (0, -1), ((0, 1), (-1, 0))])
def test_negative_padding(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"padding must be >= 0, got padding={value!r}")):
        pcf.conv2d(x2, w2, padding=value)


@pytest.mark.parametrize("name, value, type_name", [
    ("stride", 1.5, "float"), ("stride", 2.0, "float"), ("dilation", 1.0, "float"),
    ("padding", 1.0, "float"), ("padding", (1, 1.0), "float"),
    ("padding", ((1, 1), (0, 0.5)), "float"), ("stride", "2", "str"), ("stride", None, "NoneType"),
    ("groups", 2.0, "float"),
])
def test_float_or_other_where_int_needed(x2, w2, name, value, type_name):
    with pytest.raises(TypeError, match=esc(f"{name} must be an int, got {type_name}: "
                                            f"{name}={value!r}")):
        pcf.conv2d(x2, w2, **{name: value})


@pytest.mark.parametrize("function", [pcf.conv2d, pcf.conv_transpose2d])
@pytest.mark.parametrize("name, valid, invalid, type_name", [
    ("stride", 1, 1.0, "float"), ("stride", 1, True, "bool"), ("dilation", 1, True, "bool"),
    ("padding", (1, 1), (1, 1.0), "float"), ("groups", 1, True, "bool"),
])
def test_a_remembered_valid_call_does_not_vouch_for_an_equal_invalid_one(
        x2, function, name, valid, invalid, type_name):
    """1 == 1.0 == True: the problems remembered per call must tell them apart."""
    w = np.zeros((4, 4, 3, 3), F32)  # (C_out, C_in, ...) and (C_in, C_out, ...) alike
    function(x2, w, **{name: valid})
    with pytest.raises(TypeError, match=esc(f"{name} must be an int, got {type_name}")):
        function(x2, w, **{name: invalid})


@pytest.mark.parametrize("name, value", [
    ("stride", True), ("dilation", False), ("padding", True), ("groups", True),
    ("stride", (1, True)), ("padding", ((0, np.True_), (0, 0))),
])
def test_bool_where_int_needed(x2, w2, name, value):
    with pytest.raises(TypeError, match=esc(f"{name} must be an int, got bool: {name}={value!r}")):
        pcf.conv2d(x2, w2, **{name: value})


@pytest.mark.parametrize("name, value", [
    ("stride", (1, 1, 1)), ("stride", (1,)), ("dilation", [1, 1, 1]), ("dilation", ()),
])
def test_stride_dilation_wrong_length(x2, w2, name, value):
    with pytest.raises(ValueError, match=esc(f"{name} must be an int or 2 ints (one per spatial "
                                             f"axis), got {name}={value!r}")):
        pcf.conv2d(x2, w2, **{name: value})


@pytest.mark.parametrize("value", [(1, 1, 1), (1,), [], ((1, 1),)])
def test_padding_wrong_length(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"padding must have 2 entries (one per spatial "
                                             f"axis), got padding={value!r}")):
        pcf.conv2d(x2, w2, padding=value)


def test_padding_pair_wrong_length_1d():
    # conv1d: (1, 2) is two entries, not one (before, after) pair
    with pytest.raises(ValueError, match=esc("padding must have 1 entries")):
        pcf.conv1d(np.zeros((1, 1, 8), F32), np.zeros((1, 1, 3), F32), padding=(1, 2))


@pytest.mark.parametrize("value", [((1, 2, 3), (0, 0)), ((1,), (0, 0)), ((), 1)])
def test_padding_bad_pair_length(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"each padding pair must be (before, after), got "
                                             f"padding={value!r}")):
        pcf.conv2d(x2, w2, padding=value)


@pytest.mark.parametrize("value", ["full", "SAME", "", "causal"])
def test_unknown_padding_string(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"'valid' or 'same', got padding={value!r}")):
        pcf.conv2d(x2, w2, padding=value)


# --- kernel against input ------------------------------------------------------------------------

def test_kernel_larger_than_input():
    x = np.zeros((1, 1, 4, 8), F32)
    with pytest.raises(ValueError, match=r"kernel \(size 5, dilation 1, extent 5\) is larger than "
                                         r"the padded input \(4 \+ 0 \+ 0\) on spatial axis 0"):
        pcf.conv2d(x, np.zeros((1, 1, 5, 3), F32))
    with pytest.raises(ValueError, match=r"kernel \(size 3, dilation 4, extent 9\) is larger than "
                                         r"the padded input \(8 \+ 0 \+ 0\) on spatial axis 1"):
        pcf.conv2d(x, np.zeros((1, 1, 3, 3), F32), dilation=(1, 4))
    with pytest.raises(ValueError, match=r"larger than the padded input \(4 \+ 1 \+ 0\)"):
        pcf.conv2d(x, np.zeros((1, 1, 6, 1), F32), padding=((1, 0), (0, 0)))


def test_kernel_fits_only_with_padding():
    x = np.ones((1, 1, 4), F32)
    w = np.ones((1, 1, 6), F32)
    assert pcf.conv1d(x, w, padding=1).shape == (1, 1, 1)


# --- padding_mode, layout, flip ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["mirror", "constant", "ZEROS", None, 0])
def test_unknown_padding_mode(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"got padding_mode={value!r}")):
        pcf.conv2d(x2, w2, padding_mode=value)


@pytest.mark.parametrize("value", ["NCWH", "nchw", "NCL", "NCDHW", "", 2])
def test_unknown_layout(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"layout must be 'NCHW' or 'NHWC' for conv2d, got "
                                             f"layout={value!r}")):
        pcf.conv2d(x2, w2, layout=value)


def test_2d_layout_for_conv1d():
    with pytest.raises(ValueError, match=esc("layout must be 'NCL' or 'NLC' for conv1d, got "
                                             "layout='NCHW'")):
        pcf.conv1d(np.zeros((1, 2, 8), F32), np.zeros((3, 2, 3), F32), layout="NCHW")
    with pytest.raises(ValueError, match=esc("for conv3d, got layout='NHWC'")):
        pcf.conv3d(np.zeros((1, 2, 4, 4, 4), F32), np.zeros((3, 2, 1, 1, 1), F32), layout="NHWC")


@pytest.mark.parametrize("padding", [4, 5, ((0, 0), (0, 8)), "same"])
def test_reflect_padding_not_smaller_than_input(padding):
    x = np.zeros((1, 1, 4, 8), F32)
    w = np.zeros((1, 1, 9, 1), F32) if padding == "same" else np.zeros((1, 1, 1, 1), F32)
    with pytest.raises(ValueError, match=r"padding_mode='reflect' needs padding smaller than the "
                                         r"input size; spatial axis \d has size \d"):
        pcf.conv2d(x, w, padding=padding, padding_mode="reflect")
    # the same padding is fine for the other modes (numpy's wrap/edge repeat as needed)
    if padding != "same":
        pcf.conv2d(x, w, padding=padding, padding_mode="circular")


def test_reflect_largest_allowed_padding():
    x = np.arange(4.0).reshape(1, 1, 4)
    got = pcf.conv1d(x, np.ones((1, 1, 1)), padding=3, padding_mode="reflect")
    np.testing.assert_array_equal(got, [[[3, 2, 1, 0, 1, 2, 3, 2, 1, 0]]])


@pytest.mark.parametrize("value", ["yes", 1, 0, None, "False"])
def test_flip_not_bool(x2, w2, value):
    with pytest.raises(TypeError, match=esc(f"flip must be a bool, got flip={value!r}")):
        pcf.conv2d(x2, w2, flip=value)


# --- bias ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5,), (7,), (6, 1), (1, 6), ()])
def test_bias_wrong_shape(x2, w2, shape):
    with pytest.raises(ValueError, match=esc(f"bias must have shape (6,), got bias.shape={shape}")):
        pcf.conv2d(x2, w2, np.zeros(shape, F32))


def test_bias_wrong_dtype(x2, w2):
    with pytest.raises(TypeError, match="x is float32 but bias is float64"):
        pcf.conv2d(x2, w2, np.zeros(6, np.float64))
    with pytest.raises(TypeError, match="bias has dtype int64"):
        pcf.conv2d(x2, w2, np.zeros(6, np.int64))


# --- out -----------------------------------------------------------------------------------------

def test_out_wrong_shape(x2, w2):
    with pytest.raises(ValueError, match=esc("out has shape (2, 6, 8, 8), but the result has shape "
                                             "(2, 6, 6, 6)")):
        pcf.conv2d(x2, w2, out=np.zeros((2, 6, 8, 8), F32))
    # channels-first out for a channels-last problem
    # (x2 read as NHWC is H=4, W=8, C=8: the result is (2, 2, 6, 6))
    with pytest.raises(ValueError, match=esc("out has shape (2, 6, 2, 6), but the result has shape "
                                             "(2, 2, 6, 6)")):
        pcf.conv2d(x2, np.zeros((6, 8, 3, 3), F32), layout="NHWC",
                   out=np.zeros((2, 6, 2, 6), F32))


def test_out_wrong_dtype(x2, w2):
    with pytest.raises(TypeError, match="out has dtype float64, but the result is float32"):
        pcf.conv2d(x2, w2, out=np.zeros((2, 6, 6, 6), np.float64))
    with pytest.raises(TypeError, match="out has dtype int32, but the result is float32"):
        pcf.conv2d(x2, w2, out=np.zeros((2, 6, 6, 6), np.int32))


def test_out_read_only(x2, w2):
    out = np.zeros((2, 6, 6, 6), F32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        pcf.conv2d(x2, w2, out=out)
    with pytest.raises(ValueError, match="out is read-only"):
        pcf.conv2d(x2, w2, out=np.broadcast_to(np.float32(0), (2, 6, 6, 6)))


@pytest.mark.parametrize("value", [[0.0] * 6, 1.0, "out"])
def test_out_not_an_ndarray(x2, w2, value):
    with pytest.raises(TypeError, match=esc(f"out must be a numpy.ndarray, got "
                                            f"{type(value).__name__}")):
        pcf.conv2d(x2, w2, out=value)


def test_out_overlapping_inputs():
    x = np.zeros((1, 1, 6), F32)
    with pytest.raises(ValueError, match="out shares memory with x"):
        pcf.conv1d(x, np.ones((1, 1, 1), F32), out=x)
    buffer = np.zeros(64, F32)
    x = buffer[:6].reshape(1, 1, 6)
    with pytest.raises(ValueError, match="out shares memory with x"):
        pcf.conv1d(x, np.ones((2, 1, 3), F32), out=buffer[4:12].reshape(1, 2, 4))
    w = buffer[20:26].reshape(2, 1, 3)
    with pytest.raises(ValueError, match="out shares memory with weight"):
        pcf.conv1d(np.ones((1, 1, 6), F32), w, out=buffer[18:26].reshape(1, 2, 4))
    bias = buffer[40:42]
    with pytest.raises(ValueError, match="out shares memory with bias"):
        pcf.conv1d(np.ones((1, 1, 6), F32), np.ones((2, 1, 3), F32), bias,
                   out=buffer[36:44].reshape(1, 2, 4))


def test_out_interleaved_with_x_but_not_overlapping():
    """out and x interleaved in one buffer share no element: the call is legal and correct.

    ``np.may_share_memory`` only compares address ranges, so it reports an overlap here.
    """
    buffer = np.zeros((1, 2, 6), F32)
    x = buffer[:, :1]  # channel 0
    out = buffer[:, 1:]  # channel 1
    x[...] = np.arange(6.0)
    assert not np.shares_memory(x, out)
    result = pcf.conv1d(x, np.full((1, 1, 1), 2.0, F32), out=out)
    assert result is out
    np.testing.assert_array_equal(out, 2 * np.arange(6.0)[None, None])

    grid = np.zeros((1, 1, 12), F32)
    x, out = grid[..., ::2], grid[..., 1::2]
    x[...] = 1.0
    pcf.conv1d(x, np.ones((1, 1, 1), F32), out=out)
    np.testing.assert_array_equal(out, 1.0)


# --- dtypes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.float16,
                                   np.complex64, np.complex128, np.longdouble, object])
def test_unsupported_x_dtype(w2, dtype):
    x = np.zeros((2, 4, 8, 8), dtype)
    with pytest.raises(TypeError, match=esc(f"x has dtype {np.dtype(dtype)}; pyconvfast computes in "
                                            f"float32 or float64")):
        pcf.conv2d(x, w2)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64])
def test_unsupported_weight_dtype(x2, dtype):
    with pytest.raises(TypeError, match=esc(f"weight has dtype {np.dtype(dtype)}")):
        pcf.conv2d(x2, np.zeros((6, 4, 3, 3), dtype))


def test_non_native_byte_order(x2, w2):
    with pytest.raises(TypeError, match=r"x has dtype >f4.*native byte order"):
        pcf.conv2d(x2.astype(">f4"), w2)


def test_mixed_float32_float64(x2, w2):
    with pytest.raises(TypeError, match="x is float32 but weight is float64"):
        pcf.conv2d(x2, w2.astype(np.float64))
    with pytest.raises(TypeError, match="x is float64 but weight is float32"):
        pcf.conv2d(x2.astype(np.float64), w2)


def test_integer_lists_are_integers(w2):
    with pytest.raises(TypeError, match="x has dtype int"):
        pcf.conv1d([[[1, 2, 3]]], np.ones((1, 1, 1), F32))


# --- huge geometry -------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("padding", [2**62, (0, 2**62), ((2**62, 0), (0, 0))])
def test_huge_padding_is_refused_quickly(batch, padding):
    x = np.zeros((batch, 2, 8, 8), F32)
    w = np.zeros((3, 2, 3, 3), F32)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"padding="):
        pcf.conv2d(x, w, padding=padding)
    assert time.perf_counter() - start < 0.5  # no attempt to allocate or fill 2**62 elements


def test_huge_padding_with_empty_batch():
    """N=0: the result has no element, but a spatial size of 2**63 + 2 exceeds what numpy can
    represent (int64 shape). The error must still be a clear ValueError naming padding."""
    x = np.zeros((0, 1, 4), F32)
    w = np.zeros((1, 1, 3), F32)
    with pytest.raises(ValueError, match=r"padding"):
        pcf.conv1d(x, w, padding=2**62)


@pytest.mark.parametrize("name", ["padding", "stride", "dilation", "groups"])
@pytest.mark.parametrize("value", [2**62 + 1, 2**63, 2**64 + 5, 10**30])
def test_geometry_ints_above_2_62(x2, w2, name, value):
    with pytest.raises(ValueError, match=esc(f"{name} must be at most 2**62, got {name}={value}")):
        pcf.conv2d(x2, w2, **{name: value})
    if name != "groups":  # the per-axis forms
        with pytest.raises(ValueError, match=esc(f"{name} must be at most 2**62")):
            pcf.conv2d(x2, w2, **{name: (1, value)})


def test_huge_dilation_kernel_does_not_fit(x2, w2):
    with pytest.raises(ValueError, match=r"extent 9223372036854775809\) is larger than the padded"):
        pcf.conv2d(x2, w2, dilation=2**62)


# --- algorithm, n_threads ------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["fastest", "Direct", "", None, 3])
def test_unknown_algorithm(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"unknown algorithm={value!r}; choose 'auto' or one of")):
        pcf.conv2d(x2, w2, algorithm=value)


@pytest.mark.parametrize("value", [0, -1])
def test_n_threads_below_one(x2, w2, value):
    with pytest.raises(ValueError, match=esc(f"n_threads must be None or between 1 and 32768, "
                                             f"got n_threads={value}")):
        pcf.conv2d(x2, w2, n_threads=value)


@pytest.mark.parametrize("value", [1.5, 2.0, True, False, "2"])
def test_n_threads_not_int(x2, w2, value):
    with pytest.raises(TypeError, match=esc(f"n_threads must be an int or None, got "
                                            f"n_threads={value!r}")):
        pcf.conv2d(x2, w2, n_threads=value)


@pytest.mark.parametrize("value", [2**31, 2**40, 2**70])
def test_n_threads_huge(x2, w2, value):
    """Too many threads to represent is a ValueError naming n_threads, not an OverflowError
    from deep inside the kernel call."""
    with pytest.raises(ValueError, match=r"n_threads"):
        pcf.conv2d(x2, w2, n_threads=value)


# --- list_algorithms, conv_output_shape ----------------------------------------------------------

def test_list_algorithms_needs_both():
    with pytest.raises(ValueError, match="needs both x and weight"):
        pcf.list_algorithms((1, 4, 8, 8))
    with pytest.raises(ValueError, match="needs both x and weight"):
        pcf.list_algorithms(weight=(6, 4, 3, 3))


def test_list_algorithms_validates_the_problem():
    with pytest.raises(ValueError, match=r"groups=3 must divide"):
        pcf.list_algorithms((1, 4, 8, 8), (6, 1, 3, 3), groups=3)
    with pytest.raises(TypeError, match="stride must be an int"):
        pcf.list_algorithms((1, 4, 8, 8), (6, 4, 3, 3), stride=1.5)


def test_conv_output_shape_errors():
    with pytest.raises(ValueError, match=r"x_shape shape must be >= 0"):
        pcf.conv_output_shape((1, -4, 8), (6, 4, 3))
    with pytest.raises(TypeError, match=r"x_shape shape must be an int, got float"):
        pcf.conv_output_shape((1, 4.0, 8), (6, 4, 3))
    with pytest.raises(ValueError, match=r"padding_mode='reflect' needs padding smaller"):
        pcf.conv_output_shape((1, 4, 3), (6, 4, 3), padding=3, padding_mode="reflect")
