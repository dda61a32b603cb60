"""The house's import directions: the core never imports the search, the callbacks
or the exporters; the callbacks never import the search; the exporters import
neither. Every module's imports are parsed (function-level ones included), with
pyproject.toml's ``package-dir`` remap (``callbacks/`` is ``tfautocompress.callbacks``)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"tfautocompress": "tfautocompress", "callbacks": "tfautocompress.callbacks",
            "search": "tfautocompress.search", "tflite_tools": "tfautocompress.tflite_tools"}
CORE = ("_keras", "artifacts", "schemes", "graph", "policy", "space", "masks", "compact",
        "cost", "wrappers", "purification", "evaluate", "data", "zoo", "baseline")
UPWARD = ("keras_tuner", "tfautocompress.search", "tfautocompress.callbacks",
          "tfautocompress.tflite_tools")
# room -> the modules it must not import
RULES = {
    **{f"tfautocompress.{name}": UPWARD for name in CORE},
    "tfautocompress.callbacks": ("keras_tuner", "tfautocompress.search"),
    "tfautocompress.tflite_tools": ("keras_tuner", "tfautocompress.search",
                                    "tfautocompress.callbacks"),
}


def modules():
    """``{module name: source path}`` of every library module."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def imported(source, module):
    """Every module name ``source`` (the text of ``module``) imports, with
    ``from package import sub`` counted as ``package.sub``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def violations(module, source):
    """``["module imports name", ...]`` breaking ``RULES`` for ``module``."""
    banned = next((rule for room, rule in RULES.items()
                   if module == room or module.startswith(room + ".")), ())
    return sorted(f"{module} imports {name}" for name in imported(source, module)
                  if any(name == b or name.startswith(b + ".") for b in banned))


def test_every_room_imports_in_the_allowed_direction():
    found = modules()
    assert {f"tfautocompress.{n}" for n in CORE} <= set(found)
    problems = [v for name, path in found.items() for v in violations(name, path.read_text())]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, line", [
    ("tfautocompress.purification", "import keras_tuner"),
    ("tfautocompress.masks", "from tfautocompress.search import sa_oracle"),
    ("tfautocompress.cost", "    from tfautocompress import tflite_tools"),
    ("tfautocompress.callbacks.admm", "from tfautocompress.search.oracle import Draws"),
    ("tfautocompress.tflite_tools.export", "from tfautocompress.callbacks import admm"),
    ("tfautocompress.callbacks.progressive", "from ..search import tuner"),
])
def test_a_wrong_direction_import_is_caught(module, line):
    source = modules()[module].read_text()
    added = source + ("\n\ndef _f():\n" + line + "\n" if line.startswith(" ") else "\n" + line + "\n")
    assert not violations(module, source)
    assert violations(module, added), line


def test_the_orchestration_may_import_everything():
    source = modules()["tfautocompress.pipeline"].read_text()
    assert "tfautocompress.search" in {n.rsplit(".", 1)[0] for n in imported(
        source, "tfautocompress.pipeline")} | imported(source, "tfautocompress.pipeline")
    assert not violations("tfautocompress.pipeline", source)


# library -> the one module that may import it (tests and examples may import either)
KERAS_HOMES = {"tf_keras": "tfautocompress._keras", "keras": "tfautocompress.keras3"}


def keras_violations(module, source):
    """``["module imports name", ...]``: a Keras library imported outside its one home."""
    return sorted(f"{module} imports {name}" for name in imported(source, module)
                  for library, home in KERAS_HOMES.items()
                  if (name == library or name.startswith(library + ".")) and module != home)


def test_only_keras_py_imports_tf_keras_and_only_keras3_py_imports_keras3():
    problems = [v for name, path in modules().items()
                for v in keras_violations(name, path.read_text())]
    assert not problems, "\n".join(problems)
    assert keras_violations("tfautocompress.cost", "import keras\n")
    assert keras_violations("tfautocompress.graph", "from tf_keras import layers\n")
    assert not keras_violations("tfautocompress.search.tuner", "import keras_tuner\n")
