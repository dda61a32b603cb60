"""evaluate.accuracy against NumPy: argmax of Keras' own predict compared with the labels."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from tfautocompress import evaluate
from tfautocompress._keras import keras


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="c")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="out")(x))


def test_accuracy_is_the_share_of_argmax_predictions_equal_to_the_labels():
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 5, 5, 2)).astype(np.float32)
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    # 30 labels equal to the prediction, 20 (spread over the batches) off by one
    # class: 30 / 50 by construction.
    y = np.where(rng.permutation(50) < 30, predicted, (predicted + 1) % 4).astype(np.int64)
    reference = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    assert reference == pytest.approx(0.6)
    # tuple of arrays, batches of 16 (the last one partial), and a batched data set
    # with (n, 1) labels: the same count.
    assert evaluate.accuracy(model, (x, y), batch_size=16) == pytest.approx(reference, abs=1e-12)
    dataset = tf.data.Dataset.from_tensor_slices((x, y.reshape(-1, 1).astype(np.int32))).batch(7)
    assert evaluate.accuracy(model, dataset) == pytest.approx(reference, abs=1e-12)
    # other labels, other share: every label wrong, then every label right.
    assert evaluate.accuracy(model, (x, (predicted + 1) % 4)) == 0.0
    assert evaluate.accuracy(model, (x, predicted)) == 1.0
    with pytest.raises(ValueError, match="empty"):
        evaluate.accuracy(model, (x[:0], y[:0]))
