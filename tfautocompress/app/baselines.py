"""Non-searched baselines of the comparison (AutoCompress §4, Table 1).

``magnitude_prune``: TF-MOT's non-structured magnitude pruning
(``prune_low_magnitude`` with ``PolynomialDecay`` from 0 to the target sparsity)
of every CONV kernel, trained for the same epoch budget as a partial pruning.
``train_from_scratch`` (Liu et al., 2018b, "Rethinking the value of network
pruning"): a pruned model's compact structure re-initialised and trained for the
same total epochs the pruned model saw. A filter structure is the compact model
itself; a combined filter + column structure also has the column zeros kept
inside the compact kernels (``compact(..., return_masks=True)``): given those
``masks``, they stay zero while it trains (``callbacks.masked_retraining``), so the
re-initialised model has exactly the pruned model's kernel shapes.
"""
import numpy as np
import tensorflow_model_optimization as tfmot

from tfautocompress import data, layer_kinds
from tfautocompress._keras import check_model, keras

__all__ = ["magnitude_prune", "train_from_scratch"]


def _num_batches(dataset):
    n = data.num_batches(dataset)
    if n is None:
        raise ValueError("train data must have a known number of batches (a finite, "
                         f"batched tf.data.Dataset); cardinality={int(dataset.cardinality())}.")
    return n


def magnitude_prune(model, train, *, target_compression_ratio, epochs, compile_fn,
                    validation_data=None, end_share=0.75, frequency=None, verbose=0):
    """Non-structured magnitude pruning of the CONV kernels to ``1 - 1/ratio`` sparsity.

    The sparsity rises polynomially during the first ``end_share`` of the
    ``epochs`` (every ``frequency`` steps, default: 8 times per epoch) and then
    stays fixed. Returns ``(model, masks)``: the stripped tf_keras model (exact
    zeros) and ``{conv layer: 0/1 kernel mask}`` of its non-zeros.
    """
    check_model(model)
    ratio = float(target_compression_ratio)
    if not ratio > 1.0:
        raise ValueError(f"target_compression_ratio={ratio} must be > 1 (dense / kept).")
    if int(epochs) < 1:
        raise ValueError(f"epochs={epochs} must be >= 1.")
    steps = int(epochs) * _num_batches(train)
    end_step = max(1, int(end_share * steps))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=1.0 - 1.0 / ratio, begin_step=0,
        end_step=end_step, frequency=int(frequency or max(1, _num_batches(train) // 8)))

    work = keras.models.clone_model(model)  # a copy: the wrappers train its layers
    work.set_weights(model.get_weights())

    def wrap(layer):  # the copy's own layer inside the wrapper keeps its weights
        if _is_conv(layer):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    pruned = keras.models.clone_model(work, clone_function=wrap)
    compile_fn(pruned)
    pruned.fit(train, validation_data=validation_data, epochs=int(epochs), verbose=verbose,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    masks = {layer.name: (layer_kinds.kernel_of(layer).numpy() != 0).astype(np.float32)
             for layer in stripped.layers if _is_conv(layer)}
    return stripped, masks


def _is_conv(layer):
    """A CONV layer of the tables (``layer_kinds``), whose kernel TF-MOT prunes."""
    layout = layer_kinds.layout_of(layer)
    return layout is not None and layout.conv


def train_from_scratch(structure, train, *, epochs, compile_fn, validation_data=None,
                       seed=0, verbose=0, masks=None):
    """``structure`` (e.g. a ``compact`` model) re-initialised and trained for ``epochs``.

    ``masks``: ``{layer: 0/1 kernel mask}`` of ``structure`` (the compact masks of a
    combined pruning) held fixed while training: the masked entries of the fresh
    weights are zero from the first step and stay exactly zero. None: all trained.
    """
    check_model(structure)
    keras.utils.set_random_seed(int(seed))
    model = keras.models.clone_model(structure)  # fresh layers: fresh initial weights
    if masks:
        from tfautocompress.callbacks import masked_retraining
        model, _ = masked_retraining.retrain(model, masks, train, epochs=int(epochs),
                                             compile_fn=compile_fn,
                                             validation_data=validation_data, verbose=verbose)
        return model
    compile_fn(model)
    model.fit(train, validation_data=validation_data, epochs=int(epochs), verbose=verbose)
    return model
