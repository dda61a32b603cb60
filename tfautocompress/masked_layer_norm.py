"""LayerNormalization over the live channels: what a masked model computes where the
compact model's LayerNormalization has lost the dead channels.

A LayerNormalization over channels (ConvNeXt, transformers) normalises with the
mean and variance of all its input channels, so the zeros of pruned channels would
change every other channel's output, and a masked model would not compute what its
compact model computes. ``MaskedLayerNormalization`` holds a 0/1 ``channel_mask``
(a non-trainable weight, so checkpoints and compaction carry it) and normalises
over the channels it keeps; its dead channels are zero. With a mask of ones it is
a LayerNormalization. ``compact.apply_masks`` and ``wrappers.prune_structured`` put
it in place of a LayerNormalization whose channels are pruned; compaction turns it
back into a LayerNormalization of the kept channels.
"""
import numpy as np
import tensorflow as tf

from tfautocompress._keras import keras

__all__ = ["MaskedLayerNormalization", "masked_copy", "masked_weights"]


@keras.utils.register_keras_serializable(package="tfautocompress")
class MaskedLayerNormalization(keras.layers.LayerNormalization):
    """``LayerNormalization`` over the last axis, normalising over ``channel_mask``'s
    channels only (see module doc)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        axes = [a % len(input_shape) for a in self.axis]
        if axes != [len(input_shape) - 1]:
            raise ValueError(f"MaskedLayerNormalization {self.name!r}: axis={self.axis}; "
                             "only the last axis is supported.")
        self.channel_mask = self.add_weight(
            name="channel_mask", shape=(int(input_shape[-1]),), initializer="ones",
            trainable=False)

    def call(self, inputs):
        mask = tf.cast(self.channel_mask, inputs.dtype)
        count = tf.maximum(tf.reduce_sum(mask), 1.0)
        mean = tf.reduce_sum(inputs * mask, axis=-1, keepdims=True) / count
        centred = (inputs - mean) * mask
        variance = tf.reduce_sum(tf.square(centred), axis=-1, keepdims=True) / count
        outputs = centred * tf.math.rsqrt(variance + self.epsilon)
        if self.scale:
            outputs = outputs * tf.cast(self.gamma, inputs.dtype)
        if self.center:
            outputs = outputs + tf.cast(self.beta, inputs.dtype)
        return outputs * mask


def masked_copy(layer):
    """An unbuilt ``MaskedLayerNormalization`` with ``layer``'s config (a
    LayerNormalization or a MaskedLayerNormalization); give it ``masked_weights``."""
    return MaskedLayerNormalization.from_config(layer.get_config())


def masked_weights(layer, weights, mask):
    """``layer``'s γ/β in ``weights`` (a masked layer's mask dropped) followed by the
    0/1 channel ``mask``: the weights of its ``masked_copy``."""
    return list(weights[:int(layer.scale) + int(layer.center)]) + [np.asarray(mask, np.float32)]
