"""The house's rules, read from the source: imports point down the layers, no cycle at any level, and
importing skhash stays light.

Every ``import`` and ``from ... import`` statement counts, also those inside functions (a lazy import
is still a dependency). The layers are those of docs/architecture.rst.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "skhash"

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS = [
    ["skhash._validation", "skhash._streaming", "skhash._popcount", "skhash._parallel", "skhash._labels"],
    ["skhash.codes"],
    ["skhash.targets", "skhash.io", "skhash._search", "skhash.metrics", "skhash._metric_kernels"],
    ["skhash.datasets"],
    ["skhash.encoders", "skhash.neighbors"],
    ["skhash.dask", "skhash.plotting"],
    ["skhash.comparison"],
    ["skhash.cli", "skhash._demo", "skhash.__main__"],
]


def module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name, path):
    """skhash modules imported anywhere in the file (absolute and relative imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "skhash")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "skhash":
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import x` may name a module
    known = modules()
    return {m for m in found if m in known and m != name}


def layer_of(name):
    best, layer = "", None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
                best, layer = prefix, i
    return layer


def unit_of(name):
    """The package-level unit: skhash.encoders.pointwise._x -> skhash.encoders."""
    parts = name.split(".")
    return ".".join(parts[:2])


GRAPH = {name: imports_of(name, path) for name, path in modules().items()}


def test_every_module_has_a_layer():
    missing = [m for m in GRAPH if m != "skhash" and layer_of(m) is None]
    assert not missing, f"give these modules a layer in LAYERS and in docs/architecture.rst: {missing}"


def test_imports_point_down():
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in GRAPH.items()
        if m != "skhash"
        for t in targets
        if t != "skhash" and layer_of(t) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_encoder_knows_about_dask():
    offenders = [m for m, t in GRAPH.items() if m.startswith("skhash.encoders") and any("dask" in x for x in t)]
    assert not offenders


def _cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    graph = {m: {t for t in ts if t != "skhash"} for m, ts in GRAPH.items() if m != "skhash"}
    assert _cycle(graph) is None, _cycle(graph)


def test_no_import_cycle_between_packages():
    graph = {}
    for m, targets in GRAPH.items():
        if m == "skhash":
            continue
        graph.setdefault(unit_of(m), set()).update(unit_of(t) for t in targets if unit_of(t) not in ("skhash", unit_of(m)))
    assert _cycle(graph) is None, _cycle(graph)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("statement", ["import skhash", "from skhash import HammingNeighbors, pack_bits"])
def test_importing_skhash_does_not_import_torch(statement):
    code = f"import sys; {statement}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_using_a_deep_encoder_does_import_torch():
    # The check above could pass by accident if torch were never imported at all.
    code = "import sys, skhash; skhash.OrthoHashEncoder; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_test_modules_have_unique_basenames_and_one_conftest():
    """The tests run without packages (rootdir on sys.path, ``from conftest import ...``), so two test
    files or two conftest.py of one name shadow each other and a whole file fails to collect."""
    tests = pathlib.Path(__file__).resolve().parent
    names = [p.name for p in tests.rglob("*.py") if "__pycache__" not in p.parts and p.name != "__init__.py"]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
