"""Atomic artifact writes: a temp file in the target folder, then ``os.replace``.

A reader never sees a half-written policy, report, model or ``.tflite`` file.
"""
import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temp path beside ``path``; on success it is renamed to ``path``.

    On an exception the temp file is removed and nothing is left at ``path``.
    ``suffix`` keeps the extension for writers that check it (e.g. ``.keras``).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_model(model, path):
    """Save a tf_keras model to ``path`` (``.keras``) atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
