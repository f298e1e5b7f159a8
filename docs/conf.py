"""Sphinx configuration of skhash's documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (tests/test_docs.py runs the same build, with
warnings as errors, and the ``>>>`` examples of these pages as doctests).
"""

import os
import sys
from pathlib import Path

# The checkout's skhash, also when it is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MPLBACKEND", "Agg")

import skhash  # noqa: E402

project = "skhash"
author = "the skhash developers"
copyright = "2026, the skhash developers"
release = skhash.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

# The API pages list their members by hand; autosummary only draws the summary tables, it writes no
# stub pages into the source tree.
autosummary_generate = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

templates_path = []
exclude_patterns = ["_build", "_generated"]  # _generated: included by the pages, not pages
root_doc = "index"
pygments_style = "sphinx"

html_theme = "pydata_sphinx_theme"
html_title = f"skhash {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"index": []}


# --------------------------------------------------------------------------------------------------
# The encoders' API list comes from the registry (skhash/encoders/_registry.py): adding a method to the
# registry adds it to the docs, in its family's section.
# --------------------------------------------------------------------------------------------------
from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402
from docutils.statemachine import StringList  # noqa: E402
from sphinx.util.nodes import nested_parse_with_titles  # noqa: E402

FAMILY_TITLES = {
    "shallow": "Shallow methods (no torch)",
    "deep-pointwise": "Deep pointwise and classwise methods",
    "deep-pairwise": "Deep pairwise and triplet methods",
    "unsupervised": "Deep methods without labels",
}
ENCODER_MEMBERS = ("fit", "transform", "decision_function", "score", "recalibrate")


def _registry_lines(summary):
    from skhash.encoders import get_encoder
    from skhash.encoders._registry import ENCODERS, FAMILIES

    lines = []
    for family in FAMILIES:
        specs = [s for s in ENCODERS if s.family == family]
        if not specs:
            continue
        if summary:
            lines += [f".. rubric:: {FAMILY_TITLES[family]}", "", ".. autosummary::", ""]
            lines += [f"   {s.class_name}" for s in specs] + [""]
            continue
        title = FAMILY_TITLES[family]
        lines += [title, "-" * len(title), ""]
        for s in specs:
            members = [m for m in ENCODER_MEMBERS if hasattr(get_encoder(s.name), m)]
            lines += [f".. autoclass:: {s.class_name}", f"   :members: {', '.join(members)}", ""]
    return lines


class RegistryEncoders(Directive):
    """``.. registry-encoders::`` (``:summary:`` for a table): every registered encoder, by family."""

    option_spec = {"summary": lambda arg: True}

    def run(self):
        node = nodes.section()
        node.document = self.state.document
        lines = _registry_lines("summary" in self.options)
        nested_parse_with_titles(self.state, StringList(lines, source="skhash registry"), node)
        return node.children


# --------------------------------------------------------------------------------------------------
# The command reference (cli.rst includes it) is the parser's own help, written at every build.
# --------------------------------------------------------------------------------------------------
GENERATED = Path(__file__).resolve().parent / "_generated"


def _write_cli_reference(app):
    from skhash.cli import reference_rst

    GENERATED.mkdir(exist_ok=True)
    target = GENERATED / "cli_reference.rst"
    text = reference_rst()
    if not target.is_file() or target.read_text(encoding="utf-8") != text:  # unchanged: no rebuild
        target.write_text(text, encoding="utf-8")


def setup(app):
    app.add_directive("registry-encoders", RegistryEncoders)
    app.connect("builder-inited", _write_cli_reference)
