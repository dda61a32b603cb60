"""Channel-dependency graph: groups, consumer index maps and closed masks."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tfautocompress import graph, zoo
from tfautocompress._keras import keras

L = keras.layers


def _group_of(g, producer):
    (group,) = [grp for grp in g.groups if producer in grp.producers]
    return group


def _ones(model, names):
    return {n: np.ones(model.get_layer(n).kernel.shape, np.float32) for n in names}


def _toy():
    """Residual + concat + flatten + depthwise in one small model."""
    x = inputs = keras.Input((6, 6, 2), name="input")
    a = L.Conv2D(4, 3, padding="same", name="a")(x)
    b = L.Conv2D(4, 1, name="b")(x)
    s = L.ReLU(name="relu")(L.Add(name="add")([L.BatchNormalization(name="a_bn")(a), b]))
    c = L.Conv2D(3, 1, name="c")(x)
    cat = L.Concatenate(name="cat")([s, c])
    dw = L.DepthwiseConv2D(3, padding="same", name="dw")(L.BatchNormalization(name="cat_bn")(cat))
    d = L.Conv2D(5, 3, strides=2, name="d")(dw)
    f = L.Flatten(name="flatten")(L.MaxPooling2D(2, name="pool")(d))
    h = L.Dense(6, activation="relu", name="fc")(f)
    outputs = L.Dense(3, activation="softmax", name="out")(h)
    return keras.Model(inputs, outputs)


TOY = _toy()
TOY_GRAPH = graph.analyze(TOY, strict=True)
TOY_KERNELS = ("a", "b", "c", "dw", "d", "fc", "out")


def _kernel(model, name):
    layer = model.get_layer(name)
    return (layer.depthwise_kernel if isinstance(layer, L.DepthwiseConv2D) else layer.kernel)


def test_resnet18_residual_coupling_includes_shortcut_convs():
    g = graph.analyze(zoo.build("resnet18_cifar"), strict=True)
    stage2 = _group_of(g, "stage2_block1_shortcut_conv")
    assert set(stage2.producers) == {"stage2_block1_shortcut_conv", "stage2_block1_2_conv",
                                     "stage2_block2_2_conv"}
    assert set(stage2.channelwise) == {"stage2_block1_shortcut_bn", "stage2_block1_2_bn",
                               "stage2_block2_2_bn"}
    assert {c for c, _ in stage2.consumers} == {
        "stage2_block2_1_conv", "stage3_block1_1_conv", "stage3_block1_shortcut_conv"}
    stem = _group_of(g, "stem_conv")  # identity shortcuts couple stage 1 to the stem
    assert set(stem.producers) == {"stem_conv", "stage1_block1_2_conv", "stage1_block2_2_conv"}
    assert _group_of(g, "stage2_block1_1_conv").producers == ("stage2_block1_1_conv",)
    assert "predictions" not in g.prunable_layers and not g.barriers


def test_toy_groups_concat_offsets_flatten_and_depthwise():
    add = _group_of(TOY_GRAPH, "a")
    assert set(add.producers) == {"a", "b"} and add.channels == 4
    assert set(add.channelwise) == {"a_bn", "cat_bn"}
    consumers = dict(add.consumers)
    np.testing.assert_array_equal(consumers["dw"], [[0, 1, 2, 3]])
    np.testing.assert_array_equal(consumers["d"], [[0, 1, 2, 3]])
    c_rows = dict(_group_of(TOY_GRAPH, "c").consumers)
    np.testing.assert_array_equal(c_rows["d"], [[4, 5, 6]])  # concat offset 4
    np.testing.assert_array_equal(c_rows["dw"], [[4, 5, 6]])
    fc_rows = dict(_group_of(TOY_GRAPH, "d").consumers)["fc"]  # 1x1x5... after pool
    assert fc_rows.shape == (1, 5)
    np.testing.assert_array_equal(fc_rows[0], np.arange(5))


def test_flatten_maps_channel_to_every_position():
    x = inputs = keras.Input((4, 4, 1))
    x = L.Conv2D(3, 3, name="conv")(x)  # 2x2x3
    x = L.Dense(2, name="fc")(L.Flatten(name="flat")(x))
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    g = graph.analyze(model, strict=True)
    rows = dict(_group_of(g, "conv").consumers)["fc"]
    np.testing.assert_array_equal(rows, np.arange(12).reshape(4, 3))  # (h*W+w)*C + c
    masks = _ones(model, ["conv"])
    masks["conv"][..., 1] = 0
    closed = graph.close_masks(model, masks)
    dead_rows = np.flatnonzero(~closed["fc"].any(axis=1))
    np.testing.assert_array_equal(dead_rows, [1, 4, 7, 10])


def test_close_masks_zeroes_consumers_bns_and_passes_through_depthwise():
    masks = _ones(TOY, ["a", "b", "c"])
    masks["a"][..., 2] = 0
    masks["b"][..., 2] = 0     # channel 2 of the residual sum: dead in both producers
    masks["a"][..., 0] = 0     # channel 0: dead in a only, b keeps it alive
    masks["c"][..., 1] = 0     # concat channel 4 + 1 = 5
    closed = graph.close_masks(TOY, masks)
    np.testing.assert_array_equal(closed["a_bn"], [1, 1, 0, 1])
    np.testing.assert_array_equal(closed["cat_bn"], [1, 1, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(closed["dw"].any(axis=(0, 1, 3)), [1, 1, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(closed["d"].any(axis=(0, 1, 3)), [1, 1, 0, 1, 1, 0, 1])
    assert closed["a"][..., 0].sum() == 0 and closed["b"][..., 0].all()
    kept = TOY_GRAPH.kept_channels(masks)
    np.testing.assert_array_equal(kept["a"].outputs, [1, 1, 0, 1])
    np.testing.assert_array_equal(kept["d"].inputs, [1, 1, 0, 1, 1, 0, 1])
    assert kept["out"].outputs.all()


def test_dead_consumer_rows_kill_filters_downstream_until_fixed_point():
    x = inputs = keras.Input((4, 4, 2))
    x = L.Conv2D(3, 1, name="c1")(x)
    x = L.Conv2D(3, 1, name="c2")(x)
    x = L.Conv2D(3, 1, name="c3")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(x)))
    masks = _ones(model, ["c1", "c2"])
    masks["c2"][0, 0, :, 1] = [1, 0, 0]  # filter 1 of c2 reads only channel 0 of c1
    masks["c1"][..., 0] = 0
    closed = graph.close_masks(model, masks)
    assert not closed["c2"][..., 1].any()          # became empty, hence dead
    assert not closed["c3"][0, 0, 1].any()         # so c3 no longer reads it
    assert "out" not in closed                     # c3 keeps all its filters


def test_nested_submodel_is_followed():
    inner_in = keras.Input((6, 6, 4), name="inner_input")
    inner_out = L.ReLU(name="inner_relu")(L.Conv2D(5, 3, name="inner_conv")(inner_in))
    inner = keras.Model(inner_in, inner_out, name="inner")
    x = inputs = keras.Input((8, 8, 2), name="input")
    x = inner(L.Conv2D(4, 3, name="outer_conv")(x))
    x = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(3, 1, name="last_conv")(x))
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    g = graph.analyze(model, strict=True)
    assert dict(_group_of(g, "outer_conv").consumers).keys() == {"inner_conv"}
    assert dict(_group_of(g, "inner_conv").consumers).keys() == {"last_conv"}
    masks = {"inner_conv": np.ones((3, 3, 4, 5), np.float32)}
    masks["inner_conv"][..., 3] = 0
    assert not graph.close_masks(model, masks)["last_conv"][0, 0, 3].any()


def test_output_units_are_never_pruned():
    x = inputs = keras.Input((5, 5, 1))
    conv_out = L.Conv2D(3, 3, name="conv_out")(L.Conv2D(2, 1, name="conv")(x))
    model = keras.Model(inputs, conv_out)
    g = graph.analyze(model, strict=True)
    assert g.prunable_layers == ("conv",)
    masks = {"conv_out": np.zeros((3, 3, 2, 3), np.float32)}
    assert g.kept_channels(masks)["conv_out"].outputs.all()
    lenet = graph.analyze(zoo.build("lenet5"), strict=True)
    assert "predictions" not in lenet.prunable_layers
    assert set(lenet.prunable_layers) == {"conv1", "conv2", "fc1", "fc2"}


class Scale(L.Layer):
    def call(self, x):
        return x * 2.0


def _with_unknown(layer):
    x = inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, name="before")(x)
    x = L.Conv2D(3, 1, name="after")(layer(x))
    return keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(x)))


@pytest.mark.parametrize("make", [lambda: L.Lambda(lambda t: t * 2.0, name="lam"),
                                  lambda: Scale(name="lam")])
def test_unknown_layer_is_a_barrier_or_strict_error(make):
    model = _with_unknown(make())
    g = graph.analyze(model)
    assert g.barriers == ("lam",) and "before" not in g.prunable_layers
    assert "after" in g.prunable_layers
    with pytest.raises(ValueError, match=r"'lam'.*(Lambda|Scale).*Supported: .*Conv2D"):
        graph.analyze(model, strict=True)


def test_register_makes_a_custom_layer_passthrough():
    model = _with_unknown(Scale(name="lam"))
    previous = graph.register(Scale, graph.Passthrough())
    try:
        assert "before" in graph.analyze(model, strict=True).prunable_layers
    finally:
        graph._REGISTRY.pop(Scale)
    assert previous is None
    with pytest.raises(TypeError, match="LayerOp"):
        graph.register(Scale, object())


def test_non_zero_preserving_activation_blocks_pruning():
    x = inputs = keras.Input((4,))
    x = L.Dense(3, activation="sigmoid", name="sig")(x)
    x = L.Dense(3, name="lin")(x)
    x = L.Activation("sigmoid", name="act")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    assert graph.analyze(model, strict=True).prunable_layers == ()


def test_misaligned_merge_keeps_channels():
    x = inputs = keras.Input((4, 4, 2))
    cat = L.Concatenate()([L.Conv2D(2, 1, name="p")(x), L.Conv2D(2, 1, name="q")(x)])
    y = L.Add()([cat, L.Conv2D(4, 1, name="r")(x)])
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(y)))
    assert graph.analyze(model, strict=True).prunable_layers == ()


def test_mask_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"'a'.*\(2, 2\).*\(3, 3, 2, 4\)"):
        graph.close_masks(TOY, {"a": np.ones((2, 2))})
    with pytest.raises(ValueError, match="'nope'"):
        graph.close_masks(TOY, {"nope": np.ones(3)})


def _random_masks(seed):
    rng = np.random.default_rng(seed)
    masks = {}
    for name in TOY_KERNELS:
        shape = _kernel(TOY, name).shape
        mask = (rng.random(shape) > rng.random()).astype(np.float32)
        mask[..., rng.random(shape[-1]) < 0.5] = 0
        masks[name] = mask
    return masks


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_close_masks_laws(seed):
    masks = _random_masks(seed)
    before = {n: m.copy() for n, m in masks.items()}
    closed = graph.close_masks(TOY_GRAPH, masks)
    for n in masks:  # pure, and only removes weights
        np.testing.assert_array_equal(masks[n], before[n])
        assert np.all(closed[n] <= masks[n])
    again = graph.close_masks(TOY_GRAPH, closed)
    assert again.keys() == closed.keys()
    for n in closed:  # idempotent
        np.testing.assert_array_equal(again[n], closed[n])
    for group in TOY_GRAPH.groups:  # dead iff empty in every producer; readers follow
        live = np.zeros(group.channels, bool)
        for p in group.producers:
            live |= closed[p].reshape(-1, group.channels).any(axis=0)
        for p in group.producers:
            assert not closed[p][..., ~live].any()
        for name, rows in group.consumers:
            assert not closed[name][..., rows[:, ~live].ravel(), :].any()
