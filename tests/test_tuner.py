"""PruningTuner fast evaluation on digits_vgg (briefly trained)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tfautocompress import baseline, cost, data, layer_kinds, policy as policy_lib
from tfautocompress import space as space_lib, zoo
from tfautocompress._keras import keras
from tfautocompress.search import encoding, sa_oracle, tuner as tuner_lib

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


def _subset(splits):
    """The first ``SUBSET`` validation examples as arrays (what the tuner scores on)."""
    x, y = next(iter(splits.val.unbatch().take(SUBSET).batch(SUBSET)))
    return x.numpy(), y.numpy().reshape(-1)


def _accuracy(model, x, y):
    """NumPy reference: the share of argmax predictions equal to the labels."""
    return float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))


class _Masked:
    """A copy of ``model`` whose weights are set by hand to a policy's closed magnitude
    masks: kernels x mask, the bias of a dead filter and the gamma, beta of a dead
    channel 0."""

    def __init__(self, model):
        self.model, self.copy = model, keras.models.clone_model(model)

    def accuracy(self, policy, x, y):
        from tfautocompress import graph, masks as masks_lib

        self.copy.set_weights(self.model.get_weights())
        closed = graph.close_masks(self.model, masks_lib.magnitude_masks(self.model, policy))
        for name, mask in closed.items():
            layer = self.copy.get_layer(name)
            if isinstance(layer, keras.layers.BatchNormalization):
                pairs = [(layer.gamma, mask), (layer.beta, mask)]
            else:
                alive = mask.reshape(-1, mask.shape[-1]).any(axis=0)
                pairs = [(layer.kernel, mask), (layer.bias, alive)]
            for variable, factor in ((v, f) for v, f in pairs if v is not None):
                variable.assign(variable.numpy() * factor.astype(np.float32))
        return _accuracy(self.copy, x, y)


def test_fast_evaluation_uses_the_validation_subset_and_restores(trained, tmp_path):
    model, splits = trained
    space = space_lib.PolicySpace.from_model(model, "filter", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=2.0, seed=0)
    tuner = tuner_lib.PruningTuner(oracle, model, splits.val, subset_size=SUBSET,
                                   directory=str(tmp_path), project_name="eval")
    before = [w.copy() for w in model.get_weights()]
    x, y = _subset(splits)
    dense = tuner.evaluate(policy_lib.PruningPolicy(space, {}))
    assert isinstance(dense, float)
    assert dense == pytest.approx(_accuracy(model, x, y), abs=1e-12)
    # trained one epoch: far above chance (0.1) on the validation split
    assert dense > 0.8

    heavy = policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(0.95) for n in space.names})
    pruned = tuner.evaluate(heavy)
    assert isinstance(pruned, float) and pruned < dense
    assert pruned == pytest.approx(_Masked(model).accuracy(heavy, x, y), abs=1e-12)
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)


def test_small_search_returns_a_policy_meeting_the_target(trained, tmp_path):
    model, splits = trained
    space = space_lib.PolicySpace.from_model(model, "filter+column", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=3.0, iterations=3,
                                        max_trials=4, seed=2)
    tuner = tuner_lib.PruningTuner(oracle, model, splits.val, subset_size=SUBSET,
                                   directory=str(tmp_path), project_name="search")
    tuner.search(verbose=0)
    assert len(oracle.trials) == 4
    scores = [t.score for t in oracle.trials.values()]
    x, y, masked = *_subset(splits), _Masked(model)
    for trial in oracle.trials.values():  # each trial's score: its masked model's accuracy
        policy = encoding.from_values(space, trial.hyperparameters.values)
        assert trial.score == pytest.approx(masked.accuracy(policy, x, y), abs=1e-12)
    best = tuner.best_policy()
    assert best == oracle.best_policy()
    assert sa_oracle.follows_size_order(best)
    assert best.compression_ratio() >= 3.0
    assert cost.exact_compression_ratio(model, best) >= 3.0 * 0.98
    assert masked.accuracy(best, x, y) == pytest.approx(max(scores), abs=1e-12)


def test_second_round_search_starts_from_the_first_rounds_result(trained, tmp_path):
    from tfautocompress import graph, masks as masks_lib

    model, splits = trained
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    space1 = space_lib.PolicySpace.from_model(pruned, "filter+column", 0.95)
    round1 = policy_lib.PruningPolicy(space1, {n: policy_lib.LayerAction(0.4, 0.6)
                                               for n in space1.names})
    closed1 = {n: m for n, m in graph.close_masks(
        pruned, masks_lib.magnitude_masks(pruned, round1)).items()
        if not isinstance(pruned.get_layer(n), keras.layers.BatchNormalization)}
    for name, mask in closed1.items():
        kernel = layer_kinds.kernel_of(pruned.get_layer(name))
        kernel.assign(kernel.numpy() * mask)
    space2 = space_lib.PolicySpace.from_model(pruned, "filter+column", 0.95, previous=round1)
    oracle = sa_oracle.EnhancedSAOracle(space2, iterations=2, max_trials=3, seed=4)
    target = oracle.target_compression_ratio
    assert target == pytest.approx(2 * round1.compression_ratio(), rel=0.05)
    tuner = tuner_lib.PruningTuner(oracle, pruned, splits.val, subset_size=SUBSET,
                                   directory=str(tmp_path), project_name="round2")
    tuner.search(verbose=0)
    best = tuner.best_policy()
    assert cost.exact_compression_ratio(pruned, best) >= target * 0.98
    closed2 = graph.close_masks(pruned, masks_lib.magnitude_masks(pruned, best))
    for name, mask in closed1.items():
        assert not closed2.get(name, np.ones_like(mask))[mask == 0].any(), name


def _quarter_filters(space):
    """Half the filters of every CONV/FC layer: about 4x fewer CONV weights."""
    return policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(0.5) for n in space.names})


def _bn_statistics(model):
    return {(l.name, v.name): v.numpy() for l in model.layers
            if isinstance(l, keras.layers.BatchNormalization)
            for v in (l.moving_mean, l.moving_variance)}


def test_bn_recalibration_gives_a_signal_and_restores_everything(trained, tmp_path):
    model, splits = trained
    space = space_lib.PolicySpace.from_model(model, "filter", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=4.0, seed=0)
    policy = _quarter_filters(space)
    assert cost.exact_compression_ratio(model, policy) >= 3.9
    plain = tuner_lib.PruningTuner(oracle, model, splits.val, subset_size=SUBSET,
                                   directory=str(tmp_path), project_name="plain")
    calibrated = tuner_lib.PruningTuner(oracle, model, splits.val, subset_size=SUBSET,
                                        calibration_data=splits.train, calibration_batches=2,
                                        directory=str(tmp_path), project_name="calibrated")
    before, stats = [w.copy() for w in model.get_weights()], _bn_statistics(model)
    stale, fresh = plain.evaluate(policy), calibrated.evaluate(policy)
    assert stale <= 0.25  # stale BN statistics: near chance level (10 classes)
    assert fresh >= 0.3 and fresh - stale >= 0.2, (stale, fresh)
    assert calibrated.evaluate(policy) == fresh  # cached batches: deterministic
    assert calibrated.calibration._calibrate.experimental_get_tracing_count() == 1  # no retracing
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    after = _bn_statistics(model)
    for key, value in stats.items():
        np.testing.assert_array_equal(after[key], value)
    dense = policy_lib.PruningPolicy(space, {})
    assert plain.evaluate(dense) == tuner_lib.PruningTuner(
        oracle, model, splits.val, subset_size=SUBSET, directory=str(tmp_path),
        project_name="again").evaluate(dense)  # without calibration_data: unchanged


def test_calibrated_statistics_match_a_numpy_reference(trained, tmp_path, monkeypatch):
    model, splits = trained
    space = space_lib.PolicySpace.from_model(model, "filter", 0.95)
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=4.0, seed=0)
    batches = [x for x, _ in splits.train.take(2)]
    tuner = tuner_lib.PruningTuner(oracle, model, splits.val, subset_size=SUBSET,
                                   calibration_data=(np.concatenate(batches), None),
                                   calibration_batches=2, batch_size=len(batches[0]),
                                   directory=str(tmp_path), project_name="numpy")
    bn = next(l for l in model.layers[3:] if isinstance(l, keras.layers.BatchNormalization))
    seen = {}

    def capture(*args):  # the score, inside the trial: masked weights, calibrated statistics
        seen["mean"], seen["var"] = bn.moving_mean.numpy(), bn.moving_variance.numpy()
        probe = keras.Model(model.inputs, bn.input)
        inputs = [probe(x, training=True).numpy().astype(np.float64) for x in batches]
        seen["ref_mean"] = np.mean([i.mean(axis=(0, 1, 2)) for i in inputs], axis=0)
        seen["ref_var"] = np.mean([i.var(axis=(0, 1, 2)) for i in inputs], axis=0)
        return 0.0

    monkeypatch.setattr(tuner, "_score", capture)
    tuner.evaluate(_quarter_filters(space))
    np.testing.assert_allclose(seen["mean"], seen["ref_mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(seen["var"], seen["ref_var"], rtol=1e-4, atol=1e-5)
    assert (seen["var"] == 0).any() and (seen["var"] > 0).any()  # dead and live channels
