"""Progressive pruning (progressive ADMM §2.4, Algorithm 1 and Fig. 2).

A *partial pruning* takes a model to one policy: ADMM regularization, hard prune
(Euclidean projection), BatchNormalization recalibration, masked retraining.
Started from an earlier partial model it is *masked* ADMM: the earlier model is
wrapped with its masks, so its pruned weights never revive, and layers whose
scheme does not change get no ADMM term (the paper's rho_i = 0) but take part in
the model-level projection (their filters decide the live rows downstream).

``progressive_prune`` reaches a high rate through policies of rising fraction: the
first ``pool_size`` are pruned directly from the dense model; each later one is
tried from every model in the pool, the best (validation accuracy) is kept and
replaces the pool model it started from (Fig. 2).
"""
import dataclasses
import os
from typing import Callable, Optional

import tensorflow as tf

from tfautocompress import schemes as schemes_lib
from tfautocompress._keras import keras
from tfautocompress.callbacks import masked_retraining
from tfautocompress.callbacks.admm import ADMM
from tfautocompress.callbacks.checkpoint import resumable_fit
from tfautocompress.callbacks.distillation import Distiller
from tfautocompress.evaluate import accuracy, fit_validation
from tfautocompress.graph import close_masks

__all__ = ["Recipe", "PartialModel", "partial_prune", "progressive_prune"]

# Measured on digits_vgg (baseline 0.9917 test), 75 % filter + 50 % column, 10 ADMM
# + 10 retraining epochs, 3 seeds (benchmarks/admm_vs_magnitude.py): mean test
# accuracy 0.9880 (min 0.9806) with no BN recalibration and a constant retraining
# lr; 0.9917 (all seeds) with BN recalibration and a cosine-decayed retraining lr
# (a retrain_compile_fn); 0.9954-0.9963 (min 0.9944, two runs) adding the rho
# ramp, which cuts the primal residual at the hard prune from ~0.46 to ~0.15.
# Magnitude pruning, same recalibration and schedule: 0.9806 (10 epochs), 0.9824
# (20). A 12 + 8 split with the ramp: 0.9880.
BN_RECALIBRATION_BATCHES = 20
FINAL_RHO = 10.0


@dataclasses.dataclass
class Recipe:
    """How a partial pruning trains: data, ``compile_fn(model)``, epochs, ADMM kwargs.

    ``admm``: keyword arguments of ``ADMM``; here ``final_rho`` defaults to
    ``FINAL_RHO`` (a rho ramp over the last ADMM epoch; None: off).
    ``retrain_compile_fn``: compiles the masked-retraining model (e.g. with a
    cosine-decayed lr); None uses ``compile_fn``. ``bn_recalibration_batches``:
    training batches on which BatchNormalization statistics are re-estimated
    right after the hard prune (``evaluate.recalibrate_bn``; 0: none).
    ``train_for(phase)``: a fresh train set for each phase (``"admm"``,
    ``"retrain"``; e.g. ``Splits.reshuffled``), so that each reads the same batches
    in a resumed run; None: ``train`` for both. ``checkpoint_dir``: epoch
    checkpoints of both phases there (``checkpoint.resumable_fit``); a rerun of
    the same partial pruning resumes from them. ``validation_freq``: both phases
    evaluate ``val`` every this many epochs (``evaluate.fit_validation``; 0: only
    the result's score, after retraining). ``distill``: keyword arguments of
    ``Distiller`` (teacher, temperature, weight): ADMM and masked retraining train the
    model as a ``Distiller`` of them (None: plainly).
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    compile_fn: Callable
    admm_epochs: int = 10
    retrain_epochs: int = 10
    admm: dict = dataclasses.field(default_factory=dict)
    verbose: int = 0
    retrain_compile_fn: Optional[Callable] = None
    bn_recalibration_batches: int = BN_RECALIBRATION_BATCHES
    train_for: Optional[Callable] = None
    checkpoint_dir: Optional[str] = None
    validation_freq: int = 1
    distill: Optional[dict] = None

    def data(self, phase):
        """The train set of ``phase`` (``"admm"``, ``"retrain"``): ``train_for(phase)``,
        a fresh one per phase, or ``train``."""
        return self.train if self.train_for is None else self.train_for(phase)

    def checkpoints(self, phase):
        """Where ``phase`` keeps its epoch checkpoints (None: nowhere)."""
        return None if self.checkpoint_dir is None else os.path.join(self.checkpoint_dir, phase)

    def retrain(self, model, masks):
        """``masked_retraining.retrain`` of ``model`` under ``masks`` with this recipe's
        retraining epochs, compile function, data, validation, BN recalibration and
        checkpoints; returns ``(model, history)``."""
        return masked_retraining.retrain(
            model, masks, self.data("retrain"), epochs=self.retrain_epochs,
            compile_fn=self.retrain_compile_fn or self.compile_fn,
            validation_data=self.val, validation_freq=self.validation_freq,
            verbose=self.verbose, bn_recalibration_batches=self.bn_recalibration_batches,
            checkpoint_dir=self.checkpoints("retrain"), distill=self.distill)


@dataclasses.dataclass
class PartialModel:
    """A partial pruning result: a plain model whose pruned weights are exact zeros.
    The pipeline hands each finished step on as one (purification's has no schemes)."""

    model: keras.Model
    masks: dict  # {layer: 0/1 mask}, closed over the channel graph (graph.ClosedMasks)
    schemes: dict = dataclasses.field(default_factory=dict)  # {layer: Scheme} reached
    score: Optional[float] = None  # validation accuracy
    history: dict = dataclasses.field(default_factory=dict)  # {"admm", "retrain": fit logs}
    parent: Optional[int] = None  # index in progressive_prune's trace it started from
    policy: object = None  # what partial_prune pruned to (a PruningPolicy or {layer: Scheme})


def _copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def partial_prune(model, policy, recipe, start=None):
    """ADMM → hard prune → BN recalibration → masked retraining of ``model`` to ``policy``.

    ``start``: a :class:`PartialModel` to continue from (masked ADMM; ``model`` is
    then unused). Neither ``model`` nor ``start`` is modified.
    """
    schemes = schemes_lib.as_schemes(policy)
    prior = start.masks if start is not None else {}
    base = start.model if start is not None else model
    changed = {name: scheme for name, scheme in schemes.items()
               if start is None or start.schemes.get(name) != scheme}
    work = masked_retraining.wrap(base, prior) if prior else _copy(base)
    masks, history = dict(prior), {"admm": {}}
    if changed:
        admm = ADMM(schemes, regularize=changed, **{"final_rho": FINAL_RHO, **recipe.admm})
        trained = Distiller(work, **recipe.distill) if recipe.distill else work
        recipe.compile_fn(trained)
        extra = masked_retraining.callbacks() if prior else []
        logs = resumable_fit(trained, recipe.data("admm"), epochs=recipe.admm_epochs,
                             directory=recipe.checkpoints("admm"), callbacks=[admm] + extra,
                             stateful=[admm], verbose=recipe.verbose,
                             **fit_validation(recipe.val, recipe.validation_freq))
        masks.update(admm.hard_prune())
        history["admm"] = {**logs, **admm.layer_history,
                           **{f"admm_cut/{name}": [cut] for name, cut in admm.cut.items()}}
    if prior:
        work = masked_retraining.strip(work)
    if masks:
        masks = close_masks(work, masks)  # closed once, here: every later step reads these
    pruned, history["retrain"] = recipe.retrain(work, masks)
    return PartialModel(pruned, masks, {**(start.schemes if start else {}), **schemes},
                        accuracy(pruned, recipe.val), history, policy=policy)


def progressive_prune(model, policies, recipe, pool_size=3):
    """Prune ``model`` through ``policies`` (rising fractions) keeping a pool of partial models.

    Returns ``(final, trace)``: the partial model of the last policy and every
    partial model kept, in order (``parent`` indexes this list).
    """
    policies = list(policies)
    if not policies:
        raise ValueError("progressive_prune needs at least one policy, got none.")
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(f"pool_size must be a positive int, got {pool_size!r}.")
    trace = [partial_prune(model, policy, recipe) for policy in policies[:pool_size]]
    pool = list(range(len(trace)))  # indices into trace
    for policy in policies[pool_size:]:
        tried = [partial_prune(model, policy, recipe, start=trace[i]) for i in pool]
        best = max(range(len(tried)), key=lambda k: tried[k].score)
        tried[best].parent = pool[best]
        trace.append(tried[best])
        pool[best] = len(trace) - 1
    return trace[-1], trace
