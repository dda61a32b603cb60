import numpy as np
import pytest

from tfautocompress import cost
from tfautocompress._keras import keras


@pytest.mark.parametrize("name, params, macs", [
    ("vgg16", 138.36e6, 15.5e9),          # Simonyan & Zisserman; AutoCompress Table 4
    ("resnet50_v1_5", 25.6e6, 4.1e9),     # torchvision ResNet-50 (v1.5)
    ("mobilenetv2", 3.5e6, 300e6),        # Sandler et al. 2018
])
def test_published_figures_within_one_percent(name, params, macs, zoo_model):
    report = cost.count(zoo_model(name))
    assert report.params == pytest.approx(params, rel=0.01)
    assert report.macs == pytest.approx(macs, rel=0.01)


def test_keras_resnet50_v1_matches_he_et_al(zoo_model):
    # tf_keras.applications.ResNet50 is v1 (stride in the first 1x1): 3.8 G MACs as
    # in He et al. 2016, Table 1; its 25.6 M params match too.
    report = cost.count(zoo_model("resnet50"))
    assert report.params == pytest.approx(25.6e6, rel=0.01)
    assert report.macs == pytest.approx(3.86e9, rel=0.01)


def _tiny(filters=4):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(filters, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))


def test_dense_counts_by_hand():
    report = cost.count(_tiny())
    rows = {layer.name: layer for layer in report.layers}
    assert (rows["conv"].params, rows["conv"].macs) == (3 * 3 * 3 * 4 + 4, 108 * 64)
    assert rows["bn"].params == 8 and rows["bn"].macs == 0  # gamma, beta only
    assert (rows["dw"].params, rows["dw"].macs) == (36 + 4, 36 * 16)
    assert (rows["fc"].params, rows["fc"].macs) == (25, 20)
    assert report.conv_params == 112 + 40 and report.conv_macs == 108 * 64 + 36 * 16
    assert report.params == report.conv_params + 8 + 25
    assert report.macs == report.conv_macs + 20


def test_vgg16_cifar_conv_table(zoo_model):
    report = cost.count(zoo_model("vgg16_cifar"))
    assert report.conv_params == 14_710_464
    assert report.conv_macs == 313_196_544
    table = report.table()
    assert "block5_3_conv" in table and "14,710,464" in table


# By hand (see test_dense_counts_by_hand), with 2 conv filters instead of 4: conv
# 54 + 2 params, 54 * 64 MACs; bn 4; dw 18 + 2 params, 18 * 16 MACs; fc 2 * 5 + 5, 10.
_HALF = {"params": 56 + 4 + 20 + 15, "macs": 54 * 64 + 18 * 16 + 10,
         "conv_params": 56 + 20, "conv_macs": 54 * 64 + 18 * 16}
_DENSE = {"params": 152 + 8 + 25, "macs": 108 * 64 + 36 * 16 + 20,
          "conv_params": 152, "conv_macs": 108 * 64 + 36 * 16}


def test_ratios():
    """dense / pruned (N x, > 1 when the pruned model is smaller), by hand."""
    dense, half = cost.count(_tiny()), cost.count(_tiny(filters=2))
    assert dense.ratios(half) == pytest.approx(
        {f"{k}_ratio": _DENSE[k] / _HALF[k] for k in _DENSE}, rel=1e-12)
    assert dense.ratios(half)["params_ratio"] == pytest.approx(185 / 95)
    assert half.ratios(dense)["conv_params_ratio"] == pytest.approx(0.5)


def test_report_to_dict_is_json_clean():
    import json

    report = cost.count(_tiny())
    text = json.dumps(report.to_dict(), allow_nan=False)  # no NaN/inf, plain types only
    loaded = json.loads(text)
    assert {k: loaded[k] for k in _DENSE} == _DENSE
    rows = {row["name"]: row for row in loaded["layers"]}
    assert (rows["conv"]["params"], rows["conv"]["macs"]) == (112, 108 * 64)
    assert (rows["dw"]["params"], rows["dw"]["macs"]) == (40, 36 * 16)
    assert rows["conv"]["conv"] is True and rows["fc"]["conv"] is False
    assert rows["conv"]["output_shape"] == [8, 8, 4] and rows["dw"]["output_shape"] == [4, 4, 4]


def test_a_shared_layer_costs_its_params_once_and_its_macs_per_call():
    from tfautocompress import cost
    from tfautocompress._keras import keras

    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")
    x = keras.layers.Add()([shared(inputs), shared(inputs * 2.0)])
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    row = next(r for r in cost.count(model).layers if r.name == "shared")
    assert row.calls == 2
    assert row.params == 3 * 3 * 3 * 4 + 4
    assert row.macs == 2 * (3 * 3 * 3 * 4) * 8 * 8


@pytest.mark.parametrize("middle", [
    lambda: keras.layers.DepthwiseConv1D(3, padding="same", name="mid"),
    lambda: keras.layers.SeparableConv1D(5, 3, padding="same", depth_multiplier=2, name="mid"),
], ids=["DepthwiseConv1D", "SeparableConv1D"])
def test_1d_depthwise_and_separable_layers_count_as_their_compact_model(middle):
    """Their alive filters and depthwise half follow ``layer_kinds`` as the 2-D ones do."""
    from tfautocompress import compact

    inputs = keras.Input((16, 6))
    x = keras.layers.Conv1D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv1D(4, 1, name="c2")(middle()(x))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(x))
    mask = np.ones(model.get_layer("c1").kernel.shape, np.float32)
    mask[..., :3] = 0
    masked = {r.name: (r.params, r.macs) for r in cost.count(model, {"c1": mask}).layers}
    compacted = {r.name: (r.params, r.macs)
                 for r in cost.count(compact.compact(model, {"c1": mask})).layers}
    assert masked == compacted
    dense = {r.name: (r.params, r.macs) for r in cost.count(model).layers}
    assert masked["mid"][0] < dense["mid"][0] and masked["mid"][1] < dense["mid"][1]


def test_a_transposed_conv_runs_its_kernel_once_per_input_position():
    for layer, shape, positions in [(keras.layers.Conv1DTranspose(4, 3, strides=2), (8, 3), 8),
                                    (keras.layers.Conv2DTranspose(4, 3, strides=2), (6, 6, 3), 36)]:
        model = keras.Sequential([keras.Input(shape), layer])
        row = cost.count(model).layers[-1]
        kernel = int(np.prod(layer.kernel.shape))
        assert (row.params, row.macs) == (kernel + 4, kernel * positions)
        assert row.conv == isinstance(layer, keras.layers.Conv2DTranspose)
