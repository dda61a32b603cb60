"""The absl console scripts: --help lists their flags; the trainer writes its artifacts."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# Every console script (pyproject.toml): its module, function and one flag of its own.
SCRIPTS = {
    "tfautocompress-train": ("tfautocompress.app.cli", "train_main", "--epochs"),
    "tfautocompress-compress": ("tfautocompress.app.compress_cli", "main", "--max_accuracy_drop"),
    "tfautocompress-admm": ("tfautocompress.app.admm_cli", "main", "--filter_fraction"),
    "tfautocompress-export": ("tfautocompress.app.export_cli", "export_main", "--modes"),
    "tfautocompress-android-benchmark": ("tfautocompress.app.export_cli", "android_main",
                                         "--benchmark_binary"),
}


def _run(module, function, *args, cwd=None):
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_every_console_script_is_listed():
    from test_packaging import pyproject

    declared = pyproject()["project"]["scripts"]
    assert declared == {script: f"{module}:{function}"
                        for script, (module, function, _) in SCRIPTS.items()}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_lists_the_scripts_flags(script):
    module, function, flag = SCRIPTS[script]
    result = _run(module, function, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert flag in result.stdout and "--[no]traceback" in result.stdout


def test_train_writes_model_and_metrics(tmp_path):
    result = _run("tfautocompress.app.cli", "train_main", "--epochs=1", "--batch_size=64",
                  f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "digits_vgg.json").read_text())
    from tfautocompress import artifacts, data
    from tfautocompress.evaluate import accuracy

    saved = artifacts.load_model(str(tmp_path / "digits_vgg.keras"))
    assert metrics["epochs"] == 1  # the figure is the saved model's on the test split
    assert metrics["test_accuracy"] == pytest.approx(
        accuracy(saved, data.load("digits", batch_size=64, seed=0).test), abs=1e-9)
    assert metrics["sizes"] == {"train": 1221, "val": 216, "test": 360}
    assert sorted(os.listdir(tmp_path)) == ["digits_vgg.json", "digits_vgg.keras"]


def test_baseline_folder_per_data_set_subset_and_seed():
    from tfautocompress.app.cli import baseline_folder

    assert baseline_folder("b") == "b"
    assert baseline_folder("b", "digits", seed=2) == os.path.join("b", "seed_2")
    assert baseline_folder("b", "fashion_mnist", 1, 4000) == os.path.join(
        "b", "fashion_mnist", "train_4000", "seed_1")
    assert baseline_folder("b", "/data/my set.npz") == os.path.join("b", "my_set_npz")


def test_train_on_a_subset_writes_where_compress_looks(tmp_path):
    result = _run("tfautocompress.app.cli", "train_main", "--epochs=1", "--batch_size=64",
                  "--train_size=200", "--seed=1", "--validation_freq=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "runs" / "baseline" / "train_200" / "seed_1"
    metrics = json.loads((folder / "digits_vgg.json").read_text())
    assert metrics["sizes"] == {"train": 200, "val": 216, "test": 360}
    from tfautocompress import artifacts
    from tfautocompress.app.compress_cli import load_model

    found = load_model("digits_vgg", "digits", None, str(tmp_path / "runs" / "baseline"), 1,
                       64, 1e-3, 1, train_size=200)  # loaded, not trained again
    saved = artifacts.load_model(str(folder / "digits_vgg.keras"))
    for a, b in zip(found.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_train_rejects_unknown_model_naming_the_zoo(tmp_path):
    result = _run("tfautocompress.app.cli", "train_main", "--model=vgg19",
                  f"--output_dir={tmp_path}")
    assert result.returncode != 0
    assert "unknown model 'vgg19'" in result.stderr and "digits_vgg" in result.stderr
    assert not os.listdir(tmp_path)


def test_admm_prunes_a_saved_model_to_a_policy_file(tmp_path):
    from tfautocompress import policy, schemes, zoo
    from tfautocompress._keras import keras

    keras.utils.set_random_seed(0)
    zoo.build("digits_vgg", (32, 32, 3), 10).save(tmp_path / "m.keras")
    wanted = {"block2_1_conv": schemes.Filter(0.5), "block3_1_conv": schemes.Combined(0.25, 0.5)}
    policy.save_schemes(str(tmp_path / "policy.json"), wanted)
    result = _run("tfautocompress.app.admm_cli", "main", f"--model={tmp_path}/m.keras",
                  f"--policy={tmp_path}/policy.json", "--admm_epochs=1", "--retrain_epochs=1",
                  f"--output_dir={tmp_path}/out")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "out" / "digits_vgg_admm.json").read_text())
    assert set(metrics["policy"]) == set(wanted)
    # The pruned kernels hold exactly the policy's structure.
    assert metrics["kernel_sparsity"]["block2_1_conv"]["filter"] == pytest.approx(0.5)
    assert metrics["kernel_sparsity"]["block3_1_conv"]["filter"] == pytest.approx(0.25)
    assert metrics["kernel_sparsity"]["block3_1_conv"]["column"] >= 0.5
    with np.load(tmp_path / "out" / "digits_vgg_masks.npz") as masks:
        assert sorted(masks.files) == sorted(wanted)
    assert len(metrics["admm_res"]) == 1


# --- a quiet, fast start ---------------------------------------------------------------

@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_answers_before_tensorflow_loads(script):
    """absl parses the flags (and answers --help) with TensorFlow not imported: the
    flags' choices live in tfautocompress.app.cli, the package's names load on first use."""
    module, function, flag = SCRIPTS[script]
    code = (f"import sys\nfrom {module} import {function}\ntry:\n    {function}()\n"
            "except SystemExit:\n"
            "    print('loaded:', sorted(m for m in ('tensorflow', 'tf_keras', 'keras', "
            "'tensorflow_model_optimization', 'ai_edge_litert', 'matplotlib') "
            "if m in sys.modules))\n    raise\n")
    result = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert flag in result.stdout and "loaded: []" in result.stdout, result.stdout[-500:]


def test_enum_flag_choices_are_the_librarys():
    from tfautocompress import compact, cost, distribute, space
    from tfautocompress.app import config

    assert config.COLUMNS == compact.COLUMNS
    assert config.SCHEME_SETS == space.SCHEME_SETS
    assert config.DISTRIBUTIONS == distribute.DISTRIBUTIONS
    assert config.OBJECTIVES == cost.OBJECTIVES


def test_importing_the_library_changes_no_global_state():
    """Importing every module of ours (after the third-party libraries) sets no
    environment variable, log level, warning filter or matplotlib backend."""
    code = """
import importlib, logging, os, pathlib, sys, warnings
import absl.logging, matplotlib, tensorflow as tf, tf_keras, keras_tuner
import tensorflow_model_optimization, tensorflow_datasets, sklearn, ai_edge_litert.interpreter
import tfautocompress
state = lambda: (dict(os.environ), absl.logging.get_verbosity(), tf.get_logger().level,
                 logging.getLogger().level, len(warnings.filters), matplotlib.get_backend(),
                 'matplotlib.pyplot' in sys.modules)
before = state()
root = pathlib.Path(tfautocompress.__file__).parents[1]
for folder, package in (('tfautocompress', 'tfautocompress'), ('tfautocompress/app', 'tfautocompress.app'),
                        ('callbacks', 'tfautocompress.callbacks'),
                        ('search', 'tfautocompress.search'), ('tflite_tools', 'tfautocompress.tflite_tools')):
    for path in sorted((root / folder).glob('*.py')):
        importlib.import_module(package if path.stem == '__init__' else f'{package}.{path.stem}')
after = state()
changed = {k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k)}
print('changed:', sorted(changed), [b for b, a in zip(before[1:], after[1:]) if a != b])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "changed: [] []" in result.stdout, result.stdout


def test_console_scripts_print_our_lines_not_tensorflows(tmp_path):
    """No TensorFlow start-up lines (CUDA probes, absl's InitializeLog notice, CPU
    advice) and no converter warnings, unless --verbosity asks for them."""
    from tfautocompress import artifacts
    from tfautocompress._keras import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    artifacts.save_model(keras.Model(inputs, keras.layers.Dense(3)(x)), str(tmp_path / "m.keras"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = [f"--model={tmp_path}/m.keras", f"--output_dir={tmp_path}/out", "--modes=float32",
            "--runs=1", "--warmup=1"]
    code = "from tfautocompress.app.export_cli import export_main; export_main()"
    quiet = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    noise = ("cuInit", "cudart_stub", "absl::InitializeLog", "cpu_feature_guard",
             "oneDNN", "Ignored output_format", "Reading SavedModel", "XNNPACK delegate")
    assert not [n for n in noise if n in quiet.stderr], quiet.stderr
    assert quiet.stdout.startswith("float32 ") and "summary: " in quiet.stdout
    verbose = subprocess.run([sys.executable, "-c", code, *args, "--verbosity=0"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert verbose.returncode == 0 and "Ignored output_format" in verbose.stderr
