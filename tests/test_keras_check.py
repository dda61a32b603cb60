import pytest
import tensorflow as tf

from tfautocompress._keras import as_tf_keras, check_model, keras


def _functional():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_accepts_functional_and_sequential():
    model = _functional()
    assert check_model(model) is model
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert check_model(seq) is seq


def test_check_model_refuses_keras3_and_as_tf_keras_converts_it(capsys):
    import keras as keras3

    model3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)], name="k3")
    with pytest.raises(TypeError, match=r"Keras 3 model.*keras3.to_tf_keras\(model\)"):
        check_model(model3)
    converted = as_tf_keras(model3, what="the net")
    assert isinstance(converted, keras.Model) and check_model(converted) is converted
    assert capsys.readouterr().err.count("Keras 3 model converted to tf_keras") == 1
    assert as_tf_keras(converted) is converted  # a tf_keras model passes as it is


def test_rejects_subclassed_model_naming_it():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="my_net")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(tf.ones((1, 4)))
    with pytest.raises(TypeError, match=r"'my_net' is a subclassed.*functional model"):
        check_model(net)


def test_rejects_unbuilt_sequential():
    with pytest.raises(ValueError, match="not built"):
        check_model(keras.Sequential([keras.layers.Dense(2)]))


def test_rejects_other_objects():
    with pytest.raises(TypeError, match="must be a tf_keras model"):
        check_model("model.keras")
