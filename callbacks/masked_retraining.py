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

``recalibrate_bn`` re-estimates BatchNormalization moving statistics on training
batches (no weight update): right after a hard prune they are the dense model's,
and validation accuracy sits near chance until the moving averages catch up.
"""
import tensorflow_model_optimization as tfmot

from tfautocompress._keras import keras
from tfautocompress.graph import close_masks
from tfautocompress.wrappers import prune_structured

__all__ = ["wrap", "callbacks", "strip", "retrain", "recalibrate_bn"]


def wrap(model, masks):
    """An uncompiled copy of ``model`` whose masked weights stay exactly zero."""
    return prune_structured(model, close_masks(model, masks))


def callbacks():
    """The callbacks masked retraining needs in ``fit``."""
    return [tfmot.sparsity.keras.UpdatePruningStep()]


def strip(model):
    """A plain tf_keras model (wrappers removed) whose pruned weights are exact zeros."""
    return tfmot.sparsity.keras.strip_pruning(model)


def recalibrate_bn(model, data, batches):
    """Set every BatchNormalization's moving mean/variance to the average of its
    batch statistics over the first ``batches`` batches of ``data`` (``(x, y)`` or
    ``x``), running ``model`` in training mode; no weight is updated (layers inside
    pruning wrappers included). Returns how many batches were used."""
    layers = [getattr(layer, "layer", layer) for layer in model.layers]
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns or batches < 1:
        return 0
    momenta, used = [bn.momentum for bn in bns], 0
    try:
        for batch in data.take(batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for bn in bns:  # moving <- (used * moving + batch) / (used + 1): a plain mean
                bn.momentum = used / (used + 1)
            model(x, training=True)
            used += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
    return used


def retrain(model, masks, train, *, epochs, compile_fn, validation_data=None,
            extra_callbacks=(), verbose=0, bn_recalibration_batches=0):
    """``wrap`` → ``recalibrate_bn`` (with ``bn_recalibration_batches`` > 0) →
    ``compile_fn(wrapped)`` → ``fit`` → ``strip``; returns ``(model, history)``."""
    pruned = wrap(model, masks)
    recalibrate_bn(pruned, train, bn_recalibration_batches)
    compile_fn(pruned)
    history = pruned.fit(train, validation_data=validation_data, epochs=epochs,
                         callbacks=callbacks() + list(extra_callbacks), verbose=verbose)
    return strip(pruned), history.history
