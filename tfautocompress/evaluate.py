"""Evaluation: top-1 accuracy (and the smooth true-class probability) and
BatchNormalization recalibration, one home.

``accuracy(model, data)`` runs one compiled forward pass per model (cached, so
repeated calls do not retrace) over a batched ``(x, y)`` data set or a tuple of
arrays. ``fit_validation(data, every)``: the ``model.fit`` arguments that validate
on ``data`` every ``every`` epochs (0: not during fit).

``BNCalibration(model, data, batches)`` re-estimates every BatchNormalization's
moving mean and variance after pruning (adaptive BN recalibration, as in
EagleEye): the model runs in training mode up to the BN inputs on the first
``batches`` equal-size batches of ``data`` (cached once), the per-channel batch
mean and (biased) variance are averaged over those batches (a plain mean, not
momentum) and assigned; no weight is updated. Layers inside pruning wrappers are
found through the wrapper. Calling the object recalibrates; it is compiled once,
so the search's fast evaluation can call it every trial. Right after a hard prune
the moving statistics are the dense model's, and a conv-BN net scores near chance
until they follow the pruned weights.
"""
import functools
import weakref

import numpy as np
import tensorflow as tf

from tfautocompress._keras import keras

__all__ = ["accuracy", "true_class_probability", "BNCalibration", "recalibrate_bn"]

_PREDICT = weakref.WeakKeyDictionary()


def _predict_fn(model):
    """One ``tf.function`` forward pass (inference mode) per model."""
    predict = _PREDICT.get(model)
    if predict is None:
        # One trace per model: any batch size, the model's input shape and dtype.
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], model.inputs[0].dtype)
        predict = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        _PREDICT[model] = predict
    return predict


def _batches(data, batch_size):
    """``(x, y)`` batches of a batched data set or of a tuple of arrays/tensors."""
    if isinstance(data, tf.data.Dataset):
        return iter(data)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        return ((x[i:i + batch_size], y[i:i + batch_size])
                for i in range(0, int(len(y)), batch_size))
    raise TypeError("data must be a batched tf.data.Dataset of (x, y) or a tuple (x, y) of "
                    f"arrays, got {type(data).__name__}.")


def accuracy(model, data, batch_size=256):
    """Top-1 accuracy of ``model`` on ``data`` (see module doc), as a Python float."""
    return _mean(model, data, batch_size, "accuracy",
                 lambda out, labels: np.argmax(out, axis=-1) == labels)


def true_class_probability(model, data, batch_size=256):
    """Mean probability ``model`` gives the true class on ``data`` (outputs that are
    not probabilities are put through a softmax): the top-1 accuracy expected when
    predicting by sampling, a smooth score where top-1 saturates (one image of a
    small validation set moves top-1 by a whole step)."""
    return _mean(model, data, batch_size, "true_class_probability",
                 lambda out, labels: _probabilities(out)[np.arange(labels.size), labels])


def _mean(model, data, batch_size, what, per_example):
    """The mean of ``per_example(outputs, labels)`` over ``data``, as a Python float."""
    value, total = 0.0, 0
    predict = _predict_fn(model)
    for x, y in _batches(data, batch_size):
        labels = np.asarray(y).reshape(-1).astype(np.int64)
        value += float(np.sum(per_example(np.asarray(predict(x), np.float64), labels)))
        total += labels.size
    if not total:
        raise ValueError(f"{what}: the data set is empty; give at least one (x, y) batch.")
    return value / total


def _probabilities(outputs):
    if np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3):
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def fit_validation(data, every=1):
    """``model.fit`` keyword arguments that evaluate ``data`` after every ``every``-th
    epoch (Keras' ``validation_freq``): per-epoch ``val_*`` logs for the console and
    TensorBoard. 0 or ``data`` None: no validation during fit (the callers measure
    ``accuracy`` once a phase ends, which is all their decisions use); on a small
    training subset the per-epoch pass over a large validation set costs as much as
    the training itself."""
    if int(every) < 0:
        raise ValueError(f"validation_freq={every} must be >= 0 (0: no validation during "
                         "fit).")
    if data is None or not every:
        return {}
    return {"validation_data": data, "validation_freq": int(every)}


def batch_norm_layers(model):
    """``model``'s BatchNormalization layers (pruning wrappers of them too)."""
    return [layer for layer in model.layers
            if isinstance(getattr(layer, "layer", layer), keras.layers.BatchNormalization)]


class BNCalibration:
    """Recalibrates ``model``'s BatchNormalization statistics (see module doc).

    ``data``: training data — a batched ``tf.data.Dataset`` of ``(x, y)`` (or of
    ``x``), a tuple of arrays ``(x, y)`` or an array ``x`` (cut into batches of
    ``batch_size``). Batches of another size than the first are dropped so that one
    graph serves every call. ``variables``: the moving statistics it assigns.
    """

    def __init__(self, model, data, batches, batch_size=256):
        if int(batches) < 1:
            raise ValueError(f"calibration batches must be >= 1, got {batches!r}.")
        nodes = batch_norm_layers(model)
        if not nodes:
            raise ValueError(f"model {model.name!r} has no BatchNormalization layer to "
                             "recalibrate; drop the calibration data.")
        self._bns = [getattr(node, "layer", node) for node in nodes]
        self._xs = _stacked_batches(data, int(batches), int(batch_size))
        self._probe = keras.Model(model.inputs, [node.input for node in nodes])
        self._axes = [_reduce_axes(bn, len(node.input.shape))
                      for bn, node in zip(self._bns, nodes)]
        self.variables = [v for bn in self._bns for v in (bn.moving_mean, bn.moving_variance)]
        # One graph per calibration (per model), traced once. TensorFlow counts traces
        # per code object (``_assign``'s, or a lambda's, is shared by every instance)
        # and would warn of "excessive retracing" from the 6th calibration on; a
        # partial has no code object, so each calibration is counted on its own.
        self._calibrate = tf.function(functools.partial(BNCalibration._assign, self))

    @property
    def batches(self):
        return int(self._xs.shape[0])

    def __call__(self):
        self._calibrate()
        return self.batches

    def _assign(self):
        bns = self._bns
        sums = [tf.zeros_like(bn.moving_mean) for bn in bns] * 2
        for i in tf.range(tf.shape(self._xs)[0]):
            inputs = self._probe(self._xs[i], training=True)
            inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            stats = [tf.nn.moments(tf.cast(x, tf.float32), a, keepdims=False)
                     for x, a in zip(inputs, self._axes)]
            sums = ([s + tf.cast(m, s.dtype) for s, (m, _) in zip(sums[:len(bns)], stats)]
                    + [s + tf.cast(v, s.dtype) for s, (_, v) in zip(sums[len(bns):], stats)])
        count = tf.cast(tf.shape(self._xs)[0], sums[0].dtype)
        for bn, mean, var in zip(bns, sums[:len(bns)], sums[len(bns):]):
            bn.moving_mean.assign(tf.reshape(mean / count, tf.shape(bn.moving_mean)))
            bn.moving_variance.assign(tf.reshape(var / count, tf.shape(bn.moving_variance)))


def recalibrate_bn(model, data, batches):
    """``BNCalibration(model, data, batches)()``; returns how many batches were used
    (0 when ``batches`` < 1 or the model has no BatchNormalization)."""
    if batches < 1 or not batch_norm_layers(model):
        return 0
    return BNCalibration(model, data, batches)()


def _reduce_axes(bn, rank):
    channel_axes = [a % rank for a in (bn.axis if isinstance(bn.axis, (list, tuple))
                                       else [bn.axis])]
    return [a for a in range(rank) if a not in channel_axes]


def _stacked_batches(data, count, batch_size):
    """Up to ``count`` equal-size batches of inputs, stacked into one tensor."""
    if isinstance(data, tf.data.Dataset):
        batches = []
        for element in data.take(count):
            x = element[0] if isinstance(element, (tuple, list)) else element
            batches.append(np.asarray(x))
    else:
        x = np.asarray(data[0] if isinstance(data, (tuple, list)) else data)
        batches = [x[i:i + batch_size] for i in range(0, min(len(x), count * batch_size),
                                                        batch_size)]
    batches = [b for b in batches if b.shape == batches[0].shape] if batches else []
    if not batches:
        raise ValueError("calibration data is empty; give at least one batch of inputs.")
    return tf.constant(np.stack(batches))
