"""What a tuning cache of many problems costs: a new shape's first call, a store, a new process.

For each cache size (40, 600 and 1200 problems by default) a fresh ``PYCONVFAST_CACHE_DIR`` is
filled with that many synthetic entries (shaped like the tuner's: timings of six candidates,
prepare and cold timings, a plan choice), written as one ``tuning.json`` as any earlier version
left it. Then:

(a) the first ``pcf.conv2d(..., algorithm="auto")`` call on a NEW tiny shape, in a warm process
    (the cache already read, the tuner imported), with ``PYCONVFAST_TUNE=measure``: median of
    ``--new-shapes`` shapes, and the part of it spent in the cache (lookup + store);
(b) ``get_cache().store`` alone, one new key each: median of ``--stores``;
(c) at the largest size, a NEW process's first call on a new shape (a subprocess, import not
    counted), and the part of it in the cache: median of ``--processes`` processes;
(d) memory per tuned problem: ``--rss-problems`` distinct tiny problems through ``pcf.conv2d``
    (measure mode, a fresh cache), tracemalloc's growth per problem with its top sources, and
    the growth of the resident set size.

    python bench/cache_growth.py                          # the figures in docs/guide/tuning.rst
    python bench/cache_growth.py --sizes 40,600,1200,5000 --rss-problems 400

Run it against another checkout with ``PYTHONPATH=<checkout>/src``; the script prints the
``pyconvfast`` it imported.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

ALGORITHMS = ("direct", "im2col", "im2col[max_chunk=256]", "winograd_f2x2_3x3",
              "winograd_f4x4_3x3", "fft")


def synthetic_entry(i):
    """An entry the size of the tuner's, different for each ``i``."""
    rng = np.random.default_rng(i)
    timings = {name: float(t) for name, t in zip(ALGORITHMS, rng.uniform(1e-5, 1e-2, 6))}
    return {"algorithm": "im2col", "params": {}, "timings": timings,
            "prepare_timings": {name: t / 10 for name, t in timings.items()},
            "cold_timings": {name: t * 1.3 for name, t in list(timings.items())[:2]},
            "plan_algorithm": "im2col", "plan_params": {},
            "created": f"2025-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}"
                       f"+00:00"}


def synthetic_key(i):
    return (f"conv2d|n1|c{64 + i % 97}|k{64 + i // 97}|g1|in{8 + i % 50}x{8 + i % 50}|w3x3|s1x1|"
            f"d1x1|p1x1-1x1|zeros|float32|NCHW|flip0|synthetic{i}|threads1")


def prefill(folder, n_entries):
    """A ``tuning.json`` of ``n_entries`` entries for this machine, in the one-file format."""
    from pyconvfast.tuning import store as _cache

    os.makedirs(folder, exist_ok=True)
    fingerprint = _cache.machine_fingerprint()
    document = {"schema": 1, "machines": {_cache.fingerprint_id(fingerprint): {
        "fingerprint": fingerprint,
        "entries": {synthetic_key(i): synthetic_entry(i) for i in range(n_entries)}}}}
    _cache.write_atomically(os.path.join(folder, "tuning.json"), document)


class CacheClock:
    """Seconds spent in ``TuningCache.lookup`` and ``TuningCache.store`` (patched)."""

    def __init__(self):
        from pyconvfast.tuning import store as _cache

        self.seconds = 0.0
        for name in ("lookup", "store"):
            original = getattr(_cache.TuningCache, name)
            setattr(_cache.TuningCache, name, self._timed(original))

    def _timed(self, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def tiny_problem(i):
    """Arrays of a tiny conv2d problem, a distinct shape for each ``i`` (1 to 8 channels in and
    out, 5x5 pixels and up: 19x19 at ``i`` = 500)."""
    rng = np.random.default_rng(i)
    c_in, c_out, h = 1 + i % 8, 1 + (i // 8) % 4, 5 + i // 32
    x = rng.standard_normal((1, c_in, h, h), dtype=np.float32)
    w = rng.standard_normal((c_out, c_in, 3, 3), dtype=np.float32)
    return x, w


def first_call(pcf, x, w):
    start = time.perf_counter()
    pcf.conv2d(x, w, padding=1, algorithm="auto", n_threads=1)
    return time.perf_counter() - start


def warm_process_figures(size, first_shape, new_shapes, stores, clock):
    import pyconvfast as pcf
    from pyconvfast.tuning import autotune as _autotune
    from pyconvfast.tuning import store as _cache

    with tempfile.TemporaryDirectory() as folder:
        prefill(folder, size)
        os.environ["PYCONVFAST_CACHE_DIR"] = folder
        _autotune.forget()
        cache = _cache.get_cache()
        start = time.perf_counter()
        assert cache.lookup("not-there") is None
        load = time.perf_counter() - start
        x, w = tiny_problem(first_shape)  # the first call (imports, thread pools) not counted
        pcf.conv2d(x, w, padding=1, algorithm="auto", n_threads=1)
        calls, in_cache = [], []
        for i in range(new_shapes):
            x, w = tiny_problem(first_shape + 1 + i)  # in neither the cache nor the process
            clock.seconds = 0.0
            calls.append(first_call(pcf, x, w))
            in_cache.append(clock.seconds)
        entry = synthetic_entry(0)
        store_times = []
        for i in range(stores):
            start = time.perf_counter()
            cache.store(f"bench-store|{size}|{i}", entry)
            store_times.append(time.perf_counter() - start)
        n_entries = len(cache.entries())
    return {"size": size, "load_ms": load * 1e3,
            "first_call_ms": statistics.median(calls) * 1e3,
            "first_call_cache_ms": statistics.median(in_cache) * 1e3,
            "store_ms": statistics.median(store_times) * 1e3,
            "store_max_ms": max(store_times) * 1e3, "entries_after": n_entries}


NEW_PROCESS = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
import cache_growth
clock = cache_growth.CacheClock()
import pyconvfast as pcf
x, w = cache_growth.tiny_problem(int(sys.argv[1]))
start = time.perf_counter()
pcf.conv2d(x, w, padding=1, algorithm="auto", n_threads=1)
total = time.perf_counter() - start
print(json.dumps({"first_call_ms": total * 1e3, "cache_ms": clock.seconds * 1e3}))
"""


def new_process_figures(size, first_shape, processes):
    results = []
    with tempfile.TemporaryDirectory() as folder:
        prefill(folder, size)
        env = {**os.environ, "PYCONVFAST_CACHE_DIR": folder, "PYCONVFAST_TUNE": "measure"}
        for i in range(processes):
            done = subprocess.run(
                [sys.executable, "-c", NEW_PROCESS, str(first_shape + i),
                 os.path.dirname(os.path.abspath(__file__))],
                env=env, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"size": size,
            "first_call_ms": statistics.median(r["first_call_ms"] for r in results),
            "cache_ms": statistics.median(r["cache_ms"] for r in results)}


def _rss_bytes():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_figures(first_shape, n_problems):
    import pyconvfast as pcf
    from pyconvfast.tuning import autotune as _autotune

    with tempfile.TemporaryDirectory() as folder:
        os.environ["PYCONVFAST_CACHE_DIR"] = folder
        _autotune.forget()
        for i in range(first_shape, first_shape + 40):  # warm: tables and pools exist
            x, w = tiny_problem(i)
            pcf.conv2d(x, w, padding=1, algorithm="auto", n_threads=1)
        tracemalloc.start(1)
        before, rss_before = tracemalloc.take_snapshot(), _rss_bytes()
        for i in range(first_shape + 40, first_shape + 40 + n_problems):
            x, w = tiny_problem(i)
            pcf.conv2d(x, w, padding=1, algorithm="auto", n_threads=1)
        after, rss_after = tracemalloc.take_snapshot(), _rss_bytes()
        tracemalloc.stop()
        choices = len(_autotune._CHOICES)
    growth = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in growth)
    top = [(f"{os.path.relpath(stat.traceback[0].filename, os.path.dirname(pcf.__file__))}:"
            f"{stat.traceback[0].lineno}", stat.size_diff / n_problems)
           for stat in sorted(growth, key=lambda s: -s.size_diff)[:6]]
    return {"problems": n_problems, "traced_bytes_per_problem": total / n_problems,
            "rss_bytes_per_problem": (rss_after - rss_before) / n_problems,
            "tuner_choices_held": choices, "top": top}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40,600,1200")
    parser.add_argument("--new-shapes", type=int, default=7)
    parser.add_argument("--stores", type=int, default=21)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--rss-problems", type=int, default=200)
    args = parser.parse_args()
    os.environ["PYCONVFAST_TUNE"] = "measure"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    clock = CacheClock()
    import pyconvfast as pcf

    print(f"pyconvfast {pcf.__version__} from {os.path.dirname(pcf.__file__)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    print("(a) warm process, a new shape's first call; (b) store() alone (medians, ms)")
    print(f"{'entries':>8} {'load':>8} {'first call':>11} {'in cache':>9} {'store':>8} "
          f"{'store max':>10}")
    shape = 0  # each measurement has shapes of its own: none is warm from an earlier one
    for size in sizes:
        r = warm_process_figures(size, shape, args.new_shapes, args.stores, clock)
        shape += 1 + args.new_shapes
        print(f"{size:8d} {r['load_ms']:8.1f} {r['first_call_ms']:11.1f} "
              f"{r['first_call_cache_ms']:9.2f} {r['store_ms']:8.2f} {r['store_max_ms']:10.2f}",
              flush=True)
    r = new_process_figures(sizes[-1], shape, args.processes)
    shape += args.processes
    print(f"(c) new process, {r['size']} entries: first call on a new shape "
          f"{r['first_call_ms']:.1f} ms, {r['cache_ms']:.1f} ms of it in the cache", flush=True)
    r = memory_figures(shape, args.rss_problems)
    print(f"(d) {r['problems']} new problems: {r['traced_bytes_per_problem'] / 1e3:.2f} KB "
          f"traced and {r['rss_bytes_per_problem'] / 1e3:.1f} KB of RSS per problem; the tuner "
          f"holds {r['tuner_choices_held']} choices; most growth from:")
    for where, size in r["top"]:
        print(f"      {size / 1e3:7.2f} KB/problem  {where}")


if __name__ == "__main__":
    main()
