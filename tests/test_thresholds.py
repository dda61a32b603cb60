"""search.thresholds: the SA threshold search of Phase II and its accuracy bound."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from test_purification import _model
from tfautocompress.compact import apply_masks
from tfautocompress.evaluate import accuracy
from tfautocompress.search import thresholds


def test_oracle_starts_at_zero_is_seeded_and_resumes(tmp_path):
    def run(directory, trials):
        oracle = thresholds.ThresholdOracle(["a", "b"], max_trials=trials, seed=3)
        oracle._set_project_dir(str(tmp_path), directory)
        oracle.reload() if os.path.exists(oracle._get_oracle_fname()) else None
        scores = []
        for _ in range(trials - len(oracle.trials)):
            trial = oracle.create_trial("w")
            if trial.status != "RUNNING":
                break
            values = trial.hyperparameters.values
            score = float(sum(values.values()))
            oracle.update_trial(trial.trial_id, {"score": score})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            scores.append(values)
        return oracle, scores

    oracle, values = run("one", 4)
    assert values[0] == dict.fromkeys(oracle.value_names(), 0.0)
    assert all(0.0 <= v <= 1.0 for vs in values for v in vs.values())
    _, again = run("two", 4)
    assert again == values  # same seed, same proposals
    _, first = run("three", 2)
    resumed, rest = run("three", 4)  # a new oracle on the same directory continues
    assert first + rest == values and len(resumed.trials) == 4


def test_search_keeps_validation_accuracy_within_the_bound(tmp_path):
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 6, 6, 3)).astype(np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=-1).astype(np.int32)  # acc 1.0 dense
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    masks = {n: np.ones(model.get_layer(n).kernel.shape, np.float32) for n in ("c1", "c2")}
    purified, scales, acc = thresholds.search_thresholds(
        model, masks, val, min_accuracy=0.9, max_trials=5, seed=0,
        directory=str(tmp_path), project_name="bound")
    assert acc >= 0.9 and acc == accuracy(apply_masks(model, purified), val)
    assert set(scales) == {"c1", "c2"}
    # An impossible bound keeps the untouched masks (every removal is refused).
    kept, scales, acc = thresholds.search_thresholds(
        model, masks, val, min_accuracy=1.01, max_trials=3, seed=0,
        directory=str(tmp_path), project_name="impossible")
    assert scales == {"c1": (0.0, 0.0), "c2": (0.0, 0.0)}
    assert all(m.all() for m in kept.values()) and acc == 1.0
