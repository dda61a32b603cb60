"""purification: thresholds and unused-weights removal (the math of Phase II)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from tfautocompress import graph, purification, schemes
from tfautocompress._keras import keras
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
    assert isinstance(removed, graph.ClosedMasks) and {"c1", "c2"} <= set(removed)
    assert not removed["c1"][..., 1].any() and removed["c1"][..., 0].all()
    assert not removed["c2"][:, :, 3, :].any() and removed["c2"][:, :, 0, :].all()
    x = tf.random.uniform((2, 6, 6, 3), seed=1)
    np.testing.assert_allclose(apply_masks(model, removed)(x), apply_masks(model, masks)(x),
                               atol=1e-5)
    assert purification.remove_unused(model, removed).keys() == removed.keys()
