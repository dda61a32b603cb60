"""Epoch checkpoints: a fit killed at any moment resumes at its last finished epoch
and ends with the weights an uninterrupted fit ends with.

    history = resumable_fit(model, train, epochs=4, directory="run/round_1/admm",
                            callbacks=[admm], stateful=[admm])

At every epoch end ``EpochCheckpoint`` writes the model's and the optimizer's
variables (``tf.train.Checkpoint``: Adam's moments, the step count behind a
learning-rate schedule, TF-MOT wrappers' masks and steps), the state of each
``stateful`` callback (``get_checkpoint_state``/``set_checkpoint_state``, e.g.
ADMM's Z, U and rho) and the history so far into ``directory/epoch_<k>/``, then
commits it by replacing ``directory/checkpoint.json`` (written atomically); a kill
before that leaves the previous epoch's checkpoint in force. A rerun of the same
``resumable_fit`` restores it and fits the remaining epochs.

The data order is part of the state: ``train`` must be a data set no epoch of
this fit has read yet (as ``data.Splits.reshuffled`` makes); on a resume it is
advanced by the epochs done, so each epoch reads the batches it would have read.
(Shuffled order resumes exactly; random augmentation draws do not.)
"""
import os
import shutil

import numpy as np
import tensorflow as tf

from tfautocompress import artifacts, graph as graph_lib
from tfautocompress._keras import keras

__all__ = ["EpochCheckpoint", "resumable_fit"]

_POINTER = "checkpoint.json"


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves (at epoch ends) and restores (at train begin) a fit's state; see module doc."""

    def __init__(self, directory, stateful=()):
        super().__init__()
        self.directory, self.stateful = os.fspath(directory), list(stateful)
        pointer = os.path.join(self.directory, _POINTER)
        self._saved = artifacts.read_json(pointer) if os.path.exists(pointer) else None
        if self._saved is not None and not _complete(self.directory, self._saved):
            raise ValueError(f"checkpoint {pointer} names {self._saved.get('dir')!r}, which is "
                             "missing or incomplete; delete the folder "
                             f"{self.directory} to redo this training phase.")
        self.history = dict(self._saved["history"]) if self._saved else {}

    @property
    def epochs_done(self):
        return int(self._saved["epoch"]) if self._saved else 0

    def _objects(self):
        # Random layers' generators (Dropout, ...) are not among the model's tracked
        # variables: they are saved beside it, so that a resumed fit draws on.
        generators = {f"generator_{i}": g for i, g in enumerate(_generators(self.model))}
        return tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer,
                                   **generators)

    def on_train_begin(self, logs=None):
        if not self._saved:
            return
        folder = os.path.join(self.directory, self._saved["dir"])
        # The optimizer makes its slots (Adam's moments) at its first step: make them
        # now, so that they are restored rather than started afresh.
        self.model.optimizer.build(self.model.trainable_variables)
        self._objects().read(os.path.join(folder, "vars")).assert_existing_objects_matched()
        with np.load(os.path.join(folder, "callbacks.npz"), allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
        for i, callback in enumerate(self.stateful):
            prefix = f"{i}/"
            callback.set_checkpoint_state(
                {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)},
                self._saved["callbacks"][i])

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        name = f"epoch_{epoch + 1}"
        folder = os.path.join(self.directory, name)
        shutil.rmtree(folder, ignore_errors=True)  # a half-written one from a kill
        os.makedirs(folder)
        self._objects().write(os.path.join(folder, "vars"))
        arrays, scalars = {}, []
        for i, callback in enumerate(self.stateful):
            values, extra = callback.get_checkpoint_state()
            arrays.update({f"{i}/{k}": v for k, v in values.items()})
            scalars.append(extra)
        with artifacts.atomic_path(os.path.join(folder, "callbacks.npz"), ".npz") as tmp:
            np.savez(tmp, **arrays)
        previous = self._saved
        self._saved = {"epoch": epoch + 1, "dir": name, "history": self.history,
                       "callbacks": scalars}
        artifacts.write_json(os.path.join(self.directory, _POINTER), self._saved)
        if previous and previous["dir"] != name:
            shutil.rmtree(os.path.join(self.directory, previous["dir"]), ignore_errors=True)


def _generators(model):
    """The ``tf.random.Generator`` of every random layer of ``model`` (made now if
    the layer makes it lazily), in layer order."""
    found = []
    for layer in graph_lib.leaf_layers(model):
        random = getattr(getattr(layer, "layer", layer), "_random_generator", None)
        if random is not None:
            random._maybe_init()
            if getattr(random, "_generator", None) is not None:
                found.append(random._generator)
    return found


def _complete(directory, saved):
    folder = os.path.join(directory, str(saved.get("dir")))
    return (os.path.isfile(os.path.join(folder, "callbacks.npz"))
            and os.path.isfile(os.path.join(folder, "vars.index")))


def resumable_fit(model, train, *, epochs, directory=None, callbacks=(), stateful=(),
                  **fit_kwargs):
    """``model.fit(train, epochs=epochs, ...)`` resumable from ``directory`` (see
    module doc); None: a plain fit. Returns the history dict of all epochs."""
    callbacks = list(callbacks)
    if directory is None:
        if not epochs:  # Keras refuses epochs=0; nothing to train
            return {}
        return model.fit(train, epochs=epochs, callbacks=callbacks, **fit_kwargs).history
    checkpoint = EpochCheckpoint(directory, stateful)
    start = checkpoint.epochs_done
    if start:
        for _ in range(start):
            iter(train)  # a new iterator draws the next pass's shuffle seeds
    if start < epochs:
        model.fit(train, epochs=epochs, initial_epoch=start,
                  callbacks=callbacks + [checkpoint], **fit_kwargs)
    else:  # all epochs were done: restore their result
        for callback in callbacks + [checkpoint]:
            callback.set_model(model)
        checkpoint.on_train_begin()
    return checkpoint.history
