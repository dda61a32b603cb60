import os
import stat

import pytest

from tfautocompress import artifacts


def test_write_json_round_trip_and_usual_mode(tmp_path):
    path = tmp_path / "sub" / "a.json"
    artifacts.write_json(str(path), {"b": 1, "a": [1.5]})
    assert artifacts.read_json(str(path)) == {"a": [1.5], "b": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert os.listdir(tmp_path / "sub") == ["a.json"]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    artifacts.write_json(str(path), {"v": 1})
    with pytest.raises(TypeError):
        artifacts.write_json(str(path), {"v": object()})  # not JSON-serialisable
    assert artifacts.read_json(str(path)) == {"v": 1}
    assert os.listdir(tmp_path) == ["a.json"]


def test_load_model_converts_a_keras3_file_and_save_model_writes_one(tmp_path, capsys):
    import keras as keras3
    import numpy as np

    from tfautocompress._keras import keras

    model3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2, name="d")],
                               name="k3")
    path = str(tmp_path / "k3.keras")
    model3.save(path)
    assert artifacts.saved_by_keras3(path)
    model = artifacts.load_model(path)
    assert isinstance(model, keras.Model) and model.get_layer("d").units == 2
    x = np.ones((1, 4), "float32")
    np.testing.assert_allclose(model(x), model3(x), atol=1e-6)
    assert capsys.readouterr().err.count(f"--model {path!r} 'k3': Keras 3 model converted") == 1

    saved = artifacts.save_model(model, tmp_path / "back.keras", keras3=True)
    assert isinstance(saved, keras3.Model) and artifacts.saved_by_keras3(tmp_path / "back.keras")
    np.testing.assert_allclose(keras3.models.load_model(tmp_path / "back.keras")(x), model3(x),
                               atol=1e-6)
    assert artifacts.save_model(model, tmp_path / "tf.keras") is model
    assert not artifacts.saved_by_keras3(tmp_path / "tf.keras")


def test_a_keras3_file_that_cannot_load_or_convert_is_named(tmp_path):
    import keras as keras3

    @keras3.saving.register_keras_serializable("test_artifacts")
    class Twice(keras3.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras3.Input((4,))
    path = str(tmp_path / "custom.keras")
    keras3.Model(inputs, Twice(name="twice")(inputs)).save(path)
    with pytest.raises(ValueError, match=r"--model '.*custom.keras': layer 'twice' \(.*Twice\) "
                                         "has no tf_keras counterpart"):
        artifacts.load_model(path)
    del keras3.saving.get_custom_objects()["test_artifacts>Twice"]  # now Keras 3 cannot load it
    with pytest.raises(ValueError, match=r"custom.keras' could not be loaded .*again with Keras 3"):
        artifacts.load_model(path)
