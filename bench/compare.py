"""Per layer: pyconvfast's ``auto`` against PyTorch CPU and onnxruntime, side by side.

    OPENBLAS_CORETYPE= python bench/compare.py --models resnet50,mobilenet_v2 --threads 2

prints, for every layer, pyconvfast's time and GFLOP/s, its share of the machine's measured FMA
peak (independent vector FMAs, one core's rate times the threads: the limit no kernel passes;
a Winograd or FFT layer counts a direct convolution's FLOPs, so it can pass 100%), and the
GEMM peak (a large SciPy ``sgemm``/``dgemm`` on the same threads) for reference,
the time of a plain call (``pcf.conv2d(x, w, out=out)`` in a loop, the weight kept prepared
after its second call) over the plan's, and its speed-up over each peer that is installed (>1
means pyconvfast is faster), then the geometric mean of the speed-up over the faster peer per
network and the largest plain/plan ratio. Peers are never dependencies:
``pip install torch==2.13.0 onnx onnxruntime`` to have them.

``--json PATH`` also saves the run: the machine's measured ceilings (the GEMM peak, the FMA peak
of one core times the threads, the memory bandwidth of a large copy) and, per layer, its network,
shapes, FLOPs, the bytes it must move at least, and each library's time and GFLOP/s.
``docs/figures/speedup.py`` draws the docs' speed-up and roofline figures from such a file.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

import pyconvfast as pcf
from pyconvfast._models import MODELS, model_layers


def best_time(call, repeats, min_seconds=0.2):
    call()
    best, spent = float("inf"), 0.0
    for count in range(1, 1000):
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if count >= repeats and spent >= min_seconds:
            break
    return best


def blas_peak(dtype, n_threads, size=2048):
    """GFLOP/s of a size x size GEMM through SciPy's BLAS on ``n_threads`` threads."""
    from scipy.linalg import blas

    from pyconvfast._core.threads import blas_threads

    a = np.asfortranarray(np.random.default_rng(0).standard_normal((size, size)).astype(dtype))
    gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
    with blas_threads.limit(n_threads):
        seconds = best_time(lambda: gemm(1.0, a, a), 5)
    return 2 * size**3 / seconds / 1e9


def fma_peak(dtype, n_threads):
    """GFLOP/s of independent vector FMAs: one core's measured peak times ``n_threads``.

    Measured in the calling thread's CPU time (other processes on a shared machine do not lower
    it), so it is the ceiling the cores would reach if they were all this run's.
    """
    from pyconvfast._lib.direct.blocked import fma_peak_gflops

    return n_threads * fma_peak_gflops(dtype, seconds=0.05)


def copy_bandwidth(size_mb=256):
    """GB/s of a large NumPy copy (bytes read plus bytes written), one thread, best of five."""
    source = np.ones(size_mb * 2**20 // 8)
    target = np.empty_like(source)
    seconds = best_time(lambda: np.copyto(target, source), 5)
    return 2 * source.nbytes / seconds / 1e9


def min_bytes(layer, dtype):
    """Bytes a layer must move at least: its input, weight and output, each once."""
    out_shape = pcf.conv_output_shape(layer.x_shape, layer.w_shape, **layer.kwargs)
    return dtype.itemsize * sum(map(math.prod, (layer.x_shape, layer.w_shape, out_shape)))


def cpu_name():
    """The CPU's model name where /proc/cpuinfo tells it, else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def versions():
    """The versions of pyconvfast, NumPy and the peers installed, for the saved run."""
    found = {"python": platform.python_version(), "pyconvfast": pcf.__version__,
             "numpy": np.__version__}
    for name in ("torch", "onnxruntime"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            pass
    return found


def torch_runner(layer, x, weight, n_threads):
    try:
        import torch
        import torch.nn.functional as functional
    except ImportError:
        return None
    torch.set_num_threads(n_threads)
    kwargs = dict(layer.kwargs)
    padding = kwargs.pop("padding", 0)
    x_t, w_t = torch.from_numpy(x), torch.from_numpy(weight)
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        x_t = functional.pad(x_t, [p for pair in reversed(padding) for p in pair])
        padding = 0
    conv = getattr(functional, f"conv{layer.n_spatial}d")

    def call():
        with torch.no_grad():
            return conv(x_t, w_t, padding=padding, **kwargs)
    return call


def onnxruntime_runner(layer, x, weight, n_threads):
    try:
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    n = layer.n_spatial
    kwargs = layer.kwargs
    per_axis = lambda v: list(v) if isinstance(v, tuple) else [v] * n  # noqa: E731
    padding = kwargs.get("padding", 0)
    if padding == "same":
        out = pcf.conv_output_shape(x.shape, weight.shape, **kwargs)[2:]
        pads_before, pads_after = [], []
        for i, o, k, s, d in zip(x.shape[2:], out, weight.shape[2:],
                                 per_axis(kwargs.get("stride", 1)),
                                 per_axis(kwargs.get("dilation", 1))):
            total = max((o - 1) * s + d * (k - 1) + 1 - i, 0)
            pads_before.append(total // 2)
            pads_after.append(total - total // 2)
    elif isinstance(padding, tuple) and isinstance(padding[0], tuple):
        pads_before, pads_after = [p[0] for p in padding], [p[1] for p in padding]
    else:
        pads_before = pads_after = per_axis(padding)
    dtype = TensorProto.FLOAT if x.dtype == np.float32 else TensorProto.DOUBLE
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], strides=per_axis(kwargs.get("stride", 1)),
        dilations=per_axis(kwargs.get("dilation", 1)), group=kwargs.get("groups", 1),
        pads=list(pads_before) + list(pads_after), kernel_shape=list(weight.shape[2:]))
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", dtype, list(x.shape))],
        [helper.make_tensor_value_info("y", dtype, None)],
        initializer=[numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vgg16,mobilenet_v2,resnext50,deeplab,"
                        "tcn,depthwise_conv1d,c3d")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--algorithm", default="auto",
                        help="pyconvfast's algorithm (default auto); a layer it cannot run "
                             "falls back to auto")
    parser.add_argument("--json", metavar="PATH",
                        help="also save the run (ceilings and per-layer timings) as JSON")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)
    peak = blas_peak(dtype, args.threads)
    print(f"{args.threads} thread(s), {dtype}; measured {dtype} GEMM peak {peak:.1f} GFLOP/s")
    run = {"command": " ".join(["python", "bench/compare.py", *sys.argv[1:]]),
           "threads": args.threads, "dtype": str(dtype), "cpu": cpu_name(),
           "cpu_count": os.cpu_count(), "versions": versions(), "gemm_peak_gflops": peak,
           "fma_peak_gflops": fma_peak(dtype, args.threads),
           "copy_bandwidth_gbs": copy_bandwidth(), "layers": []}
    fma = run["fma_peak_gflops"]
    print(f"measured FMA peak {fma:.1f} GFLOP/s, copy bandwidth "
          f"{run['copy_bandwidth_gbs']:.1f} GB/s")
    rng = np.random.default_rng(0)
    for model in args.models.split(","):
        if model not in MODELS:
            parser.error(f"unknown model {model!r}; choose from {sorted(MODELS)}")
        print(f"\n{model}\n{'layer':<26} {'algorithm':>18} {'ms':>8} {'GFLOP/s':>8} "
              f"{'%fma':>6} {'plain':>6} {'vs torch':>9} {'vs ort':>8}")
        speedups, plain_ratios = [], []
        for layer in model_layers(model):
            x = rng.standard_normal(layer.x_shape).astype(dtype)
            weight = rng.standard_normal(layer.w_shape).astype(dtype)
            usable = pcf.list_algorithms(x, weight, **layer.kwargs)
            algorithm = args.algorithm if args.algorithm in usable else "auto"
            plan = pcf.plan(x.shape, weight, n_threads=args.threads, algorithm=algorithm,
                            **layer.kwargs)
            flops = plan.problem.flops
            out = plan(x)
            ours = best_time(lambda: plan(x, out=out), args.repeats)
            convolve = getattr(pcf, f"conv{len(layer.x_shape) - 2}d")
            call_algorithm = algorithm if algorithm != "auto" else "auto"
            plain = best_time(lambda: convolve(x, weight, out=out, n_threads=args.threads,
                                               algorithm=call_algorithm, **layer.kwargs),
                              args.repeats)
            plain_ratios.append(plain / ours)
            ratios, peer_seconds = [], {}
            for name, make in (("torch", torch_runner), ("onnxruntime", onnxruntime_runner)):
                runner = make(layer, x, weight, args.threads)
                if runner is not None:
                    peer_seconds[name] = best_time(runner, args.repeats)
                ratios.append(peer_seconds[name] / ours if name in peer_seconds else None)
            run["layers"].append({
                "network": model, "layer": layer.name, "x_shape": layer.x_shape,
                "w_shape": layer.w_shape, "kwargs": repr(layer.kwargs), "flops": flops,
                "bytes": min_bytes(layer, dtype), "algorithm": plan.algorithm,
                "seconds": {"pyconvfast": ours, "pyconvfast_plain": plain, **peer_seconds},
                "gflops": {name: flops / seconds / 1e9 for name, seconds
                           in {"pyconvfast": ours, **peer_seconds}.items()}})
            peers = [r for r in ratios if r is not None]
            if peers:
                speedups.append(min(peers))
            shown = [f"{r:.2f}x" if r is not None else "-" for r in ratios]
            print(f"{layer.name:<26} {plan.algorithm:>18} {ours * 1e3:>8.2f} "
                  f"{flops / ours / 1e9:>8.1f} {100 * flops / ours / 1e9 / fma:>5.0f}% "
                  f"{plain / ours:>5.2f}x {shown[0]:>9} {shown[1]:>8}")
        if speedups:
            geomean = math.exp(sum(map(math.log, speedups)) / len(speedups))
            print(f"{'geometric mean speed-up over the faster peer':<60} {geomean:.2f}x")
        print(f"{'largest plain call / plan':<60} {max(plain_ratios):.2f}x")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(run, file, indent=1)
            file.write("\n")


if __name__ == "__main__":
    main()
