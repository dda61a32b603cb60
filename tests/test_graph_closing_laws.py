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


def test_closed_masks_are_float32_whatever_they_were_given_as():
    model = _model()
    c1 = np.ones((3, 3, 3, 4), bool)
    c1[..., 1] = False
    out = np.ones((5, 2), np.float64)
    closed = graph.close_masks(model, {"c1": c1, "out": out})
    assert set(closed) == {"c1", "bn", "c2", "out"}   # c2 loses the rows of channel 1
    assert {m.dtype for m in closed.values()} == {np.dtype(np.float32)}
    assert not closed["c2"][:, :, 1].any() and closed["c2"][:, :, [0, 2, 3]].all()


def test_a_batchnorm_mask_is_recomputed_and_dropped_where_its_channels_are_kept_whole():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, L.BatchNormalization(name="bn")(L.Conv2D(3, 1, name="c")(inputs)))
    closed = graph.close_masks(model, {"c": np.ones((1, 1, 3, 3)), "bn": np.array([1.0, 0, 1])})
    assert set(closed) == {"c"}  # c feeds the output: its channels and its BN stay whole


def test_closed_masks_are_closed_once_per_structure():
    model = _model()
    g = graph.analyze(model)
    c1 = np.ones((3, 3, 3, 4), np.float32)
    c1[..., 3] = 0.0
    closed, alive = g.close({"c1": c1})
    again, alive_again = g.close(closed)
    assert again is closed and alive_again is not alive
    np.testing.assert_array_equal(alive_again, alive)
    # a model of another structure (a Dropout more) closes them anew
    inputs = keras.Input((6, 6, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="c1")(inputs)))
    x = L.GlobalAveragePooling2D()(L.Conv2D(5, 1, name="c2")(L.Dropout(0.5)(x)))
    other = graph.analyze(keras.Model(inputs, L.Dense(2, name="out")(x)))
    reclosed = other.close(closed)[0]
    assert reclosed is not closed and reclosed.signature == other.signature
    assert reclosed.keys() == closed.keys()
