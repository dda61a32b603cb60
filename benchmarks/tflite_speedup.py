"""Host TFLite latency of vgg16_cifar, dense vs compacted after uniform filter pruning.

Random weights; every Conv2D keeps its round((1 - f)·filters) largest-L2 filters
(magnitude filter masks), ``compact`` removes the rest, and the models
are exported as float32 ``.tflite`` (each checked against the masked dense model)
and timed with LiteRT (XNNPACK, batch 1).
Models are timed in alternating rounds so that load from other processes hits
all of them alike; a model's latency is the median over rounds of its medians
(``speedup``), and also the minimum over all its runs (``speedup_min``, the
figure least disturbed by other processes on a shared machine).
The target is speedup >= 0.8 x the CONV MACs ratio.

    python benchmarks/tflite_speedup.py [--fractions 0.5,0.75] [--threads 1] [--output r.json]
"""
import os
import tempfile

import numpy as np
from absl import app, flags

import _common
from tfautocompress import apply_masks, count, keras, zoo
from tfautocompress.compact import compact
from tfautocompress.masks import magnitude_masks, uniform_schemes
from tfautocompress.schemes import Filter
from tfautocompress.tflite_tools import benchmark, export

flags.DEFINE_list("fractions", ["0.5", "0.75"], "Filter prune fractions (removed share).")
_common.define_tflite_timing_flags(runs=50, rounds=3)
flags.DEFINE_integer("seed", 0, "Seed of the random weights.")
_common.define_output_flag()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    fractions = [float(f) for f in FLAGS.fractions]
    keras.utils.set_random_seed(FLAGS.seed)
    dense = zoo.build("vgg16_cifar")
    models, references = {"dense": dense}, {"dense": dense}
    for f in fractions:
        masks = magnitude_masks(dense, uniform_schemes(dense, Filter(f)))
        models[f"compact_{f:g}"] = compact(dense, masks)
        references[f"compact_{f:g}"] = apply_masks(dense, masks)
    x = np.random.default_rng(FLAGS.seed).uniform(size=(4, 32, 32, 3)).astype(np.float32)
    conv_macs = {name: count(m).conv_macs for name, m in models.items()}
    with tempfile.TemporaryDirectory(prefix="tflite_speedup_") as folder:
        files = {name: export.export(m, os.path.join(folder, f"{name}.tflite"))["path"]
                 for name, m in models.items()}
        sizes = {name: os.path.getsize(path) / 2**20 for name, path in files.items()}
        diffs = {name: _common.tflite_relative_diff(path, references[name], x)
                 for name, path in files.items()}
        latency, fastest = _latencies(files)

    print(f"{'model':<14}{'size MB':>9}{'CONV MMACs':>12}{'MACs ratio':>12}"
          f"{'median ms':>11}{'speedup':>9}{'min ms':>9}{'speedup(min)':>14}"
          f"{'rel. diff vs masked':>21}")
    result = {"threads": FLAGS.threads, "dense_ms": round(latency["dense"], 3),
              "max_rel_diff": float(f"{max(diffs.values()):.2g}"),
              "dense_mb": round(sizes["dense"], 2)}
    for name in models:
        ratio = conv_macs["dense"] / conv_macs[name]
        speedup = latency["dense"] / latency[name]
        speedup_min = fastest["dense"] / fastest[name]
        size_mb = sizes[name]
        print(f"{name:<14}{size_mb:>9.2f}{conv_macs[name] / 1e6:>12.1f}{ratio:>12.2f}"
              f"{latency[name]:>11.3f}{speedup:>9.2f}{fastest[name]:>9.3f}"
              f"{speedup_min:>14.2f}{diffs[name]:>21.1e}")
        if name != "dense":
            tag = f"{round(float(name.split('_')[1]) * 100)}"
            result.update({f"macs_ratio_{tag}": round(ratio, 3),
                           f"speedup_{tag}": round(speedup, 3),
                           f"speedup_min_{tag}": round(speedup_min, 3),
                           f"ms_{tag}": round(latency[name], 3),
                           f"mb_{tag}": round(size_mb, 2)})
    _common.finish(result, FLAGS.output)


def _latencies(files):
    """Per model: median over alternating rounds of its median latency, and the
    minimum of all its runs (the least disturbed by other processes), in ms."""
    medians, minima = {name: [] for name in files}, {name: [] for name in files}
    for _ in range(FLAGS.rounds):
        for name, path in files.items():
            result = benchmark.benchmark(path, threads=FLAGS.threads, warmup=5,
                                         runs=FLAGS.runs)
            medians[name].append(result["latency_ms"]["median"])
            minima[name].append(result["latency_ms"]["min"])
    return ({name: float(np.median(v)) for name, v in medians.items()},
            {name: float(np.min(v)) for name, v in minima.items()})


if __name__ == "__main__":
    app.run(main)
