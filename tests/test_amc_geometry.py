"""search.amc.geometry_from_model: each space layer's kernel and input, worked out by hand."""
from tfautocompress import keras
from tfautocompress.search import amc
from tfautocompress.space import PolicySpace

L = keras.layers


def test_geometry_of_strided_conv_conv_and_dense():
    inputs = keras.Input((16, 12, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inputs)  # 6 ch
    x = L.Conv2D(8, 5, strides=2, padding="same", activation="relu", name="c1")(x)  # 8x6
    x = L.Conv2D(6, 3, padding="valid", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(5, name="fc")(x)
    model = keras.Model(inputs, L.Dense(3, name="head")(x))
    space = PolicySpace.from_model(model, scheme_set="filter", include_dense=True)
    assert space.names == ("c1", "c2", "fc")
    assert amc.geometry_from_model(model, space) == (
        # n filters, c input channels, h x w input, stride, k
        amc.LayerGeometry(n=8, c=6, h=16, w=12, stride=2, k=5),
        amc.LayerGeometry(n=6, c=8, h=8, w=6, stride=1, k=3),  # ceil(16/2) x ceil(12/2)
        amc.LayerGeometry(n=5, c=6, h=1, w=1, stride=1, k=1))  # Dense: 6 features in
