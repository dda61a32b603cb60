"""Host TFLite latency of one column-sparse Conv2D in each form: what ``compact``'s
``columns="auto"`` chooses by (``lowering.decide``'s ``measure``).

``LayerLatency`` times the layer alone in host TFLite (LiteRT, XNNPACK, 1 thread)
in the kept form and both lowered forms (``lowering.FORMS``), in alternating
rounds, and picks the fastest; measurements are cached per layer shape and
kept-row pattern, in memory and optionally in a JSON file. A layer costs three
single-layer conversions (most of the time) and 5 alternating rounds of 50 timed
runs per form: about 2 s on a 2-core machine. A lowered form is chosen only when
it is at least 10 % faster.
"""
import contextlib
import hashlib
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from tfautocompress import artifacts
from tfautocompress._keras import keras
from tfautocompress.lowering import FORMS, KEEP, ColumnSparseConv2D, Decision
from tfautocompress.tflite_tools import benchmark

__all__ = ["machine_cache_path", "LatencyCache", "LayerLatency"]

# A lowered form must beat the kept conv by this share to be chosen: single-layer
# timings on a shared CPU jitter by 5-10 % between runs, the lowered graph's extra
# ops and XNNPACK partitions cost a little more inside a model than alone, and the
# kept conv is the simpler graph.
_MARGIN = 0.10


def machine_cache_path():
    """This machine's latency cache: ``$TFAUTOCOMPRESS_CACHE_DIR`` (default
    ``~/.cache/tfautocompress``) / ``layer_latency.json``. Measured once per layer
    shape and kept-row pattern, a choice is the same in every later run here, so
    the same command and seed give the same compact model."""
    folder = os.environ.get("TFAUTOCOMPRESS_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfautocompress")
    return os.path.join(folder, "layer_latency.json")


class LatencyCache:
    """Measured single-layer latencies by layer key, in memory and optionally in
    ``path`` (JSON, written atomically after each new measurement)."""

    _memory = {}  # shared by every cache of the process

    def __init__(self, path=None):
        self.path = None if path is None else os.fspath(path)
        if self.path and os.path.exists(self.path):
            try:
                self._memory.update(artifacts.read_json(self.path))
            except (OSError, ValueError) as err:
                raise ValueError(f"latency cache {self.path!r} is not a JSON file written by "
                                 f"tfautocompress.tflite_tools.latency ({err}); delete it.") from err

    def get(self, key):
        return self._memory.get(key)

    def put(self, key, latencies):
        self._memory[key] = latencies
        if self.path:
            known = artifacts.read_json(self.path) if os.path.exists(self.path) else {}
            known[key] = latencies
            artifacts.write_json(self.path, known)


def _key(config, input_shape, rows, threads):
    digest = hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()[:16]
    parts = {k: config[k] for k in ("filters", "kernel_size", "strides", "padding",
                                    "dilation_rate", "use_bias")}
    return json.dumps([list(input_shape[1:]), parts, len(rows), digest, threads],
                      sort_keys=True, default=list)


class LayerLatency:
    """``measure(layer, rows) -> lowering.Decision``: the fastest form of Conv2D
    ``layer`` (built, with static input shape) keeping ``rows``, by host TFLite
    latency of the layer alone (module doc). ``cache``: a ``LatencyCache``, a JSON
    path (``machine_cache_path()``: this machine's) or None (memory only)."""

    def __init__(self, cache=None, threads=1, runs=50, rounds=5):
        self.cache = cache if isinstance(cache, LatencyCache) else LatencyCache(cache)
        self.threads, self.runs, self.rounds = threads, runs, rounds

    def __call__(self, layer, rows):
        config = layer.get_config()
        shape = tuple(layer.input_shape)
        key = _key(config, shape, rows, self.threads)
        latencies = self.cache.get(key)
        if latencies is None:
            latencies = _measure(config, shape, rows, self.threads, self.runs, self.rounds)
            self.cache.put(key, latencies)
        best = min(FORMS, key=latencies.get)
        form = best if latencies[best] < (1 - _MARGIN) * latencies[KEEP] else KEEP
        return Decision(form, latencies)


def _measure(config, input_shape, rows, threads, runs, rounds):
    """``{form: median ms}`` of the layer alone in the kept form and each lowered form."""
    contents = {}
    with _quiet_tf_logs():
        for form in (KEEP,) + FORMS:
            inputs = keras.Input(batch_shape=(1,) + input_shape[1:])
            conv = dict(config, name="layer")
            layer = (keras.layers.Conv2D.from_config(conv) if form == KEEP
                     else ColumnSparseConv2D.from_conv(conv, rows, form))
            model = keras.Model(inputs, layer(inputs))
            contents[form] = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    medians = benchmark.interleaved_latency_ms(list(contents.values()), threads=threads,
                                               runs=runs, rounds=rounds)
    return dict(zip(contents, medians))


@contextlib.contextmanager
def _quiet_tf_logs():
    """TensorFlow's and absl's Python INFO lines off while single layers convert
    (several lines per conversion); the levels before are restored."""
    logger, verbosity = tf.get_logger(), absl_logging.get_verbosity()
    level = logger.level
    logger.setLevel("ERROR")
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        absl_logging.set_verbosity(verbosity)
