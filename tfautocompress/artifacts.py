"""Artifacts in and out: atomic writes (a temp file in the target folder, then
``os.replace``) and the one model loader.

A reader never sees a half-written policy, report, model or ``.tflite`` file, and
a missing, corrupt or foreign file gives one error naming it.
"""
import contextlib
import json
import os
import tempfile
import zipfile


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


def write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def save_figure(figure, path, dpi=100, bbox_inches="tight"):
    """A matplotlib ``Figure`` as the PNG ``path``."""
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches=bbox_inches)


def write_json(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path):
    """The JSON value in ``path``; a ValueError naming the file (and the line and
    column of a syntax error) when it is missing or is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)} does not exist.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{os.fspath(path)} is not valid JSON: {err.msg} at line "
                         f"{err.lineno} column {err.colno}; fix or delete the file.") from None
    except UnicodeDecodeError:
        raise ValueError(f"{os.fspath(path)} is not a JSON text file.") from None


def load_model(path, what="--model", compile=True):
    """Load a saved ``.keras`` model as a checked tf_keras model.

    Every model file the package reads comes through here, so that a missing,
    truncated or foreign file gives one ``ValueError`` naming ``what`` and ``path``
    instead of h5py's or Keras' own message. A file saved by Keras 3
    (``saved_by_keras3``) is loaded with Keras 3, not compiled, and converted to
    tf_keras (``keras3.to_tf_keras``; one line on stderr says so).
    """
    from tfautocompress._keras import as_tf_keras, internal_layers, keras
    # the package's own layers (a compact model's ColumnSparseConv2D, a masked
    # LayerNormalization) are registered when their modules load: load them first
    from tfautocompress import lowering, masked_layer_norm  # noqa: F401

    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} does not exist; give a saved .keras file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} {path!r} is not a .keras archive (truncated or corrupt?); "
                         "save the model again with `model.save('<name>.keras')`.")
    keras3_file = saved_by_keras3(path)
    try:
        if keras3_file:
            from tfautocompress import keras3

            model = keras3.load_model(path)
        else:
            # tf_keras' applications do not register their own layers (ConvNeXt's
            # LayerScale): a model file that holds them needs them named
            model = keras.models.load_model(path, compile=compile,
                                            custom_objects=vars(internal_layers))
    except Exception as err:  # noqa: BLE001 - any failure here is the file's
        raise ValueError(f"{what} {path!r} could not be loaded ({type(err).__name__}: "
                         f"{first_line(err)}); save the model again with "
                         f"{'Keras 3' if keras3_file else 'tf_keras'}.") from err
    return as_tf_keras(model, what=f"{what} {path!r}")


def saved_by_keras3(path):
    """True if the ``.keras`` archive ``path`` was saved by Keras 3 (its metadata says so)."""
    return _keras_version(path).startswith("3")


def _keras_version(path):
    """The ``keras_version`` of a ``.keras`` archive's metadata ('' when absent)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return ""


def first_line(err):
    """The first line of an exception's message ('' when empty)."""
    text = str(err).strip().splitlines()
    return text[0] if text else ""


def save_model(model, path, keras3=False):
    """Save a tf_keras model to ``path`` (``.keras``) atomically; returns the model saved.

    ``keras3=True`` saves it as a Keras 3 model (``keras3.to_keras3``), which
    ``keras.models.load_model`` reads.
    """
    if keras3:
        from tfautocompress import keras3 as keras3_lib

        model = keras3_lib.to_keras3(model)
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return model
