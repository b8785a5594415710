"""Draw docs/figures/dask_halos.png: how pyconvfast.dask cuts one axis into blocks.

One spatial axis of 13 samples in chunks (5, 5, 3), a 3-tap kernel with dilation 2 (extent 5),
stride 2 and padding (2, 2), padding_mode="reflect". The block layout comes from
pyconvfast.dask itself (``_axis_blocks``): each output's row shows the window it reads in the
padded input, coloured by the input chunk that produces it; the padded samples are hatched.

    python docs/figures/dask_halos.py     # needs Pillow; writes the PNG beside it

The docs build only includes the committed PNG, it never runs this script.
"""

import os

from PIL import Image, ImageDraw

from pyconvfast.dask import _axis_blocks

CHUNKS = (5, 5, 3)
KERNEL, DILATION, STRIDE, PAD = 3, 2, 2, (2, 2)
COLOURS = [(66, 133, 244), (234, 67, 53), (52, 168, 83)]
CELL, TOP, LEFT = 28, 40, 150


def main():
    size = sum(CHUNKS)
    extent = DILATION * (KERNEL - 1) + 1
    padded = size + sum(PAD)
    out_size = (padded - extent) // STRIDE + 1
    blocks = _axis_blocks(CHUNKS, out_size, STRIDE, extent)
    height = TOP + CELL * (out_size + 3)
    image = Image.new("RGB", (LEFT + CELL * padded + 20, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 8), f"input {size} in chunks {CHUNKS}; kernel {KERNEL}, dilation {DILATION}, "
              f"stride {STRIDE}, padding {PAD}", fill="black")

    # the padded input: chunk colours, padding hatched grey
    owner = []
    for chunk, length in enumerate(CHUNKS):
        owner += [chunk] * length
    draw.text((8, TOP + 8), "padded input", fill="black")
    for p in range(padded):
        x0, y0 = LEFT + p * CELL, TOP
        i = p - PAD[0]
        fill = (220, 220, 220) if not 0 <= i < size else tuple(
            c // 2 + 127 for c in COLOURS[owner[i]])
        draw.rectangle([x0, y0, x0 + CELL - 2, y0 + CELL - 2], fill=fill, outline="black")
        if not 0 <= i < size:
            for d in range(0, CELL, 6):
                draw.line([x0 + d, y0 + CELL - 2, x0, y0 + CELL - 2 - d], fill=(150, 150, 150))
        draw.text((x0 + 8, y0 + 8), str(i) if 0 <= i < size else "p", fill="black")

    # each output: its taps in the padded input, coloured by the block that computes it
    for chunk, (j0, j1, lo, hi) in enumerate(blocks):
        for j in range(j0, j1):
            y0 = TOP + CELL * (j + 2)
            draw.text((8, y0 + 8), f"output {j} (block {chunk})", fill="black")
            x_lo, x_hi = LEFT + lo * CELL, LEFT + hi * CELL - 2
            draw.rectangle([x_lo, y0 + 10, x_hi, y0 + 16], fill=(235, 235, 235))
            for tap in range(KERNEL):
                p = j * STRIDE + tap * DILATION
                x0 = LEFT + p * CELL
                draw.rectangle([x0 + 4, y0 + 4, x0 + CELL - 6, y0 + CELL - 6],
                               fill=COLOURS[chunk])
    draw.text((8, height - 24), "grey band: the padded range the block reads (its halo "
              "included); squares: the taps", fill="black")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dask_halos.png")
    image.save(path)
    print(path)


if __name__ == "__main__":
    main()
