"""The first ``auto`` call on a large layer against its steady time, slice timing on and off.

With a fresh tuning cache each, the first call times the candidates and then runs the winner;
"whole" sets ``TIMING_FLOPS`` to infinity, which is how every problem was tuned before large
ones were timed on a slice. Both run in this one process, one after the other.

    python bench/first_call.py                       # 1x256x384x384, 256x256x3x3, 2 threads
    python bench/first_call.py --shape 1,4096,1000,1000 --out-channels 4096 --kernel 1
"""

import argparse
import os
import tempfile
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1,256,384,384", help="x shape, N,C,H,W")
    parser.add_argument("--out-channels", type=int, default=256)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steady-runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["PYCONVFAST_TUNE"] = "measure"
    import pyconvfast as pcf
    from pyconvfast.tuning import autotune as _autotune

    shape = tuple(int(v) for v in args.shape.split(","))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((args.out_channels, shape[1], args.kernel, args.kernel),
                            dtype=np.float32)
    kwargs = dict(padding=args.kernel // 2, n_threads=args.threads)
    for label, flops in (("sliced", _autotune.TIMING_FLOPS), ("whole", float("inf"))):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["PYCONVFAST_CACHE_DIR"] = cache
            _autotune.forget()
            _autotune.TIMING_FLOPS = flops
            start = time.perf_counter()
            pcf.conv2d(x, w, **kwargs)
            first = time.perf_counter() - start
            steady = []
            for _ in range(args.steady_runs):
                start = time.perf_counter()
                pcf.conv2d(x, w, **kwargs)
                steady.append(time.perf_counter() - start)
            chosen = [entry["algorithm"] for entry in pcf.tuning.report()]
        print(f"{label:6}: first call {first:.2f} s, steady {min(steady):.3f} s, "
              f"ratio {first / min(steady):.1f}x, chose {chosen}", flush=True)


if __name__ == "__main__":
    main()
