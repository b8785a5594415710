"""The kernels' work buffers, kept between calls (pyconvfast._core.workspace)."""

import threading

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from tests.helpers.reference import assert_conv_matches

import pyconvfast as pcf
from pyconvfast._lib.common.memory import bytes_to_boundary
from pyconvfast._core.workspace import WorkspacePool, aligned_empty, pool, work_chunk


def test_borrow_gives_aligned_slices_of_the_requested_size():
    p = WorkspacePool()
    for dtype, per_line in ((np.float32, 16), (np.float64, 8)):
        buffer, work = p.borrow(3, 17, dtype)
        assert work.dtype == dtype
        assert work.size == 3 * -(-17 // per_line) * per_line  # whole 64-byte lines
        assert work.ctypes.data % 64 == 0
        assert np.shares_memory(work, buffer)
        p.give_back(buffer)


def test_bytes_to_boundary_from_every_start_within_a_line():
    base = np.empty(256, np.uint8)
    for start in range(64):
        view = base[start:]
        gap = bytes_to_boundary(view, 64)
        assert 0 <= gap < 64 and (view.ctypes.data + gap) % 64 == 0


def test_aligned_empty_starts_on_a_cache_line():
    for shape, dtype in (((3, 5), np.float32), ((2, 1, 7), np.float64), ((0, 4), np.float32)):
        array = aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        # an empty array holds no data, and NumPy may point it anywhere
        assert array.size == 0 or array.ctypes.data % 64 == 0


def test_a_buffer_is_reused_and_never_shared():
    p = WorkspacePool(max_kept=2)
    first, _ = p.borrow(1, 1000, np.float32)
    second, _ = p.borrow(1, 1000, np.float32)   # first is out: a new one
    assert second is not first
    p.give_back(first)
    again, _ = p.borrow(1, 500, np.float32)      # fits in first
    assert again is first
    p.give_back(again)
    p.give_back(second)
    assert p.kept_bytes() == first.nbytes + second.nbytes


def test_pool_keeps_at_most_max_kept_and_drops_outgrown_buffers():
    p = WorkspacePool(max_kept=2)
    buffers = [p.borrow(1, n, np.float64)[0] for n in (10, 20, 30)]
    for buffer in buffers:
        p.give_back(buffer)
    assert p.kept_bytes() == buffers[1].nbytes + buffers[2].nbytes  # the smallest went
    big, _ = p.borrow(1, 10_000, np.float64)    # larger than any: the largest kept goes too
    assert p.kept_bytes() == buffers[1].nbytes
    p.give_back(big)
    p.clear()
    assert p.kept_bytes() == 0


def test_steady_calls_reuse_the_work_buffer(rng):
    x = rng.standard_normal((1, 16, 30, 30)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    pool.clear()
    pcf.conv2d(x, w, algorithm="im2col", n_threads=2)
    kept = pool.kept_bytes()
    assert kept > 0
    for _ in range(3):
        got = pcf.conv2d(x, w, algorithm="im2col", n_threads=2)
    assert pool.kept_bytes() == kept
    assert_conv_matches(got, x, w, algorithm="im2col")


def test_python_threads_with_different_sizes_at_once(rng):
    """Threads borrowing buffers of different sizes at once each get a correct result."""
    problems = [(rng.standard_normal((1, 4 + 3 * i, 17, 19)).astype(np.float32),
                 rng.standard_normal((5 + i, 4 + 3 * i, 3, 3)).astype(np.float32))
                for i in range(4)]
    errors = []

    def work(index):
        try:
            x, w = problems[index % len(problems)]
            for algorithm in ("im2col", "winograd_f2x2_3x3", "im2col", "winograd_f4x4_3x3"):
                got = pcf.conv2d(x, w, padding=1, algorithm=algorithm, n_threads=2)
                assert_conv_matches(got, x, w, padding=1, algorithm=algorithm)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


@given(n_items=st.integers(1, 10_000), item_bytes=st.integers(1, 4096),
       budget=st.integers(1, 1 << 22), cap=st.none() | st.integers(1, 5000),
       multiple=st.sampled_from([1, 16]), units=st.integers(1, 64), min_tasks=st.integers(1, 64))
def test_work_chunk_keeps_its_bounds(n_items, item_bytes, budget, cap, multiple, units,
                                     min_tasks):
    """The one chunk-size rule: within [1, n_items]; under the budget and the cap, and a
    multiple, unless one multiple is already more; with fewer units than tasks wanted, no
    larger than an even split of a unit into that many tasks."""
    chunk = work_chunk(n_items, item_bytes, budget, cap=cap, multiple=multiple, units=units,
                       min_tasks=min_tasks)
    assert 1 <= chunk <= n_items
    if chunk > multiple:
        assert chunk * item_bytes <= budget and chunk <= (cap or n_items)
        assert chunk % multiple == 0
        if units < min_tasks:
            assert chunk <= -(-n_items // -(-min_tasks // units))
    assert work_chunk(n_items, item_bytes, budget, minimum=n_items) == n_items
