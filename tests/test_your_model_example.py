"""examples/your_model.py end to end, as a user runs it first: a MobileNetV3Small trained
on a folder of images (scikit-learn's real handwritten digits written as PNGs of two
sizes) with ``image_dataset_from_directory``, saved as .keras, compressed on that folder."""
import json
import os
import runpy
import sys

import numpy as np
import pytest
from absl import flags
from tensorflow.python.framework import config as tf_config

from tfautocompress import cost, data
from tfautocompress._keras import keras
from tfautocompress.evaluate import accuracy

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "your_model.py")
CLASSES, PER_CLASS, SIZES = 3, 40, (28, 40)  # two image sizes, neither the model's 32
# The smallest budget that runs every step: one round of one trial and one ADMM epoch.
TINY = ["--rounds=1", "--admm_epochs=1", "--retrain_epochs=0", "--search_trials=1",
        "--purification_trials=0", "--max_accuracy_drop=100", "--batch_size=16",
        "--validation_freq=0", "--columns=keep", "--noexport_tflite"]
_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """digit_0/, digit_1/, digit_2/: real 8x8 digits upscaled to 28x28 or 40x40 RGB PNGs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("images")
    digits = load_digits()
    for c in range(CLASSES):
        (root / f"digit_{c}").mkdir()
        for i, image in enumerate(digits.images[digits.target == c][:PER_CLASS]):
            size = SIZES[i % len(SIZES)]
            Image.fromarray((image * 255 / 16).astype(np.uint8)).resize(
                (size, size), Image.BILINEAR).convert("RGB").save(
                root / f"digit_{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def user_model(folder, tmp_path_factory):
    """What a user brings: a MobileNetV3Small built with weights=None and trained on the
    folder as Keras reads one (pixels in [0, 255]; the model rescales them itself)."""
    keras.utils.set_random_seed(0)
    train = keras.utils.image_dataset_from_directory(str(folder), image_size=(32, 32),
                                                     batch_size=16, seed=0)
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                classes=CLASSES, minimalistic=True, alpha=0.25)
    for layer in model.layers:  # a short training: moving statistics that keep up
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(train, epochs=8, verbose=0)
    path = str(tmp_path_factory.mktemp("user") / "my_model.keras")
    model.save(path)
    return path


def _run_example(*args):
    """The example's ``__main__`` in this process, as ``python examples/your_model.py
    ARGS`` runs it; returns its exit status (0 on success)."""
    saved_argv = sys.argv
    sys.argv = [EXAMPLE, *map(str, args)]
    flags.FLAGS.unparse_flags()  # a fresh command line: no flag values from an earlier run
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(EXAMPLE, run_name="__main__")
    finally:
        sys.argv = saved_argv
        tf_config.disable_op_determinism()  # the scripts turn it on for their process
    return done.value.code or 0


def _kernel_entries(model):
    """(stored, nonzero) CONV kernel entries, counted with NumPy."""
    kernels = [w.numpy() for layer in model.layers if isinstance(layer, _CONVS)
               for w in layer.weights if "kernel" in w.name]
    return sum(k.size for k in kernels), sum(int(np.count_nonzero(k)) for k in kernels)


def test_compresses_a_trained_mobilenetv3_on_its_image_folder(folder, user_model, tmp_path,
                                                              capsys):
    out = tmp_path / "out"
    assert _run_example("--model", user_model, "--dataset", folder,
                        "--output_dir", out, *TINY) == 0
    assert f"report: {out}" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    dense = keras.models.load_model(user_model)
    small = keras.models.load_model(str(out / "final" / "compact.keras"))
    assert small.input_shape == dense.input_shape == (None, 32, 32, 3)

    # Fewer CONV parameters: counted by the library and, independently, by NumPy.
    final = report["final"]
    assert cost.count(dense).conv_params / cost.count(small).conv_params > 1.1
    dense_stored, dense_nonzero = _kernel_entries(dense)
    small_stored, small_nonzero = _kernel_entries(small)
    assert small_stored < dense_stored and dense_nonzero == dense_stored
    assert final["conv_params_ratio"] > 1.1
    assert dense_nonzero / small_nonzero == pytest.approx(final["conv_params_ratio"], rel=0.02)
    assert final["max_abs_diff_vs_masked"] < 1e-4  # the compact model is the pruned one

    # The figures are the models' on the folder's images, fed as the model was trained:
    # resized to 32x32, pixels in [0, 255] (the model begins with its own Rescaling).
    splits = data.load_for_model(str(folder), dense, batch_size=16, seed=0)
    assert splits.num_classes == CLASSES and splits.input_shape == (32, 32, 3)
    assert sum(splits.sizes.values()) == CLASSES * PER_CLASS
    assert 200 < float(next(iter(splits.test))[0].numpy().max()) <= 255
    assert accuracy(small, splits.test) == pytest.approx(final["test_accuracy"], abs=1e-9)
    assert accuracy(dense, splits.test) == pytest.approx(report["baseline"]["test_accuracy"],
                                                         abs=1e-9)
    # The user's model recognises its own images (chance: 1/3): so the pixels are right.
    assert report["baseline"]["val_accuracy"] >= 0.6
    assert report["config"]["max_rounds"] == 1 and len(report["rounds"]) == 1


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A small saved model (loads fast): the bad-input runs stop before it trains."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    path = str(tmp_path_factory.mktemp("small") / "small.keras")
    model.save(path)
    return path


@pytest.mark.parametrize("dataset, message", [
    ("{tmp}/no_such_folder", "--dataset: image folder '{tmp}/no_such_folder' does not exist"),
    ("{tmp}", "--dataset: image folder '{tmp}' must hold one sub-folder per class"),
    (None, "--dataset is required"),
], ids=["missing folder", "empty folder", "no --dataset"])
def test_a_bad_dataset_is_one_line_naming_the_flag(small_model, tmp_path, capsys, dataset,
                                                    message):
    args = [] if dataset is None else ["--dataset", dataset.format(tmp=tmp_path)]
    code = _run_example("--model", small_model, *args, "--output_dir", tmp_path / "out", *TINY)
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("your_model.py: error: " + message.format(tmp=tmp_path)), err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
