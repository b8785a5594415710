"""Draw docs/figures/checkerboard.png: a transposed convolution's checkerboard artifact next to
resize-convolution's smooth output, both computed with pyconvfast.

    python docs/figures/checkerboard.py          # rewrites checkerboard.png beside this script

A smooth input (a wide Gaussian bump) is upsampled 2x by

* ``conv_transpose2d`` with a 3x3 kernel and stride 2: the kernel's footprints overlap unevenly
  (output pixels receive 1, 2 or 4 taps by the parity of their row and column), which prints a
  grid on any smooth input, even with a constant kernel;
* ``resize_conv2d`` (nearest, then the same 3x3 kernel with "same" padding): every output pixel
  receives all 9 taps, so the result is as smooth as the input;
* ``resize_conv2d`` with bilinear upsampling, for comparison.

The kernel is the constant 3x3 kernel of sum 1 (a box blur), scaled per method so that the
average output equals the input's.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pyconvfast as pcf  # noqa: E402

HERE = Path(__file__).resolve().parent


def images(size=24):
    grid = np.arange(size) - (size - 1) / 2
    bump = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * (size / 4) ** 2))
    x = bump[None, None].astype(np.float32)                     # (1, 1, H, W)
    box = np.full((1, 1, 3, 3), 1 / 9, dtype=np.float32)
    # Transposed convolution, stride 2: on average 9 / 4 taps land on each output pixel.
    transposed = pcf.conv_transpose2d(x, box * 4, stride=2, padding=1, output_padding=1)[0, 0]
    nearest = pcf.resize_conv2d(x, box, scale_factor=2, padding="same")[0, 0]
    bilinear = pcf.resize_conv2d(x, box, scale_factor=2, mode="bilinear",
                                 padding="same")[0, 0]
    return bump, transposed, nearest, bilinear


def main(path=HERE / "checkerboard.png"):
    bump, transposed, nearest, bilinear = images()
    panels = [
        (bump, "input (24 x 24)"),
        (transposed, "conv_transpose2d\n3x3, stride 2"),
        (nearest, "resize_conv2d\nnearest x2, then 3x3"),
        (bilinear, "resize_conv2d\nbilinear x2, then 3x3"),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(11, 5.4),
                             gridspec_kw={"height_ratios": [3, 1.4]})
    for (image, title), ax in zip(panels, axes[0]):
        ax.imshow(image, cmap="magma", vmin=0, vmax=max(1.0, float(image.max())))
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for (image, _), ax in zip(panels, axes[1]):
        row = image[image.shape[0] // 2]
        ax.plot(row, ".-", lw=0.8, ms=2.5, color="tab:blue")
        ax.set_ylim(0, 1.6)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
        ax.set_title("middle row", fontsize=8)
    fig.suptitle("Upsampling a smooth image by 2: transposed convolution prints a checkerboard",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
