"""The install: pyproject.toml is the one build definition, and an old pip with the
``wheel`` package present (Python 3.11's bundled pip 23.2, as in many users' venvs)
makes an install in which every sub-package imports (the package-dir remap holds:
``search/`` is ``tfautocompress.search``)."""
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBPACKAGES = ("tfautocompress", "tfautocompress.app", "tfautocompress.callbacks",
               "tfautocompress.search", "tfautocompress.tflite_tools")


def pyproject():
    return tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())


def test_pyproject_is_the_only_build_definition():
    config = pyproject()
    assert config["build-system"]["build-backend"] == "setuptools.build_meta"
    assert not ROOT.joinpath("setup.py").exists() and not ROOT.joinpath("setup.cfg").exists()
    remap = config["tool"]["setuptools"]["package-dir"]
    assert sorted(config["tool"]["setuptools"]["packages"]) == sorted(SUBPACKAGES)
    for package, folder in remap.items():
        assert ROOT.joinpath(folder, "__init__.py").is_file(), (package, folder)
    assert remap["tfautocompress.search"] == "search"


def test_old_pip_with_wheel_installs_every_subpackage(tmp_path):
    """A venv with the interpreter's bundled pip (no upgrade) and ``wheel`` importable:
    without a pyproject.toml, pip 23.2 falls back to ``setup.py develop``, which
    ignores the package-dir remap. The dependencies come from this test's own
    environment (a path line in a .pth: its own .pth files, our editable install's
    among them, are not run), so the test needs no network."""
    setuptools = pytest.importorskip("setuptools")
    pytest.importorskip("wheel")  # with setuptools, the trigger of pip's legacy fallback
    if int(setuptools.__version__.split(".")[0]) < 64:
        pytest.skip(f"setuptools {setuptools.__version__} < 64 cannot build PEP 660 editables")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    pathlib.Path(site, "parent_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps",
                              "--no-build-isolation", "-e", f"{ROOT}[dev]"],
                             capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert install.returncode == 0, pip.stdout + install.stdout[-2000:] + install.stderr[-2000:]
    code = ("import importlib; "
            f"mods = [importlib.import_module(m) for m in {SUBPACKAGES!r}]; "
            "print(*[m.__file__ for m in mods], sep='\\n')")
    imported = subprocess.run([python, "-c", code], capture_output=True, text=True,
                              timeout=600, env=env, cwd=tmp_path)
    assert imported.returncode == 0, pip.stdout + imported.stderr[-2000:]
    files = imported.stdout.split()
    assert files == [str(ROOT / folder / "__init__.py") for folder in
                     ("tfautocompress", "tfautocompress/app", "callbacks", "search",
                      "tflite_tools")], files
