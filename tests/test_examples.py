"""The examples run end to end at their small ``--quick`` size (examples/instance_level.py has its own test)."""

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    """The example's functions, without running it as a script."""
    return runpy.run_path(str(EXAMPLES / name))


def test_category_level_grid_search_and_map(capsys):
    scores = load("category_level.py")["main"](["--quick"])
    out = capsys.readouterr().out
    assert set(scores) == {"OrthoHash (tuned)", "CSQ", "GreedyHash"}
    assert all(0 < s <= 1 for s in scores.values())
    assert "grid search over 4 settings x 2 folds" in out and "best: {" in out


def test_search_at_scale_cpu_search_and_map(capsys):
    score = load("search_at_scale.py")["main"](["--quick"])
    out = capsys.readouterr().out
    # 100 classes: a random ranking scores about 0.01; trained codes far more.
    assert 0.2 < score <= 1
    assert "CPU: 200 queries, k=100" in out and "20,000 database descriptors" in out
