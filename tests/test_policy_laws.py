"""PruningPolicy laws on hand-made spaces: a layer left out keeps its floor (its action
splits back into it), equality, repr and the default objective, against values worked
out by hand."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from tfautocompress import policy as policy_lib, schemes, space as space_lib

LayerAction, PolicySpace, LayerSpec = policy_lib.LayerAction, space_lib.PolicySpace, space_lib.LayerSpec
LAYERS = (LayerSpec("a", "conv", 16, 27, 64), LayerSpec("b", "conv", 32, 144, 16))


def _left_out(scheme_set, first, second):
    """The action of a layer the policy leaves out, whose floor is ``(first, second)``."""
    space = PolicySpace(LAYERS, scheme_set, 0.99, floors=(("a", first, second),))
    return policy_lib.PruningPolicy(space, {}).action("a")


@settings(max_examples=40, deadline=None)
@given(first=st.floats(0.0, 0.9), second=st.floats(0.0, 0.9))
def test_a_left_out_layers_action_splits_back_into_its_floor(first, second):
    action = _left_out("filter+column", first, second)
    assert action.split() == pytest.approx((first, second), abs=1e-9)
    assert action.fraction == pytest.approx(1 - (1 - first) * (1 - second), abs=1e-12)


@pytest.mark.parametrize("first, second, want", [
    (0.5, 0.0, LayerAction(0.5, 1.0)),   # filters only: all of it is filters
    (0.0, 0.25, LayerAction(0.25, 0.0)),  # columns only: none of it is filters
    (0.0, 0.0, LayerAction(0.0, 1.0)),
])
def test_a_left_out_layers_action_on_the_axes(first, second, want):
    space = PolicySpace(LAYERS, "filter+column", 0.99, floors=(("a", first, second),))
    assert policy_lib.PruningPolicy(space, {}).action("a") == want
    assert policy_lib.PruningPolicy(space, {}).action("b") == LayerAction(0.0, 1.0)


@pytest.mark.parametrize("scheme_set", ["filter", "irregular"])
def test_a_left_out_layer_of_a_single_fraction_space_keeps_its_fraction(scheme_set):
    assert _left_out(scheme_set, 0.375, 0.0) == LayerAction(0.375, 1.0)


def test_policies_are_equal_only_over_equal_spaces_with_equal_actions():
    actions = {"a": LayerAction(0.5, 0.5)}
    policy = policy_lib.PruningPolicy(PolicySpace(LAYERS, "filter+column", 0.9), actions)
    same = policy_lib.PruningPolicy(PolicySpace(LAYERS, "filter+column", 0.9), dict(actions))
    other_space = policy_lib.PruningPolicy(PolicySpace(LAYERS, "filter+column", 0.8), actions)
    other_actions = policy_lib.PruningPolicy(PolicySpace(LAYERS, "filter+column", 0.9),
                                             {"a": LayerAction(0.5, 0.25)})
    assert policy == same
    assert policy != other_space and policy != other_actions
    assert policy != "PruningPolicy" and policy != actions


def test_repr_lists_each_action_as_fraction_and_filter_share():
    policy = policy_lib.PruningPolicy(PolicySpace(LAYERS, "filter+column", 0.9),
                                      {"a": LayerAction(0.5, 0.25), "b": LayerAction(0.125)})
    assert repr(policy) == "PruningPolicy(filter+column; a: 0.500/0.25, b: 0.125/1.00)"


def test_remaining_cost_counts_params_unless_told_otherwise():
    space = PolicySpace(LAYERS, "filter", 0.9, fixed_params=100, fixed_macs=1000)
    policy = policy_lib.PruningPolicy(space, {"a": LayerAction(0.5)})
    # a keeps 8 of its 16 filters (27 entries each); b is dense (32 x 144)
    assert policy.remaining_cost() == 100 + 8 * 27 + 32 * 144
    assert policy.remaining_cost("macs") == 1000 + 8 * 27 * 64 + 32 * 144 * 16


def test_schemes_skip_only_the_layers_that_prune_nothing():
    space = PolicySpace(LAYERS, "filter+column", 0.9)
    policy = policy_lib.PruningPolicy(space, {"a": LayerAction(0.0), "b": LayerAction(0.25, 0.0)})
    assert policy.schemes() == {"b": schemes.Combined(0.0, 0.25)}  # columns only


def test_a_file_without_space_or_actions_is_read_with_load_schemes(tmp_path):
    space = PolicySpace(LAYERS, "filter", 0.9)
    full = policy_lib.PruningPolicy(space, {"a": LayerAction(0.5)}).to_json()
    for missing in ("space", "actions"):
        obj = {k: v for k, v in full.items() if k != missing}
        with pytest.raises(ValueError, match=r"this policy file holds schemes only \(no "
                                             r"'space'/'actions', e\.g\. written by hand\): read "
                                             r"it with policy\.load_schemes, or use one written "
                                             r"by the pipeline\."):
            policy_lib.PruningPolicy.from_json(obj)


def test_a_foreign_object_is_quoted_in_the_error_up_to_200_characters():
    obj = {"format": "other", "payload": "x" * 300}
    with pytest.raises(ValueError) as error:
        policy_lib.PruningPolicy.from_json(obj)
    assert str(error.value).endswith("): " + str(obj)[:200])


def test_files_that_are_not_policy_files_say_how_to_write_one(tmp_path):
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match=r"empty\.json is not a policy file: .* \(write one with "
                                         r"PruningPolicy\.save or policy\.save_schemes\)\."):
        policy_lib.load_schemes(tmp_path / "empty.json")
    (tmp_path / "list.json").write_text(json.dumps({"format": "tfautocompress.PruningPolicy/1",
                                                    "schemes": [1, 2]}))
    with pytest.raises(ValueError, match=r"list\.json: 'schemes' must be an object \{layer: "
                                         r"scheme config\}, got list\."):
        policy_lib.load_schemes(tmp_path / "list.json")


def test_a_policy_names_what_it_was_given_instead_of_a_space_or_an_action():
    with pytest.raises(TypeError, match=r"space must be a PolicySpace, got dict\.$"):
        policy_lib.PruningPolicy({}, {})
    space = PolicySpace(LAYERS, "filter", 0.9)
    with pytest.raises(TypeError, match=r"action for layer 'a' must be a LayerAction, got "
                                        r"float\.$"):
        policy_lib.PruningPolicy(space, {"a": 0.5})
    with pytest.raises(ValueError, match=r"filter_share=0\.5 with scheme_set='filter'; only "
                                         r"'filter\+column' splits, the others accept "
                                         r"filter_share=1\.0\.$"):
        policy_lib.PruningPolicy(space, {"a": LayerAction(0.5, 0.5)})
    assert policy_lib.PruningPolicy(space, {"a": LayerAction(0.9)}).actions  # max_fraction itself


@pytest.mark.parametrize("scheme_set, floor, action, key, value, below", [
    ("filter+column", (0.0, 0.5), LayerAction(0.5, 1.0), "column_fraction", "0", "0.5"),
    ("filter+column", (0.25, 0.0), LayerAction(0.5, 0.0), "filter_fraction", "0", "0.25"),
    ("irregular", (0.5, 0.0), LayerAction(0.25), "fraction", "0.25", "0.5"),
    ("filter", (0.5, 0.0), LayerAction(0.25), "filter_fraction", "0.25", "0.5"),
])
def test_an_action_below_its_floor_names_the_fraction_it_lacks(scheme_set, floor, action, key,
                                                               value, below):
    space = PolicySpace(LAYERS, scheme_set, 0.9, floors=(("a",) + floor,))
    with pytest.raises(ValueError, match=rf"layer 'a': {key}={value} is below its floor {below} "
                                         r"\(what the previous round already removed\); "
                                         rf"accepted: {key} >= {below} "):
        policy_lib.PruningPolicy(space, {"a": action})


def test_an_action_a_rounding_below_its_floor_is_accepted():
    space = PolicySpace(LAYERS, "filter", 0.9, floors=(("a", 0.5, 0.0),))
    assert policy_lib.PruningPolicy(space, {"a": LayerAction(0.5 - 1e-9)}).actions


@pytest.mark.parametrize("args, error, message", [
    ((1.0,), ValueError, r"LayerAction: fraction=1\.0 would remove the whole layer; accepted: "
                         r"\[0, 1\)\.$"),
    ((1.5,), ValueError, r"LayerAction: fraction=1\.5 is outside the accepted range \[0\.0, 1\.0\]\.$"),
    ((0.5, 1.5), ValueError, r"LayerAction: filter_share=1\.5 is outside the accepted range "
                             r"\[0\.0, 1\.0\]\.$"),
    (("0.5",), TypeError, r"LayerAction: fraction must be a real number in \[0\.0, 1\.0\], got "
                          r"'0\.5' \(str\)\.$"),
    ((0.5, None), TypeError, r"LayerAction: filter_share must be a real number in \[0\.0, 1\.0\], "
                             r"got None \(NoneType\)\.$"),
    ((True,), TypeError, r"LayerAction: fraction must be a real number .* got True \(bool\)\.$"),
])
def test_a_bad_action_names_the_field_the_value_and_the_range(args, error, message):
    with pytest.raises(error, match=message):
        LayerAction(*args)


def test_an_action_holds_python_floats():
    import numpy as np

    action = LayerAction(np.float32(0.25), 1)
    assert (type(action.fraction), type(action.filter_share)) == (float, float)
    assert (action.fraction, action.filter_share) == (0.25, 1.0)
