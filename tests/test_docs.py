"""The documentation builds with warnings as errors, and the ``>>>`` examples of its pages pass.

(The docstrings' examples run as doctests of the ``skhash`` package itself: pytest's --doctest-modules.)
"""

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES_WITH_EXAMPLES = sorted(
    p for p in DOCS.rglob("*.rst") if re.search(r"^\s*>>> ", p.read_text(encoding="utf-8"), re.MULTILINE)
)


def test_docs_build_with_warnings_as_errors(tmp_path):
    out = tmp_path / "html"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    for page in ["index", "install", "quickstart", "user_guide", "examples", "api/index", "api/neighbors"]:
        assert (out / f"{page}.html").is_file(), page
    # The API reference is generated from the docstrings: their sections are there.
    encoders = (out / "api" / "encoders.html").read_text(encoding="utf-8")
    assert "skhash.OrthoHashEncoder" in encoders and "recalibrate" in encoders
    assert "HammingDistanceDisplay" in (out / "api" / "plotting.html").read_text(encoding="utf-8")
    assert (out / "_images" / "demo.png").is_file()
    # The command reference is the parser's help, generated at the build (skhash.cli.reference_rst).
    cli = (out / "cli.html").read_text(encoding="utf-8")
    assert "skhash fit" in cli and "--margin-type" in cli and "--overwrite" in cli


def test_the_pages_have_examples():
    names = {p.name for p in PAGES_WITH_EXAMPLES}
    assert {"quickstart.rst", "user_guide.rst"} <= names


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page, monkeypatch, tmp_path):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # anything a page writes lands here
    result = doctest.testfile(
        str(page), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of the examples in {page.name} failed (see the output above)"
