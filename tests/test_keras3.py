"""Keras 3 models in, Keras 3 models out: tfautocompress.keras3 and the doors that use it.

Every ``LAYERS`` entry converts both ways with its config and weights; zoo nets
(built by the zoo's own builders on Keras 3) and keras.applications CNNs convert
with the same outputs, compact, and come back as Keras 3 models that a fresh
process loads with ``keras.models.load_model``.
"""
import contextlib
import json
import os
import subprocess
import sys

import keras as keras3
import numpy as np
import pytest

from tfautocompress import analyze, count, keras3 as conversion, masks as masks_lib
from tfautocompress import StructuredPruneLowMagnitude, prune_structured, schemes, zoo
from tfautocompress._keras import keras
from tfautocompress.compact import apply_masks, compact

ATOL = 1e-5
APPLICATIONS = ("MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121")
L = keras3.layers


@contextlib.contextmanager
def keras3_zoo():
    """The zoo's builders with Keras 3 in place of tf_keras: the same nets as Keras 3 models."""
    saved = zoo.keras, zoo.layers
    zoo.keras, zoo.layers = keras3, keras3.layers
    try:
        yield zoo
    finally:
        zoo.keras, zoo.layers = saved


def _randomize(model, seed=0, only=None):
    """Weights in [0.5, 1.5) (positive, so BN variances are valid) instead of initial
    ones, in every layer or in the layers of class name ``only``."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if only is None or type(layer).__name__ == only:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
                               for w in layer.get_weights()])
    return model


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _same_config(a, b):
    """Equal configs, floats up to float32 rounding (tf_keras stores e.g. an L2
    factor or LeakyReLU's slope as float32: 0.001 comes back as 0.0010000000474974513)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_config(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same_config, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-7 * max(abs(a), abs(b))
    return a == b


# One case per LAYERS entry: (constructor, input shape(s)); non-default settings where
# they exercise a translation rule (renames, serialized objects, dropped keys).
_REG = dict(kernel_regularizer=keras3.regularizers.L2(1e-3),
            kernel_constraint=keras3.constraints.MaxNorm(2.0),
            bias_initializer=keras3.initializers.Constant(0.1))
CASES = {
    "Dense": (lambda: L.Dense(5, activation="relu", **_REG), (6,)),
    "Conv1D": (lambda: L.Conv1D(4, 3, strides=2, padding="same", **_REG), (9, 3)),
    "Conv2D": (lambda: L.Conv2D(4, 3, dilation_rate=2, activation="silu", **_REG), (9, 9, 3)),
    "Conv3D": (lambda: L.Conv3D(4, 2), (5, 5, 5, 2)),
    "Conv1DTranspose": (lambda: L.Conv1DTranspose(4, 3, strides=2), (6, 3)),
    "Conv2DTranspose": (lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same"), (6, 6, 3)),
    "Conv3DTranspose": (lambda: L.Conv3DTranspose(2, 2), (4, 4, 4, 2)),
    "DepthwiseConv1D": (lambda: L.DepthwiseConv1D(3, depth_multiplier=2), (8, 3)),
    "DepthwiseConv2D": (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                        (8, 8, 3)),
    "SeparableConv1D": (lambda: L.SeparableConv1D(4, 3, depth_multiplier=2), (8, 3)),
    "SeparableConv2D": (lambda: L.SeparableConv2D(4, 3, padding="same"), (8, 8, 3)),
    "BatchNormalization": (lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-2), (6, 6, 3)),
    "ReLU": (lambda: L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5), (6,)),
    "LeakyReLU": (lambda: L.LeakyReLU(negative_slope=0.2), (6,)),
    "PReLU": (lambda: L.PReLU(shared_axes=[1, 2]), (4, 4, 3)),
    "ELU": (lambda: L.ELU(alpha=0.5), (6,)),
    "Softmax": (lambda: L.Softmax(axis=-1), (6,)),
    "Activation": (lambda: L.Activation("gelu"), (6,)),
    "Dropout": (lambda: L.Dropout(0.3, noise_shape=(None, 1), seed=3), (6,)),
    "SpatialDropout1D": (lambda: L.SpatialDropout1D(0.2), (5, 3)),
    "SpatialDropout2D": (lambda: L.SpatialDropout2D(0.2), (5, 5, 3)),
    "SpatialDropout3D": (lambda: L.SpatialDropout3D(0.2), (3, 3, 3, 2)),
    "GaussianDropout": (lambda: L.GaussianDropout(0.2), (6,)),
    "GaussianNoise": (lambda: L.GaussianNoise(0.2), (6,)),
    "AlphaDropout": (lambda: L.AlphaDropout(0.2), (6,)),
    "ActivityRegularization": (lambda: L.ActivityRegularization(l1=0.01), (6,)),
    "MaxPooling1D": (lambda: L.MaxPooling1D(2), (8, 3)),
    "MaxPooling2D": (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (8, 8, 3)),
    "MaxPooling3D": (lambda: L.MaxPooling3D(2), (4, 4, 4, 2)),
    "AveragePooling1D": (lambda: L.AveragePooling1D(2), (8, 3)),
    "AveragePooling2D": (lambda: L.AveragePooling2D(2), (8, 8, 3)),
    "AveragePooling3D": (lambda: L.AveragePooling3D(2), (4, 4, 4, 2)),
    "GlobalAveragePooling1D": (lambda: L.GlobalAveragePooling1D(), (8, 3)),
    "GlobalAveragePooling2D": (lambda: L.GlobalAveragePooling2D(keepdims=True), (8, 8, 3)),
    "GlobalAveragePooling3D": (lambda: L.GlobalAveragePooling3D(), (4, 4, 4, 2)),
    "GlobalMaxPooling1D": (lambda: L.GlobalMaxPooling1D(), (8, 3)),
    "GlobalMaxPooling2D": (lambda: L.GlobalMaxPooling2D(), (8, 8, 3)),
    "GlobalMaxPooling3D": (lambda: L.GlobalMaxPooling3D(), (4, 4, 4, 2)),
    "ZeroPadding1D": (lambda: L.ZeroPadding1D(2), (8, 3)),
    "ZeroPadding2D": (lambda: L.ZeroPadding2D(((1, 0), (2, 1))), (8, 8, 3)),
    "ZeroPadding3D": (lambda: L.ZeroPadding3D(1), (4, 4, 4, 2)),
    "Cropping1D": (lambda: L.Cropping1D((1, 2)), (8, 3)),
    "Cropping2D": (lambda: L.Cropping2D(((1, 0), (2, 1))), (8, 8, 3)),
    "Cropping3D": (lambda: L.Cropping3D(1), (4, 4, 4, 2)),
    "UpSampling1D": (lambda: L.UpSampling1D(2), (4, 3)),
    "UpSampling2D": (lambda: L.UpSampling2D(2, interpolation="bilinear"), (4, 4, 3)),
    "UpSampling3D": (lambda: L.UpSampling3D(2), (2, 2, 2, 2)),
    "Flatten": (lambda: L.Flatten(), (4, 4, 3)),
    "Reshape": (lambda: L.Reshape((12, 4)), (4, 4, 3)),
    "Permute": (lambda: L.Permute((2, 1)), (4, 3)),
    "Add": (lambda: L.Add(), [(6,), (6,)]),
    "Subtract": (lambda: L.Subtract(), [(6,), (6,)]),
    "Multiply": (lambda: L.Multiply(), [(6,), (6,)]),
    "Average": (lambda: L.Average(), [(6,), (6,)]),
    "Maximum": (lambda: L.Maximum(), [(6,), (6,)]),
    "Minimum": (lambda: L.Minimum(), [(6,), (6,)]),
    "Concatenate": (lambda: L.Concatenate(axis=1), [(4, 3), (2, 3)]),
    "Rescaling": (lambda: L.Rescaling(1 / 255.0, offset=-0.5), (4, 4, 3)),
    "Normalization": (lambda: L.Normalization(axis=-1, mean=[1.0, 2.0, 3.0],
                                              variance=[1.0, 4.0, 9.0]), (4, 3)),
}


def test_every_converter_has_a_case():
    assert sorted(CASES) == sorted(conversion.LAYERS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_converts_both_ways_with_config_and_weights(name):
    build, shapes = CASES[name]
    many = isinstance(shapes, list)
    inputs = [keras3.Input(s) for s in shapes] if many else keras3.Input(shapes)
    layer = build()
    model3 = _randomize(keras3.Model(inputs, layer(inputs), name=f"case_{name}"))
    rng = np.random.default_rng(1)
    x = ([rng.normal(size=(2, *s)).astype("float32") for s in shapes] if many
         else rng.normal(size=(2, *shapes)).astype("float32"))

    tf_model = conversion.to_tf_keras(model3)
    tf_layer = tf_model.get_layer(layer.name)
    assert type(tf_layer) is conversion.LAYERS[name].tf_keras
    assert _max_diff(model3(x), tf_model(x)) <= ATOL
    back = conversion.to_keras3(tf_model)
    assert _same_config(back.get_layer(layer.name).get_config(), layer.get_config())
    assert _max_diff(model3(x), back(x)) <= ATOL


def test_nested_models_and_shared_layers_keep_names_and_weights():
    inputs = keras3.Input((8, 8, 3), name="image")
    shared = L.Conv2D(3, 3, padding="same", name="shared")
    a = shared(inputs)
    b = shared(a)  # the same layer twice: one tf_keras layer, called twice
    inner_in = keras3.Input((8, 8, 3), name="inner_in")
    inner = keras3.Model(inner_in, L.ReLU(name="inner_relu")(L.BatchNormalization(
        name="inner_bn")(inner_in)), name="inner")
    head = keras3.Sequential([keras3.Input((8, 8, 3)), L.GlobalAveragePooling2D(name="gap"),
                              L.Dense(2, name="logits")], name="head")
    outputs = head(L.Add(name="add")([inner(b), inner(a)]))
    model3 = _randomize(keras3.Model(inputs, outputs, name="nested"))
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")

    tf_model = conversion.to_tf_keras(model3)
    assert [la.name for la in tf_model.layers] == [la.name for la in model3.layers]
    assert len(tf_model.get_layer("shared")._inbound_nodes) == 2  # noqa: SLF001
    head_layers = tf_model.get_layer("head").layers  # a functional model: its Input first
    assert [la.name for la in head_layers[1:]] == ["gap", "logits"]
    assert tf_model.count_params() == model3.count_params()
    expected = np.asarray(model3(x))  # ~100: float32 rounding is relative here
    np.testing.assert_allclose(tf_model(x), expected, rtol=1e-6, atol=ATOL)
    back = conversion.to_keras3(tf_model)
    assert [la.name for la in back.layers] == [la.name for la in model3.layers]
    np.testing.assert_allclose(back(x), expected, rtol=1e-6, atol=ATOL)


def test_dropout_still_drops_when_training():
    """Keras 3 records Dropout's default ``training=False`` in the node; carried to
    tf_keras it would switch Dropout off in ``fit`` (caught by the CLI figures)."""
    inputs = keras3.Input((1000,))
    tf_model = conversion.to_tf_keras(keras3.Model(inputs, L.Dropout(0.2)(inputs)))
    ones = np.ones((20, 1000), "float32")
    assert np.array_equal(tf_model(ones), ones)
    dropped = np.asarray(tf_model(ones, training=True))
    assert 0.18 < np.mean(dropped == 0) < 0.22  # the rate, not 1 - rate (0.8)
    np.testing.assert_allclose(dropped[dropped != 0], 1 / 0.8, rtol=1e-6)  # kept: / (1 - rate)


# AlphaDropout's affine correction (Klambauer et al. 2017, SELU's alpha * scale):
# kept x -> a x + b, dropped -> a alpha' + b, so that the mean and variance stay.
_ALPHA_P = -1.6732632423543772 * 1.0507009873554805
_A = ((1 - 0.2) * (1 + 0.2 * _ALPHA_P ** 2)) ** -0.5
_B = -_A * _ALPHA_P * 0.2


def _zero_share(groups):
    """Share of the groups (rows) that are all zero; every other group is all 1.25."""
    dropped = np.all(groups == 0, axis=1)
    np.testing.assert_allclose(groups[~dropped], 1.25, rtol=1e-6)
    return float(dropped.mean())


# name: (layer at rate 0.2 / stddev 0.2, input shape, input value, check of the output)
TRAINING_CASES = {
    "Dropout_noise_shape": (lambda: L.Dropout(0.2, noise_shape=(None, 1)), (6,), 1.0,
                            lambda y: 0.17 < _zero_share(y.reshape(len(y), -1)) < 0.23),
    "SpatialDropout1D": (lambda: L.SpatialDropout1D(0.2), (5, 4), 1.0,  # whole channels
                         lambda y: 0.17 < _zero_share(
                             y.transpose(0, 2, 1).reshape(-1, 5)) < 0.23),
    "SpatialDropout2D": (lambda: L.SpatialDropout2D(0.2), (3, 3, 4), 1.0,
                         lambda y: 0.17 < _zero_share(
                             y.transpose(0, 3, 1, 2).reshape(-1, 9)) < 0.23),
    "SpatialDropout3D": (lambda: L.SpatialDropout3D(0.2), (2, 2, 2, 4), 1.0,
                         lambda y: 0.17 < _zero_share(
                             y.transpose(0, 4, 1, 2, 3).reshape(-1, 8)) < 0.23),
    # x * N(1, rate / (1 - rate)): std 0.5 (2.0 for 1 - rate)
    "GaussianDropout": (lambda: L.GaussianDropout(0.2), (6,), 1.0,
                        lambda y: abs(y.mean() - 1) < 0.03 and abs(y.std() - 0.5) < 0.03),
    "GaussianNoise": (lambda: L.GaussianNoise(0.2), (6,), 0.0,
                      lambda y: abs(y.mean()) < 0.01 and abs(y.std() - 0.2) < 0.01),
    "AlphaDropout": (lambda: L.AlphaDropout(0.2), (6,), 1.0,
                     lambda y: np.allclose(np.sort(np.unique(y.round(5))),
                                           np.round([_A * _ALPHA_P + _B, _A + _B], 5))
                     and 0.18 < np.mean(np.isclose(y, _A * _ALPHA_P + _B)) < 0.22),
}


@pytest.mark.parametrize("name", sorted(TRAINING_CASES))
def test_training_mode_layers_keep_their_rate(name):
    """Converted to tf_keras, each dropout / noise layer draws in training as a Keras 3
    layer of its settings does (the rate, not 1 - rate; whole channels where spatial),
    on 3,000 samples, and is the identity in inference."""
    build, shape, value, check = TRAINING_CASES[name]
    inputs = keras3.Input(shape)
    model3 = keras3.Model(inputs, build()(inputs))
    tf_model = conversion.to_tf_keras(model3)
    x = np.full((3000, *shape), value, "float32")
    assert np.array_equal(tf_model(x), x)
    assert check(np.asarray(tf_model(x, training=True)))
    assert check(np.asarray(model3(x, training=True)))  # the Keras 3 layer itself agrees


def test_batch_normalization_updates_its_moving_statistics_in_training():
    """One training-mode call of the Keras 3 BatchNormalization and of its tf_keras
    conversion: batch-normalized outputs and moving mean / variance moved by the
    layer's ``momentum``, as NumPy computes them. (tf_keras' fused kernel moves the
    variance towards the unbiased batch variance, n / (n - 1) times Keras 3's biased
    one: 128 / 127 here, 1 + 3e-5 for a batch of 32 32x32 maps.)"""
    inputs = keras3.Input((4, 4, 3))
    model3 = _randomize(keras3.Model(inputs, L.BatchNormalization(
        momentum=0.9, epsilon=1e-2, name="bn")(inputs)))
    tf_model = conversion.to_tf_keras(model3)
    gamma, beta, mean, var = model3.get_layer("bn").get_weights()
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(8, 4, 4, 3)).astype("float32")
    batch_mean, batch_var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    expected = (x - batch_mean) / np.sqrt(batch_var + 1e-2) * gamma + beta
    for model, bessel in ((model3, 1.0), (tf_model, 128 / 127)):
        np.testing.assert_allclose(np.asarray(model(x, training=True)), expected,
                                   rtol=1e-4, atol=1e-4)
        _, _, moved_mean, moved_var = model.get_layer("bn").get_weights()
        np.testing.assert_allclose(moved_mean, 0.9 * mean + 0.1 * batch_mean, rtol=1e-5)
        np.testing.assert_allclose(moved_var, 0.9 * var + 0.1 * bessel * batch_var, rtol=1e-5)


def test_unsupported_layers_give_one_line_naming_them():
    class Scale(L.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras3.Input((4,))
    custom = keras3.Model(inputs, Scale(name="my_scale")(L.Dense(3)(inputs)))
    with pytest.raises(ValueError) as err:
        conversion.to_tf_keras(custom)
    message = str(err.value)
    assert "\n" not in message
    assert "layer 'my_scale' (" in message and ".Scale) has no tf_keras counterpart" in message
    assert "Conv2D" in message and "keras3.register" in message
    with pytest.raises(ValueError, match=r"layer 'my_scale' .*Scale\) has no tf_keras"):
        count(custom)  # the same error through a public door
    ops_model = keras3.Model(inputs, keras3.ops.add(inputs, 1.0))
    with pytest.raises(ValueError, match=r"\(keras.src.ops.numpy.Add\) has no tf_keras"):
        conversion.to_tf_keras(ops_model)
    hard = keras3.Model(inputs, L.Dense(3, activation="hard_sigmoid", name="hs")(inputs))
    with pytest.raises(ValueError, match=r"'hs' \(Dense\): activation 'hard_sigmoid' is not"):
        conversion.to_tf_keras(hard)
    lora = keras3.Model(inputs, L.Dense(3, lora_rank=2, name="lora")(inputs))
    with pytest.raises(ValueError, match=r"'lora' \(Dense\): \{'lora_rank': 2.*cannot be"):
        conversion.to_tf_keras(lora)

    class Net(keras3.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="subclassed Keras 3 model"):
        conversion.to_tf_keras(Net())
    with pytest.raises(ValueError, match="not built"):
        conversion.to_tf_keras(keras3.Sequential([L.Dense(2)]))


def test_register_adds_a_pair_and_checks_classes():
    class Twice3(L.Layer):
        def call(self, x):
            return 2.0 * x

    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras3.Input((4,))
    model3 = keras3.Model(inputs, Twice3(name="twice")(inputs))
    with pytest.raises(TypeError, match="not a tf_keras Layer"):
        conversion.register(Twice3, Twice3)
    assert conversion.register(Twice3, Twice) is None
    try:
        tf_model = conversion.to_tf_keras(model3)
        assert type(tf_model.get_layer("twice")) is Twice
        assert type(conversion.to_keras3(tf_model).get_layer("twice")) is Twice3
    finally:
        del conversion.LAYERS["Twice"]


def test_public_api_takes_a_keras3_model(tmp_path, capsys):
    with keras3_zoo():
        model3 = zoo.digits_vgg((16, 16, 3))
    tf_model = zoo.digits_vgg((16, 16, 3))
    tf_model.set_weights(model3.get_weights())
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")

    assert count(model3).to_dict() == count(tf_model).to_dict()
    assert analyze(model3).prunable_layers == analyze(tf_model).prunable_layers
    assert "Keras 3 model converted to tf_keras" in capsys.readouterr().err
    masks = masks_lib.magnitude_masks(model3, {"block2_1_conv": schemes.Filter(0.5)})
    masked3 = apply_masks(model3, masks)
    assert isinstance(masked3, keras3.Model)
    assert _max_diff(masked3(x), apply_masks(tf_model, masks)(x)) <= ATOL
    wrapped = prune_structured(model3, masks)
    assert isinstance(wrapped, keras.Model) and [
        la.layer.name for la in wrapped.layers
        if isinstance(la, StructuredPruneLowMagnitude)] == ["block2_1_conv"]

    from tfautocompress.callbacks.admm import ADMM
    from tfautocompress.tflite_tools import benchmark, export

    with pytest.raises(TypeError, match=r"Keras 3 model.*keras3.to_tf_keras\(model\)"):
        ADMM({"block2_1_conv": schemes.Filter(0.5)}).set_model(model3)
    info = export.export(model3, str(tmp_path / "m.tflite"))
    assert info["weights_sha256"] == export.weights_sha256(tf_model)
    assert _max_diff(benchmark.run_tflite(info["path"], [x])[0], model3(x)) <= 1e-4


# ------------------------------------------- zoo nets and keras.applications ---
def _zoo_models():
    with keras3_zoo():
        return {"digits_vgg": _randomize(zoo.digits_vgg((32, 32, 3)), only="BatchNormalization"),
                "resnet20_cifar": _randomize(zoo.resnet20_cifar((32, 32, 3)),
                                             only="BatchNormalization")}


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory):
    """Per model: Keras 3 -> tf_keras and compact -> Keras 3 differences; the Keras 3
    compact model saved (with an input and its expected output) for a fresh process."""
    folder = tmp_path_factory.mktemp("keras3")
    models = _zoo_models()
    models.update({name: _randomize(getattr(keras3.applications, name)(
        weights=None, input_shape=(64, 64, 3)), only="BatchNormalization")
        for name in APPLICATIONS})
    figures = {}
    for name, model3 in models.items():
        x = np.random.default_rng(0).uniform(size=(2, *model3.input_shape[1:])).astype("float32")
        tf_model = conversion.to_tf_keras(model3)
        policy = masks_lib.uniform_schemes(tf_model, schemes.Combined(0.5, 0.25))
        masks = masks_lib.magnitude_masks(tf_model, policy)
        if name in APPLICATIONS:  # the door is tested on the zoo nets; here only the result
            small = compact(tf_model, masks)
            small3 = conversion.to_keras3(small)
        else:
            small3, small = compact(model3, masks), compact(tf_model, masks)
        expected = np.asarray(small3(x))
        small3.save(folder / f"{name}.keras")
        np.savez(folder / f"{name}.npz", x=x, y=expected)
        figures[name] = {
            "to_tf_keras": _max_diff(model3(x), tf_model(x)),
            "compact_to_keras3": _max_diff(expected, small(x)),
            "compact_params": int(small3.count_params()),
            "dense_params": int(model3.count_params()),
            "is_keras3": isinstance(small3, keras3.Model)}
    return folder, figures


@pytest.mark.parametrize("name", ["digits_vgg", "resnet20_cifar", *APPLICATIONS])
def test_round_trip_outputs_match(round_trips, name):
    figures = round_trips[1][name]
    print(name, json.dumps(figures))
    assert figures["is_keras3"]
    assert figures["to_tf_keras"] <= ATOL
    assert figures["compact_to_keras3"] <= ATOL
    assert figures["compact_params"] < figures["dense_params"]


def test_keras3_results_load_in_a_fresh_process(round_trips):
    folder, figures = round_trips
    code = (
        "import glob, json, os, sys\n"
        "import keras, numpy as np\n"
        "out = {}\n"
        "for path in sorted(glob.glob(os.path.join(sys.argv[1], '*.keras'))):\n"
        "    model = keras.models.load_model(path)\n"
        "    data = np.load(path[:-6] + '.npz')\n"
        "    out[os.path.basename(path)[:-6]] = float(np.max(np.abs(\n"
        "        np.asarray(model(data['x'])) - data['y'])))\n"
        "print(json.dumps(out))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    diffs = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(diffs))
    assert sorted(diffs) == sorted(figures)
    assert all(d <= ATOL for d in diffs.values()), diffs


# ------------------------------------------------------------ console script ---
def test_compress_command_on_a_keras3_file_matches_the_tf_keras_run(tmp_path):
    """The same digits_vgg weights saved by Keras 3 and by tf_keras: the same figures,
    and the Keras 3 run's compact.keras is a Keras 3 model with the same outputs."""
    from tfautocompress import artifacts

    tf_model = zoo.digits_vgg((16, 16, 3))  # 16x16 digits: a quarter of the default's MACs
    with keras3_zoo():
        model3 = zoo.digits_vgg((16, 16, 3))
    model3.set_weights(tf_model.get_weights())
    model3.save(tmp_path / "mine.keras")
    artifacts.save_model(tf_model, tmp_path / "theirs.keras")
    tiny = ["--rounds=1", "--search_trials=2", "--admm_epochs=1", "--retrain_epochs=1",
            "--purification_trials=0", "--steps_per_epoch=2", "--export_tflite",
            "--max_accuracy_drop=100", "--columns=keep"]  # no latency race between the runs
    code = "import sys; from tfautocompress.app.compress_cli import main; sys.exit(main())"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               TFAUTOCOMPRESS_CACHE_DIR=str(tmp_path / "cache"))
    runs = {name: subprocess.Popen(
        [sys.executable, "-c", code, f"--model={tmp_path / name}.keras",
         f"--output_dir={tmp_path / name}", *tiny], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env) for name in ("mine", "theirs")}
    errors = {}
    for name, run in runs.items():  # both at once: the two runs are independent processes
        errors[name] = run.communicate(timeout=300)[1]
        assert run.returncode == 0, errors[name][-3000:]
    assert "mine.keras' 'digits_vgg': Keras 3 model converted to tf_keras" in errors["mine"]
    mine = artifacts.read_json(tmp_path / "mine" / "report.json")
    theirs = artifacts.read_json(tmp_path / "theirs" / "report.json")
    keys = ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio",
            "params_ratio", "macs_ratio", "compact_params")
    for step in ("baseline", "final"):
        assert {k: mine[step].get(k) for k in keys} == {k: theirs[step].get(k) for k in keys}
    assert mine["final"]["keras3_max_abs_diff"] <= ATOL
    final = tmp_path / "mine" / "final"
    for name in ("compact.keras", "compact_fp32.tflite", "compact_fp16.tflite"):
        assert (final / name).exists(), name
    assert artifacts.saved_by_keras3(final / "compact.keras")
    assert not artifacts.saved_by_keras3(tmp_path / "theirs" / "final" / "compact.keras")
    small3 = keras3.models.load_model(final / "compact.keras")
    small = keras.models.load_model(tmp_path / "theirs" / "final" / "compact.keras")
    x = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype("float32")
    assert isinstance(small3, keras3.Model) and _max_diff(small3(x), small(x)) <= ATOL


def test_admm_command_writes_a_keras3_model_for_a_keras3_file(tmp_path):
    with keras3_zoo():
        zoo.digits_vgg().save(tmp_path / "mine.keras")
    code = "import sys; from tfautocompress.app.admm_cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", code, f"--model={tmp_path / 'mine.keras'}",
         f"--output_dir={tmp_path / 'out'}", "--admm_epochs=1", "--retrain_epochs=1",
         "--filter_fraction=0.5", "--column_fraction=0"], capture_output=True, text=True,
        timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    pruned = keras3.models.load_model(tmp_path / "out" / "digits_vgg.keras")
    kernel = pruned.get_layer("block2_1_conv").get_weights()[0]
    assert isinstance(pruned, keras3.Model)
    assert np.mean(np.all(kernel == 0, axis=(0, 1, 2))) == 0.5  # half the filters are zero
