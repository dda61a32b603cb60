import pytest
import tensorflow as tf

from tfautocompress._keras import check_model, keras


def _functional():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_accepts_functional_and_sequential():
    model = _functional()
    assert check_model(model) is model
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert check_model(seq) is seq


def test_rejects_keras3_model_with_how_to_build_it():
    import keras as keras3  # the only Keras 3 import: a model we must refuse

    model3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    with pytest.raises(TypeError, match=r"Keras 3 model.*import tf_keras as keras"):
        check_model(model3)


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
