"""Plots of hash codes and of their retrieval quality, as scikit-learn's ``*Display`` objects.

Three displays, each built like :class:`sklearn.metrics.RocCurveDisplay`: a constructor that takes the
numbers, ``from_codes`` / ``from_estimator`` class methods that compute them with :mod:`skhash.metrics`
and draw, and ``plot(ax=None)`` that draws and returns the display with ``ax_`` and ``figure_`` set.

- :class:`HammingDistanceDisplay`: intra- and inter-class Hamming distance histograms, annotated with
  their separability (:func:`skhash.metrics.hamming_separability`; Figure 3 of the OrthoHash paper);
- :class:`HammingPrecisionRecallDisplay`: precision and recall of Hamming-ball retrieval at every
  radius (:func:`skhash.metrics.precision_recall_curve`);
- :class:`MAPvsBitsDisplay`: mAP against code length, one line per method;
- :class:`ComparisonDisplay`: the figures of a comparison (:func:`skhash.compare`) in one picture.

matplotlib is an optional dependency: ``pip install "scikit-hash[plot]"``. Importing this module does not
import matplotlib; drawing does.
"""

import numbers
from collections.abc import Mapping

import numpy as np

from .metrics import hamming_separability, make_map_scorer, precision_recall_curve

__all__ = ["HammingDistanceDisplay", "HammingPrecisionRecallDisplay", "MAPvsBitsDisplay", "ComparisonDisplay"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "skhash.plotting needs matplotlib, which is not installed: pip install \"scikit-hash[plot]\" "
            "(or pip install matplotlib)."
        ) from exc
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _estimator_name(estimator):
    """The name of the step that makes the codes: the last step of a Pipeline, else the estimator."""
    steps = getattr(estimator, "steps", None)
    if steps:
        estimator = steps[-1][1]
    return type(estimator).__name__


def _histogram(values, name):
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(
            f"{name} must be 1-D with n_bits + 1 >= 2 counts (distances 0..n_bits), got shape {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.number) or np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold non-negative finite counts.")
    if arr.sum() == 0:
        raise ValueError(f"{name} is all zeros: there are no pairs to draw.")
    return arr


class HammingDistanceDisplay:
    """Histograms of intra- and inter-class Hamming distances, annotated with their separability.

    Good codes put pairs of the same class close together and pairs of different classes far apart;
    the gap between the two histograms' means is the separability (OrthoHash, Figure 3 and
    supplementary D.7). Build it with :meth:`from_codes` or :meth:`from_estimator`, or from the
    result of :func:`skhash.metrics.hamming_separability`:
    ``HammingDistanceDisplay(*hamming_separability(codes, y))``.

    Parameters
    ----------
    separability : float
        ``E[D_inter] - E[D_intra]`` in bits.
    intra_histogram : array-like of shape (n_bits + 1,)
        Number of same-class pairs at each distance ``0..n_bits``.
    inter_histogram : array-like of shape (n_bits + 1,)
        Number of different-class pairs at each distance.
    name : str, default=None
        Title of the plot (for example the method's name).

    Attributes
    ----------
    n_bits : int
        Code length, ``len(intra_histogram) - 1``.
    intra_patch_ : matplotlib.patches.StepPatch
        The intra-class histogram.
    inter_patch_ : matplotlib.patches.StepPatch
        The inter-class histogram.
    text_ : matplotlib.text.Text or None
        The separability annotation.
    ax_ : matplotlib.axes.Axes
        Axes the display is drawn on.
    figure_ : matplotlib.figure.Figure
        Figure holding ``ax_``.

    See Also
    --------
    skhash.metrics.hamming_separability : The numbers this display draws.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhash.plotting import HammingDistanceDisplay
    >>> codes = [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 1, 1, 1]]
    >>> display = HammingDistanceDisplay.from_codes(codes, [0, 0, 1, 1], name="toy")
    >>> display.separability, display.intra_histogram, display.inter_histogram
    (2.0, array([0, 2, 0, 0, 0]), array([0, 0, 1, 2, 1]))
    >>> display.text_.get_text()
    'separability 2.0 bits'
    """

    def __init__(self, separability, intra_histogram, inter_histogram, *, name=None):
        self.separability = separability
        self.intra_histogram = intra_histogram
        self.inter_histogram = inter_histogram
        self.name = name

    @property
    def n_bits(self):
        return len(self.intra_histogram) - 1

    def plot(self, ax=None, *, name=None, normalize=True, annotate=True, intra_kw=None, inter_kw=None):
        """Draw the two histograms (and the separability) on ``ax``.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        name : str, default=None
            Title; overrides the ``name`` given to the constructor.
        normalize : bool, default=True
            Draw each histogram as the fraction of its pairs at each distance, so the few intra-class
            pairs are as visible as the many inter-class ones. False draws pair counts.
        annotate : bool, default=True
            Write the separability on the plot and mark each histogram's mean with a dashed line.
        intra_kw, inter_kw : dict, default=None
            Keyword arguments for :meth:`matplotlib.axes.Axes.stairs` of each histogram.

        Returns
        -------
        display : HammingDistanceDisplay
            ``self``, with ``ax_``, ``figure_`` and the artists set.
        """
        intra = _histogram(self.intra_histogram, "intra_histogram").astype(np.float64)
        inter = _histogram(self.inter_histogram, "inter_histogram").astype(np.float64)
        if intra.shape != inter.shape:
            raise ValueError(
                f"intra_histogram has {intra.size} bins and inter_histogram {inter.size}; both must count "
                "distances 0..n_bits."
            )
        ax = _axes(ax)
        edges = np.arange(intra.size + 1) - 0.5
        means = [(np.arange(h.size) @ h) / h.sum() for h in (intra, inter)]
        if normalize:
            intra, inter = intra / intra.sum(), inter / inter.sum()
        style = {"fill": True, "alpha": 0.55}
        intra_kw = {**style, "color": "C0", "label": "intra-class", **(intra_kw or {})}
        inter_kw = {**style, "color": "C3", "label": "inter-class", **(inter_kw or {})}
        self.intra_patch_ = ax.stairs(intra, edges, **intra_kw)
        self.inter_patch_ = ax.stairs(inter, edges, **inter_kw)
        self.text_ = None
        if annotate:
            for mean, patch in zip(means, (self.intra_patch_, self.inter_patch_)):
                ax.axvline(mean, color=patch.get_facecolor(), alpha=1.0, linestyle="--", linewidth=1)
            self.text_ = ax.text(
                0.98, 0.96, f"separability {self.separability:.1f} bits", transform=ax.transAxes,
                ha="right", va="top", bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
            )
        ax.set_xlim(edges[0], edges[-1])
        # Headroom above the peaks for the legend and the annotation.
        ax.set_ylim(0, 1.3 * max(intra.max(), inter.max()))
        ax.set_xlabel(f"Hamming distance ({self.n_bits} bits)")
        ax.set_ylabel("fraction of pairs" if normalize else "pairs")
        title = name if name is not None else self.name
        if title is not None:
            ax.set_title(title)
        ax.legend(loc="upper left")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_codes(cls, codes, y, *, name=None, ax=None, **kwargs):
        """Compute the histograms of ``codes`` with labels ``y`` and draw them.

        Parameters
        ----------
        codes : array-like of shape (n_samples, n_bits)
            Codes (bits, ``±1`` or continuous; ``bit = 1`` where ``> 0``).
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Labels, or a ``{0, 1}`` multi-label indicator matrix (a shared label makes a pair
            intra-class).
        name : str, default=None
            Title of the plot.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : HammingDistanceDisplay
        """
        result = hamming_separability(codes, y)
        return cls(*result, name=name).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(cls, estimator, X, y, *, name=None, ax=None, **kwargs):
        """Encode ``X`` with a fitted encoder (or pipeline) and draw the histograms of its codes.

        Parameters
        ----------
        estimator : estimator with ``transform``
            Fitted hash encoder, or a pipeline ending in one.
        X : array-like of shape (n_samples, n_features)
            Features to encode.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Labels, or a ``{0, 1}`` multi-label indicator matrix.
        name : str, default=None
            Title; the encoder's class name when None.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : HammingDistanceDisplay
        """
        name = _estimator_name(estimator) if name is None else name
        return cls.from_codes(estimator.transform(X), y, name=name, ax=ax, **kwargs)


class HammingPrecisionRecallDisplay:
    """Precision and recall of Hamming-ball retrieval at every radius ``0..n_bits``.

    At radius ``r`` a query retrieves every database item within Hamming distance ``r``; a hash
    table lookup does exactly this, which is why the field reports precision at radius 2 (P@H≤2).
    ``kind="precision_recall"`` draws the precision-recall curve traced by the radius, with the points
    of small radii labelled; ``kind="radius"`` draws precision and recall against the radius.

    Parameters
    ----------
    precision : array-like of shape (n_bits + 1,)
        Mean precision at each radius.
    recall : array-like of shape (n_bits + 1,)
        Mean recall at each radius.
    radii : array-like of shape (n_bits + 1,)
        The radii ``0..n_bits``.
    name : str, default=None
        Label of the curve in the legend.

    Attributes
    ----------
    line_ : matplotlib.lines.Line2D
        The precision-recall curve, or precision against radius for ``kind="radius"``.
    recall_line_ : matplotlib.lines.Line2D or None
        Recall against radius (``kind="radius"`` only).
    ax_ : matplotlib.axes.Axes
        Axes the display is drawn on.
    figure_ : matplotlib.figure.Figure
        Figure holding ``ax_``.

    See Also
    --------
    skhash.metrics.precision_recall_curve : The numbers this display draws.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhash.plotting import HammingPrecisionRecallDisplay
    >>> display = HammingPrecisionRecallDisplay.from_codes(
    ...     [[1, 1]], [0], [[1, 1], [0, 1], [1, 0]], [0, 0, 1])
    >>> display.precision.round(4), display.recall, display.radii
    (array([1.    , 0.6667, 0.6667]), array([0.5, 1. , 1. ]), array([0, 1, 2]))
    >>> display.line_.get_xydata().round(4).tolist()
    [[0.5, 1.0], [1.0, 0.6667], [1.0, 0.6667]]
    """

    def __init__(self, precision, recall, radii, *, name=None):
        self.precision = precision
        self.recall = recall
        self.radii = radii
        self.name = name

    def plot(self, ax=None, *, name=None, kind="precision_recall", label_radii=(0, 1, 2, 3), **kwargs):
        """Draw the curve(s) on ``ax``.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        name : str, default=None
            Legend label; overrides the ``name`` given to the constructor.
        kind : {"precision_recall", "radius"}, default="precision_recall"
            Precision against recall (one point per radius), or precision and recall against radius.
        label_radii : sequence of int, default=(0, 1, 2, 3)
            Radii whose points are labelled ``r=…`` on the precision-recall curve.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : HammingPrecisionRecallDisplay
            ``self``, with ``ax_``, ``figure_`` and the lines set.
        """
        if kind not in ("precision_recall", "radius"):
            raise ValueError(f"kind must be 'precision_recall' or 'radius', got {kind!r}.")
        precision, recall, radii = (
            np.asarray(a, dtype=np.float64) for a in (self.precision, self.recall, self.radii)
        )
        if not (precision.ndim == 1 and precision.shape == recall.shape == radii.shape):
            raise ValueError(
                f"precision, recall and radii must be 1-D of one length, got shapes {precision.shape}, "
                f"{recall.shape} and {radii.shape}."
            )
        ax = _axes(ax)
        label = name if name is not None else self.name
        line_kw = {"marker": ".", **kwargs}
        if label is not None:
            line_kw.setdefault("label", label)
        self.recall_line_ = None
        if kind == "precision_recall":
            (self.line_,) = ax.plot(recall, precision, **line_kw)
            for r in label_radii:
                hit = np.flatnonzero(radii == r)
                if hit.size:
                    i = hit[0]
                    ax.annotate(
                        f"r={r}", (recall[i], precision[i]), textcoords="offset points", xytext=(4, 4),
                        fontsize="small",
                    )
            ax.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
        else:
            prefix = f"{label}: " if label is not None else ""
            line_kw["label"] = f"{prefix}precision"
            (self.line_,) = ax.plot(radii, precision, **line_kw)
            line_kw.update(label=f"{prefix}recall", linestyle="--", color=self.line_.get_color())
            (self.recall_line_,) = ax.plot(radii, recall, **line_kw)
            ax.set(xlabel="Hamming radius (bits)", ylabel="precision, recall", ylim=(-0.02, 1.02))
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="best")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_codes(cls, query_codes, y_query, db_codes, y_db, *, name=None, ax=None, **kwargs):
        """Compute precision and recall at every radius for the queries against the database, and draw.

        Parameters
        ----------
        query_codes : array-like of shape (n_queries, n_bits)
            Query codes (bits, ``±1`` or continuous).
        y_query : array-like of shape (n_queries,) or (n_queries, n_classes)
            Query labels, or a ``{0, 1}`` multi-label indicator matrix.
        db_codes : array-like of shape (n_db, n_bits)
            Database codes.
        y_db : array-like of shape (n_db,) or (n_db, n_classes)
            Database labels, of the same kind as ``y_query``.
        name : str, default=None
            Legend label.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : HammingPrecisionRecallDisplay
        """
        precision, recall, radii = precision_recall_curve(y_query, y_db, query_codes, db_codes)
        return cls(precision, recall, radii, name=name).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(cls, estimator, X_query, y_query, X_db, y_db, *, name=None, ax=None, **kwargs):
        """Encode queries and database with a fitted encoder (or pipeline), then draw as :meth:`from_codes`.

        Parameters
        ----------
        estimator : estimator with ``transform``
            Fitted hash encoder, or a pipeline ending in one.
        X_query : array-like of shape (n_queries, n_features)
            Query features.
        y_query : array-like of shape (n_queries,) or (n_queries, n_classes)
            Query labels.
        X_db : array-like of shape (n_db, n_features)
            Database features.
        y_db : array-like of shape (n_db,) or (n_db, n_classes)
            Database labels.
        name : str, default=None
            Legend label; the encoder's class name when None.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : HammingPrecisionRecallDisplay
        """
        name = _estimator_name(estimator) if name is None else name
        return cls.from_codes(
            estimator.transform(X_query), y_query, estimator.transform(X_db), y_db, name=name, ax=ax, **kwargs
        )


def _group_rows(results):
    """``{name: {n_bits: score}}`` from itself or from rows ``(name, n_bits, score)``."""
    if isinstance(results, Mapping):
        return results
    grouped = {}
    for row in results:
        try:
            name, bits, score = row
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "results must be a dict {name: {n_bits: score}} or rows (name, n_bits, score); got the "
                f"row {row!r}."
            ) from exc
        grouped.setdefault(name, {})[bits] = score
    return grouped


def _results_table(results):
    """``{name: (bits, scores)}`` with bits ascending, checked."""
    table = {}
    for name, by_bits in _group_rows(results).items():
        if not isinstance(by_bits, Mapping) or not by_bits:
            raise ValueError(
                f"results[{name!r}] must be a non-empty dict {{n_bits: score}}, got {by_bits!r}."
            )
        for bits in by_bits:
            if not isinstance(bits, numbers.Integral) or bits < 1:
                raise ValueError(
                    f"results[{name!r}] has the code length {bits!r}; code lengths are positive integers."
                )
        bits = np.array(sorted(by_bits), dtype=np.int64)
        table[name] = (bits, np.array([float(by_bits[b]) for b in bits]))
    if not table:
        raise ValueError("results is empty; give at least one method's scores.")
    return table


def _n_bits_parameter(estimator):
    """The parameter that sets the code length: ``n_bits``, or the one ``*__n_bits`` of a pipeline."""
    params = estimator.get_params()
    if "n_bits" in params:
        return "n_bits"
    found = [p for p in params if p.endswith("__n_bits")]
    if len(found) != 1:
        raise ValueError(
            f"Cannot tell which parameter of {type(estimator).__name__} sets the code length (found "
            f"{found or 'none'}); pass param='...'."
        )
    return found[0]


class MAPvsBitsDisplay:
    """Retrieval mAP against code length, one line per method.

    Parameters
    ----------
    results : dict of {str: dict of {int: float}}
        For each method (the legend label), its score at each code length. Use :meth:`from_results`
        to pass rows ``(method, n_bits, score)`` instead.
    metric_name : str, default="mAP"
        Label of the y axis.

    Attributes
    ----------
    lines_ : dict of {str: matplotlib.lines.Line2D}
        One line per method.
    ax_ : matplotlib.axes.Axes
        Axes the display is drawn on.
    figure_ : matplotlib.figure.Figure
        Figure holding ``ax_``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhash.plotting import MAPvsBitsDisplay
    >>> rows = [("OrthoHash", 16, 0.84), ("OrthoHash", 32, 0.88), ("CSQ", 16, 0.83), ("CSQ", 32, 0.83)]
    >>> display = MAPvsBitsDisplay.from_results(rows)
    >>> sorted(display.lines_)
    ['CSQ', 'OrthoHash']
    >>> display.lines_["OrthoHash"].get_xydata().tolist()
    [[16.0, 0.84], [32.0, 0.88]]
    """

    def __init__(self, results, *, metric_name="mAP"):
        self.results = results
        self.metric_name = metric_name

    def plot(self, ax=None, *, marker="o", **kwargs):
        """Draw one line per method, on a base-2 logarithmic axis of code lengths.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        marker : str, default="o"
            Marker of the measured points.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for every line.

        Returns
        -------
        display : MAPvsBitsDisplay
            ``self``, with ``ax_``, ``figure_`` and ``lines_`` set.
        """
        table = _results_table(self.results)
        ax = _axes(ax)
        self.lines_ = {}
        for name, (bits, scores) in table.items():
            (self.lines_[name],) = ax.plot(bits, scores, marker=marker, label=str(name), **kwargs)
        ticks = np.unique(np.concatenate([bits for bits, _ in table.values()]))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel(self.metric_name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_results(cls, results, *, metric_name="mAP", ax=None, **kwargs):
        """Draw scores that are already computed.

        Parameters
        ----------
        results : dict of {str: dict of {int: float}} or iterable of (str, int, float)
            ``{method: {n_bits: score}}``, or rows ``(method, n_bits, score)``.
        metric_name : str, default="mAP"
            Label of the y axis.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : MAPvsBitsDisplay
        """
        return cls(_group_rows(results), metric_name=metric_name).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls, estimator, X_train, y_train, X_test, y_test, *, n_bits=(16, 32, 64), param=None, scoring=None,
        name=None, ax=None, **kwargs,
    ):
        """Fit a clone of ``estimator`` at each code length, score it on the test set, and draw.

        Parameters
        ----------
        estimator : estimator
            Unfitted hash encoder, or a pipeline ending in one.
        X_train, y_train : array-like
            Training features and labels.
        X_test, y_test : array-like
            Test features and labels; every test item queries all the others.
        n_bits : sequence of int, default=(16, 32, 64)
            Code lengths to fit.
        param : str, default=None
            Name of the code-length parameter; ``"n_bits"``, or the pipeline's ``"<step>__n_bits"``,
            when None.
        scoring : callable, default=None
            ``scoring(fitted_estimator, X_test, y_test) -> float``; leave-one-out mAP@all
            (:func:`skhash.metrics.make_map_scorer`) when None.
        name : str, default=None
            Legend label; the encoder's class name when None.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on (add lines of more methods by passing the same axes); a new figure when
            None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : MAPvsBitsDisplay
        """
        from sklearn.base import clone

        param = _n_bits_parameter(estimator) if param is None else param
        scoring = make_map_scorer() if scoring is None else scoring
        name = _estimator_name(estimator) if name is None else name
        scores = {}
        for bits in n_bits:
            fitted = clone(estimator).set_params(**{param: bits}).fit(X_train, y_train)
            scores[int(bits)] = float(scoring(fitted, X_test, y_test))
        return cls({name: scores}).plot(ax=ax, **kwargs)


class ComparisonDisplay:
    """The figures of a comparison (:func:`skhash.compare`) in one picture.

    Top row: mAP against code length (one line per method; methods of one width of their own, such
    as the float reference, as horizontal dashed lines), precision@N, and precision-recall over the
    Hamming radius (the ICPR 2020 figures) at one code length. Bottom row: the intra- and inter-class
    Hamming distance histograms of the two best methods at that length (OrthoHash, Figure 3), and a
    t-SNE map of the best method's codes of up to 10 classes (OrthoHash supplementary, Figure 2).
    Curves are those of each method's first repeat; panels whose numbers the protocol does not give
    (revisitop, GLDv2 have no labels between database items) are left out.

    Parameters
    ----------
    table : list of dict
        The comparison's rows (``ComparisonResult.table``).
    curves : dict
        ``{(method, n_bits, repeat): curves}`` (``ComparisonResult.curves``).
    metric_name : str, default="mAP"
        What the ``map`` column is.

    Attributes
    ----------
    axes_ : dict of {str: matplotlib.axes.Axes}
        The panels drawn: ``"map"``, ``"p_at_n"``, ``"precision_recall"``, ``"histogram 1"``,
        ``"histogram 2"``, ``"tsne"``.
    figure_ : matplotlib.figure.Figure
    n_bits_ : int
        The code length of the curves, histograms and t-SNE map.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhash.plotting import ComparisonDisplay
    >>> table = [{"method": "A", "n_bits": 8, "repeat": 0, "map": 0.5, "own_width": False},
    ...          {"method": "A", "n_bits": 16, "repeat": 0, "map": 0.6, "own_width": False}]
    >>> display = ComparisonDisplay(table, {}).plot(tsne=False)
    >>> sorted(display.axes_), display.n_bits_
    (['map'], 16)
    """

    def __init__(self, table, curves, *, metric_name="mAP"):
        self.table = table
        self.curves = curves
        self.metric_name = metric_name

    @classmethod
    def from_result(cls, result, **kwargs):
        """Draw a ``ComparisonResult``; ``kwargs`` go to :meth:`plot`."""
        return cls(result.table, result.curves, metric_name=result.metric_name).plot(**kwargs)

    def plot(self, *, n_bits=None, figure=None, tsne=True, max_methods=10):
        """Draw the panels.

        Parameters
        ----------
        n_bits : int, default=None
            Code length of the curves, histograms and t-SNE map; the longest compared when None.
        figure : matplotlib.figure.Figure, default=None
            Figure to draw in; a new one when None.
        tsne : bool, default=True
            Draw the t-SNE map (it takes a few seconds).
        max_methods : int, default=10
            Draw the lines of at most this many methods, the best at ``n_bits`` (the tables hold all).

        Returns
        -------
        display : ComparisonDisplay
        """
        codes_rows = [r for r in self.table if not r.get("own_width") and r.get("map") is not None]
        if not codes_rows:
            raise ValueError("table has no rows of codes with a 'map' to draw.")
        widths = sorted({r["n_bits"] for r in codes_rows})
        self.n_bits_ = widths[-1] if n_bits is None else n_bits
        if self.n_bits_ not in widths:
            raise ValueError(f"n_bits={n_bits} was not compared; choose from {widths}.")
        ranked = self._ranked_methods(codes_rows)
        shown = ranked[:max_methods]
        # Curves in the table's order, so each method has the same colour in every panel.
        in_order = [name for name in dict.fromkeys(r["method"] for r in codes_rows) if name in shown]
        first = {name: self.curves.get((name, self.n_bits_, 0), {}) for name in in_order}
        panels = ["map"]
        if any("p_at_n" in c for c in first.values()):
            panels.append("p_at_n")
        if any("precision" in c for c in first.values()):
            panels.append("precision_recall")
        hist = [name for name in shown if "intra" in first[name]][:2]
        panels += [f"histogram {i + 1}" for i in range(len(hist))]
        if tsne and ranked and "tsne_codes" in first[ranked[0]]:
            panels.append("tsne")
        if figure is None:
            figure = _pyplot().figure(figsize=(15, 4.5 * (1 + (len(panels) > 3))), layout="constrained")
        fig = figure
        n_rows = 1 + (len(panels) > 3)
        self.axes_ = {name: fig.add_subplot(n_rows, 3, i + 1) for i, name in enumerate(panels)}
        self._plot_map(self.axes_["map"], shown, best=len(shown) < len(ranked))
        if "p_at_n" in self.axes_:
            self._plot_p_at_n(self.axes_["p_at_n"], first)
        if "precision_recall" in self.axes_:
            ax = self.axes_["precision_recall"]
            for name, c in first.items():
                if "precision" in c:
                    radii = np.arange(len(c["precision"]))
                    HammingPrecisionRecallDisplay(c["precision"], c["recall"], radii, name=name).plot(
                        ax=ax, label_radii=(2,) if name == ranked[0] else ()
                    )
            ax.legend(loc="lower left", fontsize="x-small", ncol=2 if len(first) > 5 else 1)
            ax.set_title(f"precision-recall over Hamming radius, {self.n_bits_} bits")
        for i, name in enumerate(hist):
            c = first[name]
            intra, inter = np.asarray(c["intra"]), np.asarray(c["inter"])
            d = np.arange(len(intra))
            separability = d @ inter / inter.sum() - d @ intra / intra.sum()
            HammingDistanceDisplay(separability, intra, inter, name=f"{name}, {self.n_bits_} bits").plot(
                ax=self.axes_[f"histogram {i + 1}"]
            )
        if "tsne" in self.axes_:
            self._plot_tsne(self.axes_["tsne"], ranked[0], first[ranked[0]])
        self.figure_ = fig
        return self

    def _ranked_methods(self, codes_rows):
        """Methods with rows at ``n_bits_``, best mean ``map`` first."""
        scores = {}
        for r in codes_rows:
            if r["n_bits"] == self.n_bits_:
                scores.setdefault(r["method"], []).append(r["map"])
        return sorted(scores, key=lambda name: -np.mean(scores[name]))

    def _plot_map(self, ax, shown, best):
        means = {}
        for r in self.table:
            if r.get("map") is not None:
                means.setdefault(r["method"], {}).setdefault(r["n_bits"], []).append(r["map"])
        own = {r["method"] for r in self.table if r.get("own_width")}
        lines = {name: {b: float(np.mean(v)) for b, v in by.items()} for name, by in means.items() if name in shown}
        MAPvsBitsDisplay(lines, metric_name=self.metric_name).plot(ax=ax)
        for name in own & set(means):
            ((_, values),) = means[name].items()
            ax.axhline(np.mean(values), linestyle="--", color="gray", linewidth=1)
            ax.annotate(name, (0.01, np.mean(values)), xycoords=("axes fraction", "data"),
                        fontsize="small", va="bottom")
        ax.set_title(f"{self.metric_name} against code length" + (f" ({len(shown)} best)" if best else ""))
        ax.legend(loc="best", fontsize="x-small", ncol=2 if len(lines) > 5 else 1)

    def _plot_p_at_n(self, ax, first):
        for name, c in first.items():
            if "p_at_n" in c:
                ns = np.array([int(n) for n in c["p_at_n"]])
                ax.plot(ns, list(c["p_at_n"].values()), marker=".", label=name)
        for r in self.table:  # methods of one width of their own (the float reference): dashed, gray
            c = self.curves.get((r["method"], r["n_bits"], 0), {}) if r.get("own_width") and r["repeat"] == 0 else {}
            if "p_at_n" in c:
                ns = np.array([int(n) for n in c["p_at_n"]])
                ax.plot(ns, list(c["p_at_n"].values()), linestyle="--", color="gray", label=r["method"])
        ax.set_xscale("log")
        ax.set(xlabel="N (items retrieved)", ylabel="precision@N", ylim=(-0.02, 1.02))
        ax.set_title(f"precision@N, {self.n_bits_} bits")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="x-small", ncol=2 if len(first) > 5 else 1)

    def _plot_tsne(self, ax, name, c):
        from sklearn.manifold import TSNE

        packed = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in c["tsne_codes"]])
        bits = np.unpackbits(packed, axis=1)[:, : self.n_bits_].astype(bool)
        labels = np.asarray(c["tsne_labels"])
        perplexity = min(30.0, max(2.0, (len(bits) - 1) / 3))
        xy = TSNE(metric="hamming", init="random", perplexity=perplexity, max_iter=500, random_state=0).fit_transform(bits)
        for label in np.unique(labels):
            ax.scatter(*xy[labels == label].T, s=6, label=str(label))
        ax.set_title(f"t-SNE of {name}'s codes, {self.n_bits_} bits")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize="x-small", markerscale=2, ncol=2)
