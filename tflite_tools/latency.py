"""Host TFLite latency of single layers: the timings behind ``objective="latency"``
(``measure_latency_model``) and behind ``compact``'s ``columns="auto"``
(``LayerLatency``, ``lowering.decide``'s ``measure``).

``measure_latency_model`` times each prunable Conv2D or Dense layer alone at an
eighth, half and all of its filters and of its input channels
(``latency_model.GRID``, 9 single-layer models), fits each layer's
``LayerLatencyModel``, times a probe conv at 1..32 filters and every multiple of 8
up to 128 (``filter_costs``) and
the whole model with its layers at all, half and a quarter of their filters (the
rest of the model); every timing is cached per machine like the lowering's, so the
same command gives the same model.

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

from tfautocompress import artifacts, compact, latency_model, masks as masks_lib, schemes
from tfautocompress._keras import keras
from tfautocompress.lowering import FORMS, KEEP, ColumnSparseConv2D, Decision
from tfautocompress.tflite_tools import benchmark

__all__ = ["machine_cache_path", "LatencyCache", "LayerLatency", "HostTimer",
           "measure_latency_model", "filter_costs", "predicted_vs_measured"]

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
    path (``machine_cache_path()``: this machine's) or None (memory only).
    ``lowered_only``: the fastest lowered form even where the kept Conv2D runs faster
    (a layer whose pruned columns the search counted as skipped: ``lowering.probe``)."""

    def __init__(self, cache=None, threads=1, runs=50, rounds=5, lowered_only=False):
        self.cache = cache if isinstance(cache, LatencyCache) else LatencyCache(cache)
        self.threads, self.runs, self.rounds = threads, runs, rounds
        self.lowered_only = lowered_only

    def __call__(self, layer, rows):
        config = layer.get_config()
        shape = tuple(layer.input_shape)
        key = _key(config, shape, rows, self.threads)
        latencies = self.cache.get(key)
        if latencies is None:
            latencies = _measure(config, shape, rows, self.threads, self.runs, self.rounds)
            self.cache.put(key, latencies)
        best = min(FORMS, key=latencies.get)
        lowered = self.lowered_only or latencies[best] < (1 - _MARGIN) * latencies[KEEP]
        form = best if lowered else KEEP
        return Decision(form, latencies)


def _measure(config, input_shape, rows, threads, runs, rounds):
    """``{form: median ms}`` of the layer alone in the kept form and each lowered form."""
    contents = {}
    for form in (KEEP,) + FORMS:
        inputs = keras.Input(batch_shape=(1,) + input_shape[1:])
        conv = dict(config, name="layer")
        layer = (keras.layers.Conv2D.from_config(conv) if form == KEEP
                 else ColumnSparseConv2D.from_conv(conv, rows, form))
        contents[form] = _convert(keras.Model(inputs, layer(inputs)))
    medians = HostTimer(threads, runs, rounds)(list(contents.values()))
    return dict(zip(contents, medians))


# The parts of a layer's config that its timing depends on (beside its input shape).
_TIMED = ("filters", "units", "kernel_size", "strides", "padding", "dilation_rate", "groups",
          "use_bias", "activation", "data_format")


class HostTimer:
    """Times ``.tflite`` models on this host: LiteRT with XNNPACK, ``threads``, in
    ``rounds`` alternating rounds of ``runs`` (``benchmark.interleaved_latency_ms``)."""

    def __init__(self, threads=1, runs=50, rounds=5):
        self.threads, self.runs, self.rounds = int(threads), int(runs), int(rounds)
        self.device = f"host TFLite (LiteRT, XNNPACK), {self.threads} thread(s)"

    def key(self):
        """What a timing is cached under beside the model (the same on every run here)."""
        return ["host", self.threads]

    def __call__(self, contents):
        """Median ms of each model of ``contents`` (``.tflite`` bytes)."""
        return benchmark.interleaved_latency_ms(contents, threads=self.threads, runs=self.runs,
                                                rounds=self.rounds)


def measure_latency_model(model, names, timer=None, cache=None):
    """The ``latency_model.LatencyModel`` of ``model`` (built, static input shape)
    where ``timer`` runs (``HostTimer()`` by default; ``android.AndroidTimer`` for a
    phone): each of layers ``names`` (Conv2D with ``groups=1``, or Dense) timed alone
    at the ``GRID``'s kept filters × input channels and fitted, filters in the
    device's blocks (``filter_costs``); ``fixed_ms`` and ``volume_ms``: the rest of
    the model, from its timings at all, half and a quarter of the layers' filters
    (``_rest_of_the_model``). ``cache`` as ``LayerLatency``'s."""
    timer = timer or HostTimer()
    cache = cache if isinstance(cache, LatencyCache) else LatencyCache(cache)
    grids = {}
    for name in names:
        layer = model.get_layer(name)
        filters, channels = _geometry(layer)
        grids[name] = [(layer, f, c) for f in latency_model.grid_counts(filters)
                       for c in latency_model.grid_counts(channels)]
    points = [point for grid in grids.values() for point in grid]
    timed = _timed_points(points, timer, cache)
    costs = filter_costs(timer, cache)
    layers, at = {}, 0
    for name, grid in grids.items():
        layers[name] = latency_model.LayerLatencyModel.fit(
            [(latency_model.effective_filters(f, costs), c, ms)
             for (_, f, c), ms in zip(grid, timed[at:at + len(grid)])]
        ).located(_positions(model.get_layer(name)))
        at += len(grid)
    fixed_ms, volume_ms = _rest_of_the_model(model, list(layers), timer, cache)
    return latency_model.LatencyModel(layers, fixed_ms, timer.device, costs, volume_ms)


# The whole model is timed at these shares of every timed layer's filters, with its
# layers alone, in batches whose median per model is taken.
_SHARES = (1.0, 0.5, 0.25)
_REPEATS = 3


def _rest_of_the_model(model, names, timer, cache):
    """``(fixed_ms, volume_ms)``: what the whole model, at each of ``_SHARES`` of the
    filters of its layers ``names`` (magnitude-pruned, compacted), spends beyond
    those layers alone, fitted as ``fixed_ms + volume_ms · Σ filters × positions``. Each
    whole model and its layers are timed in alternating batches (``_REPEATS``, the
    median taken): the rest is a small difference of large timings, which load
    drifting between batches would swamp."""
    key = json.dumps(["rest", hashlib.sha256(model.to_json().encode()).hexdigest()[:16],
                      timer.key()])
    if cache.get(key) is None:
        contents, volumes = [], []
        for share in _SHARES:
            small = model
            if share < 1.0:
                kept = {n: schemes.Filter(1.0 - share) for n in names}
                small = compact.compact(model, masks_lib.magnitude_masks(model, kept))
            layers = [small.get_layer(n) for n in names]
            contents += [_convert(small)] + [_convert_single(l, *_geometry(l)) for l in layers]
            volumes.append(sum(_geometry(l)[0] * _positions(l) for l in layers))
        timed = np.median([timer(contents) for _ in range(_REPEATS)], axis=0)
        timed = timed.reshape(len(_SHARES), len(names) + 1)
        cache.put(key, [[v, float(t[0] - t[1:].sum())] for v, t in zip(volumes, timed)])
    volume, rest = np.asarray(cache.get(key)).T
    slope, intercept = np.polyfit(volume, rest, 1)
    if slope < 0:  # noise: no share of the rest follows the feature maps
        slope, intercept = 0.0, float(np.mean(rest))
    return float(intercept), float(slope)


def _positions(layer):
    """Output positions of ``layer`` per example (1 for a Dense on vectors)."""
    return int(np.prod(layer.output_shape[1:-1])) if len(layer.output_shape) > 2 else 1


# The probe of the filter costs: a 3x3 conv on a 16x16x32 input keeping 1..32 filters
# and every multiple of 8 up to 128. GEMM tiles are 4 to 16 filters on CPUs (4 on GPUs),
# and widen with the layer: on one AVX-512 host XNNPACK computes 16 at a time up to 32
# filters and 32 beyond, so 40 filters cost as much as 64 (a period of 32 read them as 48).
_PERIOD = 128
_PROBED = tuple(range(1, 33)) + tuple(range(40, _PERIOD + 1, 8))


def filter_costs(timer=None, cache=None):
    """What ``k = 1.._PERIOD`` filters cost where ``timer`` runs, in filters
    (``latency_model.LatencyModel.filter_costs``): a probe conv's time keeping ``k``
    filters (beyond 32: the next multiple of 8, what the tiles compute) over its time
    keeping all ``_PERIOD``, times ``_PERIOD``."""
    probe = keras.layers.Conv2D(_PERIOD, 3, padding="same", name="probe")
    probe(keras.Input((16, 16, 32)))  # its input shape
    ms = dict(zip(_PROBED, _timed_points([(probe, k, 32) for k in _PROBED],
                                         timer or HostTimer(), cache)))
    at = [ms[min(p for p in _PROBED if p >= k)] for k in range(1, _PERIOD + 1)]
    return tuple(_PERIOD * m / at[-1] for m in at)


def measured_speedup(dense_model, compact_model, timer=None):
    """``{"dense_ms", "compact_ms", "measured_speedup"}``: the two whole models timed
    together (alternating rounds) where ``timer`` runs (``HostTimer(runs=100)`` by
    default)."""
    dense_ms, compact_ms = (timer or HostTimer(runs=100))(
        [_convert(m) for m in (dense_model, compact_model)])
    return {"dense_ms": dense_ms, "compact_ms": compact_ms,
            "measured_speedup": dense_ms / compact_ms}


def predicted_vs_measured(dense_model, compact_model, model, timer=None):
    """How well ``model`` (a ``LatencyModel`` of ``dense_model``) predicted
    ``compact_model`` (``compact(..., columns="keep")``: the same layer names): the
    two whole models timed together (``measured_speedup``), and each timed layer of
    the compact model alone at its filters and input channels (not cached: measured
    now). ``timer``: where (``HostTimer(runs=100)`` by default)."""
    timer = timer or HostTimer(runs=100)
    names = list(model.layers)
    points = [(compact_model.get_layer(n), *_geometry(compact_model.get_layer(n)))
              for n in names]
    layers_ms = timer([_convert_single(*point) for point in points])
    layers = {}
    for name, (_, f, c), ms in zip(names, points, layers_ms):
        predicted = model.layer_ms(name, f, c)
        layers[name] = {"filters": f, "inputs": c, "predicted_ms": predicted, "measured_ms": ms,
                        "error": predicted / ms - 1.0}
    predicted_compact = model.predict({n: (f, c) for n, (_, f, c) in zip(names, points)})
    predicted_dense = model.predict({n: _geometry(dense_model.get_layer(n)) for n in names})
    return {"device": model.device, **measured_speedup(dense_model, compact_model, timer),
            "predicted_speedup": predicted_dense / predicted_compact,
            "predicted_compact_ms": predicted_compact, "layers": layers}


def _timed_points(points, timer, cache=None):
    """Median ms of each ``(layer, filters, input_channels)`` of ``points``: the layer
    alone with that many filters (units) and input channels, timed by ``timer`` (the
    cached ones are not timed again)."""
    cache = cache if isinstance(cache, LatencyCache) else LatencyCache(cache)
    keys, contents = [], {}
    for layer, filters, channels in points:
        config, shape = _single_layer(layer, filters, channels)
        key = json.dumps([type(layer).__name__, shape, {k: config[k] for k in _TIMED
                                                        if k in config}, timer.key()],
                         sort_keys=True, default=list)
        keys.append(key)
        if cache.get(key) is None and key not in contents:
            contents[key] = _convert_single(layer, filters, channels)
    if contents:
        for key, ms in zip(contents, timer(list(contents.values()))):
            cache.put(key, ms)
    return [cache.get(key) for key in keys]


def _convert(model):
    """``.tflite`` bytes of ``model`` (float32, as ``export`` converts it)."""
    with _quiet_tf_logs():
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _convert_single(layer, filters, channels):
    """``.tflite`` bytes of ``layer`` alone with ``filters`` and ``channels`` (batch 1)."""
    config, shape = _single_layer(layer, filters, channels)
    inputs = keras.Input(batch_shape=shape)
    return _convert(keras.Model(inputs, type(layer).from_config(config)(inputs)))


def _geometry(layer):
    """``(filters, input channels)`` of a plain Conv2D or a Dense layer."""
    plain_conv = type(layer) is keras.layers.Conv2D and layer.groups == 1
    if not (plain_conv or type(layer) is keras.layers.Dense):
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): objective 'latency' "
                         "times Conv2D (groups=1) and Dense layers only; use objective "
                         "'params' or 'macs' for this model.")
    units = layer.filters if plain_conv else layer.units
    return int(units), int(layer.input_shape[-1])


def _single_layer(layer, filters, channels):
    """The config and batch-1 input shape of ``layer`` with ``filters`` and ``channels``."""
    _geometry(layer)
    config = dict(layer.get_config(), name="layer")
    config["filters" if "filters" in config else "units"] = int(filters)
    return config, (1,) + tuple(layer.input_shape[1:-1]) + (int(channels),)


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
