"""pyconvfast.dask on a large image: 1 vs 2 workers, overhead over one NumPy call, and
dask-image's per-channel convolution.

A whole-slide-style pipeline: a (1, 3, S, S) float32 image held in the cluster's memory
(persisted first, so that no timing includes making it), convolved 3 -> 16 channels with
"same" padding, then reduced to one mean per output channel (the result never lands whole).

* scaling: the pipeline on a LocalCluster of 1, then 2 worker processes of one thread each;
* overhead: ``pyconvfast.dask`` on the threaded scheduler against one ``pcf.conv2d`` call on
  an image that fits (``--fit-size``, chunks ``--chunk``), in this process, the two timed in
  turns: the result kept as blocks, reduced per channel, and gathered into one array;
* dask-image: ``dask_image.ndfilters.correlate`` for each (output, input) channel pair, summed
  over inputs (48 passes), on the same cluster with 2 workers, against ``pyconvfast.dask``.

    python bench/dask_scaling.py --size 8192 --fit-size 4096 --peer-size 2048

Needs dask[array], distributed and dask-image. Other work on the machine slows every row;
note ``uptime`` with the numbers.
"""

import argparse
import os
import time

import numpy as np


def _timed(function, repeat):
    """Best of ``repeat`` timed runs after one untimed run (worker imports, first-touch
    memory, the tuner's first measurement)."""
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--fit-size", type=int, default=4096)
    parser.add_argument("--peer-size", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--kernels", default="3,7")
    parser.add_argument("--c-out", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--overhead-only", action="store_true",
                        help="only the overhead rows (no cluster)")
    args = parser.parse_args()

    import dask.array as da
    import distributed

    import pyconvfast.dask as pcfd

    rng = np.random.default_rng(0)
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"cpus: {os.cpu_count()}")
    rows = []
    for k in map(int, args.kernels.split(",")):
        weight = (rng.standard_normal((args.c_out, 3, k, k)) / (3 * k * k)).astype(np.float32)
        conv = dict(padding="same", padding_mode="reflect")

        # --- scaling: 1 vs 2 workers on the large image ---------------------------------------
        timings = {}
        for workers in () if args.overhead_only else (1, 2):
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                          processes=True, host="127.0.0.1",
                                          dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                image = da.random.default_rng(1).random(
                    (1, 3, args.size, args.size), dtype=np.float32,
                    chunks=(1, 3, args.chunk, args.chunk)).persist()
                distributed.wait(image)
                lazy = pcfd.conv2d(image, weight, **conv).mean(axis=(0, 2, 3))
                seconds, _ = _timed(lambda: lazy.compute(), args.repeat)
                timings[workers] = seconds
                if workers == 2:
                    # dask-image on a smaller image, same cluster
                    small = image[:, :, :args.peer_size, :args.peer_size].rechunk(
                        (1, 3, args.chunk // 2, args.chunk // 2)).persist()
                    distributed.wait(small)
                    ours = pcfd.conv2d(small, weight, padding="same",
                                       padding_mode="zeros").mean(axis=(0, 2, 3))
                    t_ours, got = _timed(lambda: ours.compute(), args.repeat)
                    peer = _dask_image_conv(small, weight).mean(axis=(0, 2, 3))
                    t_peer, want = _timed(lambda: peer.compute(), 1)  # slow: one run
                    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
                    rows.append((f"{k}x{k} dask-image vs pyconvfast.dask, {args.peer_size}^2, "
                                 f"2 workers", t_peer, t_ours, t_peer / t_ours))
        if timings:
            rows.append((f"{k}x{k} {args.size}^2 1 -> 2 workers", timings[1], timings[2],
                         timings[1] / timings[2]))

        # --- overhead against one NumPy call, in this process, interleaved -------------------
        x = rng.random((1, 3, args.fit_size, args.fit_size), dtype=np.float32)
        rows.extend(_overhead_rows(k, x, weight, conv, args.chunk, args.repeat))

    print(f"{'case':<52} {'a (s)':>9} {'b (s)':>9} {'a/b or b/a':>10}")
    for name, a, b, ratio in rows:
        print(f"{name:<52} {a:9.3f} {b:9.3f} {ratio:10.2f}")
    print("rows: '1 -> 2 workers' a/b = speed-up; 'NumPy vs Dask' the median over rounds of "
          "b/a = overhead ratio; 'dask-image vs' a/b = pyconvfast.dask's speed-up")
    print(f"uptime: {os.popen('uptime').read().strip()}")


def _overhead_rows(k, x, weight, conv, chunk, repeat):
    """The Dask path over one NumPy call on an image that fits, both on every core (the
    threaded scheduler, its default ``n_threads`` per task, against ``pcf.conv2d``'s default
    threads), timed in turns so that other load on the machine hits both alike: the result
    kept as blocks (``persist``), reduced to a sum per output channel (the same ``einsum`` on
    both), and gathered into one array (``compute``, which adds Dask's copy into it)."""
    import dask.array as da

    import pyconvfast as pcf
    import pyconvfast.dask as pcfd

    lazy = pcfd.conv2d(da.from_array(x, chunks=(1, 3, chunk, chunk)), weight, **conv)
    pairs = {
        "blocks (persist)": (lambda: pcf.conv2d(x, weight, **conv),
                             lambda: lazy.persist(scheduler="threads")),
        "sum per channel": (lambda: np.einsum("nchw->c", pcf.conv2d(x, weight, **conv)),
                            lambda: da.einsum("nchw->c", lazy).compute(scheduler="threads")),
        "one array (compute)": (lambda: pcf.conv2d(x, weight, **conv),
                                lambda: lazy.compute(scheduler="threads")),
    }
    rows = []
    for name, (numpy_call, dask_call) in pairs.items():
        numpy_call(), dask_call()
        ratios, numpy_best, dask_best = [], float("inf"), float("inf")
        for _ in range(max(3, repeat)):
            start = time.perf_counter()
            numpy_call()
            middle = time.perf_counter()
            dask_call()
            end = time.perf_counter()
            numpy_best, dask_best = min(numpy_best, middle - start), min(dask_best, end - middle)
            ratios.append((end - middle) / (middle - start))
        rows.append((f"{k}x{k} {x.shape[-1]}^2 NumPy vs Dask, {name}", numpy_best, dask_best,
                     float(np.median(ratios))))
    return rows


def _dask_image_conv(image, weight):
    """3 -> C_out cross-correlation with zero padding, one 2-D correlate per channel pair."""
    import dask.array as da
    from dask_image import ndfilters

    c_out, c_in, kh, kw = weight.shape
    # ndimage centres a k-tap kernel at k // 2; "same" pads (k-1)//2 before: the same for odd k.
    outputs = []
    for o in range(c_out):
        total = None
        for c in range(c_in):
            term = ndfilters.correlate(image[0, c], weight[o, c], mode="constant", cval=0.0)
            total = term if total is None else total + term
        outputs.append(total)
    return da.stack(outputs)[None]


if __name__ == "__main__":
    main()
