"""PolicySpace: floors and configs on hand-made spaces, against counts worked out by hand,
and the analytic budget against the exact count of the masks the projection makes."""
import json

import numpy as np
import pytest

from tfautocompress import cost, masks as masks_lib, policy as policy_lib, space as space_lib
from tfautocompress._keras import keras

PolicySpace, LayerSpec = space_lib.PolicySpace, space_lib.LayerSpec
L = keras.layers
# b (3x3) reads a's 16 channels, one input row each; c and d are coupled by a merge.
LAYERS = (LayerSpec("a", "conv", 16, 27, 64),
          LayerSpec("b", "conv", 32, 144, 16, in_size=16, reads=((("a",), 16, 1),)),
          LayerSpec("c", "conv", 8, 288, 16, in_size=32, coupled=("c", "d")),
          LayerSpec("d", "conv", 8, 72, 16, in_size=8, coupled=("c", "d")))


@pytest.mark.parametrize("scheme_set, floor, want", [
    ("filter", {"fraction": 0.5}, (0.5, 0.0)),
    ("irregular", {"fraction": 0.5}, (0.5, 0.0)),
    ("filter", {"filter_fraction": 0.5}, (0.5, 0.0)),
    ("filter+column", {"filter_fraction": 0.25, "column_fraction": 0.5}, (0.25, 0.5)),
    ("filter+column", {"column_fraction": 0.5}, (0.0, 0.5)),
    ("filter+column", {"filter_fraction": 0.25}, (0.25, 0.0)),
])
def test_floors_given_as_dicts(scheme_set, floor, want):
    space = PolicySpace(LAYERS, scheme_set, 0.9, floors={"a": floor})
    assert space.floor("a") == want and space.floor("b") == (0.0, 0.0)
    assert space.floors == (("a",) + want,)


def test_a_floor_that_is_not_a_dict_names_the_layer():
    with pytest.raises(TypeError, match=r"floor of layer 'a' must be a dict, got 0\.5"):
        PolicySpace(LAYERS, "filter", 0.9, floors={"a": 0.5})


def test_floor_fraction_is_the_share_of_the_kernel_already_lost():
    space = PolicySpace(LAYERS, "filter+column", 0.9, floors=(("a", 0.25, 0.5),))
    assert space.floor_fraction("a") == pytest.approx(1 - 0.75 * 0.5)
    assert space.floor_fraction("b") == 0.0


def test_remaining_sizes_count_what_the_floors_keep():
    space = PolicySpace(LAYERS, "filter+column", 0.9, floors=(("a", 0.25, 1 / 3),))
    # a keeps 12 of 16 filters and 18 of 27 columns; b loses the rows of a's 4 dropped
    # channels (4 x 9 of its 144 columns); c and d keep everything.
    assert space.remaining_sizes() == {"a": 12 * 18, "b": 32 * (144 - 36), "c": 8 * 288,
                                         "d": 8 * 72}


@pytest.mark.parametrize("scheme_set, floors, stored", [
    ("irregular", (("a", 0.5, 0.0),), {"a": {"fraction": 0.5}}),
    ("filter+column", (("a", 0.25, 0.5),), {"a": {"filter_fraction": 0.25,
                                                  "column_fraction": 0.5}}),
])
def test_the_config_is_json_and_reads_back_as_the_same_space(scheme_set, floors, stored):
    space = PolicySpace(LAYERS, scheme_set, 0.9, 11, 22, floors=floors)
    config = json.loads(json.dumps(space.get_config()))
    assert config["floors"] == stored
    assert config["layers"][1]["reads"] == [[["a"], 16, 1]]
    assert config["layers"][2]["coupled"] == ["c", "d"]
    assert PolicySpace.from_config(config) == space


def _blocks(separable):
    """A small net with every kind of channel link the space knows: a CONV layer
    outside the space (summed with the input), a BN, a depthwise conv, a residual Add
    coupling two producers, a grouped conv (blocks of 4) and a depthwise conv after
    it, a SeparableConv or a Conv2D, a strided conv, Flatten into a Dense layer."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.Add()([inputs, L.Conv2D(3, 3, padding="same", name="r0")(inputs)])
    x = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="c1")(x)))
    x = L.ReLU()(L.DepthwiseConv2D(3, padding="same", name="dw")(x))
    p = L.Conv2D(12, 1, name="pw")(x)
    x = L.Add()([p, L.Conv2D(12, 1, name="pw2")(L.ReLU()(p))])
    x = (L.SeparableConv2D if separable else L.Conv2D)(16, 3, padding="same", name="sep")(x)
    x = L.Conv2D(16, 3, padding="same", groups=4, name="gc")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw2")(x)
    x = L.Conv2D(10, 3, strides=2, name="c3")(x)
    x = L.Dense(6, name="d1")(L.Flatten()(x))
    return keras.Model(inputs, L.Dense(3, name="out")(x))


def _one_d():
    """1-D layers (not CONV in the tables' sense, but in the space)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 3))
    x = L.DepthwiseConv1D(3, padding="same", name="dw")(L.Conv1D(8, 3, padding="same",
                                                                  name="c1")(inputs))
    x = L.Conv1D(5, 3, name="c2")(L.SeparableConv1D(6, 3, padding="same", name="sep")(x))
    return keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling1D()(x)))


def _coupled_outside():
    """conv's channels are summed with those of a Dense layer that a CONV space leaves
    out, and read by late, whose own channels c3 reads."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, name="conv")(inputs)
    s = L.Add()([L.GlobalAveragePooling2D()(x), L.Dense(8, name="dense")(L.Flatten()(inputs))])
    z = L.Conv2D(4, 1, name="c3")(L.Conv2D(5, 1, name="late")(x))
    x = L.Concatenate()([s, L.GlobalAveragePooling2D()(z)])
    return keras.Model(inputs, L.Dense(2, name="out")(x))


def _only_coupled():
    """The space's two layers are the producers of one channel group."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = L.Add()([L.Conv2D(8, 3, name="a")(inputs), L.Conv2D(8, 3, name="b")(inputs)])
    return keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))


def _shared():
    """s is called twice (on c1's channels and on their ReLU), its outputs summed."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="c1")(inputs)
    shared = L.Conv2D(4, 1, name="s")
    x = L.Conv2D(5, 1, name="c2")(L.Add()([shared(x), shared(L.ReLU()(x))]))
    return keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))


def _heads_outside():
    """The CONV layers that feed the output keep their filters and stay out of the
    space, but their rows die with the channels they read: a Conv2D without a bias
    (3x3, on c1) and a SeparableConv2D with one and two filters per channel (on c2)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    c1 = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    a = L.Conv2D(4, 3, padding="same", use_bias=False, name="head_a")(c1)
    b = L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2,
                          name="head_b")(L.Conv2D(6, 1, name="c2")(c1))
    return keras.Model(inputs, L.Add()([L.GlobalAveragePooling2D()(a),
                                        L.GlobalAveragePooling2D()(b)]))


def _random_policy(space, seed):
    rng = np.random.default_rng(seed)
    split = space.scheme_set == "filter+column"
    return policy_lib.PruningPolicy(space, {
        n: policy_lib.LayerAction(float(rng.uniform(0.0, 0.8)), float(rng.uniform()) if split else 1.0)
        for n in space.names})


MODELS = {  # builder, the space's layers, the Dense layers include_dense adds
    "blocks": (lambda: _blocks(False), {"c1", "pw", "pw2", "sep", "c3"}, {"d1"}),
    "separable": (lambda: _blocks(True), {"c1", "pw", "pw2", "sep", "c3"}, {"d1"}),
    "1-D": (_one_d, {"c1", "sep", "c2"}, set()),
    "coupled outside": (_coupled_outside, {"conv", "late", "c3"}, {"dense"}),
    "only coupled": (_only_coupled, {"a", "b"}, set()),
    "shared": (_shared, {"c1", "s", "c2"}, set()),
    "heads outside": (_heads_outside, {"c1", "c2"}, set()),
}


@pytest.mark.parametrize("name, scheme_set", [
    ("blocks", "filter"), ("blocks", "filter+column"), ("blocks", "irregular"),
    ("separable", "filter"), ("separable", "irregular"), ("1-D", "filter"),
    ("1-D", "filter+column"), ("coupled outside", "filter"), ("only coupled", "filter"),
    ("shared", "filter+column"), ("heads outside", "filter"),
    ("heads outside", "filter+column")])
def test_the_budget_is_what_the_projection_keeps_through_every_kind_of_link(name, scheme_set):
    # Exact for structured pruning; irregular pruning may empty a filter by chance, which
    # the budget does not count on, so there it may only understate the compression.
    # (A separable layer ranks all its columns, live or not: filter+column is estimated.)
    build, names, dense = MODELS[name]
    model = build()
    for include_dense, seed in ((False, 0), (True, 1)):
        space = PolicySpace.from_model(model, scheme_set, 0.95, include_dense=include_dense)
        assert set(space.names) == names | (dense if include_dense else set())
        policy = _random_policy(space, seed)
        for objective in cost.COUNTED:
            counted = cost.exact_compression_ratio(model, policy, objective)
            estimate = policy.compression_ratio(objective)
            if scheme_set == "irregular":
                assert counted * 0.99 <= estimate <= counted * (1 + 1e-12), objective
            else:
                assert estimate == pytest.approx(counted, rel=1e-12), objective
        # the next round starts from this one's floors: its budget counts them exactly
        following = PolicySpace.from_model(model, scheme_set, 0.95, include_dense=include_dense,
                                           previous=policy)
        floors_only = policy_lib.PruningPolicy(following, {})
        assert floors_only.compression_ratio() == pytest.approx(policy.compression_ratio(),
                                                                rel=1e-9)


@pytest.mark.parametrize("name", ["blocks", "shared", "heads outside"])
def test_a_layer_whose_export_multiplies_pruned_columns_prunes_filters_only(name):
    # lowering.probe leaves out the layers whose dense conv runs faster at half their
    # rows: their action's whole fraction goes to filters, so no zero column the
    # exported model multiplies is counted as saved, and the budget stays exact.
    build, names, _ = MODELS[name]
    model = build()
    dense_columns = sorted(names)[::2]
    space = PolicySpace.from_model(model, "filter+column", 0.95,
                                   skip_columns=sorted(names - set(dense_columns)))
    assert [n for n in space.names if not space.layer(n).skips_columns] == \
        [n for n in space.names if n in dense_columns]
    assert PolicySpace.from_config(json.loads(json.dumps(space.get_config()))) == space
    policy = _random_policy(space, 2)
    as_filters = policy_lib.PruningPolicy(space, {
        n: policy_lib.LayerAction(a.fraction, 1.0) if n in dense_columns else a
        for n, a in policy.actions.items()})
    for objective in cost.COUNTED:
        estimate = policy.compression_ratio(objective)
        assert estimate == pytest.approx(cost.exact_compression_ratio(model, policy, objective),
                                         rel=1e-12), objective
        assert estimate == as_filters.compression_ratio(objective), objective
    masks = masks_lib.magnitude_masks(model, policy)
    for n in dense_columns:  # every kept filter keeps every row its live inputs feed
        assert policy.effective(n)[1] == 0.0, n
        gemm = masks[n].reshape(-1, masks[n].shape[-1])
        kept = gemm[:, gemm.any(axis=0)]
        assert (kept == kept[:, :1]).all(), n
    assert any(policy.effective(n)[1] > 0.0 for n in names - set(dense_columns))


def test_a_conv_coupled_to_a_producer_outside_the_space_keeps_its_filters():
    space = PolicySpace.from_model(_coupled_outside())
    assert space.layer("conv").kept_filters(0.5) == 8
    assert space.layer("late").kept_filters(0.5) == 5 - 2  # round(2.5) = 2
    blocks = PolicySpace.from_model(_blocks(False))
    assert blocks.layer("pw").coupled == ("pw", "pw2") and blocks.layer("c1").coupled == ()
    assert blocks.layer("c1").kind == "conv"
    assert PolicySpace.from_model(_blocks(False), include_dense=True).layer("d1").kind == "dense"
    assert (blocks.fixed_params, blocks.fixed_macs) == (3 * 3 * 3 * 3 + 3, 81 * 64)  # r0


def test_a_floor_dict_with_both_fraction_keys_reads_filter_fraction():
    space = PolicySpace(LAYERS, "filter", 0.9, floors={"a": {"fraction": 0.5,
                                                              "filter_fraction": 0.25}})
    assert space.floor("a") == (0.25, 0.0)


def _previous(scheme_set, actions):
    space = PolicySpace(LAYERS, scheme_set, 0.9)
    return policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(f) for n, f in actions.items()})


def test_the_next_round_floors_are_what_each_layer_lost_and_only_that():
    # a lost nothing, b lost half its filters, d a quarter: floors for b and d only
    previous = _previous("filter", {"a": 0.0, "b": 0.5, "d": 0.25})
    assert PolicySpace(LAYERS, "filter", 0.9).next_round(previous).floors == (
        ("b", 0.5, 0.0), ("d", 0.25, 0.0))
    # a layer that lost nothing need not be in the next space
    smaller = PolicySpace(LAYERS[1:], "filter", 0.9).next_round(previous)
    assert smaller.floors == (("b", 0.5, 0.0), ("d", 0.25, 0.0))


def test_the_next_round_refuses_what_does_not_chain():
    previous = _previous("filter", {"a": 0.0, "b": 0.5})
    with pytest.raises(ValueError, match=r"layer 'b' lost weights in the previous round but is "
                                         r"not prunable in this space; its layers are: a, c\.$"):
        PolicySpace((LAYERS[0], LAYERS[2]), "filter", 0.9).next_round(previous)
    with pytest.raises(ValueError, match=r"layer 'b': the previous round was 'filter' and this "
                                         r"one is 'irregular'; irregular and structured rounds do "
                                         r"not chain\. Use the same kind of scheme_set\.$"):
        PolicySpace(LAYERS, "irregular", 0.9).next_round(previous)
    import types

    for bad in (types.SimpleNamespace(space=previous.space), previous.space):
        with pytest.raises(TypeError, match=r"previous must be the previous round's "
                                            r"PruningPolicy \(e\.g\. PruningPolicy\.load\(path\)\), "
                                            rf"got {type(bad).__name__}\.$"):
            PolicySpace(LAYERS, "filter", 0.9).next_round(bad)


@pytest.mark.parametrize("live_columns, scheme_set, args, want", [
    (True, "irregular", (0.25,), 16 * 27 - 108),
    (True, "irregular", (0.25, 0.0, 0.5), (16 * 27 - 108) * 0.5),
    (True, "filter+column", (0.25,), 12 * 27),
    (True, "filter+column", (0.25, 1 / 3), 12 * 18),
    (True, "filter+column", (0.25, 0.5, 0.5), 12 * (14 - 7)),   # 14 live columns, 7 go
    (True, "filter+column", (0.25, 0.5, 0.0), 0),               # no live column at all
    (False, "filter+column", (0.25, 1 / 3, 0.5), 12 * 0.5 * 18),  # ranks all 27 columns
])
def test_kept_counts_the_entries_the_rounding_keeps(live_columns, scheme_set, args, want):
    spec = LayerSpec("a", "conv", 16, 27, 64, live_columns=live_columns)
    assert spec.kept(scheme_set, *args) == pytest.approx(want, rel=1e-12)


def test_dense_layers_join_the_space_when_asked_or_when_they_act_on_feature_maps():
    inputs = keras.Input((4, 4, 3))
    x = L.Dense(6, name="pointwise")(L.Conv2D(8, 1, name="c1")(inputs))  # a 1x1 conv
    x = L.Dense(5, name="fc")(L.GlobalAveragePooling2D()(L.Conv2D(4, 1, name="c2")(x)))
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    assert PolicySpace.from_model(model).names == ("c1", "pointwise", "c2")
    assert PolicySpace.from_model(model, include_dense=True).names == ("c1", "pointwise", "c2",
                                                                       "fc")


@pytest.mark.parametrize("include_dense, what", [(False, "no CONV layer"),
                                                 (True, "no CONV layer or Dense layer")])
def test_a_model_with_nothing_to_prune_says_what_it_lacks(include_dense, what):
    inputs = keras.Input((8,))
    model = keras.Model(inputs, L.Dense(2, name="out")(inputs), name="tiny")
    with pytest.raises(ValueError, match=rf"model 'tiny' has nothing to prune: {what} whose "
                                         r"output channels can be removed \(a layer feeding the "
                                         r"model's output keeps its channels\); give a model "
                                         r"with at least one such layer\.$"):
        PolicySpace.from_model(model, include_dense=include_dense)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"layers": ()}, ValueError, r"PolicySpace needs at least one prunable layer, got none\.$"),
    ({"scheme_set": "bogus"}, ValueError, r"scheme_set 'bogus' is not one of \('filter', "
                                          r"'filter\+column', 'irregular'\)\.$"),
    ({"max_fraction": "0.5"}, TypeError, r"PolicySpace: max_fraction must be a real number in "
                                         r"\[0\.0, 1\.0\], got '0\.5' \(str\)\.$"),
    ({"max_fraction": 1.5}, ValueError, r"PolicySpace: max_fraction=1\.5 is outside the "
                                        r"accepted range \[0\.0, 1\.0\]\.$"),
    ({"max_fraction": 1.0}, ValueError, r"PolicySpace: max_fraction=1\.0 would allow removing "
                                        r"whole layers; accepted: \[0, 1\)\.$"),
    ({"floors": (("a", "0.5", 0.0),)}, TypeError, r"PolicySpace floor of layer 'a': "
                                                  r"filter_fraction must be a real number in "
                                                  r"\[0\.0, 1\.0\], got '0\.5' \(str\)\.$"),
    ({"floors": (("a", 0.0, 1.5),)}, ValueError, r"PolicySpace floor of layer 'a': "
                                                 r"column_fraction=1\.5 is outside the accepted "
                                                 r"range \[0\.0, 1\.0\]\.$"),
    ({"floors": (("a", 1.5, 0.0),)}, ValueError, r"filter_fraction=1\.5 is outside"),
    ({"scheme_set": "filter", "floors": (("a", 0.0, 0.5),)}, ValueError,
     r"layer 'a': floor column_fraction=0\.5 with scheme_set='filter'; only 'filter\+column' "
     r"prunes columns\. Search this round with 'filter\+column'\.$"),
    ({"floors": (("a", 0.5, 0.8),)}, ValueError,
     r"layer 'a': its floor \(fraction 0\.9 already lost in the previous round\) exceeds "
     r"max_fraction=0\.8; accepted: a max_fraction >= 0\.9\.$"),
])
def test_a_bad_space_names_what_is_wrong_and_what_is_accepted(kwargs, error, message):
    config = dict({"layers": LAYERS, "scheme_set": "filter+column", "max_fraction": 0.8}, **kwargs)
    with pytest.raises(error, match=message):
        PolicySpace(**config)


def test_floors_of_exactly_max_fraction_are_kept_and_empty_ones_dropped():
    space = PolicySpace(LAYERS, "filter+column", np.float32(0.75),
                        floors=(("a", 0.5, 0.5), ("b", 0.0, 0.0)))
    assert type(space.max_fraction) is float and space.max_fraction == 0.75
    assert space.floors == (("a", 0.5, 0.5),)
    with pytest.raises(ValueError, match=r"unknown layer 'zzz'; the policy's layers are: a, b, c, "
                                         r"d\.$"):
        space.floor("zzz")


def test_the_space_counts_params_unless_told_otherwise():
    space = PolicySpace(LAYERS[:2], "filter", 0.9, fixed_params=100, fixed_macs=1000)
    dense = 100 + 16 * 27 + 32 * 144
    assert space.remaining_cost({}) == dense
    # a keeps 8 of its 16 filters; b keeps the 72 of its 144 rows that read them
    assert space.compression_ratio({"a": policy_lib.LayerAction(0.5)}) == dense / (
        100 + 8 * 27 + 32 * 72)
    single = PolicySpace((LayerSpec("w", "conv", 1, 1, 1),), "filter")
    assert single.compression_ratio({}) == 1.0  # one weight, kept
