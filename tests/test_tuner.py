"""PruningTuner fast evaluation on digits_vgg (briefly trained)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tfautocompress import baseline, data, policy as policy_lib, zoo
from tfautocompress._keras import keras
from tfautocompress.search import sa_oracle, tuner as tuner_lib

SUBSET = 128


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    splits = data.load("digits", batch_size=64)
    model = zoo.build("digits_vgg", input_shape=splits.input_shape,
                      num_classes=splits.num_classes)
    for layer in model.layers:  # BN statistics that follow a short training run
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    baseline.compile_for_training(model, 2e-3)
    model.fit(splits.train, epochs=1, verbose=0)
    return model, splits


def test_fast_evaluation_uses_the_validation_subset_and_restores(trained, tmp_path):
    model, splits = trained
    space = policy_lib.PolicySpace.from_model(model, "filter", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=2.0, seed=0)
    tuner = tuner_lib.PruningTuner(oracle, model, splits.val, subset_size=SUBSET,
                                   directory=str(tmp_path), project_name="eval")
    before = [w.copy() for w in model.get_weights()]
    subset = splits.val.unbatch().take(SUBSET).batch(64)
    dense = tuner.evaluate(policy_lib.PruningPolicy(space, {}))
    assert isinstance(dense, float)
    assert dense == pytest.approx(baseline.accuracy(model, subset), abs=1e-9)
    assert dense > 0.2  # trained a little: better than chance on the validation split

    heavy = policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(0.95) for n in space.names})
    pruned = tuner.evaluate(heavy)
    assert isinstance(pruned, float) and pruned < dense
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)


def test_small_search_returns_a_policy_meeting_the_target(trained, tmp_path):
    model, splits = trained
    space = policy_lib.PolicySpace.from_model(model, "filter+column", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=3.0, iterations=3,
                                        max_trials=4, seed=2)
    tuner = tuner_lib.PruningTuner(oracle, model, splits.val, subset_size=SUBSET,
                                   directory=str(tmp_path), project_name="search")
    tuner.search(verbose=0)
    assert len(oracle.trials) == 4
    scores = [t.score for t in oracle.trials.values()]
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    best = tuner.best_policy()
    assert best == oracle.best_policy()
    assert sa_oracle.follows_size_order(best)
    assert best.compression_ratio() >= 3.0
    assert best.exact_compression_ratio(model) >= 3.0 * 0.98
    assert tuner.evaluate(best) == max(scores)


def test_second_round_search_starts_from_the_first_rounds_result(trained, tmp_path):
    from tfautocompress import graph, masks as masks_lib

    model, splits = trained
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    space1 = policy_lib.PolicySpace.from_model(pruned, "filter+column", 0.95)
    round1 = policy_lib.PruningPolicy(space1, {n: policy_lib.LayerAction(0.4, 0.6)
                                               for n in space1.names})
    closed1 = {n: m for n, m in graph.close_masks(
        pruned, masks_lib.magnitude_masks(pruned, round1)).items()
        if not isinstance(pruned.get_layer(n), keras.layers.BatchNormalization)}
    for name, mask in closed1.items():
        kernel = masks_lib.kernel_of(pruned.get_layer(name))
        kernel.assign(kernel.numpy() * mask)
    space2 = policy_lib.PolicySpace.from_model(pruned, "filter+column", 0.95, previous=round1)
    oracle = sa_oracle.EnhancedSAOracle(space2, iterations=2, max_trials=3, seed=4)
    target = oracle.target_compression_ratio
    assert target == pytest.approx(2 * round1.compression_ratio(), rel=0.05)
    tuner = tuner_lib.PruningTuner(oracle, pruned, splits.val, subset_size=SUBSET,
                                   directory=str(tmp_path), project_name="round2")
    tuner.search(verbose=0)
    best = tuner.best_policy()
    assert best.exact_compression_ratio(pruned) >= target * 0.98
    closed2 = graph.close_masks(pruned, masks_lib.magnitude_masks(pruned, best))
    for name, mask in closed1.items():
        assert not closed2.get(name, np.ones_like(mask))[mask == 0].any(), name
