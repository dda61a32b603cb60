"""Export a tf_keras model to ``.tflite`` with a JSON sidecar describing it.

``export(model, path, mode)`` converts with ``tf.lite.TFLiteConverter.from_keras_model``
(verified with TF 2.21 / tf_keras 2.21) in one of ``MODES``:

* ``float32`` — plain float model (the reference);
* ``float16`` — float16 weights, the GPU delegate's native format;
* ``dynamic`` — int8 weights, float activations (dynamic-range quantization);
* ``int8`` — full integer (int8 weights, activations, inputs and outputs),
  calibrated on ``representative_data``.

``sparse=True`` adds TFLite's sparse encoding of the remaining zero weights
(``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``; float32/float16 only). The ``.tflite`` and its sidecar
``<path>.json`` are written atomically: either both appear or neither does.
"""
import hashlib
import itertools
import os
import warnings

import numpy as np
import tensorflow as tf

from tfautocompress import artifacts
from tfautocompress._keras import as_tf_keras
from tfautocompress.tflite_tools.litert import cpu_interpreter

MODES = ("float32", "float16", "dynamic", "int8")
# Sparse-encoded dynamic-range / int8 models convert, but LiteRT's XNNPACK delegate
# fails to prepare them ("failed to delegate CONV_2D node"; TF 2.21, ai-edge-litert 2.x).
SPARSE_MODES = ("float32", "float16")
# TFLite's guide recommends a few hundred calibration samples; more only costs time.
MAX_CALIBRATION_SAMPLES = 500


def export(model, path, mode="float32", representative_data=None, sparse=False):
    """Convert ``model`` to ``path`` (+ ``<path>.json``) and return the sidecar dict.

    ``representative_data`` (required for ``int8``): an array of input samples
    (single-input models), or an iterable / ``tf.data.Dataset`` of input batches,
    each an array, a tuple of arrays (one per input), or an ``(inputs, labels)`` pair.
    A Keras 3 model is exported as its tf_keras conversion (the same layers and weights).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not an export mode; accepted: {', '.join(MODES)}.")
    if sparse and mode not in SPARSE_MODES:
        raise ValueError(
            f"sparse=True with mode={mode!r}: LiteRT cannot run sparse-encoded "
            f"quantized models; use sparse with {' or '.join(SPARSE_MODES)}, or "
            "sparse=False.")
    model = as_tf_keras(model)
    if mode == "int8" and representative_data is None:
        raise ValueError(
            "mode='int8' (full integer) needs representative_data to calibrate the "
            "activation ranges: pass ~100-500 input samples (an array, or a "
            "tf.data.Dataset / iterable of input batches).")
    converter = _converter(model, mode, representative_data, sparse)
    with warnings.catch_warnings():
        # int8 inputs are calibrated by representative_data; the TF1-era input
        # statistics the converter asks for do not apply, and it warns every time
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        content = converter.convert()
    info = {
        "mode": mode,
        "sparse": bool(sparse),
        "size_bytes": len(content),
        "tflite_sha256": hashlib.sha256(content).hexdigest(),
        "weights_sha256": weights_sha256(model),
        "model_name": model.name,
        "tf_version": tf.__version__,
        **tensor_details(content),
    }
    with artifacts.atomic_path(path) as tmp_model, \
            artifacts.atomic_path(sidecar_path(path)) as tmp_sidecar:
        with open(tmp_model, "wb") as f:
            f.write(content)
        artifacts.write_json(tmp_sidecar, info)
    return dict(info, path=os.fspath(path))


def sidecar_path(tflite_path):
    """The JSON sidecar written beside ``tflite_path``."""
    return os.fspath(tflite_path) + ".json"


def read_sidecar(tflite_path):
    """The sidecar dict of an exported ``.tflite``; a clear error when it is missing."""
    path = sidecar_path(tflite_path)
    if not os.path.isfile(path):
        raise ValueError(
            f"{path!r} does not exist: {tflite_path!r} was not written by "
            "tflite_tools.export.export (which records its mode there); re-export it.")
    return artifacts.read_json(path)


def weights_sha256(model):
    """SHA-256 over the model's weight values, shapes and dtypes, in weight order."""
    digest = hashlib.sha256()
    for value in model.get_weights():
        value = np.ascontiguousarray(value)
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def tensor_details(content):
    """``{"inputs": [...], "outputs": [...]}`` of a ``.tflite`` as plain JSON."""
    interpreter = cpu_interpreter(content)
    return {"inputs": [_json_detail(d) for d in interpreter.get_input_details()],
            "outputs": [_json_detail(d) for d in interpreter.get_output_details()]}


def input_batches(model, data):
    """Yield the input batches in ``data`` as lists of arrays, one per model input.

    ``data`` is an array (one batch, single-input models) or an iterable /
    ``tf.data.Dataset`` whose elements are an array, a tuple of arrays (one per
    input) or an ``(inputs, labels)`` pair (labels are dropped).
    """
    n_inputs = len(model.inputs)
    if isinstance(data, tf.data.Dataset):
        data = data.as_numpy_iterator()
    elif isinstance(data, (np.ndarray, tf.Tensor)):
        data = [data]
    for element in data:
        arrays = _split_element(element, n_inputs)
        if len(arrays) != n_inputs:
            raise ValueError(
                f"a data element holds {len(arrays)} array(s) but model {model.name!r} "
                f"has {n_inputs} inputs; give one array per input (optionally as "
                "(inputs, labels)).")
        yield [_checked_input(model, i, np.asarray(a)) for i, a in enumerate(arrays)]


def _split_element(element, n_inputs):
    if not isinstance(element, (tuple, list)):
        return [element]
    first = element[0] if element else None
    if isinstance(first, (tuple, list)):  # ((x1, x2, ...), labels)
        return list(first)
    if n_inputs == 1:  # (x, labels) or (x,)
        return [first]
    return list(element)  # (x1, x2, ...)


def _checked_input(model, index, array):
    expected = tuple(model.inputs[index].shape[1:])
    if array.ndim != len(expected) + 1 or any(
            e is not None and e != a for e, a in zip(expected, array.shape[1:])):
        raise ValueError(
            f"input {model.input_names[index]!r} of model {model.name!r} takes batches "
            f"of shape (batch, {', '.join(str(e) for e in expected)}), got an array "
            f"of shape {array.shape}.")
    return array.astype(np.float32, copy=False)


def _converter(model, mode, representative_data, sparse):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [] if mode == "float32" else [tf.lite.Optimize.DEFAULT]
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        samples = _calibration_samples(model, representative_data)
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def _calibration_samples(model, representative_data):
    """Single-sample input lists (the converted model's batch is 1), at most the cap."""
    per_sample = ([a[i:i + 1] for a in arrays]
                  for arrays in input_batches(model, representative_data)
                  for i in range(len(arrays[0])))
    samples = list(itertools.islice(per_sample, MAX_CALIBRATION_SAMPLES))
    if not samples:
        raise ValueError("representative_data holds no samples; int8 calibration "
                         "needs ~100-500 input samples.")
    return samples


def _json_detail(detail):
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": [int(d) for d in detail["shape"]],
        "shape_signature": [int(d) for d in detail["shape_signature"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)},
    }
