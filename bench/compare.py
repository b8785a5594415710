"""Per layer: pyconvfast's ``auto`` against PyTorch CPU and onnxruntime, side by side.

    OPENBLAS_CORETYPE= python bench/compare.py --models resnet50,mobilenet_v2 --threads 2

prints, for every layer, pyconvfast's time and GFLOP/s, its share of the machine's measured peak
(a large SciPy ``sgemm``/``dgemm`` on the same threads, the best dense rate a BLAS reaches here),
the time of a plain call (``pcf.conv2d(x, w, out=out)`` in a loop, the weight kept prepared
after its second call) over the plan's, and its speed-up over each peer that is installed (>1
means pyconvfast is faster), then the geometric mean of the speed-up over the faster peer per
network and the largest plain/plan ratio. Peers are never dependencies:
``pip install torch==2.13.0 onnx onnxruntime`` to have them.
"""

import argparse
import math
import os
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
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)
    peak = blas_peak(dtype, args.threads)
    print(f"{args.threads} thread(s), {dtype}; measured {dtype} GEMM peak {peak:.1f} GFLOP/s")
    rng = np.random.default_rng(0)
    for model in args.models.split(","):
        if model not in MODELS:
            parser.error(f"unknown model {model!r}; choose from {sorted(MODELS)}")
        print(f"\n{model}\n{'layer':<26} {'algorithm':>18} {'ms':>8} {'GFLOP/s':>8} "
              f"{'%peak':>6} {'plain':>6} {'vs torch':>9} {'vs ort':>8}")
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
            ratios = []
            for make in (torch_runner, onnxruntime_runner):
                runner = make(layer, x, weight, args.threads)
                ratios.append(None if runner is None else best_time(runner, args.repeats) / ours)
            peers = [r for r in ratios if r is not None]
            if peers:
                speedups.append(min(peers))
            shown = [f"{r:.2f}x" if r is not None else "-" for r in ratios]
            print(f"{layer.name:<26} {plan.algorithm:>18} {ours * 1e3:>8.2f} "
                  f"{flops / ours / 1e9:>8.1f} {100 * flops / ours / 1e9 / peak:>5.0f}% "
                  f"{plain / ours:>5.2f}x {shown[0]:>9} {shown[1]:>8}")
        if speedups:
            geomean = math.exp(sum(map(math.log, speedups)) / len(speedups))
            print(f"{'geometric mean speed-up over the faster peer':<60} {geomean:.2f}x")
        print(f"{'largest plain call / plan':<60} {max(plain_ratios):.2f}x")


if __name__ == "__main__":
    main()
