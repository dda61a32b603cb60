"""search.thresholds: the SA threshold search of Phase II and its accuracy bound."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from test_purification import _model
from tfautocompress.compact import apply_masks
from tfautocompress.search import thresholds


def test_oracle_starts_at_zero_is_seeded_and_resumes(tmp_path):
    def run(directory, trials):
        oracle = thresholds.ThresholdOracle(["a", "b"], max_trials=trials, seed=3)
        oracle._set_project_dir(str(tmp_path), directory)
        oracle.reload() if os.path.exists(oracle._get_oracle_fname()) else None
        scores, currents = [], []
        for _ in range(trials - len(oracle.trials)):
            currents.append(oracle.get_state()["threshold_sa"]["current"])
            trial = oracle.create_trial("w")
            if trial.status != "RUNNING":
                break
            values = trial.hyperparameters.values
            score = float(sum(values.values()))
            oracle.update_trial(trial.trial_id, {"score": score})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            scores.append(values)
        return oracle, scores, currents

    oracle, values, currents = run("one", 4)
    assert values[0] == dict.fromkeys(oracle.value_names(), 0.0)
    # Each next proposal perturbs perturb_share = 0.5 of the 2 layers (both scales of
    # one layer) of the current accepted action, one of the earlier proposals: it
    # differs from it in one layer exactly.
    assert currents[0] is None
    for i, (proposal, current) in enumerate(zip(values, currents)):
        if not i:
            continue
        assert current["values"] in values[:i]
        changed = {k.split("/", 1)[1] for k in proposal if proposal[k] != current["values"][k]}
        assert len(changed) == 1, (proposal, current)
    _, again, _ = run("two", 4)
    assert again == values  # same seed, same proposals
    _, first, _ = run("three", 2)
    resumed, rest, _ = run("three", 4)  # a new oracle on the same directory continues
    assert first + rest == values and len(resumed.trials) == 4


def test_search_keeps_validation_accuracy_within_the_bound(tmp_path):
    model = _model()
    # What ADMM leaves: near-zero groups (c1's filter 3, c2's filter 4 and its 4
    # columns at kernel position (0, 0)) that a small scale removes at no accuracy cost.
    for name, index in (("c1", (..., 3)), ("c2", (..., 4)), ("c2", (0, 0))):
        kernel = model.get_layer(name).kernel
        weights = kernel.numpy()
        weights[index] *= 1e-3
        kernel.assign(weights)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 6, 6, 3)).astype(np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=-1).astype(np.int32)  # acc 1.0 dense
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    masks = {n: np.ones(model.get_layer(n).kernel.shape, np.float32) for n in ("c1", "c2")}
    purified, scales, acc = thresholds.search_thresholds(
        model, masks, val, min_accuracy=0.9, max_trials=5, seed=0,
        directory=str(tmp_path), project_name="bound")
    # NumPy reference: the share of argmax predictions of the purified model equal
    # to the labels.
    reference = np.mean(np.argmax(apply_masks(model, purified).predict(x, verbose=0), -1) == y)
    assert acc >= 0.9 and acc == pytest.approx(reference, abs=1e-12)
    assert set(scales) == {"c1", "c2"}
    # The search did remove something within the bound (purification only removes).
    assert sum(purified[n].sum() for n in masks) < sum(m.sum() for m in masks.values())
    assert all(np.all(purified[n] <= masks[n]) for n in masks)
    # An impossible bound keeps the untouched masks (every removal is refused).
    kept, scales, acc = thresholds.search_thresholds(
        model, masks, val, min_accuracy=1.01, max_trials=3, seed=0,
        directory=str(tmp_path), project_name="impossible")
    assert scales == {"c1": (0.0, 0.0), "c2": (0.0, 0.0)}
    assert all(m.all() for m in kept.values()) and acc == 1.0
    # With columns for c1 only, c2 loses no column of its own (a layer whose exported
    # form would multiply the zeros): every kept filter keeps the same rows, the live ones.
    oracle = thresholds.ThresholdOracle(["c1", "c2"], column_layers=["c1"])
    assert oracle.value_names() == ["filter_scale/c1", "column_scale/c1", "filter_scale/c2"]
    purified, scales, acc = thresholds.search_thresholds(
        model, masks, val, min_accuracy=0.9, max_trials=5, seed=0,
        directory=str(tmp_path), project_name="columns_of_c1", column_layers=["c1"])
    gemm = purified["c2"].reshape(-1, purified["c2"].shape[-1])
    kept = gemm[:, gemm.any(axis=0)]
    assert scales["c2"][1] == 0.0 and (kept == kept[:, :1]).all() and acc >= 0.9
