"""Sequential models go everywhere a functional model goes: the same figures as the
functional twin with the same weights, through the whole pipeline."""
import dataclasses
import json

import numpy as np
import pytest

from tfautocompress import cost, data, graph, space as space_lib, zoo
from tfautocompress._keras import keras
from tfautocompress.baseline import compile_for_training
from tfautocompress.app.pipeline import AutoCompress, Config

TINY = Config(max_rounds=1, admm_epochs=1, retrain_epochs=1, search_trials=2,
              purification_trials=2, max_accuracy_drop=100.0, export_tflite=False,
              columns="keep", seed=3)


def _twins(model):
    """The same layers (configs, names, weights) as a functional model and as a
    ``keras.Sequential``, each built after the same seed (random layers draw from
    generators seeded when they are made)."""
    def copies():
        keras.utils.set_random_seed(7)
        return [type(layer).from_config(layer.get_config()) for layer in model.layers[1:]]

    inputs = x = keras.Input(model.input_shape[1:], name="input")
    for layer in copies():
        x = layer(x)
    functional = keras.Model(inputs, x, name=model.name)
    sequential = keras.Sequential([keras.Input(model.input_shape[1:], name="input")]
                                  + copies(), name=model.name)
    for twin in (functional, sequential):
        twin.set_weights(model.get_weights())
    return functional, sequential


def _splits():
    """Digits, loaded anew: a data set's shuffles go on where the last run left them."""
    splits = data.load("digits", batch_size=64)
    return dataclasses.replace(splits, train=splits.train.take(8))


@pytest.fixture(scope="module")
def twins():
    keras.utils.set_random_seed(0)
    splits = _splits()
    model = zoo.build("digits_vgg", splits.input_shape, splits.num_classes)
    compile_for_training(model, 2e-3)
    model.fit(splits.train, epochs=1, verbose=0)
    return _twins(model)


def test_the_sequential_twin_has_the_functional_graph(twins):
    functional, sequential = twins
    assert isinstance(sequential, keras.Sequential)
    f, s = graph.analyze(functional), graph.analyze(sequential)
    assert f.prunable_layers == s.prunable_layers and len(f.prunable_layers) == 7
    assert (space_lib.PolicySpace.from_model(functional).get_config()
            == space_lib.PolicySpace.from_model(sequential).get_config())


def test_a_sequential_model_compresses_as_its_functional_twin(twins, tmp_path):
    functional, sequential = twins
    reports = []
    for name, model in (("functional", functional), ("sequential", sequential)):
        keras.utils.set_random_seed(TINY.seed)
        AutoCompress(model, _splits(), str(tmp_path / name), TINY, verbose=0).run()
        report = json.loads((tmp_path / name / "report.json").read_text())
        reports.append(report)
    keys = ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio")
    for entry in ("baseline", "final"):
        assert ({k: reports[0][entry][k] for k in keys}
                == {k: reports[1][entry][k] for k in keys}), entry
    assert reports[1]["final"]["conv_params_ratio"] > 1.5
    assert reports[0]["rounds"][0]["layers"] == reports[1]["rounds"][0]["layers"]


def test_the_issue_s_plain_sequential_cnn_gets_a_space_and_masks():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3),
                              keras.layers.Conv2D(8, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    space = space_lib.PolicySpace.from_model(model)
    assert len(space.names) == 2
    kept = cost.count(model).conv_params
    assert kept == 8 * 9 + 8 + 8 * 8 * 9 + 8 == 664
