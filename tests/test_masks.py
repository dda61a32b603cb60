"""Magnitude masks: per-layer schemes, coupled residual producers, errors."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tfautocompress import graph, masks as masks_lib, schemes
from tfautocompress._keras import keras


def _residual_model():
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(a)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        kernel = model.get_layer(name).kernel
        kernel.assign(rng.standard_normal(kernel.shape).astype(np.float32))
    return model


def test_single_layer_uses_its_scheme_on_the_current_kernel():
    model = _residual_model()
    scheme = schemes.Combined(0.5, 0.25)
    result = masks_lib.magnitude_masks(model, {"c": scheme})
    kernel = model.get_layer("c").kernel.numpy()
    np.testing.assert_array_equal(result["c"], scheme.mask(kernel, "conv"))
    assert result["c"].dtype == np.float32 and result["c"].shape == kernel.shape


def test_coupled_producers_drop_the_same_filters_by_summed_norms():
    model = _residual_model()
    result = masks_lib.magnitude_masks(model, {"a": schemes.Filter(0.25),
                                               "b": schemes.Filter(0.5)})
    kept_a = result["a"].reshape(-1, 8).any(axis=0)
    kept_b = result["b"].reshape(-1, 8).any(axis=0)
    np.testing.assert_array_equal(kept_a, kept_b)
    assert kept_a.sum() == 4  # the larger fraction of the group
    norms = sum(np.linalg.norm(model.get_layer(n).kernel.numpy().reshape(-1, 8), axis=0)
                for n in ("a", "b"))
    assert set(np.flatnonzero(kept_a)) == set(np.argsort(norms)[4:])
    closed = graph.close_masks(model, result)
    assert not closed["c"][:, :, ~kept_a, :].any()  # the channels really die


def test_cached_kernels_replace_the_layer_weights():
    model = _residual_model()
    kernel = np.zeros(model.get_layer("c").kernel.shape, np.float32)
    kernel[..., 3] = 1.0
    result = masks_lib.magnitude_masks(model, {"c": schemes.Filter(0.75)},
                                       kernels={"c": kernel})
    assert result["c"].reshape(-1, 4).any(axis=0).tolist() == [False, False, False, True]


def test_errors_name_the_layer_and_what_is_accepted():
    model = _residual_model()
    with pytest.raises(ValueError, match=r"'nope'.*its layers are"):
        masks_lib.magnitude_masks(model, {"nope": schemes.Filter(0.5)})
    with pytest.raises(TypeError, match=r"'a'.*not a Scheme"):
        masks_lib.magnitude_masks(model, {"a": 0.5})
