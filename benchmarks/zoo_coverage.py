"""Every CNN of ``tf_keras.applications``: how much of it AutoCompress can reach.

For each model (weights=None, 10 classes, logits, ``--size`` input: 75 for the
Inception and Xception nets, which need at least 71) it reports

* prunable / CONV layers: producers of prunable channel groups among the CONV
  layers (Dense on feature maps counts as a pointwise CONV), and the barriers
  (layers that keep prunable channels whole), by kind;
* in reach: the share of CONV params in layers that lose params at the ceiling;
* ceiling: the CONV-params ratio with every layer of the search's ``PolicySpace``
  at ``max_fraction`` 0.95 of filter+column pruning (half and half), counted
  by the analytic budget and by ``cost.count`` on the projection's masks (they agree
  when the budget is exact);
* compact ≡ masked: max |compact(x) − masked(x)| / max |masked(x)| on random inputs,
  under masks of a random filter+column policy, BatchNormalization statistics
  randomised; and of the compact model's float32 ``.tflite`` against it;
* a 1-round ``AutoCompress`` on digits at the model's input size (4 training
  batches, 2 search trials, 1 ADMM + 1 retraining epoch): the CONV-params ratio it
  reaches and its wall time.

    python benchmarks/zoo_coverage.py [--models MobileNetV3Small,ConvNeXtTiny]
        [--noautocompress] [--output results/zoo.json]
"""
import collections
import dataclasses
import os
import tempfile

import numpy as np
from absl import app, flags

import _common
from tfautocompress import compact as compact_lib, cost, data, graph, keras, masks as masks_lib
from tfautocompress import space as space_lib
from tfautocompress.app.pipeline import AutoCompress, Config
from tfautocompress.policy import LayerAction, PruningPolicy
from tfautocompress.tflite_tools import benchmark as tflite_benchmark, export as tflite_export

MODELS = ("VGG16", "ResNet50", "ResNet50V2", "InceptionV3", "DenseNet121", "MobileNet",
          "MobileNetV2", "Xception", "NASNetMobile", "ResNetRS50", "InceptionResNetV2",
          "EfficientNetB0", "EfficientNetV2B0", "MobileNetV3Large", "MobileNetV3Small",
          "RegNetY002", "RegNetX002", "ConvNeXtTiny")
NEED_75 = ("InceptionV3", "InceptionResNetV2", "Xception")

FLAGS = flags.FLAGS
flags.DEFINE_list("models", list(MODELS), "tf_keras.applications constructors.")
flags.DEFINE_integer("size", 64, "Input height and width (75 for the nets that need it).")
flags.DEFINE_bool("autocompress", True, "Run the 1-round AutoCompress on each model.")
flags.DEFINE_bool("tflite", True, "Check the compact model's float32 .tflite.")
flags.DEFINE_integer("seed", 0, "Seed of the weights, the masks and the run.")
_common.define_output_flag()

TINY = Config(max_rounds=1, max_fraction=0.95, admm_epochs=1, retrain_epochs=1,
              search_trials=2, purification_trials=1, purification_rounds=1, max_accuracy_drop=100.0,
              columns="keep", validation_freq=0, export_tflite=False)


def build(name, size, seed):
    """The application at ``size`` with logits and randomised BN statistics."""
    keras.utils.set_random_seed(seed)
    size = max(size, 75) if name in NEED_75 else size
    constructor = getattr(keras.applications, name)
    try:
        model = constructor(weights=None, input_shape=(size, size, 3), classes=10,
                            classifier_activation=None)
    except TypeError:  # constructors without the argument
        model = constructor(weights=None, input_shape=(size, size, 3), classes=10)
    rng = np.random.default_rng(seed)
    for layer in graph.leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                               for w in layer.get_weights()])
    return model


def coverage(model):
    """Prunable and CONV layer counts, barriers by kind, reach and the two ceilings."""
    channel_graph = graph.analyze(model)
    space = space_lib.PolicySpace.from_model(model, max_fraction=TINY.max_fraction)
    ceiling = PruningPolicy(space, {n: LayerAction(space.max_fraction, 0.5)
                                    for n in space.names})
    dense = {row.name: row for row in cost.count(model).layers if row.conv}
    pruned = {row.name: row for row in cost.count(model, masks_lib.magnitude_masks(
        model, ceiling)).layers}
    reach = sum(row.params for name, row in dense.items() if pruned[name].params < row.params)
    total = sum(row.params for row in dense.values())
    return {"prunable": len(space.names), "conv_layers": len(dense),
            "barriers": dict(collections.Counter(
                type(channel_graph.layers[b]).__name__ for b in channel_graph.barriers)),
            "reach": reach / total,
            "ceiling": space.compression_ratio(ceiling.actions),
            "ceiling_counted": total / sum(pruned[name].params for name in dense)}


def equivalence(model, seed, tflite):
    """Relative max difference compact vs masked (and its .tflite vs compact)."""
    space = space_lib.PolicySpace.from_model(model)
    rng = np.random.default_rng(seed)
    policy = PruningPolicy(space, {n: LayerAction(float(rng.uniform(0.3, 0.9)),
                                                  float(rng.uniform(0.3, 1.0)))
                                   for n in space.names})
    masks = masks_lib.magnitude_masks(model, policy)
    x = rng.uniform(0, 255, (2,) + tuple(model.input_shape[1:])).astype(np.float32)
    masked = np.asarray(compact_lib.apply_masks(model, masks)(x, training=False))
    small = compact_lib.compact(model, masks)
    got = np.asarray(small(x, training=False))
    scale = max(float(np.abs(masked).max()), 1e-12)
    result = {"compact_vs_masked": float(np.abs(got - masked).max()) / scale}
    if tflite:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "compact.tflite")
            tflite_export.export(small, path, "float32")
            (out,) = tflite_benchmark.run_tflite(path, [x])
        result["tflite_vs_compact"] = float(np.abs(out - got).max()) / scale
    return result


def autocompress(model, seed):
    """CONV-params ratio and seconds of a 1-round run on digits."""
    splits = data.load("digits", batch_size=32, image_size=tuple(model.input_shape[1:3]),
                       channels=3, seed=seed)
    splits = dataclasses.replace(splits, train=splits.train.take(4))
    with tempfile.TemporaryDirectory() as folder, _common.Stopwatch() as watch:
        report = AutoCompress(model, splits, folder, dataclasses.replace(TINY, seed=seed),
                              verbose=0).run()
    return {"run_ratio": report["final"]["conv_params_ratio"], "run_s": watch.seconds}


def main(argv):
    del argv
    rows = {}
    print(f"{'model':<18}{'prunable':>10}{'reach':>7}{'ceiling':>9}{'counted':>9}"
          f"{'compact':>10}{'tflite':>10}{'1-round':>9}{'s':>6}  barriers")
    for name in FLAGS.models:
        model = build(name, FLAGS.size, FLAGS.seed)
        row = coverage(model)
        row.update(equivalence(model, FLAGS.seed, FLAGS.tflite))
        if FLAGS.autocompress:
            row.update(autocompress(model, FLAGS.seed))
        rows[name] = row
        print(f"{name:<18}{row['prunable']:>5}/{row['conv_layers']:<4}{row['reach']:>7.0%}"
              f"{row['ceiling']:>8.1f}x{row['ceiling_counted']:>8.1f}x"
              f"{row['compact_vs_masked']:>10.1e}{row.get('tflite_vs_compact', float('nan')):>10.1e}"
              f"{row.get('run_ratio', float('nan')):>8.2f}x{row.get('run_s', float('nan')):>6.0f}"
              f"  {row['barriers'] or '-'}", flush=True)
    result = {"models": len(rows),
              "min_ceiling": round(min(r["ceiling"] for r in rows.values()), 2),
              "min_reach": round(min(r["reach"] for r in rows.values()), 3),
              "max_compact_vs_masked": max(r["compact_vs_masked"] for r in rows.values())}
    _common.finish(result, FLAGS.output, extra={"rows": rows})


if __name__ == "__main__":
    app.run(main)
