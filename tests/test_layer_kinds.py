"""The layer-kind table: one layout per kernel layer class, one alive-filters rule."""
import numpy as np
import pytest
import tensorflow as tf

from tfautocompress import layer_kinds, lowering, schemes
from tfautocompress._keras import keras

L = keras.layers

# class -> (layer, input shape, kind, kernel attr, CONV of the tables, filters of the kernel)
LAYERS = {
    "Dense": (lambda: L.Dense(3), (5,), "dense", "kernel", False, 3),
    "Conv1D": (lambda: L.Conv1D(3, 2), (8, 5), "conv", "kernel", False, 3),
    "Conv2D": (lambda: L.Conv2D(3, 2), (8, 8, 5), "conv", "kernel", True, 3),
    "Conv3D": (lambda: L.Conv3D(3, 2), (6, 6, 6, 5), "conv", "kernel", False, 3),
    "SeparableConv1D": (lambda: L.SeparableConv1D(3, 2, depth_multiplier=2), (8, 5), "conv",
                        "pointwise_kernel", False, 3),
    "SeparableConv2D": (lambda: L.SeparableConv2D(3, 2, depth_multiplier=2), (8, 8, 5), "conv",
                        "pointwise_kernel", True, 3),
    "DepthwiseConv1D": (lambda: L.DepthwiseConv1D(2, depth_multiplier=2), (8, 5), "depthwise",
                        "depthwise_kernel", False, 10),
    "DepthwiseConv2D": (lambda: L.DepthwiseConv2D(2, depth_multiplier=2), (8, 8, 5), "depthwise",
                        "depthwise_kernel", True, 10),
    "Conv1DTranspose": (lambda: L.Conv1DTranspose(3, 2), (8, 5), None, "kernel", False, 3),
    "Conv2DTranspose": (lambda: L.Conv2DTranspose(3, 2), (8, 8, 5), None, "kernel", True, 3),
    "Conv3DTranspose": (lambda: L.Conv3DTranspose(3, 2), (6, 6, 6, 5), None, "kernel", False, 3),
}


def _built(make, shape):
    layer = make()
    keras.Sequential([keras.Input(shape), layer])
    return layer


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_kernel_class_has_its_layout(name):
    make, shape, kind, attr, conv, filters = LAYERS[name]
    layer = _built(make, shape)
    layout = layer_kinds.layout_of(layer)
    assert (layout.kind, layout.kernel_attr, layout.conv) == (kind, attr, conv)
    assert layout.prunable == (kind is not None)
    assert layout.transposed == name.endswith("Transpose")
    assert layout.live_columns == (kind in ("conv", "dense") and "Separable" not in name)
    assert (layout.depthwise_attr is not None) == name.startswith("Separable")
    assert layer_kinds.kernel_of(layer) is getattr(layer, attr)
    assert layer_kinds.alive_filters(np.ones(layer_kinds.kernel_of(layer).shape), layout).size \
        == filters


def test_the_table_covers_the_scheme_kinds_and_the_lowered_conv():
    kinds = {layer_kinds.layout_of(make()).kind for make, *_ in LAYERS.values()}
    assert kinds - {None} == set(schemes.KINDS)
    lowered = layer_kinds._TABLE[lowering.ColumnSparseConv2D]  # noqa: SLF001
    assert (lowered.kind, lowered.kernel_attr, lowered.conv) == (None, "kernel", True)


def test_subclasses_take_their_nearest_registered_ancestor():
    class MyConv(L.Conv2D):
        pass

    assert layer_kinds.layout_of(MyConv(2, 3)) == layer_kinds.layout_of(L.Conv2D(2, 3))
    # Conv2DTranspose subclasses Conv2D, and is not pruned like it.
    assert not layer_kinds.layout_of(L.Conv2DTranspose(2, 3)).prunable


@pytest.mark.parametrize("layer", [L.Conv2DTranspose(2, 3, name="up"),
                                   L.BatchNormalization(name="bn"), L.ReLU(name="relu")])
def test_an_unsupported_layer_is_one_line_naming_it_and_the_accepted(layer):
    with pytest.raises(TypeError) as err:
        layer_kinds.prunable_layout(layer)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"layer '{layer.name}' is a {type(layer).__name__}; ")
    assert message.endswith("Conv2D, Conv3D, SeparableConv1D, SeparableConv2D, "
                            "DepthwiseConv1D or DepthwiseConv2D layers.")
    assert layer_kinds.layout_of(layer) is None or not layer_kinds.layout_of(layer).prunable


def test_kernel_of_a_layer_without_kernel_names_it():
    with pytest.raises(TypeError, match=r"layer 'bn' is a BatchNormalization, which has no "
                                        r"kernel; accepted: Dense, Conv1D"):
        layer_kinds.kernel_of(L.BatchNormalization(name="bn"))


# One kernel of each layout with filters 0 and 2 pruned; alive is known by hand.
ALIVE_CASES = {
    "conv": ((3, 3, 4, 5), lambda m: m.__setitem__((..., [0, 2]), 0), [0, 1, 0, 1, 1]),
    "dense": ((4, 5), lambda m: m.__setitem__((..., [0, 2]), 0), [0, 1, 0, 1, 1]),
    # (kh, kw, cin=2, mult=2): output channel c * mult + m
    "depthwise": ((3, 3, 2, 2), lambda m: (m.__setitem__((..., 0, 0), 0),
                                           m.__setitem__((..., 1, 0), 0)), [0, 1, 0, 1]),
    # (kh, kw, cout=3, cin=4)
    "transposed": ((3, 3, 3, 4), lambda m: m.__setitem__((..., 1, slice(None)), 0), [1, 0, 1]),
}
_LAYOUT_OF_CASE = {"conv": "Conv2D", "dense": "Dense", "depthwise": "DepthwiseConv2D",
                   "transposed": "Conv2DTranspose"}


@pytest.mark.parametrize("case", sorted(ALIVE_CASES))
def test_alive_filters_numpy_and_tensorflow_agree(case):
    shape, prune, expected = ALIVE_CASES[case]
    make, input_shape, *_ = LAYERS[_LAYOUT_OF_CASE[case]]
    layout = layer_kinds.layout_of(make())
    mask = np.ones(shape, np.float32)
    prune(mask)
    mask.flat[-1] = 0  # one zero inside a live filter: it stays alive
    alive = layer_kinds.alive_filters(mask, layout)
    assert alive.dtype == bool and alive.tolist() == [bool(e) for e in expected]
    in_graph = tf.function(lambda m: layer_kinds.alive_filters(m, layout))
    np.testing.assert_array_equal(in_graph(tf.Variable(mask)).numpy(), np.float32(expected))


def test_alive_filters_of_a_separable_layer_are_its_pointwise_filters():
    layer = _built(*LAYERS["SeparableConv2D"][:2])
    layout = layer_kinds.layout_of(layer)
    mask = np.ones(layer.pointwise_kernel.shape, np.float32)
    mask[..., 1] = 0
    assert layer_kinds.alive_filters(mask, layout).tolist() == [True, False, True]
    assert layer_kinds.alive_filters(layer.pointwise_kernel.numpy(), layout).all()
