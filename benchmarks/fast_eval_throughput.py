"""Trial throughput of the SA search's fast evaluation on VGG-16 (CIFAR shape).

Runs a short EnhancedSAOracle + PruningTuner search on ``vgg16_cifar`` with a
validation subset of random 32x32 images and prints, side by side, the time of a
whole trial, of its masks (magnitude + channel closure) and of the dense forward
pass alone.

    python benchmarks/fast_eval_throughput.py [--trials 9] [--subset 256] [--output r.json]
"""
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from absl import app, flags

import _common
from tfautocompress import masks as masks_lib, policy as policy_lib, zoo
from tfautocompress.search import sa_oracle, tuner as tuner_lib
from tfautocompress.space import PolicySpace

FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 9, "Trials in the timed search (1 + 4 per temperature).")
flags.DEFINE_integer("subset", 256, "Validation images per trial.")
flags.DEFINE_string("scheme_set", "filter+column", "filter, filter+column or irregular.")
flags.DEFINE_integer("seed", 0, "Seed of the data and the search.")
_common.define_output_flag()


def main(argv):
    del argv
    rng = np.random.default_rng(FLAGS.seed)
    x = rng.random((FLAGS.subset, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, FLAGS.subset).astype(np.int32)
    model = zoo.build("vgg16_cifar")
    space = PolicySpace.from_model(model, FLAGS.scheme_set)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=2.0, iterations=4,
                                        max_trials=FLAGS.trials, seed=FLAGS.seed)
    with tempfile.TemporaryDirectory() as folder:
        tuner = tuner_lib.PruningTuner(oracle, model, (x, y), directory=folder,
                                       project_name="throughput")
        tuner.evaluate(policy_lib.PruningPolicy(space, {}))  # trace the forward pass
        with _common.Stopwatch() as watch:
            tuner.search(verbose=0)
        search_s = watch.seconds
        policy = tuner.best_policy()
        forward_s = _common.median_seconds(tuner.score)
        masks_s = _common.median_seconds(lambda: tuner.graph.close(
            masks_lib.magnitude_masks(model, policy, graph=tuner.graph)))
    trials = len(oracle.trials)
    per_trial = search_s / trials
    print(f"vgg16_cifar, {FLAGS.subset} images, scheme set {FLAGS.scheme_set}, "
          f"{trials} trials, best analytic ratio {policy.compression_ratio():.2f}x")
    print(f"{'part':<28}{'ms':>10}")
    for name, seconds in (("whole trial (search loop)", per_trial),
                          ("masks + closure", masks_s), ("dense forward pass", forward_s)):
        print(f"{name:<28}{1e3 * seconds:>10.1f}")
    result = {"trials_per_s": round(1.0 / per_trial, 3), "trial_ms": round(1e3 * per_trial, 1),
              "masks_ms": round(1e3 * masks_s, 1), "forward_ms": round(1e3 * forward_s, 1),
              "trials": trials, "subset": FLAGS.subset}
    _common.finish(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
