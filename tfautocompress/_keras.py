"""The one place that imports Keras: tf_keras (Keras 2), which TF-MOT requires.

Every other module does ``from tfautocompress._keras import keras``.
"""
import tf_keras as keras

__all__ = ["keras", "check_model"]

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


def check_model(model, what="model"):
    """Raise a clear error unless ``model`` is a built tf_keras Sequential/functional model.

    Returns the model, so that callers can write ``model = check_model(model)``.
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
    if module.startswith("keras") or module.startswith("tensorflow.python.keras"):
        raise TypeError(
            f"{what} is a Keras 3 model ({module}.{type(model).__name__}). "
            + _KERAS3_HINT
        )
    raise TypeError(
        f"{what} must be a tf_keras model, got {type(model).__name__}. " + _KERAS3_HINT
    )


def _is_functional(model):
    # Sequential is a subclass of Functional in tf_keras; a subclassed model is not.
    from tf_keras.src.engine import functional

    return isinstance(model, functional.Functional)
