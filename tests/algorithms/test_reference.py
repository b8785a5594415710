"""The reference convolution checked on its own: hand-worked numbers, SciPy and (if installed)
PyTorch. If these fail, every other failure is suspect."""

import numpy as np
import pytest
import scipy.signal

from tests.helpers.reference import (
    assert_within_bound, conv_reference, conv_scale, n_terms, same_padding,
)

X5 = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])  # (N=1, C=1, L=5)


def ref1(x, w, **kwargs):
    return conv_reference(np.asarray(x, float), np.asarray(w, float), **kwargs)


class TestHandWorked1D:
    def test_valid_cross_correlation(self):
        # [1,2,3]*[1,2,3,4,5]: 1+4+9, 2+6+12, 3+8+15
        np.testing.assert_array_equal(ref1(X5, [[[1, 2, 3]]]), [[[14, 20, 26]]])

    def test_padding_stride(self):
        # padded [0,1,2,3,4,5,0], taps at 0, 2, 4: 0+2+6, 2+6+12, 4+10+0
        np.testing.assert_array_equal(ref1(X5, [[[1, 2, 3]]], padding=1, stride=2), [[[8, 20, 14]]])

    def test_flip_is_true_convolution(self):
        # kernel reversed to [3,2,1]: 0+2+2, 6+6+4, 12+10+0
        np.testing.assert_array_equal(
            ref1(X5, [[[1, 2, 3]]], padding=1, stride=2, flip=True), [[[4, 16, 22]]])
        np.testing.assert_array_equal(
            ref1(X5, [[[1, 2, 3]]], flip=True)[0, 0], np.convolve(X5[0, 0], [1, 2, 3], "valid"))

    def test_dilation(self):
        # taps 0, 2, 4: 1*1 + 3*2 + 5*3
        np.testing.assert_array_equal(ref1(X5, [[[1, 2, 3]]], dilation=2), [[[22]]])

    def test_bias(self):
        got = conv_reference(X5, np.array([[[1.0, 2.0, 3.0]]]), np.array([0.5]))
        np.testing.assert_array_equal(got, [[[14.5, 20.5, 26.5]]])

    def test_padding_pair(self):
        # padded [0,0,1,2,3,4,5] with kernel [1,1]
        np.testing.assert_array_equal(ref1(X5, [[[1, 1]]], padding=((2, 0),)),
                                      [[[0, 1, 3, 5, 7, 9]]])

    @pytest.mark.parametrize("mode, padded", [
        ("zeros", [0, 0, 1, 2, 3, 4, 5, 0, 0]),
        ("reflect", [3, 2, 1, 2, 3, 4, 5, 4, 3]),
        ("replicate", [1, 1, 1, 2, 3, 4, 5, 5, 5]),
        ("circular", [4, 5, 1, 2, 3, 4, 5, 1, 2]),
    ])
    def test_padding_modes(self, mode, padded):
        # a 1-tap kernel of 1 returns the padded signal itself
        np.testing.assert_array_equal(ref1(X5, [[[1]]], padding=2, padding_mode=mode),
                                      [[padded]])

    def test_groups(self):
        x = [[[1, 2, 3], [10, 20, 30]]]
        w = [[[1, 1]], [[1, -1]]]  # groups=2: channel 0 with [1,1], channel 1 with [1,-1]
        np.testing.assert_array_equal(ref1(x, w, groups=2), [[[3, 5], [-10, -10]]])
        w = [[[1, 1], [1, -1]]]  # groups=1: both channels summed
        np.testing.assert_array_equal(ref1(x, w), [[[1 + 2 + 10 - 20, 2 + 3 + 20 - 30]]])

    def test_same_padding_rule(self):
        assert same_padding(5, 3, 1, 1) == (1, 1)
        assert same_padding(5, 4, 1, 1) == (1, 2)  # extra element at the end
        assert same_padding(5, 3, 1, 3) == (3, 3)
        assert same_padding(5, 3, 2, 1) == (1, 1)  # TF: out 3, total 2
        assert same_padding(6, 3, 2, 1) == (0, 1)  # TF: out 3, total 1
        assert same_padding(7, 1, 3, 1) == (0, 0)
        assert same_padding(2, 5, 3, 1) == (1, 2)  # out 1, total 3
        # stride 2 on [1..6] with [1,1,1]: padded [1..6, 0], taps at 0, 2, 4
        x = np.arange(1.0, 7.0)[None, None]
        np.testing.assert_array_equal(ref1(x, [[[1, 1, 1]]], padding="same", stride=2),
                                      [[[6, 12, 11]]])
        np.testing.assert_array_equal(ref1([[[1, 2, 3]]], [[[1, 1]]], padding="same"),
                                      [[[3, 5, 3]]])

    def test_layouts_and_unbatched(self, rng):
        x = rng.standard_normal((2, 3, 7))
        w = rng.standard_normal((4, 3, 2))
        cf = conv_reference(x, w, padding=1)
        np.testing.assert_array_equal(conv_reference(np.moveaxis(x, 1, -1), w, padding=1,
                                                     layout="NLC"), np.moveaxis(cf, 1, -1))
        np.testing.assert_array_equal(conv_reference(x[1], w, padding=1), cf[1])


def _dilate(kernel, dilation):
    shape = tuple(d * (k - 1) + 1 for k, d in zip(kernel.shape, dilation))
    out = np.zeros(shape)
    out[tuple(slice(None, None, d) for d in dilation)] = kernel
    return out


@pytest.mark.parametrize("n_spatial", [1, 2, 3])
@pytest.mark.parametrize("trial", range(4))
def test_against_scipy_single_channel(n_spatial, trial, rng):
    in_size = tuple(int(v) for v in rng.integers(5, 10 if n_spatial < 3 else 7, size=n_spatial))
    kernel = tuple(int(v) for v in rng.integers(1, 4, size=n_spatial))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=n_spatial))
    stride = tuple(int(v) for v in rng.integers(1, 3, size=n_spatial))
    x = rng.standard_normal(in_size)
    w = rng.standard_normal(kernel)
    wd = _dilate(w, dilation)
    step = tuple(slice(None, None, s) for s in stride)
    # "valid" and "full" (padding extent - 1 on each side), strided by slicing.
    for mode, padding in (("valid", 0), ("full", tuple(e - 1 for e in wd.shape))):
        for flip, scipy_fn in ((False, scipy.signal.correlate), (True, scipy.signal.convolve)):
            expected = scipy_fn(x, wd, mode=mode, method="direct")[step]
            got = conv_reference(x[None, None], w[None, None], padding=padding, stride=stride,
                                 dilation=dilation, flip=flip)[0, 0]
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # scipy's "same" is centered; for odd kernel extents it equals padding="same".
    if all(e % 2 for e in wd.shape):
        expected = scipy.signal.correlate(x, wd, mode="same", method="direct")
        got = conv_reference(x[None, None], w[None, None], padding="same", dilation=dilation)
        np.testing.assert_allclose(got[0, 0], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("trial", range(12))
def test_against_torch(trial, rng):
    """PyTorch (when installed) agrees on groups, stride, dilation, padding modes and bias."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n_spatial = trial % 3 + 1
    groups = int(rng.choice([1, 2, 3]))
    c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    in_size = tuple(int(v) for v in rng.integers(5, 9, size=n_spatial))
    kernel = tuple(int(v) for v in rng.integers(1, 4, size=n_spatial))
    stride = tuple(int(v) for v in rng.integers(1, 3, size=n_spatial))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=n_spatial))
    pairs = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, size=(n_spatial, 2)))
    mode = ("zeros", "reflect", "replicate", "circular")[trial % 4]
    x = rng.standard_normal((2, c_in) + in_size)
    w = rng.standard_normal((c_out, c_in // groups) + kernel)
    b = rng.standard_normal(c_out)
    torch_pad = [p for pair in reversed(pairs) for p in pair]  # last axis first
    tx = torch.from_numpy(x)
    tx = F.pad(tx, torch_pad, mode={"zeros": "constant", "reflect": "reflect",
                                    "replicate": "replicate", "circular": "circular"}[mode])
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n_spatial]
    expected = conv(tx, torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                    dilation=dilation, groups=groups).numpy()
    got = conv_reference(x, w, b, stride=stride, padding=pairs, dilation=dilation,
                         groups=groups, padding_mode=mode)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_bound_helper_catches_errors(rng):
    """The tolerance check fails on an error just above the bound and names the element."""
    x = rng.standard_normal((1, 3, 8)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3)).astype(np.float32)
    ref = conv_reference(x, w)
    scale = conv_scale(x, w)
    terms = n_terms(w.shape)
    assert terms == 3 * 3 + 1
    got = ref.astype(np.float32)
    assert_within_bound(got, ref, scale, terms, np.float32, np.float64)
    bad = ref.copy()
    bad[0, 1, 4] += 3 * terms * np.finfo(np.float32).eps * scale[0, 1, 4]
    with pytest.raises(AssertionError, match=r"worst at index \(0, 1, 4\).*\n.*CONTEXT"):
        assert_within_bound(bad, ref, scale, terms, np.float32, np.float64, "CONTEXT")
    nan = got.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(AssertionError, match=r"worst at index \(0, 0, 0\)"):
        assert_within_bound(nan, ref, scale, terms, np.float32, np.float64)
    with pytest.raises(AssertionError, match="shape"):
        assert_within_bound(got[:, :1], ref, scale, terms, np.float32, np.float64)
