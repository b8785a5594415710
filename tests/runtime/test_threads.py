"""Threading: deterministic results whatever the thread count, the GIL released during the
kernel, and concurrent calls from several Python threads."""

import threading
import time

import numpy as np
import pytest

import pyconvfast as pcf
from tests.helpers.reference import assert_conv_matches

THREAD_COUNTS = (1, 2, 3, 4, None)

# (x_shape, w_shape, kwargs): N * C_out of 1, 5, 9, 21, 6, 3 tasks - mostly not divisible by the
# thread counts, and fewer tasks than threads for some.
SHAPES = [
    ((1, 3, 9, 10), (1, 3, 3, 3), {"padding": 1}),
    ((1, 4, 12, 12), (5, 4, 3, 3), {"padding": "same", "stride": 2}),
    ((1, 6, 11, 7), (9, 2, 3, 2), {"groups": 3, "dilation": 2, "padding_mode": "reflect",
                                   "padding": 2}),
    ((3, 7, 8, 8), (7, 1, 5, 5), {"groups": 7, "padding": 2, "padding_mode": "circular"}),
    ((2, 5, 13), (3, 5, 4), {"padding": "same"}),
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), {"padding": 1, "flip": True}),
]
CONV = {3: pcf.conv1d, 4: pcf.conv2d, 5: pcf.conv3d}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_direct_bitwise_equal_for_every_thread_count(shape, dtype, rng):
    x_shape, w_shape, kwargs = SHAPES[shape]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    conv = CONV[len(x_shape)]
    results = {n: conv(x, w, b, algorithm="direct", n_threads=n, **kwargs)
               for n in THREAD_COUNTS}
    assert_conv_matches(results[1], x, w, b, **kwargs)
    for n, result in results.items():
        assert np.array_equal(result, results[1]), f"n_threads={n} differs from n_threads=1"
    # and with out= (written by several threads)
    out = np.full_like(results[1], np.nan)
    conv(x, w, b, algorithm="direct", n_threads=3, out=out, **kwargs)
    assert np.array_equal(out, results[1])


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_every_algorithm_correct_for_every_thread_count(shape, rng):
    x_shape, w_shape, kwargs = SHAPES[shape]
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    conv = CONV[len(x_shape)]
    for algorithm in pcf.list_algorithms(x, w, **kwargs) + ["auto"]:
        for n in THREAD_COUNTS:
            got = conv(x, w, algorithm=algorithm, n_threads=n, **kwargs)
            assert_conv_matches(got, x, w, context=f"algorithm={algorithm!r} n_threads={n}",
                                algorithm=algorithm,
                                **kwargs)


def test_more_threads_than_work(rng):
    x = rng.standard_normal((1, 1, 5)).astype(np.float32)
    w = rng.standard_normal((1, 1, 2)).astype(np.float32)
    expected = pcf.conv1d(x, w, algorithm="direct", n_threads=1)
    for algorithm in pcf.list_algorithms(x, w) + ["auto"]:
        got = pcf.conv1d(x, w, algorithm=algorithm, n_threads=16)
        assert_conv_matches(got, x, w, algorithm=algorithm)
    assert np.array_equal(pcf.conv1d(x, w, algorithm="direct", n_threads=16), expected)


def _timed_conv(x, w, result):
    start = time.perf_counter()
    result["out"] = pcf.conv2d(x, w, padding=1, algorithm="direct", n_threads=1)
    result["seconds"] = time.perf_counter() - start
    result["start"], result["end"] = start, start + result["seconds"]


def test_gil_released_during_direct_kernel(rng):
    """While a worker thread runs a long conv2d, the main thread keeps running Python code.

    Why this can fail: if the kernel held the GIL, the main thread could not execute a single
    bytecode between the worker entering the kernel and returning from it. The main thread
    records the largest gap between two consecutive iterations of its loop; with the GIL held
    that gap would be at least the kernel's run time (minus at most one 5 ms switch interval,
    for the few microseconds of Python the worker runs before entering C). With the GIL released
    (and n_threads=1, so the kernel keeps one core busy and leaves the other to the main thread)
    the gap stays at scheduling noise. The iteration count during the kernel is checked too.
    """
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    batch = 1
    for _ in range(9):  # up to 256 samples: the blocked kernel runs near the FMA peak
        x = rng.standard_normal((batch, 64, 64, 64)).astype(np.float32)
        result = {}
        worker = threading.Thread(target=_timed_conv, args=(x, w, result))
        counter = 0
        in_kernel = 0
        largest_gap = 0.0
        gap_at = None
        last = time.perf_counter()
        worker.start()
        while worker.is_alive():
            now = time.perf_counter()
            if now - last > largest_gap:
                largest_gap, gap_at = now - last, (last, now)
            last = now
            counter += 1
            if "start" not in result:
                in_kernel += 1  # counted until the worker stores its timings (upper bound)
        worker.join()
        if result["seconds"] >= 0.4:
            break
        batch *= 2  # a faster machine or kernel: make the problem longer until it lasts
    duration = result["seconds"]
    assert duration >= 0.4, f"could not make a conv2d last 0.4 s (got {duration:.3f} s)"
    # Iterations of the main loop that fell inside the kernel's run: all those before the worker
    # stored its timings, less those before the kernel started (few: thread start-up only).
    assert in_kernel > 1000, f"main thread ran only {in_kernel} iterations in {duration:.2f} s"
    assert largest_gap < 0.5 * duration, (
        f"the main thread stalled for {largest_gap:.3f} s of a {duration:.3f} s kernel "
        f"(from {gap_at[0] - result['start']:+.3f} s to {gap_at[1] - result['start']:+.3f} s "
        f"relative to the kernel's start): the GIL looks held")
    out = result["out"]
    assert out.shape == (batch, 64, 64, 64) and np.isfinite(out).all()
    # spot-check the values on one sample and a few output channels
    assert_conv_matches(out[:1, :4], x[:1], w[:4], padding=1)


def test_concurrent_calls_from_python_threads(rng):
    """Several Python threads calling at once (each with its own OpenMP team) all get the right
    answer."""
    problems = []
    for i in range(6):
        x = rng.standard_normal((2, 8, 20 + i, 18)).astype(np.float32)
        w = rng.standard_normal((8 + i, 8, 3, 3)).astype(np.float32)
        problems.append((x, w))
    expected = [pcf.conv2d(x, w, padding=1, algorithm="direct", n_threads=1) for x, w in problems]
    algorithms = pcf.list_algorithms(*problems[0], padding=1) + ["auto"]
    errors = []

    def work(index):
        try:
            x, w = problems[index % len(problems)]
            for repeat in range(5):
                algorithm = algorithms[(index + repeat) % len(algorithms)]
                got = pcf.conv2d(x, w, padding=1, algorithm=algorithm, n_threads=2)
                if algorithm == "direct":
                    assert np.array_equal(got, expected[index % len(problems)])
                assert_conv_matches(got, x, w, padding=1, context=f"algorithm={algorithm!r}",
                                    algorithm=algorithm)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


def test_blas_limit_from_overlapping_python_threads_restores_the_callers_count():
    """BLAS's thread count is global: overlapping limits (A enters, B enters, A leaves, B
    leaves) keep the limit until the last one leaves, then restore the count from before."""
    from pyconvfast._core.threads import blas_threads

    libraries = blas_threads._libraries
    original = [lib.get_num_threads() for lib in libraries]
    try:
        for lib in libraries:
            lib.set_num_threads(2)  # distinct from the limit, so that a lost restore shows
        a, b = blas_threads.limit(1), blas_threads.limit(1)
        a.__enter__()
        b.__enter__()
        a.__exit__(None, None, None)
        assert [lib.get_num_threads() for lib in libraries] == [1] * len(libraries)
        b.__exit__(None, None, None)
        assert [lib.get_num_threads() for lib in libraries] == [2] * len(libraries)
    finally:
        for lib, count in zip(libraries, original):
            lib.set_num_threads(count)


# --- more threads than the runtimes support (issue 18, item 3) -----------------------------------

def test_thread_limit_is_what_the_blas_keeps():
    """The limit is no more than any controlled BLAS keeps when asked for the most threads
    (64 for SciPy's OpenBLAS), and the probe left each library's own count as it was."""
    from pyconvfast._core.threads import MAX_THREADS, blas_threads

    limit = pcf.thread_limit()
    assert 1 <= limit <= MAX_THREADS
    for lib in blas_threads._libraries:
        before = lib.get_num_threads()
        lib.set_num_threads(MAX_THREADS)
        kept = lib.get_num_threads()
        lib.set_num_threads(before)
        assert limit <= kept
        assert lib.get_num_threads() == before


@pytest.mark.parametrize("requested", [1000, 32768])
def test_n_threads_above_the_limit_is_clamped_with_a_warning(requested):
    from pyconvfast._core.threads import resolve_n_threads

    with pytest.warns(RuntimeWarning, match=f"n_threads={requested} is more than the runtimes "
                                            f"support here; using {pcf.thread_limit()} threads"):
        assert resolve_n_threads(requested) == pcf.thread_limit()


def test_n_threads_up_to_the_limit_is_kept_without_a_warning():
    import warnings

    from pyconvfast._core.threads import resolve_n_threads

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_n_threads(pcf.thread_limit()) == pcf.thread_limit()
        assert resolve_n_threads(3) == 3


def test_huge_n_threads_neither_crashes_nor_changes_the_result():
    """n_threads=1000 right after 64 made OpenBLAS run out of memory regions (a segfault in
    about a third of runs) and 32768 made libgomp end the process; run in a child process, on
    the BLAS paths (1x1 GEMM from every thread, Winograd) and on direct."""
    import subprocess
    import sys

    script = (
        "import warnings, numpy as np, pyconvfast as pcf\n"
        "warnings.simplefilter('ignore', RuntimeWarning)\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.integers(-2, 3, (1, 64, 16, 16)).astype(np.float32)\n"
        "for k in (1, 3):\n"
        "    w = rng.integers(-2, 3, (64, 64, k, k)).astype(np.float32)\n"
        "    want = pcf.conv2d(x, w, padding=k // 2, algorithm='direct', n_threads=1)\n"
        "    for alg in ['auto'] + pcf.list_algorithms(x.shape, w.shape, padding=k // 2):\n"
        "        for n in (64, 1000, 32768):\n"
        "            got = pcf.conv2d(x, w, padding=k // 2, algorithm=alg, n_threads=n)\n"
        "            # F(4x4) and fft round integer data: a bound, not equality\n"
        "            assert np.allclose(got, want, rtol=0, atol=1e-2), (alg, n)\n"
        "print('ok')\n"
    )
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# --- BLAS's thread count from a worker thread (issue 18, item 5) ----------------------------------

def _cpu_per_wall(function):
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


@pytest.mark.parametrize("algorithm", ["im2col", "fft"])
def test_n_threads_one_holds_for_blas_in_a_worker_thread(algorithm, rng):
    """threadpoolctl lets only the first Python thread that set OpenBLAS's count set it again;
    from a worker thread an n_threads=1 call ran OpenBLAS on every core (CPU time per wall
    second 2.0 on 2 cores). The limit must hold from any thread: about one core's CPU time."""
    if algorithm == "fft":
        x = rng.standard_normal((2, 32, 96, 96)).astype(np.float32)
        w = rng.standard_normal((32, 32, 15, 15)).astype(np.float32)
    else:
        x = rng.standard_normal((4, 256, 28, 28)).astype(np.float32)
        w = rng.standard_normal((256, 256, 1, 1)).astype(np.float32)
    pcf.conv2d(x, w, algorithm=algorithm, n_threads=1)   # the main thread sets the count first

    def calls():
        deadline = time.perf_counter() + 0.4
        while time.perf_counter() < deadline:
            pcf.conv2d(x, w, algorithm=algorithm, n_threads=1)

    def in_a_worker():
        worker = threading.Thread(target=calls)
        worker.start()
        worker.join()

    assert _cpu_per_wall(in_a_worker) < 1.4
