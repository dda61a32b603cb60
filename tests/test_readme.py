"""The README's Python examples run as written (each in a fresh interpreter, in a
folder that holds a small ``photos`` image folder for the one that reads it)."""
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _photos(folder):
    from tfautocompress._keras import keras

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            image = rng.integers(0, 256, (40, 30, 3)).astype(np.uint8)
            keras.utils.save_img(str(folder / label / f"{i}.png"), image)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 3 and any("AutoCompress" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    code = BLOCKS[index]
    if "photos" in code:
        _photos(tmp_path / "photos")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                                   TFAUTOCOMPRESS_CACHE_DIR=str(tmp_path / "cache")))
    assert done.returncode == 0, code + "\n" + done.stderr[-3000:]
