"""Draw ``deformable.png``: where a regular and a deformed 3x3 kernel sample the input.

Run from the repository root (needs matplotlib; the PNG is committed, so building the docs does
not)::

    python docs/figures/deformable.py

Left: the nine taps of a 3x3 kernel (dilation 1) centred on one output position sit on the
pixel grid. Right: the same taps displaced by an offset each (arrows), as deformable
convolution learns them; each sample is the bilinear interpolation of its four neighbouring
pixels (drawn for one tap), and a sample one pixel or more outside the image reads 0.
"""

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

SIZE = 9                      # the input is SIZE x SIZE pixels
CENTRE = (4, 4)               # the output position's regular window centre (row, column)
# (dy, dx) per tap, row-major over the 3x3 kernel: the layout of one offset group's channels,
# offset[2 * t] = dy and offset[2 * t + 1] = dx for tap t = 3 * i + j.
OFFSETS = np.array([
    [-1.3, -0.6], [-1.6, 0.2], [-1.1, 1.4],
    [0.3, -1.7], [0.0, 0.0], [0.4, 1.9],
    [1.5, -0.9], [2.1, 0.3], [1.2, 1.1],
])
HIGHLIGHT = 2                 # the tap whose bilinear neighbourhood is drawn


def _image():
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    return np.exp(-((rows - 4.2) ** 2 + (cols - 4.6) ** 2) / 9.0) + 0.15 * np.sin(cols)


def _panel(ax, title, points, regular):
    ax.imshow(_image(), cmap="Greys", alpha=0.45, extent=(-0.5, SIZE - 0.5, SIZE - 0.5, -0.5))
    ax.set_xticks(range(SIZE))
    ax.set_yticks(range(SIZE))
    ax.set_xticks(np.arange(-0.5, SIZE), minor=True)
    ax.set_yticks(np.arange(-0.5, SIZE), minor=True)
    ax.grid(which="minor", color="0.75", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_xlim(-1.5, SIZE + 0.5)
    ax.set_ylim(SIZE + 0.5, -1.5)
    ax.add_patch(plt.Rectangle((-0.5, -0.5), SIZE, SIZE, fill=False, linewidth=1.2,
                               edgecolor="0.3"))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (column)", fontsize=8)
    ax.set_ylabel("y (row)", fontsize=8)
    ax.scatter(regular[:, 1], regular[:, 0], s=30, facecolor="none", edgecolor="tab:blue",
               linewidth=1.2, zorder=3, label="regular taps")
    if points is not regular:
        for (y0, x0), (y1, x1) in zip(regular, points):
            if (y0, x0) != (y1, x1):
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                            arrowprops={"arrowstyle": "->", "color": "tab:orange", "lw": 1})
        ax.scatter(points[:, 1], points[:, 0], s=36, color="tab:red", zorder=4,
                   label="deformed samples")
        y, x = points[HIGHLIGHT]
        y_low, x_low = np.floor(y), np.floor(x)
        corners = np.array([[y_low, x_low], [y_low, x_low + 1], [y_low + 1, x_low],
                            [y_low + 1, x_low + 1]])
        ax.add_patch(plt.Rectangle((x_low, y_low), 1, 1, fill=False, linestyle="--",
                                   edgecolor="tab:green", linewidth=1.2, zorder=2))
        ax.scatter(corners[:, 1], corners[:, 0], s=14, marker="s", color="tab:green", zorder=3,
                   label="bilinear neighbours")
    ax.scatter([CENTRE[1]], [CENTRE[0]], marker="x", color="k", s=40, zorder=5,
               label="output position")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7,
              frameon=False)


def main():
    matplotlib.use("Agg")  # files only, no display
    taps = np.array([(i, j) for i in range(3) for j in range(3)], dtype=float)
    regular = taps - 1 + np.array(CENTRE, dtype=float)
    deformed = regular + OFFSETS
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.4), constrained_layout=True)
    _panel(axes[0], "regular 3x3 kernel: samples on the grid", regular, regular)
    _panel(axes[1], "deformable: regular position + learned offset", deformed, regular)
    path = Path(__file__).with_suffix(".png")
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
