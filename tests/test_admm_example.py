"""The ADMM model.fit example runs end to end (tiny epochs) and saves a pruned model."""
import os
import re
import subprocess
import sys

import numpy as np

from tfautocompress import data
from tfautocompress._keras import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_example_prunes_and_saves(tmp_path):
    output = tmp_path / "pruned.keras"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "admm_model_fit.py"),
         "--epochs=1", "--admm_epochs=1", "--retrain_epochs=1", f"--output={output}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = re.search(r"RESULT test_accuracy=([\d.]+) output=(\S+)", proc.stdout)
    assert printed and printed.group(2) == str(output)
    model = keras.models.load_model(output)
    # The accuracy it prints is the saved model's on the digits test split (seed 0).
    x, y = (np.concatenate(a) for a in zip(*data.load("digits", batch_size=32).test
                                           .as_numpy_iterator()))
    accuracy = np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y)
    assert abs(float(printed.group(1)) - accuracy) <= 5e-5 + 1e-9
    conv1 = model.get_layer("conv1").kernel.numpy()
    dead = ~conv1.reshape(-1, 32).any(axis=0)
    assert int(dead.sum()) == 16  # Filter(0.5) of 32
    conv2 = model.get_layer("conv2").kernel.numpy()
    gemm = conv2.reshape(-1, conv2.shape[-1])
    assert int((~gemm.any(axis=0)).sum()) == 32  # Filter half of 64
    # conv2's columns: the 16 x 9 reading conv1's dead channels, and its own quarter of
    # the 288 (72), which may overlap them
    assert np.all(conv2[:, :, dead] == 0)
    assert 16 * 9 < int((~gemm.any(axis=1)).sum()) <= 16 * 9 + 72
    assert np.all(model.get_layer("bn2").gamma.numpy()[~gemm.any(axis=0)] == 0)
