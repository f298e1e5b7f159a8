"""``skhash demo``: train on scikit-learn's digits and print test mAP (owned by the demo/docs work)."""

import time


def add_arguments(parser):
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths (default: 16 32 64)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def run(args):
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
