"""Masked retraining: wrapped fit keeps pruned weights exactly zero; strip gives a plain model."""
import logging
import numpy as np
import tensorflow as tf
from tfautocompress.wrappers import StructuredPruneLowMagnitude

from tfautocompress._keras import keras
from tfautocompress import evaluate
from tfautocompress.callbacks import masked_retraining
from tfautocompress.schemes import Filter


def bn_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def compile_adam(model):
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")


def test_retrain_keeps_masked_weights_zero_and_strips():
    model = bn_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    masks = {"conv1": Filter(0.5).mask(model.get_layer("conv1").kernel.numpy(), "conv")}
    before = model.get_layer("conv1").kernel.numpy()
    final, history = masked_retraining.retrain(model, masks, data, epochs=2,
                                               compile_fn=compile_adam)
    assert len(history["loss"]) == 2
    assert not any(isinstance(l, StructuredPruneLowMagnitude) for l in final.layers)
    dead = masks["conv1"].sum(axis=(0, 1, 2)) == 0
    conv1, bn1 = final.get_layer("conv1"), final.get_layer("bn1")
    assert dead.sum() == 4
    assert np.all(conv1.kernel.numpy()[..., dead] == 0) and np.all(conv1.bias.numpy()[dead] == 0)
    assert np.all(bn1.gamma.numpy()[dead] == 0) and np.all(bn1.beta.numpy()[dead] == 0)
    assert np.all(final.get_layer("conv2").kernel.numpy()[:, :, dead, :] == 0)  # closed
    alive = conv1.kernel.numpy()[..., ~dead]
    assert not np.allclose(alive, before[..., ~dead])  # the survivors were retrained
    assert np.all(alive != 0)
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), before)


def test_recalibrate_bn_sets_batch_statistics_without_training():
    model = bn_model()
    rng = np.random.default_rng(1)
    x = (3.0 + 2.0 * rng.standard_normal((24, 6, 6, 3))).astype(np.float32)
    y = rng.integers(0, 3, 24)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    masks = {"conv1": Filter(0.5).mask(model.get_layer("conv1").kernel.numpy(), "conv")}
    wrapped = masked_retraining.wrap(model, masks)
    bn = next(getattr(l, "layer", l) for l in wrapped.layers
              if getattr(l, "layer", l).name == "bn1")
    momentum = bn.momentum
    trainable = [w.numpy() for w in wrapped.trainable_weights]
    assert evaluate.recalibrate_bn(wrapped, data, batches=2) == 2
    assert bn.momentum == momentum
    for before, after in zip(trainable, wrapped.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())
    # The moving mean is the average of the two batches' means of bn1's input.
    conv = wrapped.get_layer(index=1)
    means = [np.mean(conv(x[i:i + 8]).numpy(), axis=(0, 1, 2)) for i in (0, 8)]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, axis=0),
                               rtol=1e-4, atol=1e-5)
    assert evaluate.recalibrate_bn(wrapped, data, batches=0) == 0


def test_recalibrating_many_models_traces_each_once_without_a_retracing_warning():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        x = np.random.default_rng(2).standard_normal((16, 6, 6, 3)).astype(np.float32)
        data = tf.data.Dataset.from_tensor_slices(x).batch(8)
        for _ in range(8):  # TensorFlow warns from the 6th trace of one function on
            assert evaluate.recalibrate_bn(bn_model(), data, batches=2) == 2
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "retracing" in r.getMessage()]
