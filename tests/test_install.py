"""The package installs from a built wheel under its distribution name, with the ``skhash`` command.

The wheel goes into a fresh virtual environment that sees the test environment's packages
(``--system-site-packages``) and is installed with ``--no-deps``: what is checked is the name and the entry
point, not a second download of torch.
"""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import skhash

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd, cwd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding the wheel built from a copy of the sources (the checkout gets no build/ folder)."""
    pytest.importorskip("setuptools")
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    shutil.copytree(ROOT / "skhash", src / "skhash", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist",
         src, cwd=root)
    (wheel,) = (root / "dist").glob("*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    # pip of the test environment installs into the venv: no pip download inside the venv is needed.
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=root)
    return wheel, python, root


def test_the_wheel_is_named_scikit_hash(installed):
    wheel, _, _ = installed
    assert wheel.name.startswith(f"scikit_hash-{skhash.__version__}-")


def test_the_venv_has_distribution_scikit_hash_importing_skhash_from_the_wheel(installed):
    _, python, root = installed
    script = (
        "import importlib.metadata as m, json, skhash; d = m.distribution('scikit-hash');"
        "print(json.dumps([d.metadata['Name'], d.version, skhash.__file__,"
        " [e.value for e in d.entry_points if e.name == 'skhash']]))"
    )
    name, version, path, scripts = json.loads(_run(python, "-c", script, cwd=root))
    assert (name, version) == ("scikit-hash", skhash.__version__)
    assert Path(path).is_relative_to(python.parents[1])  # the venv's copy, not the checkout's
    assert scripts == ["skhash.cli:main"]


def test_the_skhash_command_prints_its_version(installed):
    _, python, root = installed
    command = python.parent / ("skhash.exe" if sys.platform == "win32" else "skhash")
    assert command.is_file()
    out = _run(command, "--version", cwd=root)
    assert out.strip() == f"skhash {skhash.__version__} (distribution scikit-hash)"
