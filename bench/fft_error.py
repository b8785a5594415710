"""Measure the ``fft`` algorithm's error against the ``|x| (*) |w| + |b|`` scale.

Prints, per dtype and problem family, the largest ``max|got - ref| / max(scale)`` (the
norm-wise ratio that tests/helpers/reference.py's ``NORMWISE_TOLERANCE`` bounds) and the largest
per-output ratio ``|got - ref| / scale`` (heavy-tailed, which is why the bound is norm-wise).
Standard-normal data; the reference is float64 (long double for float64 results).

    python bench/fft_error.py [default | slow | large]   # all three: many minutes
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests.helpers

from tests.helpers.cases import CONV, make_case
from tests.helpers.reference import conv_reference, conv_scale, reference_dtype

import pyconvfast as pcf


def ratios(x, w, b, **kwargs):
    got = CONV[w.ndim - 2](x, w, b, algorithm="fft", **kwargs)
    ref_dtype = reference_dtype(x.dtype)
    ref = conv_reference(x, w, b, dtype=ref_dtype, **kwargs)
    scale = conv_scale(x, w, b, dtype=ref_dtype, **kwargs)
    error = np.abs(got.astype(ref_dtype) - ref)
    if scale.max() == 0:
        return 0.0, 0.0
    positive = scale > 0
    per_output = float((error[positive] / scale[positive]).max()) if positive.any() else 0.0
    return float(error.max() / scale.max()), per_output


def sweep_cases(start, stop, big):
    for index in range(start, stop):
        case = make_case(20240611, index, big=big)
        x, w, b = case.arrays()
        if x.size and "fft" in pcf.list_algorithms(x, w, **case.kwargs):
            yield case.dtype, (x, w, b), case.kwargs


def large_cases(rng):
    def normal(shape, dtype):
        return rng.standard_normal(shape).astype(dtype)

    # float64's reference is in long double, without BLAS: its largest cases are left out.
    for dtype in (np.float32, np.float64):
        large = dtype == np.float32
        for length, k in ((2**14, 31), (2**16, 127)) + (((2**20, 63),) if large else ()):
            yield dtype, (normal((1, 2, length), dtype), normal((2, 2, k), dtype), None), \
                {"padding": "same"}
        for size, k in ((128, 15), (256, 31)) + (((512, 63),) if large else ()):
            yield dtype, (normal((1, 1, size, size), dtype), normal((1, 1, k, k), dtype), None), \
                {"padding": "same"}
        yield dtype, (normal((1, 1024, 512), dtype), normal((4, 1024, 31), dtype),
                      normal((4,), dtype)), {}
        if large:
            yield dtype, (normal((2, 64, 32, 32), dtype), normal((64, 64, 15, 15), dtype),
                          None), {"padding": 7}


def main():
    rng = np.random.default_rng(5)
    only = sys.argv[1] if len(sys.argv) > 1 else None  # "default", "slow" or "large"
    families = {
        "default sweep (stride-1 cases)": sweep_cases(0, 2000, False),
        "slow sweep (stride-1 cases)": sweep_cases(2000, 12000, True),
        "large (1-D to 2**20, 2-D to 512^2, k to 127 / 63x63, 1024 channels)": large_cases(rng),
    }
    print(f"{'family':<72} {'dtype':<8} {'cases':>5}  {'max err/max(scale)':>18}  "
          f"{'max err/scale':>13}")
    for name, cases in families.items():
        if only and not name.startswith(only):
            continue
        worst = {}
        for dtype, (x, w, b), kwargs in cases:
            normwise, per_output = ratios(x, w, b, **kwargs)
            count, a, c = worst.get(np.dtype(dtype).name, (0, 0.0, 0.0))
            worst[np.dtype(dtype).name] = (count + 1, max(a, normwise), max(c, per_output))
        for dtype, (count, normwise, per_output) in sorted(worst.items()):
            print(f"{name:<72} {dtype:<8} {count:>5}  {normwise:>18.3g}  {per_output:>13.3g}")


if __name__ == "__main__":
    main()
