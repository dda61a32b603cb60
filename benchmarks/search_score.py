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
import collections
import dataclasses
import os
import shutil

import numpy as np
from absl import app, flags

import _common
from tfautocompress import artifacts, keras
from tfautocompress.app import compress_cli
from tfautocompress.app.pipeline import (AutoCompress, Config, round_recipe, step_seed,
                                         training_splits)
from tfautocompress.app.progressive import partial_prune
from tfautocompress.evaluate import accuracy, true_class_probability
from tfautocompress.search import encoding, sa_oracle, tuner as tuner_lib
from tfautocompress.space import PolicySpace

flags.DEFINE_integer("policies", 20, "policies to prune and measure (search trials).")
flags.DEFINE_string("start", None, "A pipeline run's round folder (RUN/round_K): draw the "
                    "policies of round K+1 as that run would search it (from round K's "
                    "model, with the run's settings; the saturated case) instead of one "
                    "step from the dense model. The dense model must be the run's: pass "
                    "its --baseline_dir, --model, --dataset and --seed.")
_common.define_output_flag()
FLAGS = flags.FLAGS

# What the policies are drawn and pruned with: the recovery's settings, the step whose
# seed and recipe prune them (None: each policy its own), the step they start from (None:
# the dense model), the dense model (distillation's teacher), the search
Draw = collections.namedtuple("Draw", "config step start teacher oracle tuner")


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


def one_step(f, model, splits):
    """The ``Draw`` of one step from the dense ``model`` to
    ``--target_ratio``, with the flags' settings."""
    config = Config.from_flags(f)
    space = PolicySpace.from_model(model, config.scheme_set, max_fraction=config.max_fraction)
    # trials the oracle refuses (a repeated policy) complete without a score: ask for more
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=f.target_ratio,
                                        max_trials=2 * f.policies, seed=f.seed)
    tuner = tuner_lib.PruningTuner(oracle, model, splits.val,
                                   calibration_data=splits.reshuffled(f.seed).train,
                                   directory=f.output_dir, project_name="search",
                                   overwrite=True)
    return Draw(config, None, None, model, oracle, tuner)


def next_round(f, model, splits):
    """The ``Draw`` of round K+1 of the run whose round K is
    ``--start``, as that run's pipeline builds them: on a copy of its state up to round K
    (and of round K's step) in ``--output_dir/pipeline``."""
    run, folder = os.path.split(os.path.normpath(f.start))
    path = os.path.join(run, "state.json")
    if not os.path.exists(path):
        raise app.UsageError(f"--start {f.start}: no {path}; pass a pipeline run's round "
                             "folder, RUN/round_K.")
    state = artifacts.read_json(path)
    k = next((i + 1 for i, r in enumerate(state["rounds"]) if r["dir"] == folder), None)
    if k is None or not state["rounds"][k - 1]["accepted"]:
        raise app.UsageError(f"--start {f.start}: {path} has no accepted round kept in "
                             f"{folder!r}; pass RUN/round_K of an accepted round K.")
    config = dataclasses.replace(Config(**state["config"]), search_trials=2 * f.policies)
    out = os.path.join(f.output_dir, "pipeline")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(f.start, os.path.join(out, folder),
                    ignore=shutil.ignore_patterns("search", "train"))
    artifacts.write_json(os.path.join(out, "state.json"),
                         dict(state, config=dataclasses.asdict(config), rounds=state["rounds"][:k],
                              phase1_end=None, purification=None, final=None))
    pipe = AutoCompress(model, splits, out, config, verbose=0)
    if round(accuracy(pipe.model, splits.test), 6) != round(state["baseline"]["test_accuracy"], 6):
        raise app.UsageError(f"--start {f.start}: the dense model is not that run's (test "
                             f"accuracy {accuracy(pipe.model, splits.test):.4f}, the run's "
                             f"{state['baseline']['test_accuracy']:.4f}); pass its "
                             "--baseline_dir, --model, --dataset and --seed.")
    return Draw(config, k + 1, pipe.current_step(), pipe.model, *pipe.search_tuner(k + 1))


def main(argv):
    del argv
    f = FLAGS
    model, splits = _common.dense_model_and_splits(f)
    draw = (next_round if f.start else one_step)(f, model, splits)
    config, oracle, tuner, teacher = draw.config, draw.oracle, draw.tuner, draw.teacher
    with _common.Stopwatch() as search:
        tuner.search(verbose=0)
    policies = [encoding.from_values(oracle.space, t.hyperparameters.values)
                for t in oracle.trials.values() if t.status == "COMPLETED"][:f.policies]
    fast = {score: [tuner.evaluate(p, score) for p in policies] for score in tuner_lib.SCORES}
    train_splits = training_splits(config, splits, teacher)
    after, after_probability = [], []
    with _common.Stopwatch() as pruning:
        for i, policy in enumerate(policies):
            # from the dense model, each policy its own step's seed; a round's, its own
            k = draw.step or i + 1
            keras.utils.set_random_seed(step_seed(config.seed, k))
            folder = f"policy_{i + 1}"  # its epoch checkpoints: a fresh run, not a resume
            shutil.rmtree(os.path.join(f.output_dir, folder), ignore_errors=True)
            recipe = round_recipe(config, train_splits, f.output_dir, k, folder, False, teacher)
            pruned = partial_prune(teacher, policy, recipe, start=draw.start)
            after.append(accuracy(pruned.model, splits.test))
            after_probability.append(true_class_probability(pruned.model, splits.test))
            print(f"policy {i + 1:>2}/{len(policies)}: {policy.compression_ratio():.2f}x, "
                  f"fast accuracy {fast['accuracy'][i]:.4f}, probability "
                  f"{fast['probability'][i]:.4f} -> test {after[-1]:.4f}, probability "
                  f"{after_probability[-1]:.4f}", flush=True)
    # each fast score against the test accuracy after pruning, and against the test's
    # true-class probability (a test set saturated like the validation ties on top-1)
    result = {f"spearman_{score}{suffix}": round(spearman(values, measured), 3)
              for suffix, measured in (("", after), ("_vs_test_probability", after_probability))
              for score, values in fast.items()}
    result.update(policies=len(policies), target=round(float(oracle.target_compression_ratio), 2),
                  start=f.start, distinct_accuracy_scores=len(set(fast["accuracy"])),
                  distinct_probability_scores=len(set(fast["probability"])),
                  search_s=round(search.seconds, 1), pruning_s=round(pruning.seconds, 1))
    _common.finish(result, f.output, {"fast": fast, "test_after": after,
                                      "test_probability_after": after_probability})


if __name__ == "__main__":
    compress_cli.define_flags(output_dir="runs/search_score", target_ratio=4.0,
                              admm_epochs=2, retrain_epochs=2)
    app.run(main)
