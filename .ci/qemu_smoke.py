"""Smoke test of the run-time CPU dispatch, run by ``.ci/qemu-smoke``: natively, and under
``qemu-x86_64 -cpu Nehalem`` (SSE4.2, no AVX): a build from this tree must neither die of SIGILL
on a CPU without AVX2 nor leave the AVX2/AVX-512 kernels unused where the CPU has them.

    python .ci/qemu_smoke.py --expect native      # levels = the best /proc/cpuinfo allows
    qemu-x86_64 -cpu Nehalem "$(command -v python)" .ci/qemu_smoke.py --expect baseline

Imports pyconvfast, checks the SIMD level each dispatching kernel picked, then runs every
registered algorithm (each on at least one problem, float32 and float64, 1-D/2-D/3-D, groups,
depthwise, strides) and compares with a NumPy reference. Exits non-zero on any failure.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("PYCONVFAST_TUNE", "estimate")  # no timing under emulation
os.environ.setdefault("PYCONVFAST_CACHE_DIR", tempfile.mkdtemp(prefix="pcf-qemu-smoke-"))

import numpy as np

import pyconvfast as pcf
from pyconvfast._lib.cpu import levels
from pyconvfast._lib.depthwise import kernel as depthwise
from pyconvfast._lib.grouped import kernel as grouped
from pyconvfast._lib.pointwise import kernel as pointwise

CONV = {1: pcf.conv1d, 2: pcf.conv2d, 3: pcf.conv3d}


def reference(x, w, stride, padding, groups):
    """Zero-padded grouped cross-correlation in float64, channels-first."""
    n_spatial = w.ndim - 2
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(padding, padding)] * n_spatial)
    c_per_group, k_per_group = w.shape[1], w.shape[0] // groups
    out_size = [(x.shape[2 + a] - w.shape[2 + a]) // stride + 1 for a in range(n_spatial)]
    out = np.zeros((x.shape[0], w.shape[0], *out_size))
    for tap in np.ndindex(*w.shape[2:]):
        window = x[(slice(None), slice(None)) + tuple(
            slice(t, t + (o - 1) * stride + 1, stride) for t, o in zip(tap, out_size))]
        for g in range(groups):
            xs = window[:, g * c_per_group:(g + 1) * c_per_group]
            ws = w[(slice(g * k_per_group, (g + 1) * k_per_group), slice(None)) + tap]
            out[:, g * k_per_group:(g + 1) * k_per_group] += np.einsum(
                "nc...,kc->nk...", xs, ws.astype(np.float64))
    return out


def best_level_from_cpuinfo():
    """'avx512f', 'avx2' or 'baseline', from the flags the kernel of this machine reports."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return None
    if "avx512f" in flags:
        return "avx512f"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    return "baseline"


PROBLEMS = [  # (x shape, weight shape, stride, padding, groups)
    ((2, 8, 10, 11), (8, 8, 3, 3), 1, 1, 1),     # dense 3x3: direct, im2col, Winograd
    ((1, 8, 9, 9), (16, 1, 3, 3), 2, 1, 8),      # depthwise, multiplier 2
    ((2, 8, 9, 10), (12, 4, 3, 3), 1, 1, 2),     # grouped, stride 1 (shifted path)
    ((1, 12, 9, 10), (9, 4, 3, 3), 2, 1, 3),     # grouped, stride 2 (lowered path)
    ((2, 6, 40), (5, 6, 5), 1, 2, 1),            # 1-D
    ((1, 4, 5, 6, 7), (6, 2, 3, 3, 3), 1, 1, 2),  # 3-D grouped
    ((1, 3, 6, 5, 7), (4, 3, 3, 3, 3), 2, 1, 1),  # 3-D dense, strided
    ((1, 1, 33, 35), (1, 1, 5, 5), 1, 2, 1),     # single-channel image filter
    ((1, 3, 33, 35), (3, 1, 7, 7), 1, 3, 3),     # rank-1 kernels: "separable" (two passes)
    ((2, 20, 7, 9), (24, 20, 1, 1), 1, 0, 1),    # 1x1 on 63 pixels: pointwise_packed, hwc tiles
    ((1, 16, 13, 12), (17, 16, 1, 1), 1, 0, 1),  # 1x1 on 156 pixels: its chw tiles
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect", required=True, choices=("native", "baseline"),
                        help="the SIMD level the kernels must pick: the best this CPU has "
                             "(native) or the SSE baseline (under qemu -cpu Nehalem)")
    args = parser.parse_args()
    expected = best_level_from_cpuinfo() if args.expect == "native" else "baseline"
    failures = []
    print(f"SIMD level {levels.simd_level()} (CPU offers {levels.simd_levels()})")
    for module in (depthwise, grouped, pointwise):
        level = module.active_variant().level
        print(f"{module.__name__}: variant {module.active_variant().name}")
        if expected is not None and level != expected:
            failures.append(f"{module.__name__} picked {level}, expected {expected}")
    rng = np.random.default_rng(0)
    ran = set()
    for x_shape, w_shape, stride, padding, groups in PROBLEMS:
        for dtype, tolerance in ((np.float32, 2e-4), (np.float64, 1e-11)):
            x = rng.standard_normal(x_shape).astype(dtype)
            if w_shape[-2:] == (7, 7):  # an outer product per slice: rank-1, as a blur
                column, row = rng.random(w_shape[:-1]), rng.random(w_shape[:-2] + (7,))
                w = (column[..., :, None] * row[..., None, :]).astype(dtype)
            else:
                w = rng.standard_normal(w_shape).astype(dtype)
            kwargs = {"stride": stride, "padding": padding, "groups": groups}
            ref = reference(x, w, **kwargs)
            scale = reference(np.abs(x), np.abs(w), **kwargs)
            for algorithm in pcf.list_algorithms(x, w, **kwargs) + ["auto"]:
                got = CONV[w.ndim - 2](x, w, algorithm=algorithm, **kwargs)
                error = float(np.max(np.abs(got - ref) / (scale + 1e-30)))
                ran.add(algorithm)
                if not error <= tolerance:
                    failures.append(f"{algorithm} x{x_shape} w{w_shape} {np.dtype(dtype).name}: "
                                    f"error {error:.3g} > {tolerance:g}")
    missing = set(pcf.list_algorithms()) - ran
    if missing:
        failures.append(f"algorithms never run by the smoke problems: {sorted(missing)}")
    print(f"ran {sorted(ran)} on {len(PROBLEMS)} problems x 2 dtypes")
    for failure in failures:
        print("FAILED:", failure)
    print("qemu smoke:", "FAILED" if failures else "ok", f"(expected SIMD level {expected})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
