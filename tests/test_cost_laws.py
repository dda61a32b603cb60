"""cost on small hand-made models and reports: every count worked out by hand."""
import math

import numpy as np
import pytest

from tfautocompress import cost, policy as policy_lib, space as space_lib
from tfautocompress._keras import keras

L = keras.layers


def _model(*layers_, input_shape):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers_:
        x = layer(x)
    return keras.Model(inputs, x)


def test_a_masked_batchnorm_counts_the_gamma_and_beta_of_live_channels_only():
    model = _model(L.Conv2D(4, 3, name="c1"), L.BatchNormalization(name="bn"), L.ReLU(),
                   L.Conv2D(5, 1, name="c2"), L.GlobalAveragePooling2D(), L.Dense(2, name="out"),
                   input_shape=(6, 6, 3))
    c1 = np.ones((3, 3, 3, 4), np.float32)
    c1[..., [1, 3]] = 0.0  # filters 1 and 3 go: 2 channels live
    report = {row.name: row for row in cost.count(model, {"c1": c1}).layers}
    assert report["c1"].params == 3 * 3 * 3 * 2 + 2       # kept kernel + live biases
    assert report["bn"].params == 2 * 2                   # gamma and beta of 2 channels
    assert report["c2"].params == 2 * 5 + 5               # rows of the live channels
    assert report["out"].params == 5 * 2 + 2
    assert (report["c1"].macs, report["c2"].macs, report["out"].macs) == (54 * 16, 10 * 16, 10)


def test_a_one_channel_batchnorm_counts_its_gamma_and_beta():
    model = _model(L.Conv2D(1, 1, name="c"), L.BatchNormalization(name="bn"), L.Flatten(),
                   L.Dense(2, name="out"), input_shape=(4, 4, 1))
    report = {row.name: row for row in cost.count(model).layers}
    assert report["bn"].params == 2 and report["c"].params == 2


def test_the_exact_ratio_of_a_single_weight_layer_that_keeps_it_is_one():
    model = _model(L.Conv2D(1, 1, use_bias=False, name="c"), L.Flatten(), L.Dense(2, name="out"),
                   input_shape=(2, 2, 1))
    space = space_lib.PolicySpace.from_model(model, "filter")
    policy = policy_lib.PruningPolicy(space, {"c": policy_lib.LayerAction(0.5)})
    assert cost.exact_compression_ratio(model, policy) == 1.0  # round(0.5 x 1) = 0 filters go
    assert cost.exact_compression_ratio(model, policy, "macs") == 1.0


def test_ratios_against_an_empty_report_are_infinite():
    dense = cost.CostReport((cost.LayerCost("c", "Conv2D", 10, 40, (2, 2, 1), True),))
    empty = cost.CostReport((cost.LayerCost("c", "Conv2D", 0, 0, (2, 2, 1), True),))
    assert dense.ratios(empty) == dict.fromkeys(
        ("params_ratio", "macs_ratio", "conv_params_ratio", "conv_macs_ratio"), math.inf)


def test_an_unknown_objective_names_itself_and_the_accepted_ones():
    with pytest.raises(ValueError, match=r"objective 'flops' is not one of "
                                         r"\('params', 'macs', 'latency'\)"):
        cost.check_objective("flops")


def test_each_kernel_counts_its_live_filters_and_the_inputs_it_still_reads():
    """Two filters of conv_a pruned: conv_b reads 6 of its 8 channels, the Dense after
    Flatten 6 of every 8 inputs; the latency model times exactly these GEMMs."""
    import numpy as np

    from tfautocompress._keras import keras

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
    x = keras.layers.Conv2D(4, 1, name="conv_b")(x)
    x = keras.layers.Conv2D(8, 1, name="conv_c")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))
    mask = np.ones((3, 3, 3, 8), np.float32)
    mask[..., :2] = 0.0
    rows = {r.name: (r.filters, r.inputs) for r in cost.count(model, {"conv_a": mask}).layers}
    assert rows["conv_a"] == (6, 3) and rows["conv_b"] == (4, 6) and rows["fc"] == (5, 128)
    dense = {r.name: (r.filters, r.inputs) for r in cost.count(model).layers}
    assert dense["conv_a"] == (8, 3) and dense["conv_c"] == (8, 4)
    masks = {"conv_c": np.concatenate([np.zeros((1, 1, 4, 2)), np.ones((1, 1, 4, 6))], -1)}
    assert {r.name: r.inputs for r in cost.count(model, masks).layers}["fc"] == 96
    # conv_b's rows of channel 5 pruned (columns), conv_a's filter 5 alive: the compact
    # conv_b still reads channel 5 (zeros), so it counts
    columns = np.ones((1, 1, 8, 4), np.float32)
    columns[:, :, 5, :] = 0.0
    rows = {r.name: r.inputs for r in cost.count(model, {"conv_a": mask, "conv_b": columns}).layers}
    assert rows["conv_b"] == 6
    with pytest.raises(ValueError, match="objective 'latency' is predicted, not counted"):
        cost.exact_compression_ratio(model, None, "latency")


def test_the_table_lists_the_layers_that_cost_something_then_the_totals():
    report = cost.CostReport((
        cost.LayerCost("conv", "Conv2D", 448, 28672, (8, 8, 16), True),
        cost.LayerCost("bn", "BatchNormalization", 32, 0, (8, 8, 16), False),
        cost.LayerCost("relu", "ReLU", 0, 0, (8, 8, 16), False),
        cost.LayerCost("fc", "Dense", 170, 170, (10,), False)))
    lines = report.table().split("\n")
    assert [line.split() for line in lines] == [
        ["layer", "type", "output", "params", "MACs"],
        ["-" * len(lines[0])],
        ["conv", "Conv2D", "8x8x16", "448", "28,672"],
        ["bn", "BatchNormalization", "8x8x16", "32", "0"],
        ["fc", "Dense", "10", "170", "170"],
        ["-" * len(lines[0])],
        ["CONV", "total", "448", "28,672"],
        ["total", "650", "28,842"],
    ]
    assert {len(line) for line in lines} == {len(lines[0])}  # columns line up


def test_each_row_names_its_layer_type_says_whether_it_is_conv_and_counts_its_calls():
    inputs = keras.Input((4, 4, 3), name="in")
    x = L.BatchNormalization(name="bn")(L.Conv2D(8, 1, name="c")(inputs))
    x = L.Dense(5, name="pointwise")(x)                   # a Dense on feature maps: a 1x1 conv
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D(name="gap")(x)))
    rows = [(r.name, r.type, r.conv, r.calls) for r in cost.count(model).layers]
    assert rows == [("in", "InputLayer", False, 1), ("c", "Conv2D", True, 1),
                    ("bn", "BatchNormalization", False, 1), ("pointwise", "Dense", True, 1),
                    ("gap", "GlobalAveragePooling2D", False, 1),
                    ("out", "Dense", False, 1)]


def test_a_dense_layer_on_a_sequence_is_conv_and_runs_once_per_step():
    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, L.Dense(4, name="d")(inputs))
    row = {r.name: r for r in cost.count(model).layers}["d"]
    assert row.conv and row.output_shape == (6, 4)
    assert (row.params, row.macs) == (3 * 4 + 4, 6 * 3 * 4)


def test_a_layer_shared_after_an_input_counts_its_macs_per_call():
    # s is called twice; its second call sits at the depth of input b
    a, b = keras.Input((4, 4, 3), name="a"), keras.Input((4, 4, 3), name="b")
    shared = L.Conv2D(3, 1, name="s")
    x = L.Add()([b, shared(shared(a))])
    model = keras.Model([a, b], L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))
    row = {r.name: r for r in cost.count(model).layers}["s"]
    assert (row.calls, row.params, row.macs) == (2, 9 + 3, 2 * 16 * 9)


def test_a_shared_kernel_free_layer_counts_its_calls_and_a_shape_changing_one_its_first():
    a, b = keras.Input((8, 8, 3), name="a"), keras.Input((4, 4, 3), name="b")
    pool = L.GlobalAveragePooling2D(name="pool")
    conv = L.Conv2D(2, 1, name="conv")             # called on 8x8 and on 4x4 inputs
    x = L.Concatenate()([pool(conv(a)), pool(conv(b))])
    model = keras.Model([a, b], L.Dense(2, name="out")(x))
    rows = {r.name: r for r in cost.count(model).layers}
    assert rows["pool"].calls == 2 and rows["pool"].output_shape == (2,)
    assert rows["conv"].calls == 2 and rows["conv"].output_shape == (8, 8, 2)  # the first call's
