"""Does the fast evaluation's score rank policies as ADMM + retraining then does?

On a small or saturated validation set (digits: 216 images, every trial of a round at
0.97-1.00 top-1, one image = 0.46 points) the search's top-1 score is mostly ties and
noise. This benchmark draws ``--policies`` distinct policies at one target (the trials
of an enhanced-SA search, each scored by both fast scores: top-1 ``accuracy`` and the
true class's mean ``probability``, ``evaluate.true_class_probability``), prunes to
each with the pipeline's own step (``partial_prune`` with a round's ``round_recipe``:
ADMM -> hard prune -> masked retraining, the pipeline's landing, distillation and
learning rate) and measures the test accuracy and the test's true-class probability.
It prints Spearman's rank correlation of each fast score with each.

From the dense model, one step to ``--target_ratio`` over the filter+column space
(``--admm_epochs`` + ``--retrain_epochs``); with ``--start RUN/round_K``, round K+1
of that pipeline run as it searched and trained it (its settings, its space floored
at round K, its seed): the saturated case.

    python benchmarks/search_score.py --policies 20 --target_ratio 4 [--output r.json]
    python benchmarks/search_score.py --start runs/compress/round_3

The default digits run of seed 0, 20 policies each (AMD EPYC, 2 cores):

    setting                          fast top-1   after: test images   Spearman top-1 / probability
    one step to 4x, 2 + 2 epochs     0.48-0.85    322-355 of 360      -0.02 / -0.08   (5 min)
    round 4 (15.7x) from round 3     0.89-0.99    355-358             +0.26 / +0.14   (8 min)
    round 6 (65.6x) from round 5     0.83-0.94    354-358             -0.46 / -0.50   (8 min)

(against the test's true-class probability: +0.10 / +0.02, +0.14 / +0.15, -0.38 /
-0.50). Neither score ranks the policies by what ADMM and retraining make of them;
from a pruned model every policy ends within the test set's noise, and at 66x the
policies the fast evaluation likes end slightly worse. The end-to-end runs decide
the default (``Config.search_score``).
"""
import collections
import dataclasses
import hashlib
import os
import shutil

import numpy as np
from absl import app, flags

import _common
from tfautocompress import artifacts, keras, masks as masks_lib
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
# trials searched per policy wanted: some repeat a policy (the oracle refuses them) or
# change no mask (distinct_policies)
TRIALS_PER_POLICY = 3

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


def distinct_policies(oracle, model, count):
    """The first ``count`` completed trials' policies whose magnitude masks on ``model``
    differ: late in the chain a neighbour often moves only where no mask changes."""
    seen, policies = set(), []
    for trial in oracle.trials.values():
        if trial.status != "COMPLETED" or len(policies) == count:
            continue
        policy = encoding.from_values(oracle.space, trial.hyperparameters.values)
        masks = masks_lib.magnitude_masks(model, policy)
        key = hashlib.sha1(b"".join(masks[n].tobytes() for n in sorted(masks))).hexdigest()
        if key not in seen:
            seen.add(key)
            policies.append(policy)
    return policies


def one_step(f, model, splits):
    """The ``Draw`` of one step from the dense ``model`` to
    ``--target_ratio``, with the flags' settings."""
    config = Config.from_flags(f)
    space = PolicySpace.from_model(model, config.scheme_set, max_fraction=config.max_fraction)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=f.target_ratio,
                                        max_trials=TRIALS_PER_POLICY * f.policies, seed=f.seed)
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
    config = dataclasses.replace(Config(**state["config"]),
                                 search_trials=TRIALS_PER_POLICY * f.policies)
    out = os.path.join(f.output_dir, "pipeline")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(f.start, os.path.join(out, folder),
                    ignore=shutil.ignore_patterns("search", "train"))
    artifacts.write_json(os.path.join(out, "state.json"),
                         dict(state, config=dataclasses.asdict(config),
                              rounds=state["rounds"][:k], phase1_end=None, purification=None,
                              final=None))
    pipe = AutoCompress(model, splits, out, config, verbose=0)
    dense, run_dense = accuracy(pipe.model, splits.test), state["baseline"]["test_accuracy"]
    if round(dense, 6) != round(run_dense, 6):
        raise app.UsageError(f"--start {f.start}: the dense model is not that run's (test "
                             f"accuracy {dense:.4f}, the run's {run_dense:.4f}); pass its "
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
    policies = distinct_policies(oracle, tuner.model, f.policies)
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
