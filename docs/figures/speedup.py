"""Draw docs/figures/speedup.png and roofline.png from a saved ``bench/compare.py --json`` run.

    python docs/figures/speedup.py                         # from compare_2026-12.json beside it
    python docs/figures/speedup.py --data run.json --output-dir /tmp/figures

* ``speedup.png``: per layer, the time of PyTorch's and onnxruntime's convolution over
  pyconvfast's (a plan's ``auto`` choice), one panel per network, log scale, a line at 1: above
  it pyconvfast is faster.
* ``roofline.png``: per layer, pyconvfast's GFLOP/s against its arithmetic intensity (FLOPs over
  the bytes of input, weight and output, each moved once), under the run's measured ceilings:
  the FMA peak of its cores (independent vector FMAs, timed in thread CPU time) and the memory
  bandwidth of a large NumPy copy. The peers' points are drawn faintly for comparison.

The script reads only the JSON (it imports neither pyconvfast nor the peers), so the figures can
be redrawn anywhere; to refresh the data, run ``bench/compare.py --json`` on the machine to show.
"""

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

HERE = Path(__file__).resolve().parent
PEERS = {"torch": "PyTorch", "onnxruntime": "onnxruntime"}
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:olive"]


def load(path):
    """The saved run, checked for the fields the figures read."""
    with open(path) as file:
        run = json.load(file)
    for key in ("threads", "dtype", "fma_peak_gflops", "copy_bandwidth_gbs", "layers"):
        if key not in run:
            raise ValueError(f"{path} has no {key!r}: save it with bench/compare.py --json")
    return run


def networks(run):
    """The run's layers grouped by network, in the order they were run."""
    grouped = {}
    for layer in run["layers"]:
        grouped.setdefault(layer["network"], []).append(layer)
    return grouped


def speedup(layer, peer):
    """The peer's time over pyconvfast's (>1: pyconvfast is faster), or None if not timed."""
    seconds = layer["seconds"]
    return seconds[peer] / seconds["pyconvfast"] if peer in seconds else None


def geometric_mean(values):
    values = [v for v in values if v is not None]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def caption(run):
    return (f"{run.get('cpu') or 'CPU'}, {run['threads']} thread(s), {run['dtype']}, batch 1; "
            f"best of repeated runs "
            f"(pyconvfast {run['versions'].get('pyconvfast', '?')})")


def draw_speedup(run, path):
    grouped = networks(run)
    peers = [p for p in PEERS if any(p in layer["seconds"] for layer in run["layers"])]
    known = [r for layer in run["layers"] for peer in peers
             if (r := speedup(layer, peer)) is not None]
    limits = (min(known + [1.0]) / 1.25, max(known + [1.0]) * 1.25)
    width = max(len(layers) for layers in grouped.values())
    fig, panels = plt.subplots(len(grouped), 1, figsize=(11, 2.3 * len(grouped) + 0.8),
                               squeeze=False, constrained_layout=True)
    bar = 0.8 / max(len(peers), 1)
    for axes, (network, layers) in zip(panels[:, 0], grouped.items()):
        means = []
        for index, peer in enumerate(peers):
            values = [speedup(layer, peer) for layer in layers]
            axes.bar([p + (index - (len(peers) - 1) / 2) * bar for p in range(len(layers))],
                     [v if v is not None else float("nan") for v in values], width=bar,
                     color=COLORS[index], label=f"vs {PEERS[peer]}")
            mean = geometric_mean(values)
            if mean is not None:
                means.append(f"{PEERS[peer]} {mean:.2f}x")
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_yscale("log")
        axes.set_ylim(*limits)
        # bars of the same width in every panel: a short network leaves room on the right
        axes.set_xlim(-0.6, width - 0.4)
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        axes.yaxis.set_minor_formatter(ticker.FuncFormatter(
            lambda v, _: f"{v:.1g}x" if f"{v:.1g}" in ("0.3", "0.5", "2", "3", "5") else ""))
        axes.tick_params(axis="y", which="both", labelsize=7)
        axes.set_xticks(range(len(layers)), [layer["layer"] for layer in layers], rotation=90,
                        fontsize=6)
        axes.set_ylabel("speed-up")
        axes.set_title(f"{network}: geometric mean over its layers {', '.join(means) or '-'}",
                       fontsize=9, loc="left")
        axes.grid(True, axis="y", which="both", alpha=0.3)
        if peers and len(layers) == min(map(len, grouped.values())):  # one legend, with room
            axes.legend(fontsize=8, loc="upper right")
    fig.suptitle("pyconvfast's speed-up per layer: the peer's time over pyconvfast's "
                 "(above 1x: pyconvfast is faster)", fontsize=11)
    fig.text(0.5, -0.01, caption(run), ha="center", va="top", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def draw_roofline(run, path):
    peak, bandwidth = run["fma_peak_gflops"], run["copy_bandwidth_gbs"]
    fig, axes = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    intensities = [layer["flops"] / layer["bytes"] for layer in run["layers"]]
    low, high = min(intensities) / 2, max(intensities) * 2
    ridge = peak / bandwidth
    xs = [low, min(max(ridge, low), high), high]
    axes.plot(xs, [min(peak, bandwidth * x) for x in xs], color="black", linewidth=1.5)
    axes.annotate(f"FMA peak {peak:.0f} GFLOP/s", (high, peak), ha="right", va="bottom",
                  fontsize=8)
    axes.annotate(f"copy bandwidth {bandwidth:.1f} GB/s", (low * 1.3, bandwidth * low * 1.3),
                  xytext=(-4, 6), textcoords="offset points", ha="left", va="bottom",
                  fontsize=8)
    for peer, marker in zip(PEERS, ("+", "x")):
        points = [(layer["flops"] / layer["bytes"], layer["gflops"][peer])
                  for layer in run["layers"] if peer in layer["gflops"]]
        if points:
            axes.scatter(*zip(*points), marker=marker, s=14, color="grey", alpha=0.5,
                         linewidths=0.8, label=PEERS[peer])
    for color, (network, layers) in zip(COLORS, networks(run).items()):
        axes.scatter([layer["flops"] / layer["bytes"] for layer in layers],
                     [layer["gflops"]["pyconvfast"] for layer in layers], s=18, color=color,
                     edgecolors="black", linewidths=0.3, label=f"pyconvfast, {network}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("arithmetic intensity (FLOPs per byte of input, weight and output)")
    axes.set_ylabel("GFLOP/s")
    axes.set_title("Roofline: each layer's rate under the run's measured ceilings", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    fig.text(0.5, -0.01, caption(run) + ".\nThe ceilings: the measured FMA peak of "
             f"{run['threads']} core(s), and one NumPy copy's bandwidth (a batch-1 layer whose "
             "data stay in the caches can pass that line).", ha="center", va="top", fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE / "compare_2026-12.json"),
                        help="a run saved by bench/compare.py --json")
    parser.add_argument("--output-dir", default=str(HERE),
                        help="where speedup.png and roofline.png are written")
    args = parser.parse_args(argv)
    run = load(args.data)
    output = Path(args.output_dir)
    draw_speedup(run, output / "speedup.png")
    draw_roofline(run, output / "roofline.png")
    for network, layers in networks(run).items():
        means = ", ".join(f"{PEERS[peer]} {mean:.2f}x" for peer in PEERS
                          if (mean := geometric_mean([speedup(layer, peer) for layer in layers])))
        print(f"{network}: {len(layers)} layers; geometric mean speed-up over {means or '-'}")
    print(f"wrote {output / 'speedup.png'} and {output / 'roofline.png'}")


if __name__ == "__main__":
    main()
