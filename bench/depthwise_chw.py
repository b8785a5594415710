"""The "chw" loop order of ``depthwise`` against the best of its other orders (and PyTorch) on
MobileNetV2's depthwise layers.

Run from the repository root, with the extensions built in place:

    PYTHONPATH=src python bench/depthwise_chw.py --threads 2 --rounds 60

Every round times each method in turn (order rotating), so load from other processes hits them
alike; each method's block of calls follows a short pause and one untimed call, so that the
other methods' thread pools (PyTorch's OpenMP runtime is not ours) have stopped spinning. A
method's time is the median over rounds, and a ratio is the median of the per-round ratios
(> 1: "chw" is faster). The kernels run through the algorithm's ``run``
with prepared weights and a preallocated output, so the numbers are the kernels' own, without
the per-call cost of the public functions. torch.nn.functional.conv2d is timed the same way when
torch is importable. GFLOP/s counts a multiply-add as two flops; the FMA peak of this machine
(``fma_peak_gflops``, one core, times the threads) is printed for scale.
"""

import argparse
import time

import numpy as np

from pyconvfast import _api, _models
from pyconvfast._algorithms import registry
from pyconvfast._algorithms.depthwise import _depthwise_loop_order
from pyconvfast._lib.direct.blocked import fma_peak_gflops

OLD_ORDERS = ("rows", "blocked")


def _kernel_call(layer, order, n_threads, dtype):
    """A no-argument call of "depthwise" with the given loop order on this layer's problem."""
    algorithm = registry.get("depthwise")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(layer.x_shape).astype(dtype)
    w = rng.standard_normal(layer.w_shape).astype(dtype)
    b = rng.standard_normal(layer.w_shape[0]).astype(dtype)
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, has_bias=True, dtype=x.dtype,
                                **layer.kwargs)
    out = np.empty(problem.out_shape, dtype)
    prepared = algorithm.prepare(problem, _api.weight_5d(w, problem))
    x5, out5 = _api._channels_first_5d(x, problem), _api._channels_first_5d(out, problem)
    params = {"order": order}
    if _depthwise_loop_order(problem, x5, params) != order:
        return None, None, None  # this order falls back to another on this layer

    def run():
        algorithm.run(problem, x5, prepared, b, out5, n_threads, params)
        return out

    return run, problem.flops, (x, w, b)


def _torch_call(x, w, b, layer, n_threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(n_threads)
    xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))

    def run():
        with torch.no_grad():
            return F.conv2d(xt, wt, bt, **layer.kwargs).numpy()

    return run


def _time(run, repeat, pause=0.0):
    if pause:
        time.sleep(pause)
        run()
    start = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - start) / repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5, help="calls of a method per round")
    parser.add_argument("--pause", type=float, default=0.005,
                        help="seconds of pause before each method's block of calls")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    try:
        if args.no_torch:
            raise ImportError
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    peak = fma_peak_gflops(dtype) * args.threads
    print(f"FMA peak (fma_peak_gflops x {args.threads} threads): {peak:.0f} GF/s; {args.dtype}, "
          f"batch 1, {args.threads} threads, {args.rounds} rounds x {args.repeat} calls")
    header = (f"{'layer':<12} {'x shape':<18} {'s':>1} {'chw GF/s':>9} {'best old':>13} "
              f"{'old GF/s':>9} {'chw/old':>8}")
    if have_torch:
        header += f" {'torch GF/s':>10} {'chw/torch':>9}"
    print(header)
    for layer in _models.model_layers("mobilenet_v2"):
        if not layer.name.endswith(".dw"):
            continue
        methods = {}
        run, flops, arrays = _kernel_call(layer, "chw", args.threads, dtype)
        methods["chw"] = run
        for order in OLD_ORDERS:
            run = _kernel_call(layer, order, args.threads, dtype)[0]
            if run is not None:
                methods[order] = run
        old_orders = [order for order in OLD_ORDERS if order in methods]
        reference = methods["chw"]().copy()
        for order in old_orders:
            np.testing.assert_allclose(methods[order](), reference, rtol=1e-4, atol=1e-4)
        if have_torch:
            methods["torch"] = _torch_call(*arrays, layer, args.threads)
            np.testing.assert_allclose(methods["torch"](), reference, rtol=1e-4, atol=1e-4)
        for run in methods.values():  # warm up
            _time(run, args.repeat)
        times = {name: [] for name in methods}
        names = list(methods)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                times[name].append(_time(methods[name], args.repeat, args.pause))
        times = {name: np.array(t) for name, t in times.items()}
        best_old = min(old_orders, key=lambda name: np.median(times[name]))
        gflops = {name: flops / np.median(t) / 1e9 for name, t in times.items()}
        ratio = np.median(times[best_old] / times["chw"])
        line = (f"{layer.name:<12} {str(list(layer.x_shape)):<18} "
                f"{layer.kwargs.get('stride', 1):>1} {gflops['chw']:>9.1f} {best_old:>13} "
                f"{gflops[best_old]:>9.1f} {ratio:>7.2f}x")
        if have_torch:
            line += (f" {gflops['torch']:>10.1f} "
                     f"{np.median(times['torch'] / times['chw']):>8.2f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
