"""Enhanced-SA policy vs. a uniform policy at the same compression ratio and budget.

Both prune the same baseline to ``--target_ratio`` (dense / kept, N x, CONV
params; the compress command's flags, ``--target_ratio`` defaulting to 8) in one
round of ADMM -> hard prune -> masked retraining with the same epochs, rho, seed
and BatchNorm momentum (``searched.model``, the pipeline's working copy): the SA
policy through ``pipeline.AutoCompress`` (search + ``partial_prune``), the uniform one (every layer the same fraction, scaled to the
same target; ``search.uniform``) through ``partial_prune``. Test accuracy of each.

    python benchmarks/search_vs_uniform.py [--output result.json]
"""
import os

from absl import app, flags

import _common
from tfautocompress import cost, keras
from tfautocompress.app import compress_cli
from tfautocompress.baseline import compile_for_training
from tfautocompress.app.progressive import Recipe, partial_prune
from tfautocompress.evaluate import accuracy
from tfautocompress.app.pipeline import AutoCompress, Config, step_seed
from tfautocompress.search.uniform import uniform_policy
from tfautocompress.space import PolicySpace

_common.define_output_flag()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    f = FLAGS
    model, splits = _common.dense_model_and_splits(f)
    admm = {} if f.rho is None else {"rho": f.rho}
    config = Config(objective="params", target_compression_ratio=f.target_ratio,
                    round_ratio=f.target_ratio, max_rounds=1, scheme_set=f.schemes,
                    search_trials=f.search_trials, admm_epochs=f.admm_epochs,
                    retrain_epochs=f.retrain_epochs, lr=f.lr, admm=admm, seed=f.seed,
                    validation_freq=f.validation_freq, export_tflite=False)
    with _common.Stopwatch() as watch:
        searched = AutoCompress(model, splits, os.path.join(f.output_dir, "sa"), config)
        searched.next_round()
        sa = searched.state["rounds"][0]
    sa_s = watch.seconds

    with _common.Stopwatch() as watch:
        space = PolicySpace.from_model(model, config.scheme_set, max_fraction=config.max_fraction)
        policy = uniform_policy(space, f.target_ratio, "params")
        keras.utils.set_random_seed(step_seed(f.seed, 1))  # as AutoCompress trains round 1
        recipe = Recipe(splits.train, splits.val, lambda m: compile_for_training(m, f.lr),
                        f.admm_epochs, f.retrain_epochs, admm=admm, verbose=2,
                        validation_freq=f.validation_freq)
        uniform = partial_prune(searched.model, policy, recipe)
        uniform_ratios = cost.count(model).ratios(cost.count(model, uniform.masks))
    uniform_s = watch.seconds

    print(f"{'policy':<10} {'CONV params':>12} {'val acc':>8} {'test acc':>9} {'wall s':>8}")
    print(f"{'SA':<10} {sa['conv_params_ratio']:>11.2f}x {100 * sa['val_accuracy']:>7.2f}% "
          f"{100 * sa['test_accuracy']:>8.2f}% {sa_s:>8.1f}")
    uniform_test = accuracy(uniform.model, splits.test)
    print(f"{'uniform':<10} {uniform_ratios['conv_params_ratio']:>11.2f}x "
          f"{100 * uniform.score:>7.2f}% {100 * uniform_test:>8.2f}% {uniform_s:>8.1f}")
    result = {"sa_acc": round(sa["test_accuracy"], 4), "uniform_acc": round(uniform_test, 4),
              "ratio": f.target_ratio, "sa_ratio": round(sa["conv_params_ratio"], 3),
              "uniform_ratio": round(uniform_ratios["conv_params_ratio"], 3),
              "baseline_acc": round(accuracy(model, splits.test), 4),
              "sa_s": round(sa_s, 1), "uniform_s": round(uniform_s, 1)}
    _common.finish(result, f.output)


if __name__ == "__main__":
    compress_cli.define_flags(output_dir="runs/search_vs_uniform", target_ratio=8.0)
    app.run(main)
