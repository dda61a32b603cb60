"""PruningPolicy: validation, schemes, JSON/values round trips, analytic vs exact cost."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from tfautocompress import policy as policy_lib, schemes, zoo
from tfautocompress._keras import keras

SPACE = policy_lib.PolicySpace(
    [policy_lib.LayerSpec("a", "conv", 16, 27, 64), policy_lib.LayerSpec("b", "conv", 32, 144, 16)],
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
        space = policy_lib.PolicySpace(SPACE.layers, scheme_set, 0.9)
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
    filter_space = policy_lib.PolicySpace(SPACE.layers, "filter", 0.9)
    with pytest.raises(ValueError, match="filter_share=0.5"):
        policy_lib.PruningPolicy(filter_space, {"a": policy_lib.LayerAction(0.5, 0.5)})


def test_json_file_and_values_round_trip(tmp_path):
    policy = policy_lib.PruningPolicy(SPACE, {"a": policy_lib.LayerAction(0.3, 0.25),
                                              "b": policy_lib.LayerAction(0.6, 0.8)})
    policy.save(tmp_path / "p.json")
    assert policy_lib.PruningPolicy.load(tmp_path / "p.json") == policy
    assert policy_lib.PruningPolicy.from_values(SPACE, policy.to_values()) == policy
    with pytest.raises(ValueError, match="format"):
        policy_lib.PruningPolicy.from_json({"actions": {}})


def test_analytic_cost_counts_rounded_groups():
    policy = policy_lib.PruningPolicy(SPACE, {"a": policy_lib.LayerAction(0.5, 1.0)})
    # 8 of 16 filters kept in "a"; "b" keeps everything.
    assert policy.remaining_cost("params") == 100 + 8 * 27 + 32 * 144
    assert policy.remaining_cost("macs") == 1000 + 8 * 27 * 64 + 32 * 144 * 16
    assert policy.compression_ratio() == pytest.approx(SPACE.dense_cost() / policy.remaining_cost())


def _residual_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Conv2D(16, 3, padding="same", name="c3")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="out")(x))


@pytest.mark.parametrize("scheme_set", policy_lib.SCHEME_SETS)
@pytest.mark.parametrize("build", [_residual_model, lambda: zoo.build("lenet5")])
def test_analytic_ratio_matches_exact_count(scheme_set, build):
    model = build()
    space = policy_lib.PolicySpace.from_model(model, scheme_set, include_dense=True)
    share = 0.5 if scheme_set == "filter+column" else 1.0
    policy = policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(0.5, share)
                                              for n in space.names})
    for objective in policy_lib.OBJECTIVES:
        exact = policy.exact_compression_ratio(model, objective)
        assert policy.compression_ratio(objective) == pytest.approx(exact, rel=0.05)
