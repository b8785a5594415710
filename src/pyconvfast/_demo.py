"""``python -m pyconvfast demo``: ResNet-18's convolution layers on random data, checked and timed.

Each distinct convolution of ResNet-18 (He et al., 2016) is planned with ``algorithm="auto"``
(tuned on first use, then read from the tuning cache) and run on random float32 data; the result
is checked against the float64 NumPy reference within the summation bound
``n_terms * eps * (|x| (*) |w|)``, and the best of a few timed runs is reported.
"""

import time

import numpy as np

from pyconvfast._plan import plan
from pyconvfast._core.reference import error_scale, reference_conv
from pyconvfast._core.threads import resolve_n_threads

# name, C_in, C_out, kernel, stride, padding, input size at 224x224
RESNET18_LAYERS = (
    ("conv1", 3, 64, 7, 2, 3, 224),
    ("layer1.conv", 64, 64, 3, 1, 1, 56),
    ("layer2.0.conv1", 64, 128, 3, 2, 1, 56),
    ("layer2.0.downsample", 64, 128, 1, 2, 0, 56),
    ("layer2.conv", 128, 128, 3, 1, 1, 28),
    ("layer3.0.conv1", 128, 256, 3, 2, 1, 28),
    ("layer3.0.downsample", 128, 256, 1, 2, 0, 28),
    ("layer3.conv", 256, 256, 3, 1, 1, 14),
    ("layer4.0.conv1", 256, 512, 3, 2, 1, 14),
    ("layer4.0.downsample", 256, 512, 1, 2, 0, 14),
    ("layer4.conv", 512, 512, 3, 1, 1, 7),
)


def run_demo(batch=1, image_size=224, n_threads=None, repeats=3, seed=0, print_fn=print):
    """Run, check and time every distinct convolution layer of ResNet-18.

    Parameters
    ----------
    batch : int
        Images per call.
    image_size : int
        Input height and width; the layer sizes scale from 224.
    n_threads : int, optional
        OpenMP threads (default: OpenMP's default).
    repeats : int
        Timed runs per layer; the best is reported.
    seed : int
        Seed of the random data.
    print_fn : callable
        Where the table's lines go.

    Returns
    -------
    bool
        True when every layer matched the reference.
    """
    rng = np.random.default_rng(seed)
    threads = resolve_n_threads(n_threads)
    print_fn(f"ResNet-18 convolution layers, batch {batch}, {image_size}x{image_size} input, "
             f"float32, {threads} thread(s)")
    header = (f"{'layer':<20} {'C_in->C_out':>12} {'k/s':>5} {'in':>5} {'algorithm':>17} "
              f"{'time ms':>9} {'GFLOP/s':>8} {'err/bound':>10}  check")
    print_fn(header)
    print_fn("-" * len(header))
    # Time every layer first, check them all after: the float64 reference runs on NumPy's BLAS,
    # whose worker threads keep spinning for a while after returning and would slow the timings.
    runs = []
    for name, c_in, c_out, kernel, stride, padding, size in RESNET18_LAYERS:
        size = max(kernel, size * image_size // 224)
        x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
        weight = rng.standard_normal((c_out, c_in, kernel, kernel), dtype=np.float32)
        weight /= np.sqrt(c_in * kernel * kernel)
        bias = rng.standard_normal(c_out, dtype=np.float32)
        layer_plan = plan(x.shape, weight, bias, stride=stride, padding=padding,
                          n_threads=threads)
        out = layer_plan(x)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            layer_plan(x, out=out)
            best = min(best, time.perf_counter() - start)
        runs.append((name, size, layer_plan, x, weight, bias, out, best))

    all_ok = True
    total_time = total_flops = 0.0
    for name, size, layer_plan, x, weight, bias, out, best in runs:
        problem = layer_plan.problem
        error = np.abs(out - reference_conv(problem, x, weight, bias))
        n_terms = problem.c_in * problem.kernel[0] * problem.kernel[1] + 1
        bound = n_terms * np.finfo(np.float32).eps * error_scale(problem, x, weight, bias)
        ratio = float(np.max(error / bound))
        ok = ratio <= 1.0
        all_ok &= ok
        total_time += best
        total_flops += problem.flops
        print_fn(f"{name:<20} {f'{problem.c_in}->{problem.c_out}':>12} "
                 f"{f'{problem.kernel[0]}/{problem.stride[0]}':>5} {size:>5} "
                 f"{layer_plan.algorithm:>17} {best * 1e3:>9.2f} "
                 f"{problem.flops / best / 1e9:>8.2f} {ratio:>10.2e}  {'ok' if ok else 'FAIL'}")
    print_fn("-" * len(header))
    print_fn(f"{'total':<20} {'':>12} {'':>5} {'':>5} {'':>17} {total_time * 1e3:>9.2f} "
             f"{total_flops / total_time / 1e9:>8.2f}")
    print_fn("all layers match the float64 reference" if all_ok
             else "SOME LAYERS DO NOT MATCH THE REFERENCE")
    return all_ok
