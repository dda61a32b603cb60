"""The blocks of today's phone CNNs in the channel graph, the budget and compaction:
squeeze-and-excitation gates, hard-swish written as TensorFlow ops, grouped
convolutions, LayerNormalization over channels, Dense on feature maps."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from hypothesis import given, settings, strategies as st

from tfautocompress import compact, cost, graph, masks as masks_lib, space as space_lib
from tfautocompress._keras import keras
from tfautocompress.masked_layer_norm import MaskedLayerNormalization
from tfautocompress.policy import LayerAction, PruningPolicy
from tfautocompress.wrappers import prune_structured

L = keras.layers


def _hard_swish(x):
    return x * (tf.nn.relu6(x + 3.0) * (1.0 / 6.0))


def _modern(seed=0):
    """Stem, an SE block with hard-swish, a RegNet-style grouped block with a
    residual, a ConvNeXt-style LayerNorm + pointwise Dense block, a head."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((8, 8, 3), name="input")
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    x = L.Conv2D(8, 3, padding="same", name="stem")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = _hard_swish(x)
    se = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    se = L.Conv2D(4, 1, activation="relu", name="se_squeeze")(se)
    se = L.Conv2D(8, 1, name="se_expand")(se)
    x = L.Multiply(name="se_gate")([x, L.Activation("hard_sigmoid", name="se_sig")(se)])
    shortcut = L.Conv2D(12, 1, name="proj")(x)
    y = L.ReLU(name="g_relu1")(L.BatchNormalization(name="g_bn1")(L.Conv2D(12, 1, name="g_in")(x)))
    y = L.Conv2D(12, 3, padding="same", groups=3, name="grouped")(y)
    y = L.ReLU(name="g_relu2")(L.BatchNormalization(name="g_bn2")(y))
    y = L.Conv2D(12, 1, name="g_out")(y)
    x = L.ReLU(name="res_relu")(shortcut + y)
    z = L.Conv2D(12, 3, padding="same", groups=12, name="dw_as_grouped")(x)
    z = L.LayerNormalization(epsilon=1e-6, name="ln")(z)
    z = L.Dense(24, activation="gelu", name="pw1")(z)
    z = L.Dense(12, name="pw2")(z)
    x = L.Add(name="cnx_add")([x, z])
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(5, name="head")(L.LayerNormalization(name="head_ln")(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # weights far from the initial ones (BN stats included)
        layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32) if w.ndim > 1
                           else rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    return model


MODEL = _modern()
GRAPH = graph.analyze(MODEL, strict=True)


def _group(producer):
    (group,) = [g for g in GRAPH.groups if producer in g.producers]
    return group


def _x(seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)


def test_every_kernel_is_prunable_and_nothing_is_a_barrier():
    assert set(GRAPH.prunable_layers) == {"stem", "se_squeeze", "se_expand", "proj", "g_in",
                                          "g_out", "pw1", "pw2"}
    assert GRAPH.barriers == ()


def test_the_gate_s_filters_go_with_the_features_it_scales():
    assert set(_group("stem").producers) == {"stem", "se_expand"}
    assert _group("se_squeeze").producers == ("se_squeeze",)  # the squeeze is its own


def test_a_gate_read_by_anything_but_a_product_keeps_its_channels():
    x = inputs = keras.Input((4, 4, 2))
    gate = L.Conv2D(3, 1, activation="sigmoid", name="gate")(x)
    model = keras.Model(inputs, L.Conv2D(2, 1, name="out")(gate))
    assert "gate" not in graph.analyze(model).prunable_layers
    x = inputs = keras.Input((4, 4, 2))
    shifted = L.Conv2D(3, 1, name="plus3")(x) + 3.0  # x + 3 of a dead channel is 3
    model = keras.Model(inputs, L.Conv2D(2, 1, name="out")(shifted))
    assert "plus3" not in graph.analyze(model).prunable_layers


def test_an_op_that_moves_channels_is_a_barrier():
    x = inputs = keras.Input((4, 4, 2))
    y = tf.reverse(L.Conv2D(3, 1, name="before")(x), axis=[-1])
    model = keras.Model(inputs, L.Conv2D(2, 1, name="out")(y))
    g = graph.analyze(model)
    assert "before" not in g.prunable_layers and len(g.barriers) == 1


def test_grouped_conv_channels_die_in_whole_groups():
    group = _group("g_in")
    assert group.block == 4 and group.channels == 12
    masks = masks_lib.magnitude_masks(MODEL, {"g_in": masks_lib.schemes_lib.Filter(0.5)})
    alive = np.any(masks["g_in"].reshape(-1, 12) != 0, axis=0).reshape(3, 4)
    assert alive.all(axis=1).sum() + (~alive).all(axis=1).sum() == 3  # whole groups
    assert (~alive).all(axis=1).sum() == 2  # round(0.5 * 3) of the 3 groups
    small = compact.compact(MODEL, masks)
    assert (small.get_layer("grouped").filters, small.get_layer("grouped").groups) == (4, 1)
    # a hand-made mask that kills part of a group keeps the group whole
    partial = np.ones(MODEL.get_layer("g_in").kernel.shape, np.float32)
    partial[..., :2] = 0.0
    _, live = GRAPH.close({"g_in": partial})
    assert live[GRAPH.out_index["g_in"]].all()


def test_dense_on_feature_maps_is_a_pointwise_conv():
    rows = {row.name: row for row in cost.count(MODEL).layers}
    assert rows["pw1"].conv and rows["pw2"].conv and not rows["head"].conv
    assert rows["pw1"].macs == 12 * 24 * 8 * 8  # kernel entries x positions


def test_masked_layer_norm_normalises_over_the_kept_channels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
    layer = MaskedLayerNormalization(epsilon=1e-3)
    layer.build(x.shape)
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    layer.set_weights([gamma, beta, mask])
    kept = x[..., mask == 1]  # the independent reference: NumPy over the kept channels
    normed = (kept - kept.mean(-1, keepdims=True)) / np.sqrt(kept.var(-1, keepdims=True) + 1e-3)
    expected = np.zeros_like(x)
    expected[..., mask == 1] = normed * gamma[mask == 1] + beta[mask == 1]
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)
    layer.set_weights([gamma, beta, np.ones(6, np.float32)])
    plain = L.LayerNormalization(epsilon=1e-3)
    plain.build(x.shape)
    plain.set_weights([gamma, beta])
    np.testing.assert_allclose(layer(x), plain(x), atol=1e-5)


def _random_policy(seed):
    space = space_lib.PolicySpace.from_model(MODEL, max_fraction=0.95)
    rng = np.random.default_rng(seed)
    return PruningPolicy(space, {n: LayerAction(float(rng.uniform(0.2, 0.9)),
                                                float(rng.uniform(0.0, 1.0)))
                                 for n in space.names})


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000))
def test_compact_computes_what_the_masked_model_computes(seed):
    masks = masks_lib.magnitude_masks(MODEL, _random_policy(seed))
    masked = compact.apply_masks(MODEL, masks)
    assert isinstance(masked.get_layer("ln"), MaskedLayerNormalization)
    small = compact.compact(MODEL, masks)
    assert type(small.get_layer("ln")) is L.LayerNormalization  # plain, over kept channels
    want = masked(_x(), training=False).numpy()
    np.testing.assert_allclose(small(_x(), training=False), want, atol=1e-4 * np.abs(want).max())
    assert small.count_params() < MODEL.count_params()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_budget_counts_what_the_projection_keeps(seed):
    policy = _random_policy(seed)
    masks = masks_lib.magnitude_masks(MODEL, policy)
    dense, pruned = cost.count(MODEL), cost.count(MODEL, masks)
    counted = dense.conv_params / pruned.conv_params
    assert policy.compression_ratio() == pytest.approx(counted, rel=1e-9)
    counted_macs = dense.conv_macs / pruned.conv_macs
    assert policy.compression_ratio("macs") == pytest.approx(counted_macs, rel=1e-9)


def test_masked_retraining_normalises_over_the_live_channels():
    masks = graph.close_masks(MODEL, masks_lib.magnitude_masks(MODEL, _random_policy(4)))
    wrapped = prune_structured(MODEL, masks)
    assert isinstance(wrapped.get_layer("ln"), MaskedLayerNormalization)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    want = compact.compact(MODEL, masks)(_x(), training=False).numpy()
    np.testing.assert_allclose(stripped(_x(), training=False), want,
                               atol=1e-4 * np.abs(want).max())


def test_the_fast_evaluation_scores_the_model_compaction_keeps(tmp_path):
    from tfautocompress.search import sa_oracle, tuner as tuner_lib

    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 4, 3))
    y = L.LayerNormalization(name="ln")(L.Conv2D(8, 1, name="conv")(inputs))
    model = keras.Model(inputs, L.Dense(4, name="out")(L.GlobalAveragePooling2D()(y)))
    space = space_lib.PolicySpace.from_model(model, max_fraction=0.95)
    policy = PruningPolicy(space, {"conv": LayerAction(0.5, 1.0)})
    x = np.random.default_rng(2).normal(size=(512, 4, 4, 3)).astype(np.float32)
    small = compact.compact(model, masks_lib.magnitude_masks(model, policy))
    labels = small(x).numpy().argmax(-1)  # what the compact model says
    assert np.bincount(labels).max() < 0.8 * labels.size
    oracle = sa_oracle.EnhancedSAOracle(space, target_compression_ratio=2.0, seed=0)
    tuner = tuner_lib.PruningTuner(oracle, model, (x, labels), directory=str(tmp_path),
                                   project_name="ln")
    assert tuner.evaluate(policy) == 1.0  # LayerNormalization over the live channels
