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
exclude_patterns = ["_build"]
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
