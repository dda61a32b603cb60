"""The one place that imports tf_keras (Keras 2), which TF-MOT requires.

Every other module does ``from tfautocompress._keras import keras``. Keras 3
models come in through ``as_tf_keras`` (converted by ``tfautocompress.keras3``,
the one module that imports Keras 3).
"""
import sys
import types

import tf_keras as keras
from tf_keras.src.applications.convnext import LayerScale, StochasticDepth
from tf_keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from tf_keras.src.layers.core.tf_op_layer import TFOpLambda

__all__ = ["keras", "internal_layers", "check_model", "as_tf_keras", "is_keras3"]

# Layer classes that tf_keras does not export but its models use: the applications'
# own layers and the layer that wraps a TensorFlow op called in a functional model.
internal_layers = types.SimpleNamespace(
    LayerScale=LayerScale, StochasticDepth=StochasticDepth,
    CustomScaleLayer=CustomScaleLayer, TFOpLambda=TFOpLambda)

# Random layers (Dropout, ...) draw from a tf.random.Generator: its state is a
# variable of the layer, seeded by ``keras.utils.set_random_seed`` and saved with the
# model's variables, so a run resumed from an epoch checkpoint draws what an
# uninterrupted one draws (tf_keras' default, legacy stateful ops, restart their
# sequence in every new process).
keras.backend.experimental.enable_tf_random_generator()

_KERAS3_HINT = (
    "tfautocompress works on tf_keras (Keras 2) models, because TF-MOT does. "
    "Build the model with `import tf_keras as keras` (e.g. `keras.Sequential`, "
    "`keras.Model(inputs, outputs)`), or load it with `tf_keras.models.load_model`."
)


def is_keras3(model):
    """True for a Keras 3 object (``keras.Model``, ``keras.layers.Layer``, ...)."""
    return (type(model).__module__ or "").split(".")[0] == "keras"


def as_tf_keras(model, what="model"):
    """``model`` as a checked tf_keras model: a Keras 3 Sequential/functional model is
    converted (``keras3.to_tf_keras``; one line on stderr says so), a tf_keras model
    is returned as it is. The door of every public function that takes a model."""
    if is_keras3(model):
        from tfautocompress import keras3

        converted = keras3.to_tf_keras(model, what)
        print(f"[tfautocompress] {what} {model.name!r}: Keras 3 model converted to tf_keras "
              f"({len(converted.layers)} layers, same weights)", file=sys.stderr, flush=True)
        model = converted
    return check_model(model, what)


def check_model(model, what="model"):
    """Raise a clear error unless ``model`` is a built tf_keras Sequential/functional model.

    Returns the model, so that callers can write ``model = check_model(model)``.
    A Keras 3 model is refused here (the functions that work on the model itself,
    e.g. the ADMM callback during ``fit``, cannot use a converted copy); public
    functions that only read or rebuild a model take one through ``as_tf_keras``.
    """
    if isinstance(model, keras.Model):
        if not (isinstance(model, keras.Sequential) or _is_functional(model)):
            raise TypeError(
                f"{what} {model.name!r} is a subclassed tf_keras.Model "
                f"({type(model).__name__}); structured pruning needs the layer graph, "
                "so build it as a functional model (`keras.Model(inputs, outputs)`) "
                "or a `keras.Sequential`."
            )
        if not model.built or not model.inputs:
            raise ValueError(
                f"{what} {model.name!r} is not built: give it an input shape "
                "(`keras.Input(shape=...)` as the first layer) before pruning."
            )
        return model
    module = type(model).__module__ or ""
    if is_keras3(model):
        raise TypeError(
            f"{what} is a Keras 3 model ({module}.{type(model).__name__}), and this step "
            "works on the tf_keras model itself: convert it first with "
            "`tfautocompress.keras3.to_tf_keras(model)` and back with `to_keras3(...)`."
        )
    if module.startswith("tensorflow.python.keras"):
        raise TypeError(
            f"{what} is a legacy tf.keras model ({module}.{type(model).__name__}). "
            + _KERAS3_HINT
        )
    raise TypeError(
        f"{what} must be a tf_keras model, got {type(model).__name__}. " + _KERAS3_HINT
    )


def _is_functional(model):
    # Sequential is a subclass of Functional in tf_keras; a subclassed model is not.
    from tf_keras.src.engine import functional

    return isinstance(model, functional.Functional)
