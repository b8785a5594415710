"""Draw docs/figures/receptive_field.png: the receptive field of dilated 3x3 convolutions.

Each panel is computed with pyconvfast: an impulse (a single 1 in a zero image) is convolved
with all-ones 3x3 kernels, with ``padding="same"``; an output is nonzero exactly where its
window (through the whole stack) reaches the impulse, so the nonzero pattern is the receptive
field (mirrored, which changes nothing for these symmetric kernels), and each value counts the
paths from the impulse to that output.

    python docs/figures/receptive_field.py      # needs matplotlib; writes the PNG beside it

The docs build only includes the committed PNG, it never runs this script.
"""

import os

import numpy as np

import pyconvfast as pcf

SIZE = 21
PANELS = [
    ("3x3, dilation 1", (1,)),
    ("3x3, dilation 2", (2,)),
    ("3x3, dilation 4", (4,)),
    ("stack, dilations 1, 2, 4", (1, 2, 4)),
    ("stack, dilations 2, 2, 2", (2, 2, 2)),
]


def receptive_field(dilations, size=SIZE):
    """Path counts from a centred impulse through 3x3 all-ones layers of the given dilations."""
    field = np.zeros((1, 1, size, size))
    field[0, 0, size // 2, size // 2] = 1.0
    ones = np.ones((1, 1, 3, 3))
    for dilation in dilations:
        field = pcf.conv2d(field, ones, dilation=dilation, padding="same", algorithm="direct")
    return field[0, 0]


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.0 * len(PANELS), 3.6))
    for ax, (title, dilations) in zip(axes, PANELS):
        field = receptive_field(dilations)
        reached = field > 0.5  # whole path counts
        rows, cols = np.nonzero(reached)
        extent = rows.max() - rows.min() + 1
        shown = np.ma.masked_where(~reached, field)
        ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1, vmax=max(field.max(), 2)),
                  interpolation="nearest")
        ax.set_facecolor("#f2f2f2")
        ax.set_xticks(np.arange(-0.5, SIZE, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, SIZE, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.3)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.set_title(f"{title}\nspan {extent}x{extent}, {int(reached.sum())} inputs",
                     fontsize=10)
    fig.suptitle("Receptive field of one output (colour: number of paths, log scale; "
                 "grey: not seen)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "receptive_field.png")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
