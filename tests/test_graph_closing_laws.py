"""What the compact model keeps (ChannelGraph.kept_channels) on a small hand-made model:
the live channels of every layer that reads or makes them, one channel of an empty group."""
import numpy as np

from tfautocompress import graph
from tfautocompress._keras import keras

L = keras.layers


def _model():
    inputs = keras.Input((6, 6, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="c1")(inputs)))
    x = L.GlobalAveragePooling2D()(L.Conv2D(5, 1, name="c2")(x))
    return keras.Model(inputs, L.Dense(2, name="out")(x))


def test_every_reader_and_maker_of_a_channel_keeps_the_live_ones():
    model = _model()
    c1 = np.ones((3, 3, 3, 4), np.float32)
    c1[..., 2] = 0.0
    kept = graph.analyze(model).kept_channels({"c1": c1})
    live = [True, True, False, True]
    np.testing.assert_array_equal(kept["c1"].outputs, live)
    np.testing.assert_array_equal(kept["bn"].inputs, live)  # BatchNorm only reads them
    assert kept["bn"].outputs is None
    np.testing.assert_array_equal(kept["c2"].inputs, live)
    assert kept["c2"].outputs.all() and kept["out"].inputs.all() and kept["c1"].inputs.all()


def test_a_group_that_loses_every_channel_keeps_its_first_one():
    model = _model()
    kept = graph.analyze(model).kept_channels({"c1": np.zeros((3, 3, 3, 4), np.float32)})
    for name, side in (("c1", "outputs"), ("bn", "inputs"), ("c2", "inputs")):
        np.testing.assert_array_equal(getattr(kept[name], side), [True, False, False, False])
