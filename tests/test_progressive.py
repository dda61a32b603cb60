"""Progressive pruning: pool orchestration, masked ADMM never revives pruned weights."""
import numpy as np
import pytest
import tensorflow as tf

from tfautocompress._keras import keras
from tfautocompress.app.progressive import Recipe, partial_prune, progressive_prune
from tfautocompress.schemes import Filter


def small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


_RNG = np.random.default_rng(0)
X = _RNG.standard_normal((32, 6, 6, 2)).astype(np.float32)
Y = _RNG.integers(0, 3, 32)


@pytest.fixture(scope="module")
def recipe():
    data = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    compile_fn = lambda m: m.compile(keras.optimizers.Adam(1e-2),  # noqa: E731
                                     "sparse_categorical_crossentropy")
    return Recipe(data, data, compile_fn, admm_epochs=1, retrain_epochs=1,
                  admm={"rho": 1e-2})


def dead_filters(mask):
    return mask.reshape(-1, mask.shape[-1]).sum(axis=0) == 0


def test_masked_admm_never_revives_and_skips_unchanged_layers(recipe):
    model = small_model()
    first = partial_prune(model, {"conv": Filter(0.25), "out": Filter(0.0)}, recipe)
    second = partial_prune(model, {"conv": Filter(0.5), "out": Filter(0.0)}, recipe,
                           start=first)
    assert "admm_res/conv" in second.history["admm"]
    assert not any(k.startswith("admm_res/out") for k in second.history["admm"])
    old, new = dead_filters(first.masks["conv"]), dead_filters(second.masks["conv"])
    assert old.sum() == 2 and new.sum() == 4 and np.all(new[old])
    kernel = second.model.get_layer("conv").kernel.numpy()
    np.testing.assert_array_equal(kernel[..., new], 0)
    # the result's val accuracy: the share of argmax predictions equal to the labels
    reference = np.mean(np.argmax(second.model.predict(X, verbose=0), -1) == Y)
    assert second.score == pytest.approx(reference, abs=1e-12)


def test_progressive_pool_keeps_best_and_reaches_last_policy(recipe):
    policies = [{"conv": Filter(f)} for f in (0.25, 0.375, 0.5, 0.625)]
    final, trace = progressive_prune(small_model(), policies, recipe, pool_size=2)
    assert len(trace) == 4 and final is trace[-1]
    assert [p.parent for p in trace[:2]] == [None, None]  # the pool's first members
    assert trace[2].parent in (0, 1)
    # The pool after step 3 holds trace[2] in place of its parent.
    assert trace[3].parent in ({0, 1} - {trace[2].parent}) | {2}
    for step in trace[2:]:  # each continued from its parent: its pruned filters stay pruned
        assert np.all(step.masks["conv"] <= trace[step.parent].masks["conv"])
        assert dead_filters(step.masks["conv"]).sum() > \
            dead_filters(trace[step.parent].masks["conv"]).sum()
    assert dead_filters(final.masks["conv"]).sum() == 5
    parent = trace[final.parent].masks["conv"]
    assert np.all(final.masks["conv"] <= parent)  # nested: nothing revived
    with pytest.raises(ValueError, match="pool_size"):
        progressive_prune(small_model(), policies, recipe, pool_size=0)


def test_validation_freq_only_changes_the_logs(recipe):
    """Per-epoch validation (``validation_freq``) is logging: the pruned weights,
    masks and score are the same with it every epoch and without it."""
    import dataclasses

    policy = {"conv": Filter(0.5), "out": Filter(0.0)}
    runs = {}
    for every in (1, 0):
        keras.utils.set_random_seed(3)
        runs[every] = partial_prune(small_model(), policy, dataclasses.replace(
            recipe, admm_epochs=2, retrain_epochs=2, validation_freq=every))
    assert "val_loss" in runs[1].history["retrain"] and "val_loss" in runs[1].history["admm"]
    assert not any(k.startswith("val_") for h in runs[0].history.values() for k in h)
    for a, b in zip(runs[1].model.get_weights(), runs[0].model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(runs[1].masks["conv"], runs[0].masks["conv"])
    assert runs[1].score == runs[0].score
    with pytest.raises(ValueError, match="validation_freq=-1"):
        partial_prune(small_model(), policy, dataclasses.replace(recipe, validation_freq=-1))
