"""docs/architecture.rst's worked example, applied as written: its file, its registry line and its test.

If the base changes so that the documented diff no longer makes a working encoder, this fails.
"""

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator

import skhash
from skhash.encoders import _registry
from skhash.encoders._registry import EncoderSpec

PAGE = (Path(__file__).resolve().parents[1] / "docs" / "architecture.rst").read_text(encoding="utf-8")
BLOCKS = [
    "\n".join(line[3:] for line in block.splitlines())
    for block in re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", PAGE)
]
MODULE_SOURCE, REGISTRY_LINE, TEST_SOURCE = BLOCKS


@pytest.fixture
def toy(monkeypatch):
    spec = eval(REGISTRY_LINE.strip().rstrip(","), {"EncoderSpec": EncoderSpec})
    module = types.ModuleType(spec.module)
    module.__file__ = "<docs/architecture.rst>"
    monkeypatch.setitem(sys.modules, spec.module, module)
    exec(compile(MODULE_SOURCE, "<docs/architecture.rst>", "exec"), module.__dict__)
    monkeypatch.setattr(_registry, "ENCODERS", _registry.ENCODERS + (spec,))
    return spec


def test_the_page_has_the_three_pieces():
    assert len(BLOCKS) == 3
    assert "class ToyHashEncoder(DeepHashEncoder)" in MODULE_SOURCE
    assert REGISTRY_LINE.startswith("EncoderSpec(") and "def test_" in TEST_SOURCE


def test_the_documented_diff_makes_a_registered_working_encoder(toy, digits_split):
    cls = skhash.encoders.get_encoder("toyhash")
    assert skhash.ToyHashEncoder is cls and "toyhash" in _registry.encoder_names(family="unsupervised")
    namespace = {"np": np, "ToyHashEncoder": cls}
    exec(compile(TEST_SOURCE, "<docs/architecture.rst>", "exec"), namespace)
    namespace["test_toyhash_learns_the_projection_bits"](digits_split)


def test_the_documented_encoder_passes_scikit_learns_checks(toy):
    cls = skhash.encoders.get_encoder("toyhash")
    check_estimator(cls(8, device="cpu", max_epochs=2, random_state=0))
