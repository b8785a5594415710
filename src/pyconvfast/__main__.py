"""The command line: ``python -m pyconvfast tune | cache | bench | demo``."""

import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from pyconvfast.tuning import autotune
from pyconvfast._config import PRECISIONS
from pyconvfast._conv import list_algorithms
from pyconvfast._demo import run_demo
from pyconvfast._models import Layer, model_layers
from pyconvfast._plan import plan
from pyconvfast._version import __version__

TUNABLE_MODELS = ("resnet50", "vgg16", "mobilenet_v2")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int_list(text):
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _padding(text):
    if text in ("same", "valid"):
        return text
    try:
        return _int_list(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an int, comma-separated ints, 'same' or 'valid', got {text!r}") from None


def build_parser():
    # Named as it was started: the console script, or python -m pyconvfast.
    prog = ("python -m pyconvfast" if os.path.basename(sys.argv[0]) in ("__main__.py", "-c")
            else "pyconvfast")
    parser = argparse.ArgumentParser(prog=prog,
                                     description="pyconvfast: fast CPU convolutions for NumPy.")
    parser.add_argument("--version", action="version", version=f"pyconvfast {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)

    demo = commands.add_parser(
        "demo", help="run, check and time ResNet-18's convolution layers on random data")
    demo.add_argument("--batch", type=_positive_int, default=1, help="images per call (1)")
    demo.add_argument("--image-size", type=_positive_int, default=224,
                      help="input height and width (224)")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="threads (default: OMP_NUM_THREADS or all cores)")

    tune = commands.add_parser("tune", help="tune and cache the layers of a network or a file")
    source = tune.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", choices=TUNABLE_MODELS, help="a known network")
    source.add_argument("shapes", nargs="?", metavar="FILE.json",
                        help='a JSON list of {"x_shape": [...], "w_shape": [...], and conv '
                             'keywords such as "stride", "padding", "groups", "dtype"}')
    tune.add_argument("--batch", type=_positive_int, default=1, help="batch for --model (1)")
    tune.add_argument("--threads", type=_positive_int, default=None, help="threads to tune for")
    tune.add_argument("--precision", choices=PRECISIONS, default=None,
                      help="'accurate': only algorithms within the plain summation error bound "
                           "(default: PYCONVFAST_PRECISION, else 'fast')")

    cache = commands.add_parser("cache", help="inspect or manage the tuning cache")
    cache.add_argument("action", choices=("show", "path", "clear", "export", "load"),
                       help="show the entries, print the file's path, clear this machine's "
                            "entries, export them to a file or load a file")
    cache.add_argument("file", nargs="?", help="the file for export and load")
    cache.add_argument("--json", action="store_true",
                       help="show: print the entries as JSON (a list of objects)")

    bench = commands.add_parser("bench", help="time every algorithm on one problem")
    bench.add_argument("--x-shape", type=_int_list, required=True, metavar="N,C,H,W",
                       help="input shape, e.g. 1,64,56,56")
    bench.add_argument("--w-shape", type=_int_list, required=True, metavar="K,C,R,S",
                       help="weight shape, e.g. 64,64,3,3")
    bench.add_argument("--stride", type=_int_list, default=1,
                       help="an int or comma-separated ints, one per spatial axis (1)")
    bench.add_argument("--padding", type=_padding, default="0",
                       help="an int, comma-separated ints, 'same' or 'valid' (0)")
    bench.add_argument("--dilation", type=_int_list, default=1,
                       help="an int or comma-separated ints, one per spatial axis (1)")
    bench.add_argument("--groups", type=_positive_int, default=1, help="channel groups (1)")
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="float32 (default) or float64")
    bench.add_argument("--threads", type=_positive_int, default=None,
                       help="threads (default: OMP_NUM_THREADS or all cores)")
    bench.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="'accurate': only algorithms within the plain summation error bound")
    bench.add_argument("--repeats", type=_positive_int, default=10,
                       help="timed runs per algorithm; the best counts (10)")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (matplotlib)")
    bench.add_argument("--json", action="store_true",
                       help="print the results as JSON instead of a table")
    return parser


def _layers_from_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            specs = json.load(handle)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: cannot read {path}: {error}") from None
    if not isinstance(specs, list):
        raise SystemExit(f"error: {path} must hold a JSON list of layer objects")
    layers = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict) or "x_shape" not in spec or "w_shape" not in spec:
            raise SystemExit(f"error: entry {index} of {path} needs 'x_shape' and 'w_shape'")
        kwargs = {key: (tuple(map(tuple, v)) if key == "padding" and isinstance(v, list)
                        and v and isinstance(v[0], list) else
                        tuple(v) if isinstance(v, list) else v)
                  for key, v in spec.items() if key not in ("x_shape", "w_shape", "name")}
        layers.append(Layer(spec.get("name", f"layer{index}"), tuple(spec["x_shape"]),
                            tuple(spec["w_shape"]), kwargs))
    return layers


def _tune(args):
    layers = (model_layers(args.model, batch=args.batch) if args.model
              else _layers_from_file(args.shapes))
    if autotune.tune_mode() in ("off", "estimate"):
        print("note: PYCONVFAST_TUNE is off/estimate: nothing is timed or stored", file=sys.stderr)
    start = time.perf_counter()
    chosen = []
    # On stderr, with an ETA, and hidden when stderr is not a terminal (disable=None).
    progress = tqdm(layers, desc="tuning", unit="layer", file=sys.stderr, disable=None,
                    dynamic_ncols=True)
    for layer in progress:
        progress.set_postfix_str(layer.name)
        kwargs = dict(layer.kwargs)
        dtype = kwargs.pop("dtype", "float32")
        try:
            weight = np.zeros(layer.w_shape, dtype=dtype)
            layer_plan = plan(layer.x_shape, weight, n_threads=args.threads,
                              precision=args.precision, **kwargs)
        except (TypeError, ValueError) as error:
            progress.close()
            print(f"error: layer {layer.name}: {error}", file=sys.stderr)
            return 2
        chosen.append((layer.name, layer_plan))
    progress.close()
    print(f"tuned {len(layers)} layers in {time.perf_counter() - start:.1f} s")
    for name, layer_plan in chosen:
        print(f"  {name:<28} {layer_plan.algorithm}")
    return 0


def _cache(args):
    from pyconvfast import tuning

    if args.action in ("export", "load") and not args.file:
        print(f"error: cache {args.action} needs a file", file=sys.stderr)
        return 2
    if args.action == "path":
        print(tuning.cache_path())
    elif args.action == "show":
        entries = tuning.report()
        if args.json:
            print(json.dumps(entries, indent=1))
            return 0
        print(f"{tuning.cache_path()}: {len(entries)} entries for this machine")
        for entry in entries:
            timings = ", ".join(f"{label} {seconds * 1e3:.3f} ms"
                                for label, seconds in sorted(entry["timings"].items(),
                                                             key=lambda kv: kv[1]))
            label = autotune.candidate_label(entry["algorithm"], entry["params"])
            print(f"{entry['key']}\n    -> {label}    ({timings})")
    elif args.action == "clear":
        try:
            tuning.clear()
        except OSError as error:  # read-only or locked cache, a directory in the file's place
            print(f"error: cannot clear the tuning cache {tuning.cache_path()}: {error}",
                  file=sys.stderr)
            return 1
        print(f"cleared this machine's entries in {tuning.cache_path()}")
    elif args.action == "export":
        try:
            tuning.export(args.file)
        except OSError as error:
            print(f"error: cannot export to {args.file}: {error}", file=sys.stderr)
            return 1
        print(f"exported to {args.file}")
    else:
        try:
            tuning.load(args.file)
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"loaded {args.file}")
    return 0


def _bench(args):
    pyplot = None
    if args.plot:  # before the run, which can take minutes: not after it
        pyplot = _import_pyplot()
        if pyplot is None:
            print("error: --plot needs matplotlib (pip install matplotlib); nothing was run",
                  file=sys.stderr)
            return 1
    kwargs = {"stride": args.stride, "padding": args.padding, "dilation": args.dilation,
              "groups": args.groups, "precision": args.precision}
    rng = np.random.default_rng(0)
    try:
        x = rng.standard_normal(args.x_shape).astype(args.dtype)
        weight = rng.standard_normal(args.w_shape).astype(args.dtype)
        names = list_algorithms(x, weight, **kwargs)
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = []
    for name in names + ["auto"]:
        layer_plan = plan(x.shape, weight, algorithm=name, n_threads=args.threads, **kwargs)
        flops = layer_plan.problem.flops
        out = layer_plan(x)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            layer_plan(x, out=out)
            best = min(best, time.perf_counter() - start)
        label = name if name != "auto" else f"auto ({layer_plan.algorithm})"
        rows.append((label, best))
    fastest = min(seconds for _, seconds in rows)
    if args.json:
        print(json.dumps({
            "x_shape": args.x_shape, "w_shape": args.w_shape, "kwargs": kwargs,
            "dtype": args.dtype, "n_threads": layer_plan.n_threads, "repeats": args.repeats,
            "flops": flops,
            "results": [{"algorithm": label, "seconds": seconds, "gflops": flops / seconds / 1e9}
                        for label, seconds in rows]}, indent=1))
        return _plot(pyplot, rows, flops, args.plot) if args.plot else 0
    print(f"x {args.x_shape}, w {args.w_shape}, {kwargs}, {args.dtype}, "
          f"{layer_plan.n_threads} thread(s), best of {args.repeats}")
    print(f"{'algorithm':<24} {'time ms':>10} {'GFLOP/s':>9} {'vs best':>8}")
    for label, seconds in rows:
        print(f"{label:<24} {seconds * 1e3:>10.3f} {flops / seconds / 1e9:>9.2f} "
              f"{seconds / fastest:>7.2f}x")
    if args.plot:
        return _plot(pyplot, rows, flops, args.plot)
    return 0


def _import_pyplot():
    """``matplotlib.pyplot`` with the file-only Agg backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _plot(plt, rows, flops, path):
    figure, axes = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)))
    labels = [label for label, _ in rows]
    axes.barh(labels, [flops / seconds / 1e9 for _, seconds in rows], color="tab:blue")
    axes.invert_yaxis()
    axes.set_xlabel("GFLOP/s")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except (OSError, ValueError) as error:  # no such folder, an unknown file extension
        print(f"error: cannot write {path}: {error}", file=sys.stderr)
        return 1
    finally:
        plt.close(figure)
    print(f"wrote {path}")
    return 0


def main(argv=None):
    """Entry point; returns the process exit status (0 on success, 1 when the operation failed,
    2 on a usage error)."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        ok = run_demo(batch=args.batch, image_size=args.image_size, n_threads=args.threads)
        return 0 if ok else 1
    if args.command == "tune":
        return _tune(args)
    if args.command == "cache":
        return _cache(args)
    return _bench(args)


def _main_for_shell():
    try:
        return main()
    except BrokenPipeError:
        # The reader went away (e.g. `... cache show | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(_main_for_shell())
