"""Purification on small hand-made models: every expected mask is worked out in NumPy
from the module's definitions (median thresholds, unused channels to a fixed point)."""
import numpy as np
import pytest

from tfautocompress import graph, purification
from tfautocompress._keras import keras

L = keras.layers


def _chain(*layers_, input_shape=(6, 6, 3)):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers_:
        x = layer(x)
    return keras.Model(inputs, x)


def _two_convs():
    """c1 (4 filters) -> c2 (5 filters, 1x1) -> GAP -> out."""
    return _chain(L.Conv2D(4, 3, padding="same", name="c1"), L.Conv2D(5, 1, name="c2"),
                  L.GlobalAveragePooling2D(), L.Dense(3, name="out"))


def _median_keep(norms, scale):
    """The threshold rule: norm >= scale x median of the live norms, the largest kept."""
    live = norms[norms > 0]
    keep = norms >= scale * np.median(live)
    keep[np.argmax(norms)] = True
    return keep


def test_unused_channels_are_removed_back_to_the_input_however_deep_the_chain():
    # a -> b -> c (one channel each) -> out: out reads nothing, so nothing is used.
    model = _chain(L.Conv2D(1, 1, name="a"), L.Conv2D(1, 1, name="b"), L.Conv2D(1, 1, name="c"),
                   L.Flatten(), L.Dense(3, name="out"), input_shape=(4, 4, 2))
    removed = purification.remove_unused(model, {"out": np.zeros((16, 3), np.float32)})
    for name in ("a", "b", "c", "out"):
        assert not removed[name].any(), name


def test_a_producer_without_a_mask_loses_the_filters_no_consumer_reads():
    model = _chain(L.Conv2D(3, 1, name="c0"), L.Conv2D(4, 3, padding="same", name="c1"),
                   L.Conv2D(5, 1, name="c2"), L.GlobalAveragePooling2D(), L.Dense(3, name="out"))
    c2 = np.ones((1, 1, 4, 5), np.float32)
    c2[:, :, 1, :] = 0.0  # c2 does not read c1's channel 1; c0's channels are all read
    removed = purification.remove_unused(model, {"c2": c2})
    want = np.ones((3, 3, 3, 4), np.float32)
    want[..., 1] = 0.0
    np.testing.assert_array_equal(removed["c1"], want)
    np.testing.assert_array_equal(removed["c2"], c2)
    assert "c0" not in removed or removed["c0"].all()


def test_a_producers_own_zeros_stay_when_it_loses_an_unused_filter():
    model = _two_convs()
    c1 = np.ones((3, 3, 3, 4), np.float32)
    c1[0, 0, 0, :] = 0.0  # a pruned column of c1
    c2 = np.ones((1, 1, 4, 5), np.float32)
    c2[:, :, 2, :] = 0.0  # c1's channel 2 is not read
    removed = purification.remove_unused(model, {"c1": c1, "c2": c2})
    want = c1.copy()
    want[..., 2] = 0.0
    np.testing.assert_array_equal(removed["c1"], want)


def test_a_depthwise_reader_is_taken_to_read_every_channel():
    model = _chain(L.Conv2D(4, 3, padding="same", name="c1"),
                   L.DepthwiseConv2D(3, padding="same", name="dw"), L.Conv2D(5, 1, name="c2"),
                   L.GlobalAveragePooling2D(), L.Dense(3, name="out"))
    dw = np.ones((3, 3, 4, 1), np.float32)
    dw[:, :, 2, :] = 0.0
    c2 = np.ones((1, 1, 4, 5), np.float32)
    c2[:, :, 2, :] = 0.0
    removed = purification.remove_unused(model, {"dw": dw, "c2": c2})
    assert "c1" not in removed or removed["c1"].all()  # conservative: channel 2 stays


def test_thresholds_of_a_depthwise_layer_rank_its_channels_and_positions():
    model = _chain(L.Conv2D(4, 3, padding="same", name="c1"),
                   L.DepthwiseConv2D(3, padding="same", name="dw"), L.Conv2D(5, 1, name="c2"),
                   L.GlobalAveragePooling2D(), L.Dense(3, name="out"))
    kernel = model.get_layer("dw").depthwise_kernel.numpy()  # (3, 3, 4, 1)
    gemm = kernel.reshape(9, 4).astype(np.float64)            # positions x channels
    channels = _median_keep(np.linalg.norm(gemm, axis=0), 1.2)
    positions = _median_keep(np.linalg.norm(gemm, axis=1), 0.8)
    mask = purification.threshold_masks(model, {"dw": (1.2, 0.8)})["dw"]
    np.testing.assert_array_equal(mask, np.outer(positions, channels).reshape(kernel.shape))


def test_an_all_zero_group_is_removed_at_any_scale_and_a_dead_layer_is_left_alone():
    model = _two_convs()
    kernel = model.get_layer("c2").kernel.numpy()
    kernel[..., 0] = 0.0
    model.get_layer("c2").kernel.assign(kernel)
    model.get_layer("c1").kernel.assign(np.zeros((3, 3, 3, 4), np.float32))
    masks = purification.threshold_masks(model, {"c2": (0.0, 0.0), "c1": (1.0, 1.0)})
    np.testing.assert_array_equal(masks["c2"].reshape(4, 5).any(axis=0), [0, 1, 1, 1, 1])
    assert masks["c2"][..., 1:].all()
    np.testing.assert_array_equal(masks["c1"], np.ones((3, 3, 3, 4)))


def test_threshold_masks_are_float32_whatever_they_were_given_as():
    model = _two_convs()
    prior = np.ones((1, 1, 4, 5), bool)
    prior[..., 3] = False
    masks = purification.threshold_masks(model, {"c1": (0.5, 0.5)}, {"c2": prior})
    assert {m.dtype for m in masks.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(masks["c2"], prior)


@pytest.mark.parametrize("scales", [(-0.1, 0.0), (0.0, float("inf")), (float("inf"), 0.0),
                                    (float("nan"), 1.0)])
def test_scales_must_be_finite_and_not_negative(scales):
    with pytest.raises(ValueError, match=r"'c2'.*must be finite and >= 0 \(0 removes nothing\)"):
        purification.threshold_masks(_two_convs(), {"c2": scales})


def test_the_largest_finite_scales_are_accepted_and_keep_the_largest_group():
    model = _two_convs()
    mask = purification.threshold_masks(model, {"c2": (1e308, 1e308)})["c2"]
    gemm = model.get_layer("c2").kernel.numpy().reshape(4, 5)
    want = np.zeros((4, 5))
    want[np.argmax(np.linalg.norm(gemm, axis=1)), np.argmax(np.linalg.norm(gemm, axis=0))] = 1
    np.testing.assert_array_equal(mask.reshape(4, 5), want)


def test_purify_thresholds_then_removes_what_is_unused_from_the_masks_so_far():
    model = _two_convs()
    prior = np.ones((3, 3, 3, 4), np.float32)
    prior[..., 1] = 0.0  # c1's filter 1 was pruned before
    gemm = model.get_layer("c2").kernel.numpy().reshape(4, 5).astype(np.float64)
    filters = _median_keep(np.linalg.norm(gemm, axis=0), 1.0)  # on c2's whole kernel
    rows = np.array([1.0, 0.0, 1.0, 1.0])                      # c1's channel 1 is dead
    for kwargs in ({}, {"channel_graph": graph.analyze(model)}):
        masks = purification.purify(model, {"c1": prior}, {"c2": (1.0, 0.0)}, **kwargs)
        np.testing.assert_array_equal(masks["c1"], prior)
        np.testing.assert_array_equal(masks["c2"].reshape(4, 5), np.outer(rows, filters))
        np.testing.assert_array_equal(masks["out"], np.repeat(filters[:, None], 3, axis=1))
