import numpy as np
import pytest
import tensorflow as tf

from tfautocompress import zoo
from tfautocompress._keras import check_model, keras

# count_params() at each builder's default input shape and classes (BN statistics included).
EXPECTED_PARAMS = {
    "digits_vgg": 551_914,
    "lenet5": 61_706,
    "vgg16_cifar": 14_732_490,
    "resnet18_cifar": 11_183_562,
    "resnet20_cifar": 274_042,  # He et al. 2016: 0.27 M
    "resnet56_cifar": 860_026,
    "mobilenetv2_cifar": 2_270_794,
    "resnet50_v1_5": 25_610_152,
    "vgg16": 138_357_544,
    "resnet50": 25_636_712,
    "mobilenetv2": 3_538_984,
    "mobilenetv3small": 2_554_968,  # Howard et al. 2019, Table 3: 2.5 M
    "efficientnetb0": 5_330_571,  # Tan & Le 2019, Table 1: 5.3 M
}
SMALL_INPUT = {"lenet5": (32, 32, 1)}


def test_every_model_has_an_expected_count():
    assert set(EXPECTED_PARAMS) == set(zoo.MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_builds_with_expected_params(name, zoo_model):
    model = zoo_model(name)
    check_model(model)
    assert model.count_params() == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", ["digits_vgg", "resnet18_cifar", "mobilenetv2_cifar"])
def test_layer_names_are_stable_across_builds(name, zoo_model):
    names = [layer.name for layer in zoo_model(name).layers]
    keras.backend.clear_session()
    assert [layer.name for layer in zoo.build(name).layers] == names


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_trains_one_step_on_small_inputs(name):
    shape = SMALL_INPUT.get(name, (32, 32, 3))
    model = zoo.build(name, input_shape=shape, num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((2,) + shape, dtype=np.float32)
    before = [w.numpy() for w in model.trainable_weights[:1]]
    history = model.fit(x, np.array([1, 2]), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before[0], model.trainable_weights[0].numpy())
    assert model.output_shape == (None, 10)


def test_resnet20_builds_for_fashion_mnist():
    """3 stages x 3 basic blocks, 16/32/64 filters, 1x1 projection shortcuts
    (as resnet56_cifar); 0.27 M params, a 1-channel stem at 28x28x1."""
    model = zoo.build("resnet20_cifar", input_shape=(28, 28, 1), num_classes=10)
    check_model(model)
    assert model.count_params() == 273_754  # 274,042 at 32x32x3 less 16*9*2 stem weights
    assert model.output_shape == (None, 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 1 + 2 * 9 + 2  # stem, 9 blocks of two, 2 shortcut projections
    assert sorted({layer.filters for layer in convs}) == [16, 32, 64]


def test_unknown_model_lists_zoo():
    with pytest.raises(ValueError, match=r"unknown model 'vgg19'.*digits_vgg.*resnet56_cifar"):
        zoo.build("vgg19")


def test_pretrained_weights_need_imagenet_classes():
    with pytest.raises(ValueError, match="num_classes=1000"):
        zoo.build("vgg16", num_classes=10, weights="imagenet")
