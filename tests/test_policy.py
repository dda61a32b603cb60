"""PruningPolicy: validation, schemes, JSON/values round trips, analytic vs exact cost."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from tfautocompress import cost, policy as policy_lib, schemes, space as space_lib, zoo
from tfautocompress.search import encoding
from tfautocompress._keras import keras

SPACE = space_lib.PolicySpace(
    [space_lib.LayerSpec("a", "conv", 16, 27, 64), space_lib.LayerSpec("b", "conv", 32, 144, 16)],
    "filter+column", 0.9, 100, 1000)


def test_split_is_multiplicative():
    action = policy_lib.LayerAction(0.75, 0.5)
    filter_fraction, column_fraction = action.split()
    assert (1 - filter_fraction) * (1 - column_fraction) == pytest.approx(0.25)
    assert policy_lib.LayerAction(0.5, 1.0).split() == (0.5, 0.0)


def test_schemes_per_scheme_set():
    actions = {"a": policy_lib.LayerAction(0.5), "b": policy_lib.LayerAction(0.0)}
    for scheme_set, cls in (("filter", schemes.Filter), ("irregular", schemes.Irregular),
                            ("filter+column", schemes.Combined)):
        space = space_lib.PolicySpace(SPACE.layers, scheme_set, 0.9)
        result = policy_lib.PruningPolicy(space, actions).schemes()
        assert list(result) == ["a"] and isinstance(result["a"], cls)


def test_validation_errors_name_layer_value_and_accepted():
    with pytest.raises(ValueError, match=r"'zzz'.*layers are: a, b"):
        policy_lib.PruningPolicy(SPACE, {"zzz": policy_lib.LayerAction(0.1)})
    with pytest.raises(ValueError, match=r"'a'.*0.95.*max_fraction=0.9"):
        policy_lib.PruningPolicy(SPACE, {"a": policy_lib.LayerAction(0.95)})
    with pytest.raises(ValueError, match="outside"):
        policy_lib.LayerAction(-0.1)
    with pytest.raises(TypeError, match="LayerAction"):
        policy_lib.PruningPolicy(SPACE, {"a": 0.5})
    filter_space = space_lib.PolicySpace(SPACE.layers, "filter", 0.9)
    with pytest.raises(ValueError, match="filter_share=0.5"):
        policy_lib.PruningPolicy(filter_space, {"a": policy_lib.LayerAction(0.5, 0.5)})


def test_json_file_and_values_round_trip(tmp_path):
    policy = policy_lib.PruningPolicy(SPACE, {"a": policy_lib.LayerAction(0.3, 0.25),
                                              "b": policy_lib.LayerAction(0.6, 0.8)})
    policy.save(tmp_path / "p.json")
    assert policy_lib.PruningPolicy.load(tmp_path / "p.json") == policy
    assert encoding.from_values(SPACE, encoding.to_values(policy)) == policy
    with pytest.raises(ValueError, match="format"):
        policy_lib.PruningPolicy.from_json({"actions": {}})


def test_analytic_cost_counts_rounded_groups():
    policy = policy_lib.PruningPolicy(SPACE, {"a": policy_lib.LayerAction(0.5, 1.0)})
    # 8 of 16 filters kept in "a"; "b" keeps everything.
    assert policy.remaining_cost("params") == 100 + 8 * 27 + 32 * 144
    assert policy.remaining_cost("macs") == 1000 + 8 * 27 * 64 + 32 * 144 * 16
    # dense / remaining, both by hand: 100 + 16 * 27 + 32 * 144 over the count above.
    assert policy.compression_ratio() == pytest.approx(5140 / 4924, rel=1e-12)
    assert policy.compression_ratio("macs") == pytest.approx(
        (1000 + 16 * 27 * 64 + 32 * 144 * 16) / (1000 + 8 * 27 * 64 + 32 * 144 * 16), rel=1e-12)


def _residual_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Conv2D(16, 3, padding="same", name="c3")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="out")(x))


@pytest.mark.parametrize("scheme_set", space_lib.SCHEME_SETS)
@pytest.mark.parametrize("build", [_residual_model, lambda: zoo.build("lenet5")])
def test_analytic_ratio_matches_exact_count(scheme_set, build):
    model = build()
    space = space_lib.PolicySpace.from_model(model, scheme_set, include_dense=True)
    share = 0.5 if scheme_set == "filter+column" else 1.0
    policy = policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(0.5, share)
                                              for n in space.names})
    for objective in cost.COUNTED:
        exact = cost.exact_compression_ratio(model, policy, objective)
        assert policy.compression_ratio(objective) == pytest.approx(exact, rel=0.05)


def test_space_with_floors_json_round_trip_and_missing_layers_keep_floors(tmp_path):
    round1 = policy_lib.PruningPolicy(SPACE, {"a": policy_lib.LayerAction(0.5, 0.25),
                                              "b": policy_lib.LayerAction(0.3, 1.0)})
    space = SPACE.next_round(round1)
    assert [f[0] for f in space.floors] == ["a", "b"]
    assert space.effective("a") == round1.effective("a")
    assert space_lib.PolicySpace.from_config(space.get_config()) == space
    # A layer left out keeps its floor: the round-1 ratio, against the dense model.
    same = policy_lib.PruningPolicy(space, {})
    assert same.compression_ratio() == pytest.approx(round1.compression_ratio())
    assert space.dense_cost() == SPACE.dense_cost()
    assert same.schemes() == round1.schemes()
    round2 = policy_lib.PruningPolicy(space, {"a": policy_lib.LayerAction(0.7, 0.3)})
    round2.save(tmp_path / "p2.json")
    loaded = policy_lib.PruningPolicy.load(tmp_path / "p2.json")
    assert loaded == round2 and loaded.space.floors == space.floors
    assert encoding.from_values(space, encoding.to_values(round2)) == \
        policy_lib.PruningPolicy(space, {"a": round2.actions["a"], "b": round2.action("b")})
    # Round 3 chains on round 2's effective fractions.
    third = space.next_round(round2)
    assert third.effective("a") == round2.effective("a")
    assert third.effective("b") == round1.effective("b")


def test_from_model_previous_floors_and_errors():
    model = _residual_model()
    space = space_lib.PolicySpace.from_model(model, "filter")
    round1 = policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(0.25)
                                              for n in space.names})
    space2 = space_lib.PolicySpace.from_model(model, "filter+column", previous=round1)
    assert {n: space2.floor(n) for n in space2.names} == {n: (0.25, 0.0) for n in space.names}
    with pytest.raises(ValueError, match=r"'c1'.*filter_fraction=0.1 is below its floor 0.25"):
        policy_lib.PruningPolicy(space2, {"c1": policy_lib.LayerAction(0.1, 1.0)})
    combined = policy_lib.PruningPolicy(space2, {n: policy_lib.LayerAction(0.5, 0.5)
                                                 for n in space2.names})
    with pytest.raises(ValueError, match=r"'c1'.*column_fraction=.* with scheme_set='filter'"):
        space_lib.PolicySpace.from_model(model, "filter", previous=combined)
    with pytest.raises(TypeError, match="previous round's PruningPolicy"):
        space_lib.PolicySpace.from_model(model, previous={"c1": 0.5})
