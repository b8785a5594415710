"""The float32 and float64 error of the Winograd algorithms over |x| (*) |w| + |b|, per number of
input channels, on standard-normal data: the numbers behind their tolerances and the guide's
error table.

    python bench/winograd_error.py [--outputs 1000000] [--dilation 1]

For each algorithm and channel count, float32 convolutions of 4 x 16 x 40 x 40 outputs (padding
"same") are drawn until ``--outputs`` outputs were compared with the float64 reference
(tests.helpers, run from the repository root); float64 results are compared with the long
double reference on the first draw. Prints the max of |got - ref| / (|x| (*) |w| + |b|).
"""

import argparse

import numpy as np

import pyconvfast as pcf
from tests.helpers.reference import conv_reference, conv_scale

ALGORITHMS = {"winograd_f2x2_3x3": 3, "winograd_f4x4_3x3": 3, "winograd_f2x2_5x5": 5}
CHANNELS = (1, 2, 3, 13, 64, 256)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=1_000_000)
    parser.add_argument("--dilation", type=int, default=1)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    print(f"max |got - ref| / (|x| (*) |w| + |b|), dilation {args.dilation}")
    for algorithm, kernel in ALGORITHMS.items():
        for channels in CHANNELS:
            kwargs = {"padding": "same", "dilation": args.dilation}
            compared, worst32, worst64 = 0, 0.0, None
            while compared < args.outputs:
                x = rng.standard_normal((4, channels, 40, 40))
                w = rng.standard_normal((16, channels, kernel, kernel))
                b = rng.standard_normal(16)
                got = pcf.conv2d(x.astype(np.float32), w.astype(np.float32),
                                 b.astype(np.float32), algorithm=algorithm, **kwargs)
                ref = conv_reference(x, w, b, **kwargs)
                scale = conv_scale(x, w, b, **kwargs)
                worst32 = max(worst32, float(np.max(np.abs(got - ref) / scale)))
                if worst64 is None:
                    got = pcf.conv2d(x, w, b, algorithm=algorithm, **kwargs)
                    ref = conv_reference(x, w, b, dtype=np.longdouble, **kwargs)
                    worst64 = float(np.max(np.abs(got.astype(np.longdouble) - ref) / scale))
                compared += got.size
            print(f"{algorithm:18s} C_in={channels:4d}  float32 {worst32:.2e}  "
                  f"float64 {worst64:.2e}  ({compared} outputs)", flush=True)


if __name__ == "__main__":
    main()
