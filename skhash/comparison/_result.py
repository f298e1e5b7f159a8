"""What :func:`skhash.compare` returns: the tidy table of runs, and the paper's table made from it."""

import csv
import math
import os

import numpy as np

from .._validation import InputError
from ..io import atomic_output

QUALITY_COLUMNS = ("map", "map_easy", "map_hard", "p_at_h2", "separability")
COLUMNS = (
    "method", "n_bits", "repeat", "seed", *QUALITY_COLUMNS,
    "fit_s", "encode_s", "peak_mem_mib", "gpu_mem_mib", "own_width",
)
OWN_WIDTH = "own width"


class ComparisonResult:
    """The runs of a comparison: one row per method, code length and repeat.

    Attributes
    ----------
    table : list of dict
        One dict per run, in the order of the methods, code lengths and repeats asked for, with the
        keys of ``COLUMNS`` that apply: ``method``, ``n_bits`` (the code's width; the float reference's
        is 32 per feature), ``repeat``, ``seed``, ``map`` (the protocol's mAP; revisitop adds
        ``map_easy`` and ``map_hard``, ``map`` being Medium), ``p_at_h2``, ``separability`` (None where
        the protocol or the method has none), ``fit_s``, ``encode_s``, ``peak_mem_mib``,
        ``gpu_mem_mib`` and ``own_width`` (the row is at the method's own width, not one asked for).
    curves : dict
        ``{(method, n_bits, repeat): {...}}``: precision@N, precision and recall over the Hamming
        radius, the intra / inter-class distance histograms and a sample of codes for t-SNE, where the
        protocol gives them.
    metric_name : str
        What ``map`` is: ``"mAP@all"``, ``"mAP@1000"``, ``"GLDv2 mAP@100"`` ...
    protocol : str
    n_bits : list of int
        The code lengths asked for: the columns of :meth:`to_markdown`.
    """

    def __init__(self, records, *, metric_name, protocol, n_bits):
        self.table = [record["row"] for record in records]
        self.curves = {_row_key(r["row"]): r["curves"] for r in records}
        self.metric_name = metric_name
        self.protocol = protocol
        self.n_bits = list(n_bits)

    def __repr__(self):
        return (
            f"ComparisonResult({len(self.table)} runs, {len(self.methods())} methods, "
            f"protocol={self.protocol!r}, metric={self.metric_name!r})"
        )

    def methods(self):
        """Method names in the order of the rows."""
        return list(dict.fromkeys(row["method"] for row in self.table))

    def summary(self, column="map"):
        """``{method: {n_bits: (mean, std, n_repeats)}}`` of a column over the repeats (``std`` with
        ``ddof=0``; None values are left out)."""
        _check_column(column)
        grouped = {}
        for row in self.table:
            value = row.get(column)
            if value is not None:
                grouped.setdefault(row["method"], {}).setdefault(row["n_bits"], []).append(value)
        return {
            method: {bits: (float(np.mean(v)), float(np.std(v)), len(v)) for bits, v in sorted(by_bits.items())}
            for method, by_bits in grouped.items()
        }

    def to_frame(self):
        """The table as a :class:`pandas.DataFrame` (pandas is optional: only this method needs it)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "ComparisonResult.to_frame needs pandas, which is not installed: pip install pandas "
                "(or use .table, a list of dicts, or to_csv)."
            ) from exc
        return pd.DataFrame(self.table, columns=self._columns())

    def to_csv(self, path, *, overwrite=False):
        """Write the table to a CSV file, one line per run (empty cells for None).

        The file is written beside ``path`` and renamed into place, so an interrupted write leaves the
        old file or none; an existing file is replaced only with ``overwrite=True``.
        """
        path = os.fspath(path)
        if os.path.exists(path) and not overwrite:
            raise InputError(f"{path} already exists; pass overwrite=True to replace it.")
        with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns())
            writer.writeheader()
            for row in self.table:
                writer.writerow({k: "" if v is None else v for k, v in row.items()})

    def plot(self, **kwargs):
        """Draw the comparison's figures (:class:`skhash.plotting.ComparisonDisplay`; needs matplotlib).

        Parameters
        ----------
        **kwargs : dict
            Passed to :meth:`ComparisonDisplay.plot <skhash.plotting.ComparisonDisplay.plot>`
            (``n_bits``, ``figure``, ``tsne``).

        Returns
        -------
        display : skhash.plotting.ComparisonDisplay
        """
        from ..plotting import ComparisonDisplay

        return ComparisonDisplay.from_result(self, **kwargs)

    def _columns(self):
        present = set().union(*(row.keys() for row in self.table)) if self.table else set()
        return [c for c in COLUMNS if c in present]

    def to_markdown(self, column="map", *, digits=4):
        """The paper's table in Markdown: methods as rows, code lengths as columns, the best in bold.

        A cell is the mean over the repeats, ``mean ± std`` when there are several. Methods with a
        width of their own (the float reference, ``SignEncoder``) fill a last column, ``own width``,
        with the width in their row label; they are not ranked against the codes.

        Parameters
        ----------
        column : str, default="map"
            The table's column to show (``"p_at_h2"``, ``"separability"``, ``"fit_s"`` ...).
        digits : int, default=4
            Decimals shown.
        """
        header, rows = self._layout(column, digits, _MARKDOWN)
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join(lines) + "\n"

    def to_latex(self, column="map", *, digits=4):
        """The paper's table as a LaTeX ``tabular`` (booktabs rules), laid out as :meth:`to_markdown`."""
        header, rows = self._layout(column, digits, _LATEX)
        lines = [
            r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
            r"\toprule",
            " & ".join(header) + r" \\",
            r"\midrule",
            *(" & ".join(cells) + r" \\" for cells in rows),
            r"\bottomrule",
            r"\end{tabular}",
        ]
        return "\n".join(lines) + "\n"

    def _layout(self, column, digits, style):
        """``(header, rows)`` of formatted cells."""
        summary = self.summary(column)
        own = {row["method"] for row in self.table if row["own_width"]}
        bits = self.n_bits
        header = ["Method"] + [f"{b} bits" for b in bits] + ([OWN_WIDTH] if own else [])
        header = [style.text(h) for h in header]
        best = {}
        for b in bits:
            means = [round(s[b][0], digits) for m, s in summary.items() if m not in own and b in s]
            if means:
                best[b] = max(means) if column not in _LOWER_IS_BETTER else min(means)
        rows = []
        for method in self.methods():
            stats = summary.get(method, {})
            if method in own:
                width = next(r["n_bits"] for r in self.table if r["method"] == method)
                label = style.text(_own_width_label(method, width))
                cells = [""] * len(bits) + [style.cell(stats[width], digits, False) if width in stats else ""]
            else:
                label = style.text(method)
                cells = [
                    style.cell(stats[b], digits, round(stats[b][0], digits) == best.get(b)) if b in stats else ""
                    for b in bits
                ]
                cells += [""] if own else []
            rows.append([label] + cells)
        return header, rows


_LOWER_IS_BETTER = ("fit_s", "encode_s", "peak_mem_mib", "gpu_mem_mib")


def _own_width_label(method, width):
    if method == "float":
        return f"float ({width // 32}-d, cosine)"
    return f"{method} ({width} bits)"


def _check_column(column):
    if column not in COLUMNS or column in ("method", "n_bits", "repeat", "seed", "own_width"):
        numeric = [c for c in COLUMNS if c not in ("method", "n_bits", "repeat", "seed", "own_width")]
        raise InputError(f"column must be one of {numeric}, got {column!r}.")


def _row_key(row):
    return (row["method"], row["n_bits"], row["repeat"])


def _number(value, digits):
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


class _MARKDOWN:
    @staticmethod
    def text(s):
        return str(s).replace("|", "\\|")

    @staticmethod
    def cell(stat, digits, bold):
        mean, std, n = stat
        text = _number(mean, digits) + (f" ± {_number(std, digits)}" if n > 1 else "")
        return f"**{text}**" if bold else text


class _LATEX:
    _ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}

    @classmethod
    def text(cls, s):
        return "".join(cls._ESCAPES.get(ch, ch) for ch in str(s))

    @staticmethod
    def cell(stat, digits, bold):
        mean, std, n = stat
        if n > 1:
            inner = f"{_number(mean, digits)} \\pm {_number(std, digits)}"
            return f"$\\mathbf{{{inner}}}$" if bold else f"${inner}$"
        text = _number(mean, digits)
        return f"\\textbf{{{text}}}" if bold else text
