"""Non-searched baselines: train-from-scratch keeps a combined structure's column zeros."""
import numpy as np
import tensorflow as tf

from tfautocompress import keras
from tfautocompress.app import baselines


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _compile(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def test_train_from_scratch_holds_column_masks_and_reinitialises():
    structure = _model()
    mask = np.ones((3, 3, 6, 4), np.float32)
    mask[0, :, :, :] = 0.0  # a row of kernel positions: columns of the GEMM view
    mask[1, 1, 2, :] = 0.0
    trained = baselines.train_from_scratch(structure, _data(), epochs=2, compile_fn=_compile,
                                           seed=1, masks={"c2": mask})
    kernel = trained.get_layer("c2").kernel.numpy()
    assert np.all(kernel[mask == 0] == 0.0)
    assert np.count_nonzero(kernel[mask == 1]) == int(mask.sum())
    # fresh weights, not the structure's
    assert not np.allclose(trained.get_layer("c1").kernel.numpy(),
                           structure.get_layer("c1").kernel.numpy())
    assert [l.name for l in trained.layers] == [l.name for l in structure.layers]


def test_train_from_scratch_without_masks_trains_everything():
    structure = _model()
    trained = baselines.train_from_scratch(structure, _data(), epochs=1, compile_fn=_compile)
    assert np.count_nonzero(trained.get_layer("c2").kernel.numpy()) == 3 * 3 * 6 * 4
