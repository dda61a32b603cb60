"""tfautocompress: AutoCompress structured pruning for tf_keras models.

The public API; everything else is private to its module. Sub-packages:
``tfautocompress.callbacks`` (ADMM, masked retraining, distillation),
``tfautocompress.search`` (enhanced SA Oracle, PruningTuner, AMC, LcP),
``tfautocompress.tflite_tools`` (export, GPU check, benchmarks) and
``tfautocompress.app`` (the pipeline, report, console scripts). Compaction is
``tfautocompress.compact.compact`` (not re-exported here, so that the name
``tfautocompress.compact`` stays the module). ``keras`` is the tf_keras module
every model must be built with (``from tfautocompress import keras``).

The names below are imported on first use (PEP 562): ``import tfautocompress``
loads no TensorFlow, so a console script parses its flags (and answers ``--help``)
before TensorFlow starts, and importing the package changes no global state.
"""
import importlib

# public name -> the module that defines it
_PUBLIC = {
    "AutoCompress": "app.pipeline", "Config": "app.pipeline",
    "ADMM": "callbacks.admm", "Distiller": "callbacks.distillation",
    "teacher_targets": "callbacks.distillation",
    "keras": "_keras", "check_model": "_keras",
    "apply_masks": "compact",
    "count": "cost",
    "analyze": "graph", "close_masks": "graph",
    "magnitude_masks": "masks",
    "LayerAction": "policy", "PruningPolicy": "policy",
    "PolicySpace": "space",
    "Irregular": "schemes", "Filter": "schemes", "Channel": "schemes", "Column": "schemes",
    "Combined": "schemes",
    "StructuredPruneLowMagnitude": "wrappers", "prune_structured": "wrappers",
}

__all__ = [
    "AutoCompress", "Config", "ADMM", "Distiller", "teacher_targets", "keras", "check_model", "count", "analyze",
    "close_masks", "apply_masks",
    "Irregular", "Filter", "Channel", "Column", "Combined",
    "LayerAction", "PolicySpace", "PruningPolicy", "magnitude_masks", "StructuredPruneLowMagnitude", "prune_structured",
]


def __getattr__(name):
    if name not in _PUBLIC:  # a sub-module (``from tfautocompress import data``) is imported
        raise AttributeError(f"module 'tfautocompress' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tfautocompress.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
