"""Draw docs/figures/dilation_phases.png: a dilated 3x3 convolution as dense ones, by phases.

Left: a 12x12 input with padding 2 (grey ring), coloured by phase (row and column residue
modulo the dilation d = 2, counted from the padded origin), and the 9 taps of one output's
dilated window, which all fall on one phase. Middle: the 12x12 output coloured the same way:
output (i, j) belongs to phase (i mod 2, j mod 2). Right: the four phase images, each a dense
(6 + 2) x (6 + 2) padded image whose dense 3x3 convolution gives that phase's 6x6 outputs;
pyconvfast reads them in place through per-phase index tables rather than copying them. The
figure checks what it draws: each phase's dense convolution equals its outputs.

    python docs/figures/dilation_phases.py      # needs matplotlib; writes the PNG beside it

The docs build only includes the committed PNG, it never runs this script.
"""

import os

import numpy as np

import pyconvfast as pcf

SIZE, PAD, D = 12, 2, 2
COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]  # phase (p, q) -> COLOURS[2 p + q]


def check_phases():
    """The identity the figure shows, on random data: every phase of the dilated convolution
    is the dense convolution of the matching phase of the padded input."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, SIZE, SIZE))
    w = rng.standard_normal((1, 1, 3, 3))
    dilated = pcf.conv2d(x, w, padding=PAD, dilation=D, algorithm="direct")
    padded = np.pad(x, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
    for p in range(D):
        for q in range(D):
            dense = pcf.conv2d(padded[:, :, p::D, q::D], w, algorithm="direct")
            np.testing.assert_allclose(dilated[:, :, p::D, q::D], dense, rtol=1e-12,
                                       atol=1e-12)


def _grid(ax, size, title):
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_xticks(np.arange(-0.5, size, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, size, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(title, fontsize=10)


def _phase_image(size, pad):
    """RGBA image: each cell coloured by its phase, padding lighter."""
    from matplotlib.colors import to_rgba

    image = np.zeros((size, size, 4))
    for i in range(size):
        for j in range(size):
            colour = list(to_rgba(COLOURS[2 * (i % D) + j % D]))
            inside = pad <= i < size - pad and pad <= j < size - pad
            colour[3] = 1.0 if inside else 0.3
            image[i, j] = colour
    return image


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_phases()
    fig = plt.figure(figsize=(13, 4.6))
    grid = fig.add_gridspec(2, 5, width_ratios=[1.6, 1.6, 0.8, 0.8, 0.1])
    ax_in = fig.add_subplot(grid[:, 0])
    padded = SIZE + 2 * PAD
    ax_in.imshow(_phase_image(padded, PAD), interpolation="nearest")
    out_i, out_j = 3, 5  # one output of phase (1, 1); its window starts at padded (3, 5)
    taps = [(out_i + D * a, out_j + D * b) for a in range(3) for b in range(3)]
    ax_in.scatter([t[1] for t in taps], [t[0] for t in taps], marker="x", color="black", s=40)
    _grid(ax_in, padded, f"padded input {SIZE}x{SIZE}, pad {PAD}\n"
                         f"x: the window of output ({out_i}, {out_j}), dilation {D}")
    ax_out = fig.add_subplot(grid[:, 1])
    ax_out.imshow(_phase_image(SIZE, 0), interpolation="nearest")
    ax_out.scatter([out_j], [out_i], marker="o", color="black", s=40)
    _grid(ax_out, SIZE, f"output {SIZE}x{SIZE}: phase (i mod {D}, j mod {D})")
    for p in range(D):
        for q in range(D):
            ax = fig.add_subplot(grid[p, 2 + q])
            phase = _phase_image(padded, PAD)[p::D, q::D]
            ax.imshow(phase, interpolation="nearest")
            _grid(ax, padded // D, f"phase ({p}, {q}): dense 3x3")
    fig.suptitle(f"A {D}-dilated 3x3 convolution is {D * D} dense 3x3 convolutions, one per "
                 f"phase (checked in the script)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dilation_phases.png")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
