"""The CIFAR-10 example script end to end on tensorflow-datasets mock data, one step per phase."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RUN = """
import runpy, sys
import tensorflow_datasets as tfds
script, sys.argv = sys.argv[1], sys.argv[1:]
with tfds.testing.mock_data(num_examples=12):
    runpy.run_path(script, run_name="__main__")
"""
TINY = ["--steps_per_epoch=1", "--baseline_epochs=1", "--batch_size=4", "--rounds=1",
        "--admm_epochs=1", "--retrain_epochs=1", "--search_trials=1",
        "--purification_trials=1", "--max_accuracy_drop=100", "--noexport_tflite",
        "--columns=keep"]


def test_example_runs_the_paper_recipe(tmp_path):
    """With ResNet-18 (its residual merges); VGG-16, the default, builds in test_zoo."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    model = "resnet18_cifar"
    args = [sys.executable, "-c", _RUN, os.path.join(ROOT, "examples", "cifar10_paper.py"),
            *TINY, "--baseline_lr=0.002", f"--model={model}", f"--baseline_dir={tmp_path / 'baseline'}",
            f"--output_dir={tmp_path / 'out'}"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "baseline" / "cifar10" / f"{model}.keras").exists()  # per data set
    baseline = json.loads((tmp_path / "baseline" / "cifar10" / f"{model}.json").read_text())
    assert baseline["lr"] == 0.002  # --baseline_lr trains the baseline, --lr prunes
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    config = report["config"]
    assert (config["lr"], config["admm"], config["objective"]) == (1e-3, {"rho": 1e-4}, "params")
    assert config["distill_weight"] == 0.0  # the paper's recipe does not distil
    assert config["search_score"] == "accuracy"  # and its search ranks by top-1
    assert report["rounds"][0]["conv_params_ratio"] > 1.5  # one round ~2x, as in the paper
    assert report["final"]["conv_params_ratio"] >= report["rounds"][0]["conv_params_ratio"] * 0.999
    assert "report:" in done.stdout
