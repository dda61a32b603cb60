"""Does the fast evaluation's score rank policies as ADMM + retraining then does?

On a small or saturated validation set (digits: 216 images, every trial of a round at
0.97-1.00 top-1, one image = 0.46 points) the search's top-1 score is mostly ties and
noise. This benchmark draws ``--policies`` policies at one target (the trials of an
enhanced-SA search over the filter+column space, each scored by both fast scores:
top-1 ``accuracy`` and the true class's mean ``probability``,
``evaluate.true_class_probability``), then prunes the dense model to each with the
pipeline's own step (``partial_prune`` with a round's ``round_recipe``: ADMM -> hard
prune -> masked retraining, ``--admm_epochs`` + ``--retrain_epochs``, the pipeline's
landing, distillation and learning rate) and measures the test accuracy. It prints
Spearman's rank correlation of each fast score with that accuracy.

    python benchmarks/search_score.py --policies 20 --target_ratio 4 [--output r.json]

The digits baseline pruned in one step to 4x (20 policies, seed 0, 2 + 2 epochs; about
5 minutes): the fast top-1 spreads over 0.49-0.86 and the test accuracy after ADMM
and retraining over 0.93-0.99; Spearman +0.10 for top-1, +0.09 for the probability.
Neither ranks these one-step policies; the pipeline's rounds (2x from the previous
round's model) are the saturated case, where its end-to-end runs decide.
"""
import os
import shutil

import numpy as np
from absl import app, flags

import _common
from tfautocompress import keras
from tfautocompress.app import compress_cli
from tfautocompress.app.pipeline import Config, round_recipe, step_seed, training_splits
from tfautocompress.app.progressive import partial_prune
from tfautocompress.evaluate import accuracy
from tfautocompress.search import encoding, sa_oracle, tuner as tuner_lib
from tfautocompress.space import PolicySpace

flags.DEFINE_integer("policies", 20, "policies to prune and measure (search trials).")
_common.define_output_flag()
FLAGS = flags.FLAGS


def spearman(a, b):
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(values):
        values = np.asarray(values, np.float64)
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=np.float64)
        for v in np.unique(values):  # ties share their mean rank
            r[values == v] = r[values == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv):
    del argv
    f = FLAGS
    model, splits = _common.dense_model_and_splits(f)
    config = Config.from_flags(f)
    space = PolicySpace.from_model(model, config.scheme_set, max_fraction=config.max_fraction)
    # trials the oracle refuses (a repeated policy) complete without a score: ask for more
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=f.target_ratio,
                                        max_trials=2 * f.policies, seed=f.seed)
    calibration = splits.reshuffled(f.seed).train
    tuners = {score: tuner_lib.PruningTuner(oracle, model, splits.val,
                                            calibration_data=calibration, score=score,
                                            directory=os.path.join(f.output_dir, score),
                                            project_name="search", overwrite=True)
              for score in tuner_lib.SCORES}
    with _common.Stopwatch() as search:
        tuners["accuracy"].search(verbose=0)
    policies = [encoding.from_values(space, t.hyperparameters.values)
                for t in oracle.trials.values() if t.status == "COMPLETED"][:f.policies]
    fast = {score: [tuner.evaluate(p) for p in policies] for score, tuner in tuners.items()}
    train_splits = training_splits(config, splits, model)
    after = []
    with _common.Stopwatch() as pruning:
        for i, policy in enumerate(policies):
            keras.utils.set_random_seed(step_seed(f.seed, i + 1))
            folder = f"policy_{i + 1}"  # its epoch checkpoints: a fresh run, not a resume
            shutil.rmtree(os.path.join(f.output_dir, folder), ignore_errors=True)
            recipe = round_recipe(config, train_splits, f.output_dir, i + 1, folder, False, model)
            pruned = partial_prune(model, policy, recipe)
            after.append(accuracy(pruned.model, splits.test))
            print(f"policy {i + 1:>2}/{len(policies)}: {policy.compression_ratio():.2f}x, "
                  f"fast accuracy {fast['accuracy'][i]:.4f}, probability "
                  f"{fast['probability'][i]:.4f} -> test {after[-1]:.4f}", flush=True)
    result = {f"spearman_{score}": round(spearman(values, after), 3)
              for score, values in fast.items()}
    result.update(policies=len(policies), target=f.target_ratio,
                  distinct_accuracy_scores=len(set(fast["accuracy"])),
                  distinct_probability_scores=len(set(fast["probability"])),
                  search_s=round(search.seconds, 1), pruning_s=round(pruning.seconds, 1))
    _common.finish(result, f.output, {"fast": fast, "test_after": after})


if __name__ == "__main__":
    compress_cli.define_flags(output_dir="runs/search_score", target_ratio=4.0,
                              admm_epochs=2, retrain_epochs=2)
    app.run(main)
