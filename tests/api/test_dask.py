"""pyconvfast.dask: the Dask front end equals the NumPy functions, whatever the chunks.

With ``algorithm="direct"`` the result must be bitwise the NumPy function's on the whole
array (each block runs the same kernel on the same samples, in the same summation order; the
padding done by ``da.pad`` holds the very values the kernel's index arithmetic reads). With
``"auto"`` and the other algorithms it is held to the reference bound of tests/helpers/reference.py
(the algorithm's own tolerance, as in the rest of the suite). The chunkings are drawn from a
seeded generator: one-element chunks, chunks smaller than the halo, uneven last chunks, whole
axes; over 1-D, 2-D and 3-D, odd and even kernels, dilation, stride 1 to 3, asymmetric,
"same" and "valid" padding, the four padding modes, both layouts, groups, bias, flip and both
dtypes. ``pytest -m slow`` runs a larger sweep.
"""

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

import pyconvfast as pcf  # noqa: E402
import pyconvfast.dask as pcfd  # noqa: E402
from tests.helpers.reference import (  # noqa: E402
    CHANNELS_FIRST, CHANNELS_LAST, assert_conv_matches)

MODES = ("zeros", "reflect", "replicate", "circular")
CONV = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}
DASK_CONV = {1: pcfd.conv1d, 2: pcfd.conv2d, 3: pcfd.conv3d}


def _random_chunks(rng, size):
    """A chunking of one axis: whole, one-element, small (below most halos) or random cuts
    with an uneven last chunk."""
    kind = rng.integers(4)
    if kind == 0 or size == 1:
        return (size,)
    if kind == 1:
        return (1,) * size
    if kind == 2:
        step = int(rng.integers(1, 4))
        return (step,) * (size // step) + ((size % step,) if size % step else ())
    cuts = np.sort(rng.choice(np.arange(1, size), size=min(size - 1, int(rng.integers(1, 4))),
                              replace=False))
    return tuple(np.diff(np.concatenate([[0], cuts, [size]])).tolist())


def _random_case(rng, n_spatial=None):
    n = int(rng.integers(1, 4)) if n_spatial is None else n_spatial
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in = groups * int(rng.integers(1, 3))
    c_out = groups * int(rng.integers(1, 3))
    max_kernel = {1: 6, 2: 4, 3: 3}[n]
    kernel = tuple(int(k) for k in rng.integers(1, max_kernel + 1, n))
    dilation = tuple(int(d) for d in rng.integers(1, 3, n))
    stride = tuple(int(s) for s in rng.integers(1, 4, n))
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    max_extra = {1: 14, 2: 8, 3: 4}[n]
    size = tuple(int(e + rng.integers(0, max_extra)) for e in extent)
    mode = str(rng.choice(MODES))
    kind = rng.integers(4)
    if kind == 0:
        padding = "same"
    elif kind == 1:
        padding = "valid"
    else:
        padding = tuple((int(rng.integers(0, min(4, s))), int(rng.integers(0, min(4, s))))
                        for s in size)
    layout = str(rng.choice([CHANNELS_FIRST[n], CHANNELS_LAST[n]]))
    dtype = rng.choice([np.float32, np.float64])
    batch = int(rng.integers(0, 3))  # 0: unbatched
    x_shape = (c_in, *size) if layout == CHANNELS_FIRST[n] else (*size, c_in)
    if batch:
        x_shape = (batch, *x_shape)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if rng.integers(2) else None
    channel_axis = x.ndim - 1 if layout == CHANNELS_LAST[n] else x.ndim - n - 1
    chunks = tuple((s,) if axis == channel_axis else _random_chunks(rng, s)
                   for axis, s in enumerate(x_shape))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  padding_mode=mode, flip=bool(rng.integers(2)), layout=layout)
    return n, x, weight, bias, chunks, kwargs


def _check_case(n, x, weight, bias, chunks, kwargs, algorithm, scheduler="synchronous"):
    context = f"n={n} x={x.shape} {x.dtype} w={weight.shape} chunks={chunks} {kwargs}"
    try:
        expected = CONV[n](x, weight, bias, algorithm=algorithm if algorithm != "auto"
                           else "direct", **kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            DASK_CONV[n](da.from_array(x, chunks=chunks), weight, bias, algorithm=algorithm,
                         **kwargs)
        return False
    lazy = DASK_CONV[n](da.from_array(x, chunks=chunks), weight, bias, algorithm=algorithm,
                        **kwargs)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype, context
    channel_axis = x.ndim - 1 if kwargs["layout"] == CHANNELS_LAST[n] else x.ndim - n - 1
    for axis in range(x.ndim):
        expected_count = 1 if axis == channel_axis else len(
            da.from_array(x, chunks=chunks).chunks[axis])
        assert len(lazy.chunks[axis]) == expected_count, context
    got = lazy.compute(scheduler=scheduler)
    if algorithm == "direct":
        np.testing.assert_array_equal(got, expected, err_msg=context)
    else:
        assert_conv_matches(got, x, weight, bias, context=context, algorithm=algorithm,
                            **kwargs)
    return True


def _sweep(seed, count, algorithm):
    rng = np.random.default_rng(seed)
    ran = sum(_check_case(*_random_case(rng), algorithm) for _ in range(count))
    assert ran >= count // 2  # most draws are valid problems


@pytest.mark.parametrize("seed", range(6))
def test_sweep_direct_is_bitwise(seed):
    _sweep(1000 + seed, 30, "direct")


@pytest.mark.parametrize("seed", range(2))
def test_sweep_auto_within_bound(seed):
    _sweep(2000 + seed, 15, "auto")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_sweep_slow(seed):
    _sweep(3000 + seed, 40, "direct")
    _sweep(4000 + seed, 10, "auto")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [2, 3, 7])
def test_halos_on_every_mode_stride_and_kernel(mode, stride, kernel):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.standard_normal((2, 3, 17, 13)).astype(np.float32)
    weight = rng.standard_normal((4, 3, kernel, kernel)).astype(np.float32)
    for chunks, padding in [((1, 3, 1, 13), ((3, 1), (0, 2))), ((2, 3, 5, 4), "same"),
                            ((2, 3, 2, 3), (2, 3)), ((2, 3, 17, 12), "valid")]:
        _check_case(2, x, weight, None, chunks, dict(
            stride=stride, padding=padding, dilation=(2, 1), groups=1, padding_mode=mode,
            flip=False, layout="NCHW"), "direct")


def test_same_padding_keeps_the_chunks():
    x = da.zeros((2, 3, 40, 30), chunks=(1, 3, 16, 7), dtype=np.float32)
    w = np.ones((5, 3, 5, 4), np.float32)
    assert pcfd.conv2d(x, w, padding="same").chunks[2:] == x.chunks[2:]
    strided = pcfd.conv2d(x, w, padding="same", stride=2)
    assert strided.chunks[2:] == x[:, :, ::2, ::2].chunks[2:]
    # stride larger than the chunks: empty output chunks keep input chunk i -> output chunk i
    sparse = pcfd.conv2d(x.rechunk((1, 3, 2, 1)), w, padding="same", stride=3)
    assert len(sparse.chunks[3]) == 30 and 0 in sparse.chunks[3]
    assert sparse.shape == (2, 5, 14, 10)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd_f2x2_3x3", "winograd_f4x4_3x3",
                                       "fft", "depthwise", "grouped"])
def test_other_algorithms_within_bound(algorithm):
    rng = np.random.default_rng(7)
    groups = {"depthwise": 4, "grouped": 2}.get(algorithm, 1)
    x = rng.standard_normal((2, 4, 26, 21)).astype(np.float32)
    k = 9 if algorithm == "fft" else 3
    weight = rng.standard_normal((8, 4 // groups, k, k)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    for mode in MODES:
        _check_case(2, x, weight, bias, (1, 4, 7, 5), dict(
            stride=1, padding="same", dilation=1, groups=groups, padding_mode=mode,
            flip=True, layout="NCHW"), algorithm)


def test_numpy_input_is_wrapped():
    x = np.random.default_rng(0).standard_normal((2, 3, 10)).astype(np.float32)
    w = np.ones((2, 3, 3), np.float32)
    lazy = pcfd.conv1d(x, w, padding=1)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), pcf.conv1d(x, w, padding=1,
                                                             algorithm="direct"))


@pytest.mark.parametrize("layout,axis", [("NCHW", 1), ("NHWC", 3)])
def test_split_channel_axis_says_how_to_rechunk(layout, axis):
    shape = (2, 4, 8, 8) if layout == "NCHW" else (2, 8, 8, 4)
    chunks = (1, 2, 8, 8) if layout == "NCHW" else (1, 8, 8, 2)
    x = da.zeros(shape, chunks=chunks, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"axis {axis}.*x\.rechunk\(\{{{axis}: -1\}}\)"):
        pcfd.conv2d(x, np.ones((2, 4, 3, 3), np.float32), layout=layout)
    with pytest.raises(ValueError, match=rf"axis {axis}"):
        pcfd.channel_shuffle(x, 2, layout=layout)


def test_errors_come_when_the_graph_is_built():
    x = da.zeros((1, 2, 6, 6), chunks=(1, 2, 3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="reflect"):
        pcfd.conv2d(x, np.ones((2, 2, 3, 3), np.float32), padding=6, padding_mode="reflect")
    with pytest.raises(TypeError, match="float64"):
        pcfd.conv2d(x, np.ones((2, 2, 3, 3), np.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        pcfd.conv2d(x.astype(np.int32), np.ones((2, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="cannot run"):
        pcfd.conv2d(x, np.ones((2, 2, 3, 3), np.float32), stride=2,
                    algorithm="winograd_f2x2_3x3")


def test_one_plan_settled_on_the_client():
    padding = (("padding", ((0, 0), (0, 0))),)
    variants = {((2, 3, 12, 9), padding): 6, ((1, 3, 12, 9), padding): 3,
                ((2, 3, 12, 4), padding): 1}
    plan, planned, algorithm_for = pcfd._blocks.settled_plan(
        variants, np.ones((4, 3, 3, 3), np.float32), None, "auto", None, False,
        dict(layout="NCHW"))
    assert plan.settled and plan.x_shape == (2, 3, 12, 9) and plan.n_threads == 1
    assert planned == ((2, 3, 12, 9), padding) and algorithm_for == {}


def test_unbatched_and_channels_last_3d():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 6, 9, 2))
    w = rng.standard_normal((3, 2, 2, 3, 2))
    for padding in ["same", ((1, 0), (0, 2), (2, 1))]:
        _check_case(3, x, w, np.ones(3), ((2, 5), (1,) * 6, (4, 4, 1), (2,)), dict(
            stride=(1, 2, 3), padding=padding, dilation=(2, 1, 1), groups=1,
            padding_mode="circular", flip=True, layout="NDHWC"), "direct")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_transpose_on_batch_chunks(n):  # spatial chunks: test_dask_upsampling.py
    rng = np.random.default_rng(n)
    x = rng.standard_normal((5, 4, *(5,) * n)).astype(np.float32)
    w = rng.standard_normal((4, 3, *(3,) * n)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    function = getattr(pcfd, f"conv_transpose{n}d")
    kwargs = dict(stride=2, padding=1, output_padding=1, groups=2)
    lazy = function(da.from_array(x, chunks=(2, 4) + (5,) * n), w, b,
                    algorithm="transpose_direct", **kwargs)
    assert lazy.chunks[0] == (2, 2, 1)
    np.testing.assert_array_equal(
        lazy.compute(), getattr(pcf, f"conv_transpose{n}d")(x, w, b, algorithm="transpose_direct",
                                                            **kwargs))
    auto = function(da.from_array(x, chunks=(2, 4) + (5,) * n), w, b, **kwargs).compute()
    np.testing.assert_allclose(auto, getattr(pcf, f"conv_transpose{n}d")(x, w, b, **kwargs),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_separable_functions(layout):
    rng = np.random.default_rng(11)
    shape = (2, 4, 19, 23) if layout == "NCHW" else (2, 19, 23, 4)
    chunks = (1, 4, 3, 5) if layout == "NCHW" else (1, 3, 5, 4)
    x = rng.standard_normal(shape)
    dw, pw = rng.standard_normal((8, 1, 3, 5)), rng.standard_normal((6, 8, 1, 1))
    for mode, stride in [("reflect", 1), ("zeros", 2), ("circular", 3)]:
        kwargs = dict(stride=stride, padding=((1, 2), (2, 1)), dilation=(1, 2),
                      padding_mode=mode, layout=layout)
        got = pcfd.separable_conv2d(da.from_array(x, chunks=chunks), dw, pw, np.ones(6),
                                    **kwargs).compute()
        np.testing.assert_allclose(got, pcf.separable_conv2d(x, dw, pw, np.ones(6), **kwargs),
                                   rtol=1e-12, atol=1e-12)
        col, row = rng.standard_normal((6, 2, 5)), rng.standard_normal((6, 2, 2))
        got = pcfd.spatially_separable_conv2d(da.from_array(x, chunks=chunks), col, row,
                                              groups=2, **kwargs).compute()
        np.testing.assert_allclose(
            got, pcf.spatially_separable_conv2d(x, col, row, groups=2, **kwargs),
            rtol=1e-12, atol=1e-12)


def test_channel_shuffle():
    x = np.random.default_rng(1).standard_normal((3, 5, 7, 6)).astype(np.float32)
    lazy = pcfd.channel_shuffle(da.from_array(x, chunks=(2, 2, 3, 6)), 2, layout="NHWC")
    assert lazy.chunks == ((2, 1), (2, 2, 1), (3, 3, 1), (6,))
    np.testing.assert_array_equal(lazy.compute(), pcf.channel_shuffle(x, 2, layout="NHWC"))


def test_task_threads(monkeypatch):
    from pyconvfast._core.threads import resolve_n_threads

    cores = resolve_n_threads(None)
    assert pcfd.task_threads() == cores  # main thread: the synchronous scheduler
    assert pcfd.task_threads(1) == 1
    seen = da.zeros(4, chunks=1).map_blocks(
        lambda block: np.full(block.shape, pcfd.task_threads()), dtype=int)
    with dask.config.set(scheduler="threads", num_workers=2):
        assert set(seen.compute().tolist()) == {max(1, cores // 2)}


@pytest.fixture
def local_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       worker_dashboard_address=None)
    client = distributed.Client(cluster, timeout="60s")
    try:
        yield client
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)


def test_distributed_cluster(local_cluster):
    client = local_cluster
    rng = np.random.default_rng(5)
    x2 = rng.standard_normal((2, 3, 40, 36)).astype(np.float32)
    w2 = rng.standard_normal((5, 3, 4, 3)).astype(np.float32)
    kwargs2 = dict(padding="same", padding_mode="reflect", stride=2, dilation=(1, 2))
    lazy2 = pcfd.conv2d(da.from_array(x2, chunks=(1, 3, 13, 9)), w2, np.ones(5, np.float32),
                        algorithm="direct", **kwargs2)
    x3 = rng.standard_normal((1, 2, 12, 11, 10))
    w3 = rng.standard_normal((4, 2, 3, 2, 3))
    lazy3 = pcfd.conv3d(da.from_array(x3, chunks=(1, 2, 5, 4, 3)), w3, padding=1,
                        padding_mode="circular")
    wt = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    kwargs_t = dict(stride=(2, 3), padding=((1, 2), (0, 1)), output_padding=(1, 2))
    lazy_t = pcfd.conv_transpose2d(da.from_array(x2, chunks=(1, 3, 7, 5)), wt,
                                   algorithm="transpose_direct", groups=1, **kwargs_t)
    futures = client.compute([lazy2, lazy3, lazy_t, da.zeros(2, chunks=1).map_blocks(
        lambda b: np.full(b.shape, pcfd.task_threads()), dtype=int)])
    got2, got3, got_t, threads = [future.result(timeout=120) for future in futures]
    np.testing.assert_array_equal(got_t, pcf.conv_transpose2d(
        x2, wt, algorithm="transpose_direct", **kwargs_t))
    np.testing.assert_array_equal(got2, pcf.conv2d(x2, w2, np.ones(5, np.float32),
                                                   algorithm="direct", **kwargs2))
    assert_conv_matches(got3, x3, w3, padding=1, padding_mode="circular", algorithm="auto")
    assert threads.tolist() == [1, 1]  # the nanny sets OMP_NUM_THREADS=1; one thread a worker


def test_doctests_and_numpydoc_sections():
    import doctest
    import inspect

    attempted = failed = 0
    for module in (pcfd, pcfd._blocks, pcfd._convolution, pcfd._separable, pcfd._resize):
        result = doctest.testmod(module,
                                 optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        attempted, failed = attempted + result.attempted, failed + result.failed
    assert attempted > 0 and failed == 0
    for name in pcfd.__all__:
        doc = inspect.cleandoc(getattr(pcfd, name).__doc__ or "")
        for section in ("Parameters", "Returns", "Examples"):
            assert f"{section}\n---" in doc, f"pyconvfast.dask.{name} has no {section} section"


def test_import_pyconvfast_does_not_import_dask():
    import subprocess
    import sys

    code = ("import sys, pyconvfast; "
            "assert 'dask' not in sys.modules and 'pyconvfast.dask' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
