"""Time each algorithm on normal inputs and on subnormal ones (float32), and BLAS's sgemm alone.

    python bench/subnormals.py --threads 2 --repeats 5

Three inputs per algorithm, all of the same shape: standard-normal ``x`` and ``w`` ("normal");
``x`` scaled into the subnormal range, below 1.2e-38 ("subnormal x"); and both scaled by 1e-20,
so that every product is subnormal ("subnormal products"). Each time is the best of
``--repeats`` interleaved runs; the ratios are to "normal". Kernels that flush to zero (every
pyconvfast kernel on x86, see docs/guide/algorithms.rst) should show ratios near 1; a CPU that
takes a microcode assist on subnormals shows tens to hundreds where nothing flushes.

The sgemm lines time SciPy's BLAS alone on the same kind of data from the calling thread,
which does not flush, with BLAS limited to 1 thread and with ``--threads`` threads (BLAS's
own threads never flush, whatever the caller does): they say whether the BLAS itself slows
down, i.e. whether calling it from inside flushing OpenMP threads matters.
"""

import argparse
import os
import time

import numpy as np

import pyconvfast as pcf

PROBLEMS = {  # algorithm: (x shape, w shape, groups)
    "direct": ((1, 32, 28, 28), (32, 32, 3, 3), 1),
    "im2col": ((1, 64, 28, 28), (64, 64, 3, 3), 1),
    "im2col (1x1)": ((1, 256, 28, 28), (64, 256, 1, 1), 1),
    "depthwise": ((1, 64, 56, 56), (64, 1, 3, 3), 64),
    "winograd_f2x2_3x3": ((1, 64, 28, 28), (64, 64, 3, 3), 1),
    "winograd_f4x4_3x3": ((1, 64, 28, 28), (64, 64, 3, 3), 1),
}
SCALES = {"normal": (1.0, 1.0), "subnormal x": (1e-39, 1.0), "subnormal products": (1e-20, 1e-20)}


def _best(calls, repeats):
    best = dict.fromkeys(calls, float("inf"))
    for call in calls.values():
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _conv_calls(algorithm, threads):
    rng = np.random.default_rng(0)
    x_shape, w_shape, groups = PROBLEMS[algorithm]
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    name = algorithm.split()[0]
    padding = 0 if w_shape[2] == 1 else 1
    calls = {}
    for label, (x_scale, w_scale) in SCALES.items():
        xs, ws = x * np.float32(x_scale), w * np.float32(w_scale)
        out = np.empty(pcf.conv_output_shape(x_shape, w_shape, padding=padding, groups=groups),
                       np.float32)
        calls[label] = (lambda xs=xs, ws=ws, out=out: pcf.conv2d(
            xs, ws, padding=padding, groups=groups, algorithm=name, out=out, n_threads=threads))
    return calls


def _sgemm_calls():
    from scipy.linalg import blas

    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((512, 512)).astype(np.float32))
    b = np.asfortranarray(rng.standard_normal((512, 512)).astype(np.float32))
    calls = {}
    for label, (a_scale, b_scale) in SCALES.items():
        aa = np.asfortranarray(a * np.float32(a_scale))
        bb = np.asfortranarray(b * np.float32(b_scale))
        calls[label] = lambda aa=aa, bb=bb: blas.sgemm(1.0, aa, bb)
    return calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"pyconvfast {pcf.__version__} from {os.path.dirname(pcf.__file__)}, "
          f"{args.threads} threads; ms (ratio to normal)")
    rows = [(name, _conv_calls(name, args.threads)) for name in PROBLEMS]
    from pyconvfast._core.threads import blas_threads
    for blas_count in (1, args.threads):
        def limited(call, count=blas_count):
            def run():
                with blas_threads.limit(count):
                    call()
            return run
        rows.append((f"sgemm 512^3, BLAS {blas_count} thr",
                     {k: limited(v) for k, v in _sgemm_calls().items()}))
    for name, calls in rows:
        best = _best(calls, args.repeats)
        cells = "  ".join(f"{label} {best[label] * 1e3:8.3f} ({best[label] / best['normal']:6.2f})"
                          for label in calls)
        print(f"{name:<26} {cells}")


if __name__ == "__main__":
    main()
