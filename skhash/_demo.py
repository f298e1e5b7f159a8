"""``skhash demo``: the registered encoders on scikit-learn's handwritten digits, searched by Hamming
distance, with a table of fit time, search time and mAP@all, and a picture.

Protocol: a 70/30 stratified split (``random_state=0``), ``StandardScaler`` fitted on the training rows,
each encoder fitted with its default parameters and ``random_state=0`` (where it takes them); every test
row queries all the other test rows with :class:`skhash.neighbors.HammingNeighbors` (ties broken by
index) and :func:`skhash.metrics.mean_average_precision` scores the rankings (mAP@all). The methods are
those of the encoder registry (:mod:`skhash.encoders._registry`): by default the supervised ones, whose
class separation the picture shows; ``--methods`` takes any.
"""

import time

from .encoders._registry import encoder_names, encoder_spec, get_encoder

DEFAULT_OUT = "skhash-demo.png"
DEFAULT_BITS = (16, 32, 64)
# The three methods the demo was written for; all the registry's (--methods all) take many minutes.
DEFAULT_METHODS = ("orthohash", "csq", "greedyhash")


def display_name(method):
    """The name a method's row and picture carry: its class name without "Encoder" (``"OrthoHash"``)."""
    return encoder_spec(method).class_name.removesuffix("Encoder")


def make_encoder(encoder_class, n_bits, device):
    """The method with its defaults, at ``n_bits`` on ``device`` with ``random_state=0`` where it takes them."""
    accepted = encoder_class().get_params()
    wanted = {"n_bits": n_bits, "device": device, "random_state": 0}
    return encoder_class(**{k: v for k, v in wanted.items() if k in accepted})


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


# The picture is shown in the README at about 900 pixels: 10 inches at 100 dpi, at most three panels a row.
PICTURE_WIDTH_IN, PICTURE_DPI, PANELS_PER_ROW = 10.0, 100, 3


def write_picture(path, separations, scores, n_bits):
    """Histograms of each method's codes at ``n_bits``, then mAP against bits below them, as a PNG.

    The histograms come in rows of up to three; the panels of a row share their y axis, so their heights
    compare. The mAP axis starts at 0, so the gaps between methods are not magnified. Returns the figure.
    """
    from matplotlib.figure import Figure

    from .plotting import MAPvsBitsDisplay

    n_cols = min(PANELS_PER_ROW, len(separations))
    n_rows = -(-len(separations) // n_cols)
    fig = Figure(figsize=(PICTURE_WIDTH_IN, 3.0 * (n_rows + 1)), layout="constrained")
    grid = fig.add_gridspec(n_rows + 1, n_cols)
    for row in range(n_rows):
        _histogram_row(fig, grid, row, list(separations.items())[row * n_cols : (row + 1) * n_cols], n_bits)
    map_ax = fig.add_subplot(grid[n_rows, :])
    MAPvsBitsDisplay(scores, metric_name="test mAP@all").plot(ax=map_ax)
    map_ax.set_ylim(0, 1)
    map_ax.set_title("test mAP@all against code length (axis from 0)")
    fig.suptitle("skhash on scikit-learn's digits: intra- vs inter-class Hamming distances, and mAP")
    fig.savefig(path, dpi=PICTURE_DPI)
    return fig


def _histogram_row(fig, grid, row, separations, n_bits):
    """One row of histograms on a shared y axis, tall enough for the highest of them."""
    from .plotting import HammingDistanceDisplay

    axes, top = [], 0.0
    for col, (name, result) in enumerate(separations):
        ax = fig.add_subplot(grid[row, col], sharey=axes[0] if axes else None)
        HammingDistanceDisplay(*result, name=f"{name}, {n_bits} bits").plot(ax=ax)
        top = max(top, ax.get_ylim()[1])  # each plot sets its own headroom; the row keeps the largest
        if col:
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)
        axes.append(ax)
    axes[0].set_ylim(0, top)


def chosen_methods(methods):
    """The registry names ``--methods`` asks for, in order, once each; ``"all"`` is every one."""
    names = encoder_names() if "all" in methods else methods
    return list(dict.fromkeys(names))


def check_picture_format(path):
    """Raise an InputError now if matplotlib cannot write a picture of ``path``'s extension."""
    import os

    from matplotlib.backend_bases import FigureCanvasBase

    from ._validation import InputError

    extension = os.path.splitext(path)[1].lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if extension not in formats:
        raise InputError(
            f"--out {path}: matplotlib cannot write {'.' + extension + ' files' if extension else 'a name without an extension'}"
            f"; end the name with one of: {', '.join('.' + f for f in sorted(formats))} (.png is usual)."
        )


def check_setups(methods, bits, device, n_classes):
    """Raise the InputError a fit would raise for each method and code length, before training any.

    The parameters go through the encoder's own checks, and the class targets through its own
    ``_prepare_classes`` (CSQ cannot give 10 classes distinct centres in 4 bits).
    """
    import numpy as np

    from ._validation import InputError

    for method in methods:
        for n_bits in bits:
            encoder = make_encoder(get_encoder(method), n_bits, device)
            try:
                encoder._validate_params()
                if hasattr(encoder, "_prepare_classes"):
                    encoder._prepare_classes(n_classes, np.random.RandomState(0))
            except ValueError as exc:  # InputError, or scikit-learn's parameter check
                raise InputError(f"--methods {method} --bits {n_bits}: {exc}") from exc


def run(args):
    from ._validation import resolve_device
    from .metrics import hamming_separability, mean_average_precision

    total_start = time.perf_counter()
    plot = not args.no_plot
    if plot and not _matplotlib_available():
        print('matplotlib is not installed, so no picture is written (pip install "scikit-hash[plot]" to get it).')
        plot = False
    methods = chosen_methods(args.methods)
    device = resolve_device(args.device)
    X_train, X_test, y_train, y_test = load_split()
    # Everything that can be wrong is found before the first training, not after minutes of it.
    if plot:
        check_picture_format(args.out)
    check_setups(methods, args.bits, args.device, len(set(y_train)))
    print(
        f"digits: {len(X_train)} training and {len(X_test)} test images of 64 pixels, 10 classes; "
        f"training on {device}; each test image queries the other {len(X_test) - 1}"
    )
    header = f"{'method':<12}{'bits':>6}{'fit s':>9}{'search ms':>11}{'mAP@all':>10}"
    print(header)
    print("-" * len(header))
    widest = max(args.bits)
    scores, separations = {}, {}
    for method in methods:
        name, encoder_class = display_name(method), get_encoder(method)
        scores[name] = {}
        # A method without n_bits (SignEncoder: one bit per feature) has one code length: one row.
        widths = args.bits if "n_bits" in encoder_class().get_params() else args.bits[:1]
        for n_bits in widths:
            start = time.perf_counter()
            encoder = make_encoder(encoder_class, n_bits, args.device).fit(X_train, y_train)
            fit_s = time.perf_counter() - start
            codes = encoder.transform(X_test)
            n_bits = codes.shape[1]
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
