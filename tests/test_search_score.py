"""The fast evaluation's smooth score: the true class's probability, against NumPy."""
import numpy as np
import pytest

from tfautocompress import evaluate, masks as masks_lib, policy as policy_lib, space as space_lib
from tfautocompress._keras import keras
from tfautocompress.search import sa_oracle, tuner as tuner_lib


def _model(activation, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="out")(x))


def _data(n=50):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("activation", ["softmax", None])
def test_true_class_probability_is_the_mean_softmax_of_the_label(activation):
    model, (x, y) = _model(activation), _data()
    out = model.predict(x, verbose=0).astype(np.float64)
    logits = np.log(out) if activation else out
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.mean(p[np.arange(len(y)), y])
    assert evaluate.true_class_probability(model, (x, y), batch_size=16) == pytest.approx(
        expected, rel=1e-6)
    assert evaluate.accuracy(model, (x, y), batch_size=16) == np.mean(out.argmax(1) == y)


def test_the_tuner_scores_by_the_probability_when_asked(tmp_path):
    model, (x, y) = _model("softmax"), _data()
    space = space_lib.PolicySpace.from_model(model, "filter", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=2.0, seed=0)
    tuner = tuner_lib.PruningTuner(oracle, model, (x, y), directory=str(tmp_path),
                                   project_name="p", score="probability")
    dense = tuner.evaluate(policy_lib.PruningPolicy(space, {}))
    out = model.predict(x, verbose=0)
    assert dense == pytest.approx(np.mean(out[np.arange(len(y)), y]), rel=1e-6)
    with pytest.raises(ValueError, match="score='loss'"):
        tuner_lib.PruningTuner(oracle, model, (x, y), directory=str(tmp_path),
                               project_name="q", score="loss")


def test_the_tuner_scores_a_policy_by_either_score_when_named(tmp_path):
    model, (x, y) = _model("softmax"), _data()
    space = space_lib.PolicySpace.from_model(model, "filter", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=2.0, seed=0)
    tuner = tuner_lib.PruningTuner(oracle, model, (x, y), directory=str(tmp_path),
                                   project_name="p")
    half = policy_lib.PruningPolicy(space, {"conv": policy_lib.LayerAction(0.5)})
    by_name = {score: tuner.evaluate(half, score) for score in tuner_lib.SCORES}
    assert by_name["accuracy"] == tuner.evaluate(half)  # the tuner's own: top-1
    # the probability of the same pruned model: half the filters, kernel and bias, zeroed
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    mask = masks_lib.magnitude_masks(model, half)["conv"]
    assert mask.mean() == 0.5
    kernel, bias = pruned.get_layer("conv").get_weights()
    pruned.get_layer("conv").set_weights([kernel * mask, bias * mask.max(axis=(0, 1, 2))])
    out = pruned.predict(x, verbose=0)
    assert by_name["probability"] == pytest.approx(np.mean(out[np.arange(len(y)), y]), rel=1e-5)
    with pytest.raises(ValueError, match="score='loss'"):
        tuner.evaluate(half, "loss")
