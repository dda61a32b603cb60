"""The absl console scripts: --help lists their flags; the trainer writes its artifacts."""
import json
import os
import subprocess
import sys

import pytest

SCRIPTS = {
    "train_main": ("tfautocompress.cli", "--output_dir"),
    "main": ("tfautocompress.compress_cli", "--max_accuracy_drop"),
}


def _run(module, function, *args, cwd=None):
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("function", sorted(SCRIPTS))
def test_help_lists_the_scripts_flags(function):
    module, flag = SCRIPTS[function]
    result = _run(module, function, "--help")
    assert flag in result.stdout + result.stderr


def test_train_writes_model_and_metrics(tmp_path):
    result = _run("tfautocompress.cli", "train_main", "--epochs=1", "--batch_size=64",
                  f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "digits_vgg.json").read_text())
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["sizes"] == {"train": 1221, "val": 216, "test": 360}
    assert sorted(os.listdir(tmp_path)) == ["digits_vgg.json", "digits_vgg.keras"]


def test_train_rejects_unknown_model_naming_the_zoo(tmp_path):
    result = _run("tfautocompress.cli", "train_main", "--model=vgg19",
                  f"--output_dir={tmp_path}")
    assert result.returncode != 0
    assert "unknown model 'vgg19'" in result.stderr and "digits_vgg" in result.stderr
    assert not os.listdir(tmp_path)
