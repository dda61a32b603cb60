"""PolicySpace: floors and configs on hand-made spaces, against counts worked out by hand,
and the analytic budget against the exact count of the masks the projection makes."""
import json

import numpy as np
import pytest

from tfautocompress import cost, policy as policy_lib, space as space_lib
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


def test_remaining_weights_count_what_the_floors_keep():
    space = PolicySpace(LAYERS, "filter+column", 0.9, floors=(("a", 0.25, 1 / 3),))
    # a keeps 12 of 16 filters and 18 of 27 columns; b loses the rows of a's 4 dropped
    # channels (4 x 9 of its 144 columns); c and d keep everything.
    assert space.remaining_weights() == {"a": 12 * 18, "b": 32 * (144 - 36), "c": 8 * 288,
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
    """A small net with every kind of channel link the space knows: a BN, a depthwise
    conv, a residual Add coupling two producers, a grouped conv (blocks of 4), a
    SeparableConv or a Conv2D, a strided conv, Flatten into a Dense layer."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="c1")(inputs)))
    x = L.ReLU()(L.DepthwiseConv2D(3, padding="same", name="dw")(x))
    p = L.Conv2D(12, 1, name="pw")(x)
    x = L.Add()([p, L.Conv2D(12, 1, name="pw2")(L.ReLU()(p))])
    x = (L.SeparableConv2D if separable else L.Conv2D)(16, 3, padding="same", name="sep")(x)
    x = L.Conv2D(16, 3, padding="same", groups=4, name="gc")(x)
    x = L.Conv2D(10, 3, strides=2, name="c3")(x)
    x = L.Dense(6, name="d1")(L.Flatten()(x))
    return keras.Model(inputs, L.Dense(3, name="out")(x))


def _random_policy(space, seed):
    rng = np.random.default_rng(seed)
    split = space.scheme_set == "filter+column"
    return policy_lib.PruningPolicy(space, {
        n: policy_lib.LayerAction(float(rng.uniform(0.0, 0.8)), float(rng.uniform()) if split else 1.0)
        for n in space.names})


@pytest.mark.parametrize("separable, scheme_set", [
    (False, "filter"), (False, "filter+column"), (False, "irregular"), (True, "filter"),
    (True, "irregular")])
def test_the_budget_is_what_the_projection_keeps_through_every_kind_of_link(separable, scheme_set):
    # Exact for structured pruning; irregular pruning may empty a filter by chance, which
    # the budget does not count on, so there it may only understate the compression.
    # (A separable layer ranks all its columns, live or not: filter+column is estimated.)
    model = _blocks(separable)
    for include_dense, seed in ((False, 0), (True, 1)):
        space = PolicySpace.from_model(model, scheme_set, 0.95, include_dense=include_dense)
        assert set(space.names) == {"c1", "pw", "pw2", "sep", "c3"} | ({"d1"} if include_dense
                                                                       else set())
        policy = _random_policy(space, seed)
        for objective in cost.OBJECTIVES:
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
