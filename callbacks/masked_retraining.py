"""Masked retraining (progressive ADMM §2.3): retrain only the weights that survive.

    pruned = masked_retraining.wrap(model, masks)        # closed masks, wrapped copy
    pruned.compile(...)
    pruned.fit(..., callbacks=masked_retraining.callbacks())
    final = masked_retraining.strip(pruned)               # plain model, exact zeros

``wrap`` closes the masks over the channel graph (BN gamma/beta of pruned filters,
consumers' dead input channels) and wraps the layers in
``StructuredPruneLowMagnitude`` with fixed masks. The wrapped layer computes with
``W * mask``, so pruned weights get exactly zero gradients; the callback is
TF-MOT's own ``UpdatePruningStep``, which advances the wrappers' step and
re-applies ``W := W * mask`` at every epoch end, so the stored weights stay
exactly zero too. ``strip`` is TF-MOT's ``strip_pruning``.

``retrain`` can first re-estimate BatchNormalization moving statistics on
training batches (``evaluate.recalibrate_bn``, no weight update): right after a
hard prune they are the dense model's, and validation accuracy sits near chance
until the moving averages catch up.
"""
import tensorflow_model_optimization as tfmot

from tfautocompress.callbacks.checkpoint import resumable_fit
from tfautocompress.callbacks.distillation import Distiller
from tfautocompress.evaluate import fit_validation, recalibrate_bn
from tfautocompress.graph import close_masks
from tfautocompress.wrappers import prune_structured

__all__ = ["wrap", "callbacks", "strip", "retrain"]


def wrap(model, masks):
    """An uncompiled copy of ``model`` whose masked weights stay exactly zero."""
    return prune_structured(model, close_masks(model, masks))


def callbacks():
    """The callbacks masked retraining needs in ``fit``."""
    return [tfmot.sparsity.keras.UpdatePruningStep()]


def strip(model):
    """A plain tf_keras model (wrappers removed) whose pruned weights are exact zeros."""
    return tfmot.sparsity.keras.strip_pruning(model)


def retrain(model, masks, train, *, epochs, compile_fn, validation_data=None,
            validation_freq=1, extra_callbacks=(), verbose=0, bn_recalibration_batches=0,
            checkpoint_dir=None, distill=None):
    """``wrap`` → ``recalibrate_bn`` (with ``bn_recalibration_batches`` > 0) →
    ``compile_fn(wrapped)`` → ``fit`` → ``strip``; returns ``(model, history)``.

    ``validation_freq``: ``evaluate.fit_validation``'s. ``checkpoint_dir``: epoch
    checkpoints there; a rerun resumes from them (``checkpoint.resumable_fit``).
    ``distill``: keyword arguments of ``Distiller`` (teacher, temperature, weight):
    the wrapped model trains as a ``Distiller`` of them; None: plainly."""
    pruned = wrap(model, masks)
    recalibrate_bn(pruned, train, bn_recalibration_batches)
    trained = Distiller(pruned, **distill) if distill else pruned
    compile_fn(trained)
    history = resumable_fit(trained, train, epochs=epochs, directory=checkpoint_dir,
                            callbacks=callbacks() + list(extra_callbacks),
                            verbose=verbose, **fit_validation(validation_data, validation_freq))
    return strip(pruned), history
