"""Write ``deform_torchvision.npz``: inputs and torchvision's ``deform_conv2d`` outputs.

test_deform.py compares pyconvfast with these stored results, so that the comparison with
torchvision runs where torchvision is not installed. Run with torchvision importable::

    python tests/data/make_deform_torchvision.py

Each case ``k`` stores ``k/x``, ``k/offset``, ``k/weight``, ``k/bias``, ``k/mask`` (empty arrays
for none), ``k/geometry`` (stride, padding, dilation: 2 each) and ``k/out``. The offsets put
many samples exactly on, and a fraction of a pixel around, the borders that torchvision's rule
distinguishes (-1, 0, H - 1, H), and some far outside.
"""

from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.ops import deform_conv2d

# (dtype, N, C_in, H, W, C_out, R, S, stride, padding, dilation, groups, offset_groups, mask, bias)
CASES = [
    (np.float64, 2, 4, 7, 9, 3, 3, 3, (1, 1), (1, 1), (1, 1), 1, 2, True, True),
    (np.float32, 2, 6, 8, 6, 4, 3, 3, (2, 1), (1, 2), (2, 1), 2, 3, False, True),
    (np.float64, 1, 3, 5, 5, 2, 1, 2, (1, 1), (0, 1), (1, 2), 1, 1, True, False),
    (np.float32, 3, 8, 6, 7, 8, 2, 3, (1, 2), (2, 0), (1, 1), 4, 2, True, False),
]


def _offsets(rng, shape, height, width):
    """Random displacements, with a third of them snapped to the border-sensitive values."""
    offset = rng.standard_normal(shape) * 2.5
    special = np.array([-1.0, -0.75, -0.5, 0.0, 0.25, 0.5, 1.0, height - 1, height - 0.5,
                        height, width - 1, width - 0.5, width, -height - 3.0, width + 4.0])
    snap = rng.random(shape) < 0.35
    offset[snap] = rng.choice(special, size=int(snap.sum()))
    return offset


def main():
    rng = np.random.default_rng(20260101)
    arrays = {}
    for k, (dtype, n, c, h, w, k_out, r, s, stride, padding, dilation, groups, og, with_mask,
            with_bias) in enumerate(CASES):
        h_out = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
        w_out = (w + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        weight = rng.standard_normal((k_out, c // groups, r, s)).astype(dtype)
        bias = rng.standard_normal(k_out).astype(dtype) if with_bias else np.zeros(0, dtype)
        offset = _offsets(rng, (n, 2 * og * r * s, h_out, w_out), h, w).astype(dtype)
        mask = rng.random((n, og * r * s, h_out, w_out)).astype(dtype) if with_mask \
            else np.zeros(0, dtype)
        out = deform_conv2d(
            torch.from_numpy(x), torch.from_numpy(offset), torch.from_numpy(weight),
            torch.from_numpy(bias) if with_bias else None, stride=stride, padding=padding,
            dilation=dilation, mask=torch.from_numpy(mask) if with_mask else None,
        ).numpy()
        arrays.update({
            f"{k}/x": x, f"{k}/offset": offset, f"{k}/weight": weight, f"{k}/bias": bias,
            f"{k}/mask": mask, f"{k}/geometry": np.array([stride, padding, dilation]),
            f"{k}/groups": np.array(groups), f"{k}/out": out,
        })
    arrays["versions"] = np.array([torch.__version__, torchvision.__version__])
    path = Path(__file__).with_name("deform_torchvision.npz")
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size} bytes), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}")


if __name__ == "__main__":
    main()
