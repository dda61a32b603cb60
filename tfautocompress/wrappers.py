"""Structured pruning wrappers on TF-MOT: masked retraining and scheme projection.

``StructuredPruneLowMagnitude`` subclasses TF-MOT's ``PruneLowMagnitude``, so
``tfmot.sparsity.keras.strip_pruning`` removes it and ``UpdatePruningStep`` drives
it. The wrapped layer computes with ``weight * mask``: masked weights get exactly
zero gradients, and the stored weights are projected (``weight := weight * mask``)
whenever the mask is set, so they stay exactly zero through ``model.fit``.

A kernel layer's mask has its kernel's shape (for SeparableConv2D the pointwise
kernel); the bias of a filter whose kernel mask is all zero is masked too, so a
pruned filter's output channel is exactly 0. A BatchNormalization layer's mask is
1-D ``(channels,)`` and masks gamma and beta, so the channel is 0 after BN too.

Loading a saved model needs only ``import tfautocompress.wrappers`` (the wrapper
is registered with Keras); :func:`custom_objects` is there for explicit scopes.
"""
import base64
import inspect

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.keras import utils as tfmot_utils
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from tfautocompress import layer_kinds, masked_layer_norm, schemes
from tfautocompress._keras import as_tf_keras, keras

__all__ = [
    "SchemeSchedule",
    "StructuredPruneLowMagnitude",
    "prune_structured",
    "custom_objects",
]


class SchemeSchedule(pruning_schedule.PruningSchedule):
    """When a scheme-mode wrapper re-projects: every ``frequency`` training steps
    from ``begin_step`` to ``end_step`` (-1: no end). Steps count from 1. How much
    is pruned comes from the scheme, so the sparsity returned is NaN (unused)."""

    def __init__(self, frequency=100, begin_step=1, end_step=-1):
        self._validate_step(begin_step, end_step, frequency, True)
        self.frequency, self.begin_step, self.end_step = frequency, begin_step, end_step

    def __call__(self, step):
        should_prune = self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        return should_prune, tf.constant(np.nan, tf.float32)

    def get_config(self):
        return {
            "class_name": type(self).__name__,
            "config": {
                "frequency": self.frequency,
                "begin_step": self.begin_step,
                "end_step": self.end_step,
            },
        }


_SCHEDULES = {
    cls.__name__: cls
    for cls in (SchemeSchedule, pruning_schedule.ConstantSparsity, pruning_schedule.PolynomialDecay)
}


def _supported():
    return layer_kinds.accepted("BatchNormalization")


def _layout(layer):
    """(``layer_kinds.KernelLayout`` or None for BN, attributes masked per output channel)."""
    layers = keras.layers
    if isinstance(layer, layers.BatchNormalization):
        # A dead channel reads zeros (its filter is masked), which BN normalises to
        # zero in training; masking its gamma and beta (those the layer has) keeps
        # them at zero (InceptionV3's BN has no gamma: scale=False).
        return None, tuple(attr for attr, on in (("gamma", layer.scale), ("beta", layer.center))
                           if on)
    layout = layer_kinds.layout_of(layer)
    if layout is None or not layout.prunable:  # the kinds a scheme can prune
        raise TypeError(f"layer {getattr(layer, 'name', layer)!r} is a {type(layer).__name__}; "
                        f"structured pruning wraps {_supported()}.")
    return layout, ("bias",) if layer.use_bias else ()


def _is_layer_norm(layer):
    """A LayerNormalization: its mask (channels) makes it a ``MaskedLayerNormalization``
    that normalises over the live channels (no wrapper)."""
    return isinstance(layer, keras.layers.LayerNormalization)


def _is_prunable(layer):
    try:
        _layout(layer)
    except (TypeError, ValueError):
        return False
    return True


def _mask_shape(layer):
    """Shape a mask of ``layer`` must have (the layer must be built)."""
    if _is_layer_norm(layer):
        return (int(layer.get_input_shape_at(0)[-1]),)
    layout, channel_attrs = _layout(layer)
    return tuple((getattr(layer, layout.kernel_attr) if layout else layer.moving_mean).shape)


def _encode_mask(mask):
    bits = np.packbits(np.asarray(mask).ravel() != 0)
    return {"shape": list(mask.shape), "packbits": base64.b64encode(bits.tobytes()).decode("ascii")}


def _decode_mask(config):
    bits = np.frombuffer(base64.b64decode(config["packbits"]), np.uint8)
    size = int(np.prod(config["shape"]))
    return np.unpackbits(bits)[:size].astype(np.float32).reshape(config["shape"])


class _PruningOps:
    """What TF-MOT's callbacks call on ``wrapper.pruning_obj``."""

    def __init__(self, weight_mask_op):
        self.weight_mask_op = weight_mask_op


@keras.utils.register_keras_serializable(package="tfautocompress")
class StructuredPruneLowMagnitude(pruning_wrapper.PruneLowMagnitude):
    """Structured pruning of one layer: a fixed mask, or a mask that follows a scheme.

    Args:
      layer: a layer whose kernel a scheme prunes (``layer_kinds``: Conv, SeparableConv,
        DepthwiseConv, Dense) or a BatchNormalization layer.
      scheme: scheme mode (kernel layers only): at the steps ``pruning_schedule``
        says, the mask becomes ``scheme.mask(kernel)`` and the kernel is
        projected. Needs TF-MOT's ``UpdatePruningStep`` callback in ``fit``.
      mask: fixed mode (masked retraining): a 0/1 array of the kernel's shape, or
        ``(channels,)`` for BatchNormalization; it never changes.
      pruning_schedule: a TF-MOT ``PruningSchedule`` whose ``should_prune`` is used
        in scheme mode; default ``SchemeSchedule()``.

    ``get_config`` holds the fixed mask bit-packed (size/8 bytes, base64), so
    ``clone_model`` and ``from_config`` keep it.
    """

    def __init__(self, layer, scheme=None, mask=None, pruning_schedule=None, **kwargs):
        name = getattr(layer, "name", layer)
        self._kernel_layout, self._channel_attrs = _layout(layer)
        self._kernel_attr = self._kernel_layout and self._kernel_layout.kernel_attr
        if (scheme is None) == (mask is None):
            raise ValueError(
                f"StructuredPruneLowMagnitude of layer {name!r} takes exactly one of "
                "scheme= (a Scheme; the mask follows the weights) or mask= (a fixed "
                f"0/1 array); got scheme={scheme!r} and "
                f"mask={'an array' if mask is not None else None}."
            )
        if scheme is not None:
            if not isinstance(scheme, schemes.Scheme):
                raise TypeError(
                    f"scheme for layer {name!r} must be a tfautocompress.schemes.Scheme, "
                    f"got {scheme!r}."
                )
            if self._kernel_attr is None:
                raise ValueError(
                    f"layer {name!r} is a BatchNormalization: it takes a fixed 1-D "
                    f"mask= (channels,), not scheme={scheme!r}."
                )
        if mask is not None:
            mask = np.asarray(mask, np.float32)
            if not np.isin(mask, (0.0, 1.0)).all():
                raise ValueError(
                    f"mask for layer {name!r} must hold only 0 and 1, got values "
                    f"{np.unique(mask)[:5].tolist()}..."
                )
        self._scheme, self._fixed_mask = scheme, mask
        super().__init__(layer, pruning_schedule=pruning_schedule or SchemeSchedule(), **kwargs)
        self._passes_training = "training" in inspect.signature(self.layer.call).parameters

    def build(self, input_shape):
        # Skip PruneLowMagnitude.build: its masks cover TF-MOT's weight list.
        keras.layers.Wrapper.build(self, input_shape)
        shape = _mask_shape(self.layer)
        if self._fixed_mask is not None and self._fixed_mask.shape != shape:
            what = self._kernel_attr or "gamma/beta"
            raise ValueError(
                f"mask for layer {self.layer.name!r} has shape {self._fixed_mask.shape}, "
                f"but its {what} has shape {shape}; pass a mask of shape {shape}."
            )
        initial = self._fixed_mask if self._fixed_mask is not None else np.ones(shape, np.float32)
        self.mask = self.add_weight(
            "mask",
            shape=shape,
            initializer=lambda shape, dtype: tf.constant(initial, dtype),
            dtype=tf.float32,
            trainable=False,
        )
        self.pruning_step = self.add_weight(
            "pruning_step",
            shape=[],
            initializer=keras.initializers.Constant(-1),
            dtype=tf.int64,
            trainable=False,
        )
        self.pruning_obj = _PruningOps(self.weight_mask_op)
        self.weight_mask_op()

    @property
    def scheme(self):
        """The scheme in scheme mode, else None."""
        return self._scheme

    def _masked(self):
        """(attribute, variable, mask) for each masked weight of the inner layer."""
        pairs = []
        if self._kernel_attr is not None:
            pairs.append((self._kernel_attr, self.mask))
            if self._channel_attrs:  # a filter is alive if any of its kernel mask is
                pairs.append(("bias", layer_kinds.alive_filters(self.mask, self._kernel_layout)))
        else:
            pairs += [(attr, self.mask) for attr in self._channel_attrs]
        return [(attr, getattr(self.layer, attr), mask) for attr, mask in pairs]

    def weight_mask_op(self):
        """Project the stored weights: ``weight := weight * mask``."""
        return tf.group([var.assign(var * tf.cast(m, var.dtype)) for _, var, m in self._masked()])

    def _project_to_scheme(self):
        kernel = getattr(self.layer, self._kernel_attr)
        new_mask = tf.numpy_function(
            lambda w: self._scheme.mask(w, self._kernel_layout.kind), [kernel], tf.float32,
            stateful=False
        )
        with tf.control_dependencies([self.mask.assign(tf.ensure_shape(new_mask, self.mask.shape))]):
            return self.weight_mask_op()

    def _training_step(self):
        step = self.pruning_step.assign_add(1)
        if self._scheme is None:
            return tf.no_op()
        with tf.control_dependencies(
            [tf.debugging.assert_greater_equal(step, np.int64(1), message=self._PRUNE_CALLBACK_ERROR_MSG)]
        ):
            should_prune = self.pruning_schedule(step)[0]
        return tf.cond(should_prune, self._project_to_scheme, tf.no_op)

    def call(self, inputs, training=None, **kwargs):
        if training is None:
            training = keras.backend.learning_phase()
        tfmot_utils.smart_cond(training, self._training_step, tf.no_op)
        masked = self._masked()
        # Run the inner layer on masked weights: swap its attributes for the call
        # only (object.__setattr__ keeps Keras' weight tracking untouched).
        try:
            for attr, var, mask in masked:
                object.__setattr__(self.layer, attr, tf.cast(var * mask, self.layer.compute_dtype))
            if self._passes_training:
                kwargs["training"] = training
            return self.layer.call(inputs, **kwargs)
        finally:
            for attr, var, _ in masked:
                object.__setattr__(self.layer, attr, var)

    def get_config(self):
        # Skip PruneLowMagnitude.get_config: its block-sparsity keys do not apply.
        config = keras.layers.Wrapper.get_config(self)
        mask = None
        if self._fixed_mask is not None:
            mask = keras.backend.get_value(self.mask) if self.built else self._fixed_mask
        config.update(
            scheme=self._scheme.get_config() if self._scheme is not None else None,
            mask=_encode_mask(mask) if mask is not None else None,
            pruning_schedule=self.pruning_schedule.get_config(),
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if config.get("scheme") is not None:
            config["scheme"] = schemes.Scheme.from_config(config["scheme"])
        if config.get("mask") is not None:
            config["mask"] = _decode_mask(config["mask"])
        schedule = config.get("pruning_schedule")
        if schedule is not None:
            config["pruning_schedule"] = _SCHEDULES[schedule["class_name"]].from_config(
                schedule["config"]
            )
        return super(pruning_wrapper.PruneLowMagnitude, cls).from_config(config, custom_objects)


def custom_objects():
    """Custom objects for ``keras.models.load_model``/``custom_object_scope``: the
    wrapper, the lowered column-sparse convolution of compact models and the
    LayerNormalization over live channels of masked ones."""
    from tfautocompress.lowering import ColumnSparseConv2D

    return {"StructuredPruneLowMagnitude": StructuredPruneLowMagnitude,
            "ColumnSparseConv2D": ColumnSparseConv2D,
            "MaskedLayerNormalization": masked_layer_norm.MaskedLayerNormalization}


def prune_structured(model, masks_or_policy, pruning_schedule=None):
    """A copy of ``model`` with the named layers wrapped in ``StructuredPruneLowMagnitude``.

    ``masks_or_policy`` maps layer names to a fixed mask (kernel-shaped, or 1-D
    ``(channels,)`` for BatchNormalization) or to a ``Scheme`` (scheme mode, with
    ``pruning_schedule``). Masks are used as given: pass
    ``graph.close_masks(model, masks)`` so that BN layers and consumers' input
    channels follow the pruned filters. Weights are copied and projected; the
    copy is not compiled. A Keras 3 model is converted first: the result is a
    tf_keras model (TF-MOT's wrappers are tf_keras layers).
    """
    model = as_tf_keras(model)
    entries = dict(masks_or_policy)
    layers = {layer.name: layer for layer in model.layers}
    unknown = sorted(set(entries) - set(layers))
    if unknown:
        prunable = sorted(name for name, layer in layers.items() if _is_prunable(layer))
        raise ValueError(
            f"model {model.name!r} has no layer named {unknown}; prunable layers "
            f"({_supported()}) are {prunable}."
        )
    for name, entry in entries.items():
        if isinstance(entry, schemes.Scheme) or not _is_layer_norm(layers[name]):
            _layout(layers[name])  # unsupported type: TypeError naming it
        if not isinstance(entry, schemes.Scheme):
            got, want = np.shape(entry), _mask_shape(layers[name])
            if got != want:
                raise ValueError(
                    f"mask for layer {name!r} has shape {got}, but the layer needs "
                    f"shape {want}."
                )

    def clone(layer):
        if layer.name not in entries:
            return layer.__class__.from_config(layer.get_config())
        entry = entries[layer.name]
        if _is_layer_norm(layer):
            return masked_layer_norm.masked_copy(layer)
        new = layer.__class__.from_config(layer.get_config())
        if isinstance(entry, schemes.Scheme):
            return StructuredPruneLowMagnitude(new, scheme=entry, pruning_schedule=pruning_schedule)
        return StructuredPruneLowMagnitude(new, mask=entry)

    pruned = keras.models.clone_model(model, clone_function=clone)
    for layer in pruned.layers:
        wrapped = isinstance(layer, StructuredPruneLowMagnitude)
        inner = layer.layer if wrapped else layer
        weights = layers[inner.name].get_weights()
        if _is_layer_norm(inner) and inner.name in entries:
            weights = masked_layer_norm.masked_weights(layers[inner.name], weights,
                                                       entries[inner.name])
        inner.set_weights(weights)
        if wrapped:
            layer.weight_mask_op()
    return pruned
