"""Seeded randomized sweep: every usable algorithm (and "auto") against the reference.

Each case is drawn from ``np.random.default_rng([SEED, index])`` by :func:`cases.make_case`, over
1/2/3-D; N in {0, 1, 2, 3} or unbatched; channel tails 1, 3, 13, 17, 33; per-axis stride and
dilation; every padding form ("valid", "same" with any stride, ints, per-axis ints, pairs); the
four padding modes; groups (incl. depthwise with a channel multiplier); flip; both layouts;
float32/float64; bias or not; contiguous, Fortran, sliced, negatively strided and permuted x and
weight; out= of several memory layouts. A failure prints the seed, the index and the whole case.
"""

import pytest

from tests.helpers.cases import make_case, run_case

SEED = 20240611
N_DEFAULT = 2000
N_SLOW = 10000


@pytest.mark.parametrize("index", range(N_DEFAULT))
def test_sweep(index):
    run_case(make_case(SEED, index))


@pytest.mark.slow
@pytest.mark.parametrize("index", range(N_DEFAULT, N_DEFAULT + N_SLOW))
def test_sweep_slow(index):
    # Larger sizes and kernels than the default sweep, different cases.
    run_case(make_case(SEED, index, big=True))


def test_sweep_covers_the_space():
    """The default sweep really draws every feature it claims to (guards against a generator
    change that silently narrows it)."""
    cases = [make_case(SEED, i) for i in range(N_DEFAULT)]
    seen = lambda f: {f(c) for c in cases}  # noqa: E731
    assert seen(lambda c: c.n_spatial) == {1, 2, 3}
    assert {0, 1, 2, 3, None} <= seen(
        lambda c: None if len(c.x_shape) == c.n_spatial + 1 else c.x_shape[0])
    assert {1, 3, 13, 17, 33} <= seen(lambda c: c.w_shape[1] * c.kwargs["groups"])
    assert {1, 3, 13, 17, 33} <= seen(lambda c: c.w_shape[0])
    assert seen(lambda c: c.kwargs["padding_mode"]) == {"zeros", "reflect", "replicate", "circular"}
    forms = seen(lambda c: c.kwargs["padding"] if isinstance(c.kwargs["padding"], str)
                 else type(c.kwargs["padding"]).__name__ + (
                     "-pairs" if isinstance(c.kwargs["padding"], tuple)
                     and isinstance(c.kwargs["padding"][0], tuple) else ""))
    assert {"valid", "same", "int", "tuple", "list", "tuple-pairs"} <= forms
    assert any(c.kwargs["padding"] == "same" and c.kwargs["stride"] not in (1, (1,) * c.n_spatial,
               [1] * c.n_spatial) for c in cases)
    assert any(isinstance(c.kwargs["stride"], (tuple, list)) and len(set(c.kwargs["stride"])) > 1
               for c in cases)
    assert any(isinstance(c.kwargs["dilation"], (tuple, list))
               and len(set(c.kwargs["dilation"])) > 1 for c in cases)
    # depthwise with a channel multiplier > 1
    assert any(c.w_shape[1] == 1 and c.kwargs["groups"] > 1 and c.w_shape[0] > c.kwargs["groups"]
               for c in cases)
    assert any(1 < c.kwargs["groups"] and c.w_shape[1] > 1 for c in cases)
    assert seen(lambda c: c.kwargs["flip"]) == {True, False}
    assert len(seen(lambda c: c.kwargs["layout"])) == 6
    assert len(seen(lambda c: c.dtype)) == 2
    assert seen(lambda c: c.has_bias) == {True, False}
    assert seen(lambda c: c.x_memory) == {"c", "f", "sliced", "negative", "permuted"}
    assert seen(lambda c: c.w_memory) == {"c", "f", "sliced", "negative", "permuted"}
    assert {None, "c", "f", "sliced", "negative"} <= seen(lambda c: c.out_kind)
    assert seen(lambda c: c.b_memory) == {"c", "sliced", "negative"}
