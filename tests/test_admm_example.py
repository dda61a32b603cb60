"""The ADMM model.fit example runs end to end (tiny epochs) and saves a pruned model."""
import os
import subprocess
import sys

import numpy as np

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
    assert "RESULT test_accuracy=" in proc.stdout
    model = keras.models.load_model(output)
    conv2 = model.get_layer("conv2").kernel.numpy()
    gemm = conv2.reshape(-1, conv2.shape[-1])
    assert int((~gemm.any(axis=0)).sum()) == 32  # Filter half of 64
    assert np.all(model.get_layer("bn2").gamma.numpy()[~gemm.any(axis=0)] == 0)
