"""The command line: ``python -m pyconvfast demo``."""

import argparse
import sys

from pyconvfast._demo import run_demo


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m pyconvfast",
                                     description="pyconvfast: fast CPU convolutions for NumPy.")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    demo = commands.add_parser(
        "demo", help="run, check and time ResNet-18's convolution layers on random data")
    demo.add_argument("--batch", type=_positive_int, default=1, help="images per call (1)")
    demo.add_argument("--image-size", type=_positive_int, default=224,
                      help="input height and width (224)")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="OpenMP threads (default: OMP_NUM_THREADS or all cores)")
    return parser


def main(argv=None):
    """Entry point; returns the process exit status (0 when every check passed)."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        ok = run_demo(batch=args.batch, image_size=args.image_size, n_threads=args.threads)
        return 0 if ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
