"""The ``skhash`` command."""

import argparse
import sys
import time


def _demo(args):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from . import OrthoHashEncoder

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(Xtr)
    print(f"digits: {len(Xtr)} training and {len(Xte)} test images of 64 pixels, 10 classes")
    print(f"{'method':<12}{'bits':>6}{'fit s':>8}{'mAP@all':>10}")
    for bits in args.bits:
        t = time.perf_counter()
        enc = OrthoHashEncoder(bits, device=args.device, random_state=0).fit(scaler.transform(Xtr), ytr)
        fit_s = time.perf_counter() - t
        print(f"{'OrthoHash':<12}{bits:>6}{fit_s:>8.2f}{enc.score(scaler.transform(Xte), yte):>10.4f}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="skhash", description="Learn binary hash codes and search them by Hamming distance.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on scikit-learn's digits and print test mAP", description="Train hash encoders on scikit-learn's digits (real handwritten digits), and print the test rows' leave-one-out mAP@all.")
    demo.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths (default: 16 32 64)")
    demo.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
