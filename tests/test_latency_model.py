"""The latency model: the fit's law, its monotonicity, and the space's latency budget
computed by hand."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tfautocompress import latency_model, policy as policy_lib, space as space_lib
from tfautocompress.latency_model import LatencyModel, LayerLatencyModel

coefficient = st.floats(0.0, 2.0, allow_nan=False)


def grid_points(law, filters=32, channels=16):
    return [(f, c, law(f, c)) for f in latency_model.grid_counts(filters)
            for c in latency_model.grid_counts(channels)]


@settings(max_examples=50, deadline=None)
@given(coefficient, coefficient, coefficient, coefficient)
def test_the_fit_recovers_a_bilinear_law(a, b, d, e):
    a += 0.01  # a timing is never 0 ms
    fitted = LayerLatencyModel.fit(grid_points(lambda f, c: a + b * f + d * c + e * f * c))
    np.testing.assert_allclose([fitted.a, fitted.b, fitted.d, fitted.e], [a, b, d, e],
                               rtol=1e-6, atol=1e-9)
    assert fitted.error < 1e-6
    assert fitted(7, 3) == pytest.approx(a + 7 * b + 3 * d + 21 * e)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.05, 5.0), min_size=9, max_size=9),
       st.integers(1, 64), st.integers(1, 64), st.integers(0, 10), st.integers(0, 10))
def test_fewer_filters_or_channels_never_predict_more(timings, f, c, df, dc):
    """Whatever the timings (noise, a law falling with size), the fitted model's
    coefficients are >= 0, so removing filters or channels never adds time."""
    points = [(f_, c_, ms) for (f_, c_, _), ms in zip(grid_points(lambda *_: 0.0), timings)]
    fitted = LayerLatencyModel.fit(points)
    assert min(fitted.a, fitted.b, fitted.d, fitted.e) >= 0.0
    assert fitted(f, c) <= fitted(f + df, c + dc) + 1e-12


def test_the_grid_is_an_eighth_half_and_all_of_a_layer():
    assert latency_model.grid_counts(32) == [4, 16, 32]
    assert latency_model.grid_counts(2) == [1, 2]  # at least one, no repeats
    with pytest.raises(ValueError, match="at least 2"):
        LayerLatencyModel.fit([(1, 1, 0.1)])
    # one channel count (a first layer reading an image): the law in the filters only
    one_channel = LayerLatencyModel.fit([(8, 3, 0.1), (16, 3, 0.18), (32, 3, 0.34)])
    assert one_channel(24, 3) == pytest.approx(0.26) and one_channel.error < 1e-9


def test_a_model_predicts_its_layers_plus_the_fixed_part_and_round_trips():
    model = LatencyModel({"conv": LayerLatencyModel(0.1, 0.01, 0.02, 0.001)}, 0.5, "host")
    assert model.predict({"conv": (10, 4)}) == pytest.approx(0.5 + 0.1 + 0.1 + 0.08 + 0.04)
    again = LatencyModel.from_config(model.get_config())
    assert again == model and again.device == "host"
    with pytest.raises(ValueError, match="no timings for layer 'other'; it has conv"):
        model.predict({"other": (1, 1)})


def two_conv_space():
    """conv_a (8 filters, 3x3 on 4 channels) feeding conv_b (16 filters on conv_a's 8)."""
    layers = (space_lib.LayerSpec("conv_a", "conv", 8, 36, 64, in_size=4, bias=1),
              space_lib.LayerSpec("conv_b", "conv", 16, 72, 64, in_size=8,
                                  reads=((("conv_a",), 8, 1),), bias=1))
    laws = {"conv_a": LayerLatencyModel(0.1, 0.01, 0.0, 0.002),
            "conv_b": LayerLatencyModel(0.2, 0.0, 0.01, 0.001)}
    return space_lib.PolicySpace(layers, "filter+column", latency=LatencyModel(laws, 0.3))


def test_the_space_budgets_latency_by_kept_filters_and_live_channels():
    space = two_conv_space()
    dense = 0.3 + (0.1 + 0.08 + 0.064) + (0.2 + 0.08 + 0.128)
    assert space.dense_cost("latency") == pytest.approx(dense)
    # conv_a loses half its filters: conv_b then reads 4 of its 8 channels
    half = {"conv_a": policy_lib.LayerAction(0.5, 1.0)}
    kept = 0.3 + (0.1 + 0.04 + 0.032) + (0.2 + 0.04 + 0.064)
    assert space.remaining_cost(half, "latency") == pytest.approx(kept)
    assert space.compression_ratio(half, "latency") == pytest.approx(dense / kept)
    # columns alone run as a dense conv: no latency saved (while params shrink)
    columns = {"conv_b": policy_lib.LayerAction(0.5, 0.0)}
    assert space.compression_ratio(columns, "latency") == pytest.approx(1.0)
    assert space.compression_ratio(columns, "params") > 1.3
    assert space_lib.PolicySpace.from_config(space.get_config()) == space


def test_latency_without_a_model_names_what_to_do():
    space = space_lib.PolicySpace(two_conv_space().layers)
    with pytest.raises(ValueError, match="objective 'latency' needs the model's latency model"):
        space.dense_cost("latency")
    with pytest.raises(ValueError, match="no timings for layer 'conv_b'"):
        space_lib.PolicySpace(space.layers, latency=LatencyModel(
            {"conv_a": LayerLatencyModel(0.1, 0, 0, 0)}, 0.0))


def test_filters_count_as_the_device_computes_them():
    """A device whose GEMM computes 8 filters at once: 1..8 filters cost 8, 9..16 cost
    16 (``filter_costs`` over a period of 16), and whole periods add up."""
    costs = (8.0,) * 8 + (16.0,) * 8
    assert [latency_model.effective_filters(f, costs) for f in (1, 8, 9, 16, 17, 40)] == \
        [8.0, 8.0, 16.0, 16.0, 24.0, 40.0]
    assert latency_model.effective_filters(17, ()) == 17  # no costs: the count itself
    model = LatencyModel({"conv": LayerLatencyModel(0.1, 0.01, 0.0, 0.0)}, 0.0,
                         filter_costs=costs)
    assert model.layer_ms("conv", 9, 4) == model.layer_ms("conv", 16, 4) == pytest.approx(0.26)
    assert model.layer_ms("conv", 3, 4) == pytest.approx(0.18)
    assert LatencyModel.from_config(model.get_config()) == model


def test_a_latency_space_keeps_the_filters_the_device_computes_anyway():
    """8-wide tiles: a layer of 16 filters told to keep 12 keeps all 16 (the same two
    tiles), told to keep 8 keeps 8; a floor is never revived; params count the same."""
    costs = (8.0,) * 8 + (16.0,) * 8
    laws = {"conv_a": LayerLatencyModel(0.0, 0.01, 0.0, 0.0)}
    layers = (space_lib.LayerSpec("conv_a", "conv", 16, 36, 64, in_size=4),)
    space = space_lib.PolicySpace(layers, "filter", latency=LatencyModel(laws, 0.0, "", costs))
    assert space.effective("conv_a", policy_lib.LayerAction(0.25)) == (0.0, 0.0)
    assert space.effective("conv_a", policy_lib.LayerAction(0.5)) == (0.5, 0.0)
    assert space.effective("conv_a", policy_lib.LayerAction(0.75)) == (0.5, 0.0)  # 4 -> 8
    floored = space_lib.PolicySpace(layers, "filter", floors={"conv_a": {"fraction": 0.25}},
                                    latency=space.latency)
    assert floored.effective("conv_a", policy_lib.LayerAction(0.3)) == (0.25, 0.0)
    half = {"conv_a": policy_lib.LayerAction(0.5)}
    assert space.compression_ratio(half, "params") == pytest.approx(2.0)
    assert space.compression_ratio({"conv_a": policy_lib.LayerAction(0.25)}, "params") == 1.0
    assert policy_lib.PruningPolicy(space, half).schemes()["conv_a"].fraction == 0.5


def test_a_latency_target_takes_the_most_from_the_slowest_layers():
    """The guided heuristic's order: time left per layer, not weights (conv_b has 4x
    conv_a's weights; here conv_a is the slower one)."""
    space = two_conv_space()
    slow_a = {"conv_a": LayerLatencyModel(1.0, 0.0, 0.0, 0.0),
              "conv_b": LayerLatencyModel(0.2, 0.0, 0.0, 0.0)}
    space = space_lib.PolicySpace(space.layers, latency=LatencyModel(slow_a, 0.3))
    assert space.remaining_sizes() == {"conv_a": pytest.approx(1.0), "conv_b": pytest.approx(0.2)}
    assert space_lib.PolicySpace(space.layers).remaining_sizes() == {"conv_a": 8 * 36 + 8,
                                                                     "conv_b": 16 * 72 + 16}
