"""Non-searched baselines: train-from-scratch keeps a combined structure's column zeros."""
import numpy as np
import pytest
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


def test_magnitude_prune_leaves_a_quarter_of_each_conv_kernel():
    """Target 4x: each CONV kernel keeps a quarter of its weights (TF-MOT's schedule
    ends at sparsity 1 - 1/4 within the epoch), the Dense head all of them; the model
    given is left as it was, the one returned has plain layers, trained."""
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    pruned, masks = baselines.magnitude_prune(model, _data(), target_compression_ratio=4.0,
                                              epochs=1, compile_fn=_compile, frequency=1)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
    assert [type(layer) for layer in pruned.layers] == [type(layer) for layer in model.layers]
    assert sorted(masks) == ["c1", "c2"]
    for name, size in (("c1", 3 * 3 * 3 * 6), ("c2", 3 * 3 * 6 * 4)):
        kernel = pruned.get_layer(name).kernel.numpy()
        assert abs(np.count_nonzero(kernel) - size / 4) <= 1
        np.testing.assert_array_equal(masks[name], kernel != 0)
        original = model.get_layer(name).kernel.numpy()
        assert not np.allclose(kernel[kernel != 0], original[kernel != 0])  # trained
    assert np.all(pruned.get_layer("out").kernel.numpy() != 0)
    with pytest.raises(ValueError, match=r"target_compression_ratio=1.0 must be > 1"):
        baselines.magnitude_prune(model, _data(), target_compression_ratio=1.0, epochs=1,
                                  compile_fn=_compile)
    with pytest.raises(ValueError, match=r"known number of batches"):
        baselines.magnitude_prune(model, _data().repeat(), target_compression_ratio=2.0,
                                  epochs=1, compile_fn=_compile)
