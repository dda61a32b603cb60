"""The house's rooms and import directions (pyproject.toml's ``[tool.importlinter]``),
checked by import-linter on a copy of the tree laid out as the package is installed
(pyproject's ``package-dir``: ``callbacks/`` is ``tfautocompress/callbacks``), with
every import counted, function-level ones too."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = pathlib.Path(sys.executable).with_name("lint-imports")


def installed_layout(into):
    """``into/tfautocompress`` as pip installs it; returns ``into``."""
    remap = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(remap.items()):  # parents before their sub-packages
        shutil.copytree(ROOT / folder, into / package.replace(".", "/"), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYPROJECT, into / "pyproject.toml")
    return into


def lint(tree):
    """``(exit code, output)`` of ``lint-imports`` on ``tree``."""
    result = subprocess.run([str(LINT_IMPORTS), "pyproject.toml", "--no-cache"], cwd=tree,
                            env=dict(os.environ, PYTHONPATH=str(tree)),
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def tree(tmp_path):
    return installed_layout(tmp_path)


def test_every_room_imports_in_the_allowed_direction(tree):
    code, output = lint(tree)
    assert code == 0 and "2 kept, 0 broken" in output, output


def test_every_core_module_has_a_room():
    """``exhaustive``: the rooms contract names every module of ``tfautocompress/``."""
    contract = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"][0]
    named = {m.strip() for layer in contract["layers"] for m in layer.replace("|", ":").split(":")}
    modules = {p.stem for p in (ROOT / "tfautocompress").iterdir()
               if p.suffix == ".py" and p.stem != "__init__" or (p / "__init__.py").exists()}
    modules |= {"search", "callbacks", "tflite_tools"}
    assert named == modules


@pytest.mark.parametrize("module, line, contract", [
    ("masks.py", "from tfautocompress.app import report", "app > search"),
    ("cost.py", "    from tfautocompress.tflite_tools import benchmark", "app > search"),
    ("purification.py", "from tfautocompress.search import thresholds", "app > search"),
    ("graph.py", "from tfautocompress.callbacks import admm", "app > search"),
    ("callbacks/admm.py", "from tfautocompress.search.oracle import Draws", "app > search"),
    ("tflite_tools/export.py", "from tfautocompress.callbacks import admm", "app > search"),
    ("search/tuner.py", "    from tfautocompress.app import pipeline", "app > search"),
    ("schemes.py", "import keras_tuner", "keras-tuner is used"),
    ("callbacks/masked_retraining.py", "from keras_tuner.engine import trial", "keras-tuner is used"),
])
def test_a_wrong_direction_import_breaks_its_contract(tree, module, line, contract):
    path = tree / "tfautocompress" / module
    added = ("\n\ndef _f():\n" if line.startswith(" ") else "\n") + line + "\n"
    path.write_text(path.read_text() + added)
    code, output = lint(tree)
    assert code != 0 and "1 broken" in output, output
    assert contract in output.split("Broken contracts")[1], output
