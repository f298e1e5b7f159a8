"""``skhash demo``: the registered encoders on scikit-learn's handwritten digits, searched by Hamming
distance, with a table of fit time, search time and mAP@all, and a picture.

Protocol: a 70/30 stratified split (``random_state=0``), ``StandardScaler`` fitted on the training rows,
each encoder fitted with its default parameters and ``random_state=0``; every test row queries all the
other test rows with :class:`skhash.neighbors.HammingNeighbors` (ties broken by index) and
:func:`skhash.metrics.mean_average_precision` scores the rankings (mAP@all). The methods are those of
the encoder registry (:mod:`skhash.encoders._registry`).
"""

import time

from .encoders._registry import encoder_names, encoder_spec, get_encoder

DEFAULT_OUT = "skhash-demo.png"


def add_arguments(parser):
    parser.add_argument(
        "--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths (default: 16 32 64)"
    )
    parser.add_argument(
        "--device", default="auto", help="where to train: cpu, cuda, cuda:N or auto (default)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=encoder_names(), default=encoder_names(), help="encoders (default: all)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"the picture's path (default: ./{DEFAULT_OUT})")
    parser.add_argument("--no-plot", action="store_true", help="print the table only; write no picture")


def display_name(method):
    """The name a method's row and picture carry: its class name without "Encoder" (``"OrthoHash"``)."""
    return encoder_spec(method).class_name.removesuffix("Encoder")


def _matplotlib_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def load_split():
    """Digits split and scaled as the demo does: ``(X_train, X_test, y_train, y_test)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def search_all_others(bits):
    """Rank all other rows for every row by Hamming distance; returns ``(indices, seconds)``.

    A search of two codes first compiles the search kernels, so the time is the search's alone.
    """
    from .neighbors import HammingNeighbors

    HammingNeighbors(n_neighbors=1).fit(bits[:2]).kneighbors(n_neighbors=1)
    k = len(bits) - 1
    start = time.perf_counter()
    _, indices = HammingNeighbors(n_neighbors=k).fit(bits).kneighbors(n_neighbors=k)
    return indices, time.perf_counter() - start


def write_picture(path, separations, scores, n_bits):
    """Histograms of each method's codes at ``n_bits`` and mAP against bits, side by side, as a PNG."""
    from matplotlib.figure import Figure

    from .plotting import HammingDistanceDisplay, MAPvsBitsDisplay

    fig = Figure(figsize=(4.0 * (len(separations) + 1), 3.6), layout="constrained")
    axes = fig.subplots(1, len(separations) + 1)
    for ax, (name, result) in zip(axes, separations.items()):
        HammingDistanceDisplay(*result, name=f"{name}, {n_bits} bits").plot(ax=ax)
    MAPvsBitsDisplay(scores, metric_name="mAP@all").plot(ax=axes[-1])
    axes[-1].set_title("test mAP@all")
    fig.suptitle("skhash on scikit-learn's digits: intra- vs inter-class Hamming distances, and mAP")
    fig.savefig(path, dpi=110)


def run(args):
    from ._validation import resolve_device
    from .metrics import hamming_separability, mean_average_precision

    total_start = time.perf_counter()
    plot = not args.no_plot
    if plot and not _matplotlib_available():
        print('matplotlib is not installed, so no picture is written (pip install "scikit-hash[plot]" to get it).')
        plot = False
    device = resolve_device(args.device)
    X_train, X_test, y_train, y_test = load_split()
    print(
        f"digits: {len(X_train)} training and {len(X_test)} test images of 64 pixels, 10 classes; "
        f"training on {device}; each test image queries the other {len(X_test) - 1}"
    )
    header = f"{'method':<12}{'bits':>6}{'fit s':>9}{'search ms':>11}{'mAP@all':>10}"
    print(header)
    print("-" * len(header))
    widest = max(args.bits)
    scores, separations = {}, {}
    for method in args.methods:
        name, encoder_class = display_name(method), get_encoder(method)
        scores[name] = {}
        for n_bits in args.bits:
            start = time.perf_counter()
            encoder = encoder_class(n_bits, device=args.device, random_state=0).fit(X_train, y_train)
            fit_s = time.perf_counter() - start
            codes = encoder.transform(X_test)
            indices, search_s = search_all_others(codes)
            scores[name][n_bits] = mean_average_precision(y_test, y_test, indices)
            row = f"{name:<12}{n_bits:>6}{fit_s:>9.2f}{search_s * 1e3:>11.1f}{scores[name][n_bits]:>10.4f}"
            print(row, flush=True)
            if n_bits == widest:
                separations[name] = hamming_separability(codes, y_test)
    if plot:
        write_picture(args.out, separations, scores, widest)
        print(f"wrote {args.out}: intra- vs inter-class Hamming distances at {widest} bits; mAP against bits")
    print(f"total {time.perf_counter() - total_start:.1f} s")
    return 0
