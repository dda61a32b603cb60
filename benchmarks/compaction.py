"""Compaction of a filter-pruned model: surgery time, CONV MACs and CPU latency.

Masks remove ``--prune_fraction`` of the filters of every prunable CONV layer by
magnitude (L2 norm of the freshly initialised filters, so effectively random);
``compact.compact`` builds the smaller model. Latency is one ``tf.function``
call at batch 1 (inference mode), warmed up, median of ``--runs`` calls, the
dense and compact models alternating.

    python benchmarks/compaction.py [--model vgg16_cifar] [--output r.json]
"""
import tensorflow as tf
from absl import app, flags

import _common
from tfautocompress import cost, keras, zoo
from tfautocompress.compact import compact
from tfautocompress.masks import magnitude_masks, uniform_schemes
from tfautocompress.schemes import Filter

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "vgg16_cifar", "Zoo model name.")
flags.DEFINE_float("prune_fraction", 0.5, "Share of filters removed per CONV layer.")
flags.DEFINE_integer("runs", 50, "Timed calls per model.")
flags.DEFINE_integer("seed", 0, "Seed of the weights.")
_common.define_output_flag()


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    model = zoo.build(FLAGS.model)
    masks = magnitude_masks(model, uniform_schemes(model, Filter(FLAGS.prune_fraction)))
    with _common.Stopwatch() as watch:
        small = compact(model, masks)
    compaction_s = watch.seconds
    reports = [cost.count(m) for m in (model, small)]
    x = tf.random.normal((1,) + tuple(model.input_shape[1:]), seed=FLAGS.seed)
    calls = [tf.function(lambda t, m=m: m(t, training=False)) for m in (model, small)]
    latency = _common.interleaved_median_seconds([lambda f=f: f(x).numpy() for f in calls],
                                                 FLAGS.runs)
    print(f"{'model':<10}{'params':>14}{'CONV MACs':>16}{'latency ms':>12}")
    for label, report, seconds in zip(("dense", "compact"), reports, latency):
        print(f"{label:<10}{report.params:>14,}{report.conv_macs:>16,}{1e3 * seconds:>12.3f}")
    result = {
        "model": FLAGS.model, "prune_fraction": FLAGS.prune_fraction,
        "compaction_s": round(compaction_s, 3),
        "conv_macs_ratio": round(reports[0].conv_macs / reports[1].conv_macs, 3),
        "params_ratio": round(reports[0].params / reports[1].params, 3),
        "latency_ratio": round(latency[0] / latency[1], 3),
        "dense_ms": round(1e3 * latency[0], 3), "compact_ms": round(1e3 * latency[1], 3),
    }
    _common.finish(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
