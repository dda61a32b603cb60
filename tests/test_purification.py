"""purification: thresholds, unused-weights removal, the SA threshold search and its bound."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from tfautocompress import purification, schemes
from tfautocompress._keras import keras
from tfautocompress.baseline import accuracy
from tfautocompress.compact import apply_masks


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(5, 3, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def test_thresholds_remove_exactly_the_groups_below_them():
    model = _model()
    kernel = model.get_layer("c2").kernel.numpy()
    gemm = schemes.gemm_view(kernel, "conv")
    filters, columns = np.linalg.norm(gemm, axis=0), np.linalg.norm(gemm, axis=1)
    masks = purification.threshold_masks(model, {"c2": (1.0, 0.9)})
    got = schemes.gemm_view(masks["c2"], "conv")
    np.testing.assert_array_equal(got.any(axis=0), filters >= np.median(filters))
    np.testing.assert_array_equal(got.any(axis=1), columns >= 0.9 * np.median(columns))
    assert set(masks) == {"c2"}
    # Prior zeros stay and do not count in the median of live groups.
    prior = np.ones_like(kernel)
    prior[..., :2] = 0.0
    live = filters[2:]
    masks = purification.threshold_masks(model, {"c2": (1.0, 0.0)}, {"c2": prior})
    alive = schemes.gemm_view(masks["c2"], "conv").any(axis=0)
    np.testing.assert_array_equal(alive, np.r_[False, False, live >= np.median(live)])
    with pytest.raises(ValueError, match="c2"):
        purification.threshold_masks(model, {"c2": (-0.1, 0.0)})


def test_unused_weights_go_in_both_directions_without_changing_outputs():
    model = _model()
    c2 = np.ones((3, 3, 4, 5), np.float32)
    c2[:, :, 1, :] = 0.0  # no column of c2 reads c1's channel 1 -> c1's filter 1 is unused
    c1 = np.ones((3, 3, 3, 4), np.float32)
    c1[..., 3] = 0.0  # c1's filter 3 is dead -> c2's rows of channel 3 go
    masks = {"c1": c1, "c2": c2}
    removed = purification.remove_unused(model, masks)
    assert set(removed) == {"c1", "c2"}
    assert not removed["c1"][..., 1].any() and removed["c1"][..., 0].all()
    assert not removed["c2"][:, :, 3, :].any() and removed["c2"][:, :, 0, :].all()
    x = tf.random.uniform((2, 6, 6, 3), seed=1)
    np.testing.assert_allclose(apply_masks(model, removed)(x), apply_masks(model, masks)(x),
                               atol=1e-5)
    assert purification.remove_unused(model, removed).keys() == removed.keys()


def test_oracle_starts_at_zero_is_seeded_and_resumes(tmp_path):
    def run(directory, trials):
        oracle = purification.ThresholdOracle(["a", "b"], max_trials=trials, seed=3)
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
    purified, scales, acc = purification.search_thresholds(
        model, masks, val, min_accuracy=0.9, max_trials=5, seed=0,
        directory=str(tmp_path), project_name="bound")
    assert acc >= 0.9 and acc == accuracy(apply_masks(model, purified), val)
    assert set(scales) == {"c1", "c2"}
    # An impossible bound keeps the untouched masks (every removal is refused).
    kept, scales, acc = purification.search_thresholds(
        model, masks, val, min_accuracy=1.01, max_trials=3, seed=0,
        directory=str(tmp_path), project_name="impossible")
    assert scales == {"c1": (0.0, 0.0), "c2": (0.0, 0.0)}
    assert all(m.all() for m in kept.values()) and acc == 1.0
