"""``channel_shuffle``: against the reshape-transpose definition, every layout, ``out=``, bad
inputs, and PyTorch's ``channel_shuffle`` when installed."""

import numpy as np
import pytest

import pyconvfast as pcf

LAYOUTS = {"NCL": 1, "NCHW": 2, "NCDHW": 3, "NLC": 1, "NHWC": 2, "NDHWC": 3}


def shuffled(x, groups, channel_axis):
    """The definition: channels viewed as (groups, C // groups), transposed, flattened."""
    x = np.moveaxis(x, channel_axis, 0)
    c = x.shape[0]
    y = x.reshape((groups, c // groups) + x.shape[1:]).swapaxes(0, 1).reshape(x.shape)
    return np.moveaxis(y, 0, channel_axis)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("channels,groups", [(1, 1), (6, 2), (6, 3), (12, 4), (33, 3),
                                             (17, 17), (16, 1), (64, 8)])
def test_matches_definition(rng, layout, channels, groups):
    n_spatial = LAYOUTS[layout]
    spatial = (5, 4, 3)[:n_spatial]
    last = layout.endswith("C")
    shape = (2,) + ((*spatial, channels) if last else (channels, *spatial))
    x = rng.standard_normal(shape).astype(np.float32)
    axis = -1 if last else 1
    expected = shuffled(x, groups, axis)
    np.testing.assert_array_equal(pcf.channel_shuffle(x, groups, layout), expected)
    # unbatched
    np.testing.assert_array_equal(pcf.channel_shuffle(x[1], groups, layout), expected[1])
    # strided input and output
    strided = np.flip(x, axis=-2 if last else -1)
    out = np.full(x.shape[::-1], np.nan, np.float32).T
    got = pcf.channel_shuffle(strided, groups, layout, out=out)
    assert got is out
    np.testing.assert_array_equal(got, shuffled(strided, groups, axis))


def test_dtypes_and_inverse(rng):
    x = rng.integers(0, 100, (2, 12, 3, 3))
    y = pcf.channel_shuffle(x, 3)
    assert y.dtype == x.dtype
    # shuffling with C // groups groups undoes a shuffle with groups groups
    np.testing.assert_array_equal(pcf.channel_shuffle(y, 4), x)
    np.testing.assert_array_equal(pcf.channel_shuffle(x.astype(np.float64), 3), y)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 24, 5, 7)).astype(np.float32)
    for groups in (1, 2, 3, 4, 6, 8, 12, 24):
        expected = torch.nn.functional.channel_shuffle(torch.from_numpy(x), groups).numpy()
        np.testing.assert_array_equal(pcf.channel_shuffle(x, groups), expected)
        module = torch.nn.ChannelShuffle(groups)
        np.testing.assert_array_equal(pcf.channel_shuffle(x, groups),
                                      module(torch.from_numpy(x)).numpy())


def test_bad_inputs():
    x = np.zeros((2, 6, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"groups must be a positive divisor of the 6 channels.*groups=4"):
        pcf.channel_shuffle(x, 4)
    with pytest.raises(ValueError, match=r"groups=0"):
        pcf.channel_shuffle(x, 0)
    with pytest.raises(TypeError, match=r"groups must be an int, got float: groups=2.0"):
        pcf.channel_shuffle(x, 2.0)
    with pytest.raises(TypeError, match=r"groups must be an int, got bool"):
        pcf.channel_shuffle(x, True)
    with pytest.raises(ValueError, match=r"layout must be one of .*layout='NCWH'"):
        pcf.channel_shuffle(x, 2, "NCWH")
    with pytest.raises(ValueError, match=r"x must be 5-D \(NCDHW\) or 4-D \(unbatched\).*x\.shape=\(6, 4\)"):
        pcf.channel_shuffle(x[0, :, 0], 2, "NCDHW")
    with pytest.raises(ValueError, match=r"out has shape \(2, 6, 4\)"):
        pcf.channel_shuffle(x, 2, out=np.zeros((2, 6, 4), np.float32))
    with pytest.raises(TypeError, match=r"out has dtype float64"):
        pcf.channel_shuffle(x, 2, out=np.zeros(x.shape))
    with pytest.raises(TypeError, match=r"out must be a numpy.ndarray, got list"):
        pcf.channel_shuffle(x, 2, out=[])
    with pytest.raises(ValueError, match=r"out shares memory with x"):
        pcf.channel_shuffle(x, 2, out=x)
    readonly = np.zeros_like(x)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"out is read-only"):
        pcf.channel_shuffle(x, 2, out=readonly)
    with pytest.raises(ValueError, match=r"n_threads must be None or between"):
        pcf.channel_shuffle(x, 2, n_threads=-1)
