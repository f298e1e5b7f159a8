"""The ``skhash`` command."""

import argparse
import sys


def build_parser():
    from . import _demo

    parser = argparse.ArgumentParser(prog="skhash", description="Learn binary hash codes and search them by Hamming distance.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train on scikit-learn's digits and print test mAP",
        description="Train hash encoders on scikit-learn's digits (real handwritten digits) and print the test "
        "rows' leave-one-out mAP@all.",
    )
    _demo.add_arguments(demo)
    demo.set_defaults(func=_demo.run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
