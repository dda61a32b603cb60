"""tfautocompress: AutoCompress structured pruning for tf_keras models.

The public API; everything else is private to its module. Sub-packages:
``tfautocompress.callbacks`` (ADMM, masked retraining, progressive pruning),
``tfautocompress.search`` (enhanced SA Oracle, PruningTuner, baselines) and
``tfautocompress.tflite_tools`` (export, GPU check, benchmarks). Compaction is
``tfautocompress.compact.compact`` (not re-exported here, so that the name
``tfautocompress.compact`` stays the module). ``keras`` is the tf_keras module
every model must be built with (``from tfautocompress import keras``).
"""
from tfautocompress._keras import check_model, keras
from tfautocompress.compact import apply_masks
from tfautocompress.cost import count
from tfautocompress.graph import analyze, close_masks
from tfautocompress.masks import magnitude_masks
from tfautocompress.policy import LayerAction, PruningPolicy
from tfautocompress.space import PolicySpace
from tfautocompress.schemes import Channel, Column, Combined, Filter, Irregular
from tfautocompress.wrappers import StructuredPruneLowMagnitude, prune_structured

__all__ = [
    "keras", "check_model", "count", "analyze", "close_masks", "apply_masks",
    "Irregular", "Filter", "Channel", "Column", "Combined",
    "LayerAction", "PolicySpace", "PruningPolicy", "magnitude_masks", "StructuredPruneLowMagnitude", "prune_structured",
]
