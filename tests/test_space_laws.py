"""PolicySpace floors and configs on hand-made spaces, against counts worked out by hand."""
import json

import pytest

from tfautocompress import space as space_lib

PolicySpace, LayerSpec = space_lib.PolicySpace, space_lib.LayerSpec
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
