"""ADMM regularization as a tf_keras callback (AutoCompress §3.3; progressive ADMM Eqs. 4–6).

``model.fit(..., callbacks=[ADMM(policy)])`` minimises, for every layer i of the
policy, the training loss plus ``rho_i / 2 * ||W_i - Z_i + U_i||_F^2`` (Eq. 4: the
*squared* Frobenius norm). Every ``update_every`` steps (or once per epoch):

    Z <- Pi(W + U)                (Eq. 5, the policy's Euclidean projection)
    U <- U + W - Z                (Eq. 6)

With ``prox_step`` (eta) the penalty leaves the loss and becomes the W-step's
proximal part (a proximal-gradient W-step): after each optimizer step on the task
loss alone,

    W <- argmin_V rho/2 ||V - Z + U||^2 + 1/(2 eta) ||V - W||^2
       = W - kappa (W - Z + U),   kappa = eta rho / (1 + eta rho)

so the pull towards Z - U closes the fraction kappa of the gap every step,
whatever the optimizer does to the loss gradient (Adam divides the penalty's
gradient by its own scale: inside the loss, rho cannot move W further than the
learning rate per step, and the rho ramp at a decayed learning rate cannot bring
W onto Z before the hard prune).

``Pi`` is the model-level projection ``masks.magnitude_masks`` (the one the search's
fast evaluation scores and the hard prune applies): producers coupled by a
residual merge drop the same filters, and each layer's columns are chosen among
its live rows given the filters upstream. ``regularize`` names the layers that
get the penalty (all by default); the others (e.g. layers whose scheme did not
change since the previous progressive round: the paper's rho_i = 0) still take
part in the projection with their current weights.

and, with multi-rho (Ye et al. 2018), every ``rho_every`` updates
``rho_i <- min(rho_factor * rho_i, rho_max)`` with ``U_i`` rescaled by
``rho_old / rho_new`` so that the unscaled dual ``rho_i * U_i`` is unchanged
(Boyd et al. 2011, §3.4.1). With ``rho_schedule="balanced"`` (residual balancing,
Boyd et al. 2011, §3.4.1) each update instead multiplies rho_i by ``rho_factor``
when the primal residual is more than ``balance`` times the dual one, and divides
it when the dual one is (between ``rho`` and ``rho_max``). ``Z_i`` starts at ``Pi_i(W_i)``, ``U_i`` at 0.
With ``final_rho`` (a "rho ramp"), rho_i is raised to at least ``final_rho`` (U
rescaled the same way) for the last epoch of each ``fit``, pulling W onto Z
just before the hard prune.

With ``landing`` (a fraction of an epoch), ADMM lands W on the constraint set in
the last steps of each ``fit``: for that share of the last epoch the W-step is
proximal (``prox_step``, or ``LANDING_STEP`` when the penalty is in the loss) and
Z/U are updated ``LANDING_UPDATES`` times. Before it the slow ADMM (penalty in the
loss, Z/U once an epoch) chooses the support; the landing then converges on it, so
the hard prune removes almost nothing (the proximal W-step from the first step
converges too, but freezes the support early and costs accuracy).

Z, U and rho live in non-trainable ``tf.Variable``s read by a loss callable
that the callback adds to the model at ``on_train_begin`` (and rebuilds the
compiled train function, so the model may have been compiled before or after the
callback existed) and removes at ``on_train_end``. The projection runs in NumPy
at each update, off the per-step path. State persists across ``fit`` calls on
the same model.

Logged at every epoch end into ``logs``, for the regularized layers (put ``ADMM``
before ``TensorBoard`` / ``CSVLogger`` in the callback list so that they see the
keys):

* ``task_loss``, ``val_task_loss``, ``admm_penalty``: Keras' ``loss`` and
  ``val_loss`` are the task loss plus the rho penalty; these are the two apart
  (epoch means, the penalty at the weights each batch's loss was computed at);
* ``admm_res``: the mean over layers of the primal residual ``||W - Z|| / ||W||``
  of the latest update (before the first update: the distance of W to its
  constraint set);
* ``admm_dual``: the mean over layers of the dual residual ``||Z - Z_prev|| / ||W||``
  of the latest update (rho's dual residual ``rho ||Z - Z_prev||`` over ``rho ||W||``);
* ``admm_zero``: the mean over layers of the share of kernel weights with
  ``|w| <= near_zero * max|W|``;
* ``admm_rho``: the mean rho over layers.

The per-layer values (``admm_res/<layer>``, ``admm_dual/<layer>``,
``admm_zero/<layer>``: one entry per epoch) are in ``ADMM.layer_history``, not in the printed epoch line.
"""
import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

import tensorflow_model_optimization as tfmot

from tfautocompress import graph as graph_lib, layer_kinds, masks as masks_lib
from tfautocompress import schemes as schemes_lib
from tfautocompress._keras import check_model, keras
from tfautocompress.wrappers import StructuredPruneLowMagnitude

__all__ = ["ADMM"]

# Defaults tuned for short budgets (~10 epochs of ADMM with Adam at lr 1e-3 and a
# mean cross-entropy loss, digits_vgg at 75 % filter + 50 % column); see ADMM.
RHO = 3e-2
RHO_FACTOR = 1.5
RHO_EVERY = 1
RHO_MAX = 1.0
UPDATE_EVERY = "epoch"
NEAR_ZERO = 1e-2
RHO_SCHEDULES = ("multiplicative", "balanced")
BALANCE = 10.0
LANDING_STEP = 0.2
LANDING_UPDATES = 4


def _find_layer(model, name):
    """``(layer, kernel mask variable or None)`` for layer ``name`` of ``model``,
    looking inside TF-MOT pruning wrappers (a ``StructuredPruneLowMagnitude``
    contributes its mask: masked ADMM sees the weight ``W * mask``)."""
    for layer in model.layers:
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude) and layer.layer.name == name:
            mask = layer.mask if isinstance(layer, StructuredPruneLowMagnitude) else None
            return layer.layer, mask
        if layer.name == name:
            return layer, None
    raise ValueError(
        f"policy names layer {name!r}, which model {model.name!r} does not have; "
        f"its layers are: {', '.join(l.name for l in model.layers)}.")


@dataclasses.dataclass
class _Slot:
    """One layer's ADMM state."""

    name: str
    kind: str
    scheme: object
    kernel: tf.Variable
    mask: object  # the wrapper's mask variable (masked ADMM) or None
    z: tf.Variable
    u: tf.Variable
    rho: tf.Variable
    residual: float = 0.0
    dual: float = 0.0
    active: bool = True  # gets the penalty and the rho schedule

    def weight(self):
        """The weight W the ADMM sees, as a float32 tensor."""
        w = tf.cast(self.kernel, tf.float32)
        return w if self.mask is None else w * self.mask

    def weight_numpy(self):
        return self.weight().numpy()


class ADMM(keras.callbacks.Callback):
    """ADMM structured-pruning regularization for ``model.fit``.

    Args:
      policy: ``{layer name: Scheme}`` or an object with ``.schemes()``.
      rho: initial penalty rho_0. The paper's 1e-4 assumes ~200 epochs per
        round; in 10 epochs rho_0 in 1e-3..1e-2 left the distance to the
        constraint set near 0.5-0.8 (digits_vgg), 3e-2 with multi-rho brought
        the primal residual down every epoch after the first.
      rho_factor: multi-rho growth factor (1 keeps rho constant).
      rho_every: grow rho every this many Z/U updates (1.5 per epoch reaches the
        cap in ~9 epochs).
      rho_max: cap on rho; None: max(1.0, rho) (by then the penalty dominates
        the loss and W sits at Z - U; hard pruning costs little).
      update_every: a positive number of training steps between Z/U updates,
        or ``"epoch"``. Per epoch (~40 Adam steps on digits) lets W follow each
        new Z; every 13 steps the kept support kept switching and the residual
        stayed above 1.
      near_zero: relative threshold of the ``admm_zero`` log.
      hard_prune_on_train_end: project W at the end of every ``fit``; the masks
        are then in ``self.masks``.
      final_rho: None, or rho for the last epoch of every ``fit`` (the rho ramp:
        ``rho_i <- max(rho_i, final_rho)`` at that epoch's start; not capped by
        ``rho_max``).
      prox_step: None (the penalty is part of the loss), or the step eta of the
        proximal W-step applied after every training step (see the module doc).
      rho_schedule: ``"multiplicative"`` (multi-rho: ``rho_factor`` every
        ``rho_every`` updates) or ``"balanced"`` (residual balancing by
        ``rho_factor`` when one residual exceeds ``balance`` times the other).
      landing: None, or the share (0, 1] of each fit's last epoch in which ADMM
        converges onto the constraint set (see the module doc); needs a train set
        of known length.
    """

    def __init__(self, policy, rho=RHO, rho_factor=RHO_FACTOR, rho_every=RHO_EVERY,
                 rho_max=None, update_every=UPDATE_EVERY, near_zero=NEAR_ZERO,
                 hard_prune_on_train_end=False, final_rho=None, regularize=None,
                 prox_step=None, rho_schedule="multiplicative", balance=BALANCE,
                 landing=None):
        super().__init__()
        self._schemes = schemes_lib.as_schemes(policy)
        if not self._schemes:
            raise ValueError("ADMM policy is empty: give at least one {layer name: Scheme}.")
        self._regularize = set(self._schemes if regularize is None else regularize)
        unknown = sorted(self._regularize - set(self._schemes))
        if unknown:
            raise ValueError(f"ADMM regularize names {unknown}, which the policy does not "
                             f"prune; its layers are: {', '.join(self._schemes)}.")
        rho_max = max(RHO_MAX, rho) if rho_max is None else rho_max
        for flag, value in (("rho", rho), ("rho_max", rho_max)):
            if not value > 0:
                raise ValueError(f"ADMM {flag} must be > 0, got {value!r}.")
        for flag, value in (("final_rho", final_rho), ("prox_step", prox_step)):
            if value is not None and not value > 0:
                raise ValueError(f"ADMM {flag} must be > 0 or None, got {value!r}.")
        if rho_schedule not in RHO_SCHEDULES:
            raise ValueError(f"ADMM rho_schedule={rho_schedule!r} unknown; use one of "
                             f"{', '.join(RHO_SCHEDULES)}.")
        if landing is not None and not 0 < landing <= 1:
            raise ValueError(f"ADMM landing must be in (0, 1] (a share of the last epoch) "
                             f"or None, got {landing!r}.")
        if not balance > 1:
            raise ValueError(f"ADMM balance must be > 1, got {balance!r}.")
        if rho_max < rho:
            raise ValueError(f"ADMM rho_max={rho_max!r} must be >= rho={rho!r}.")
        if not rho_factor >= 1:
            raise ValueError(f"ADMM rho_factor must be >= 1, got {rho_factor!r}.")
        if isinstance(rho_every, bool) or not isinstance(rho_every, int) or rho_every < 1:
            raise ValueError(f"ADMM rho_every must be a positive int, got {rho_every!r}.")
        if update_every != "epoch" and (
                isinstance(update_every, bool) or not isinstance(update_every, int)
                or update_every < 1):
            raise ValueError(
                f"ADMM update_every must be a positive int (steps) or 'epoch', "
                f"got {update_every!r}.")
        self.rho0, self.rho_factor, self.rho_every = float(rho), float(rho_factor), rho_every
        self.rho_max, self.update_every = float(rho_max), update_every
        self.near_zero = float(near_zero)
        self.hard_prune_on_train_end = hard_prune_on_train_end
        self.final_rho = None if final_rho is None else float(final_rho)
        self.prox_step = None if prox_step is None else float(prox_step)
        self.rho_schedule, self.balance = rho_schedule, float(balance)
        self.landing = None if landing is None else float(landing)
        self._landing_steps = None  # (first batch, {batches ending with Z/U}) of this fit's landing
        self._epoch = None
        self.updates = 0  # Z/U updates done so far
        self.masks = None
        self.cut = {}
        # Per-layer epoch logs ({"admm_res/<layer>": [...], "admm_zero/<layer>": [...]}),
        # kept here rather than in the epoch logs that Keras prints.
        self.layer_history = {}
        self._penalty_sum = self._penalty_batches = 0
        self._steps = 0
        self._slots = None
        self._slots_model = None
        self._supports_tf_logs = True

    # -- state ---------------------------------------------------------------
    def _build(self, model):
        """Create Z, U, rho for ``model`` (once per model)."""
        if self._slots_model is model:
            return
        check_model(model)
        self._graph = graph_lib.analyze(_plain(model))
        slots = []
        with model.distribute_strategy.scope():
            for name, scheme in self._schemes.items():
                layer, mask = _find_layer(model, name)
                slots.append(_Slot(name, layer_kinds.prunable_layout(layer).kind, scheme,
                                   layer_kinds.kernel_of(layer), mask, None, None, None,
                                   active=name in self._regularize))
            weights = {s.name: s.weight_numpy() for s in slots}
            projected = self._project(weights)
            for s in slots:
                var = lambda value, what: tf.Variable(  # noqa: E731
                    value, trainable=False, dtype=tf.float32, name=f"admm_{what}_{s.name}")
                w = weights[s.name]
                s.z, s.u, s.rho = (var(projected[s.name], "z"), var(np.zeros_like(w), "u"),
                                   var(self.rho0, "rho"))
                s.residual = _relative(w - projected[s.name], w)
        self._slots, self._slots_model = slots, model
        self.updates, self._steps, self.masks, self.layer_history = 0, 0, None, {}
        self._penalty_fn = tf.function(self.penalty)
        self._prox_fn = tf.function(self._prox)

    @property
    def state(self):
        """``{layer: {"z", "u", "rho"}}`` as NumPy values (for inspection and tests)."""
        return {s.name: {"z": s.z.numpy(), "u": s.u.numpy(), "rho": float(s.rho.numpy())}
                for s in self._slots or ()}

    def get_checkpoint_state(self):
        """Everything ``set_checkpoint_state`` needs to continue this ADMM exactly:
        ``(arrays {key: ndarray}, scalars {key: JSON value})``."""
        arrays = {f"{name}/{key}": np.asarray(value)
                  for name, values in self.state.items() for key, value in values.items()}
        scalars = {"updates": self.updates, "steps": self._steps,
                   "residuals": {s.name: float(s.residual) for s in self._slots or ()},
                   "duals": {s.name: float(s.dual) for s in self._slots or ()},
                   "layer_history": self.layer_history}
        return arrays, scalars

    def set_checkpoint_state(self, arrays, scalars):
        """Restore ``get_checkpoint_state``'s values (after ``set_model``)."""
        for s in self._slots:
            s.z.assign(arrays[f"{s.name}/z"])
            s.u.assign(arrays[f"{s.name}/u"])
            s.rho.assign(arrays[f"{s.name}/rho"])
            s.residual = scalars["residuals"][s.name]
            s.dual = scalars.get("duals", {}).get(s.name, 0.0)
        self.updates, self._steps = int(scalars["updates"]), int(scalars["steps"])
        self.layer_history = {k: list(v) for k, v in scalars["layer_history"].items()}

    def penalty(self):
        """``sum_i rho_i / 2 * ||W_i - Z_i + U_i||_F^2`` as a scalar tensor."""
        terms = [0.5 * s.rho * tf.reduce_sum(tf.square(s.weight() - s.z + s.u))
                 for s in self._slots if s.active]
        return tf.add_n(terms) if terms else tf.constant(0.0)

    def _prox(self, eta):
        """The proximal W-step: ``W <- W - kappa (W - Z + U)``, kappa = eta rho / (1 + eta rho)."""
        for s in self._slots:
            if s.active:
                kappa = eta * s.rho / (1.0 + eta * s.rho)
                s.kernel.assign_sub(tf.cast(kappa * (s.weight() - s.z + s.u), s.kernel.dtype))

    def _project(self, kernels):
        """``{layer: Pi(kernel)}``: the model-level projection of ``kernels``."""
        masks = masks_lib.magnitude_masks(None, self._schemes, graph=self._graph,
                                          kernels=kernels)
        return {name: kernel * masks[name] for name, kernel in kernels.items()}

    def update(self):
        """One ADMM iteration: Z = Pi(W + U), U += W - Z, then the rho schedule."""
        weights = {s.name: s.weight_numpy() for s in self._slots}
        sums = {s.name: weights[s.name] + s.u.numpy() for s in self._slots}
        projected = self._project(sums)
        for s in self._slots:
            s.dual = _relative(projected[s.name] - s.z.numpy(), weights[s.name])
            s.z.assign(projected[s.name])
            s.u.assign(sums[s.name] - projected[s.name])
            s.residual = _relative(weights[s.name] - projected[s.name], weights[s.name])
        self.updates += 1
        for s in (s for s in self._slots if s.active):
            _set_rho(s, self._next_rho(s, float(s.rho.numpy())))

    def _next_rho(self, s, rho):
        """Slot ``s``'s rho after an update (see ``rho_schedule``)."""
        if self.rho_schedule == "balanced":
            if s.residual > self.balance * s.dual:
                return min(rho * self.rho_factor, max(self.rho_max, rho))
            if s.dual > self.balance * s.residual:
                return max(rho / self.rho_factor, min(self.rho0, rho))
            return rho
        if self.updates % self.rho_every == 0:
            return max(rho, min(rho * self.rho_factor, self.rho_max))
        return rho

    def hard_prune(self):
        """Project the policy's kernels (``W``) in place with the model-level
        projection; return the masks. ``self.cut``: each layer's share of W the
        projection removed, ``||W - Pi(W)|| / ||W||`` over the kernel rows whose
        input channels stay alive (0 when ADMM converged; the rows reading a channel
        that dies upstream read zeros: cutting them changes nothing).

        Returns ``{layer name: 0/1 float32 mask of the kernel's shape}``; in
        masked ADMM the masks lie inside the wrappers' masks.
        """
        if self._slots is None:
            raise ValueError("ADMM.hard_prune() needs a model: call model.fit with "
                             "this callback first (or set_model(model)).")
        masks = masks_lib.magnitude_masks(
            None, self._schemes, graph=self._graph,
            kernels={s.name: s.weight_numpy() for s in self._slots})
        self.cut = {}
        for s in self._slots:
            mask = masks[s.name]
            if s.mask is not None:
                mask *= s.mask.numpy()
            masks[s.name] = mask
        _, alive = self._graph.close(masks)
        for s in self._slots:
            mask, w = masks[s.name], s.weight_numpy()
            live = w * self._graph.rows_reading(s.name, alive).reshape(-1, 1)
            self.cut[s.name] = _relative(live * (1 - mask), live)
            s.kernel.assign(s.kernel.numpy() * mask.astype(s.kernel.dtype.as_numpy_dtype))
        self.masks = masks
        return masks

    def set_model(self, model):
        super().set_model(model)
        self._build(model)

    # -- loss registration ---------------------------------------------------
    def _registered(self):
        return [f for f in self.model._callable_losses
                if getattr(f, "args", (None,))[0] == self.penalty]

    def _reset_functions(self):
        self.model.train_function = None
        self.model.test_function = None

    def on_train_begin(self, logs=None):
        self._landing_steps = self._landing_plan()
        if self.prox_step is None and not self._registered():
            self.model.add_loss(self.penalty)
        # fit() already fetched a (possibly cached, penalty-free) train function.
        self.model.test_function = None
        self.model.train_function = self.model.make_train_function(force=True)

    def on_train_end(self, logs=None):
        for f in self._registered():
            self.model._callable_losses.remove(f)
        self._reset_functions()
        if self.hard_prune_on_train_end:
            self.hard_prune()

    # -- updates and logs ----------------------------------------------------
    def on_train_batch_begin(self, batch, logs=None):
        # The penalty at the weights this batch's loss is computed at (see on_epoch_end).
        self._penalty_sum += float(self._penalty_fn())
        self._penalty_batches += 1

    def _landing_plan(self):
        """``(first batch, {landing batches that end with a Z/U update})`` of the last
        epoch's landing (``LANDING_UPDATES`` evenly spaced, the last on its last
        batch), or None."""
        if self.landing is None:
            return None
        steps = (self.params or {}).get("steps")
        if not steps:
            raise ValueError("ADMM landing needs the number of steps per epoch: give fit a "
                             "train set of known length (or steps_per_epoch).")
        length = max(1, round(self.landing * steps))
        return steps - length, {-(-length * j // LANDING_UPDATES) - 1
                                for j in range(1, LANDING_UPDATES + 1)}

    def _landing(self, batch):
        """How far into the landing ``batch`` of this epoch is (None: not in it)."""
        epochs = (self.params or {}).get("epochs")
        if self._landing_steps is None or self._epoch != epochs - 1:
            return None
        start = self._landing_steps[0]
        return batch - start if batch >= start else None

    def on_train_batch_end(self, batch, logs=None):
        landing = self._landing(batch)
        if self.prox_step is not None or landing is not None:
            self._prox_fn(tf.constant(self.prox_step or LANDING_STEP))
        self._steps += 1
        if self.update_every != "epoch" and self._steps % self.update_every == 0:
            self.update()
        elif landing is not None and landing in self._landing_steps[1]:
            self.update()

    def on_epoch_begin(self, epoch, logs=None):
        self._penalty_sum = self._penalty_batches = 0
        self._epoch = epoch
        epochs = (self.params or {}).get("epochs")
        if self.final_rho is not None and epochs is not None and epoch == epochs - 1:
            for s in (s for s in self._slots if s.active):
                _set_rho(s, max(float(s.rho.numpy()), self.final_rho))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_loss" in logs:  # validation ran at these W, Z, U
            logs["val_task_loss"] = float(logs["val_loss"]) - (
                float(self._penalty_fn()) if self.prox_step is None else 0.0)
        if self.update_every == "epoch":
            self.update()
        if logs is None:
            return
        residuals, duals, zeros = [], [], []
        active = [s for s in self._slots if s.active]
        for s in active:
            w = np.abs(s.weight_numpy())
            zero = float(np.mean(w <= self.near_zero * w.max())) if w.size else 0.0
            for key, value in (("res", s.residual), ("dual", s.dual), ("zero", zero)):
                self.layer_history.setdefault(f"admm_{key}/{s.name}", []).append(value)
            residuals.append(s.residual)
            duals.append(s.dual)
            zeros.append(zero)
        # Keras' "loss" (and "val_loss") is the task loss plus the rho penalty: show
        # them apart ("task_loss", "val_task_loss", "admm_penalty": epoch means).
        penalty = self._penalty_sum / max(self._penalty_batches, 1)
        logs["admm_penalty"] = penalty
        if "loss" in logs:
            logs["task_loss"] = float(logs["loss"]) - (penalty if self.prox_step is None else 0.0)
        logs["admm_res"] = float(np.mean(residuals))
        logs["admm_dual"] = float(np.mean(duals))
        logs["admm_zero"] = float(np.mean(zeros))
        logs["admm_rho"] = float(np.mean([s.rho.numpy() for s in active]))


def _plain(model):
    """``model`` without pruning wrappers (a stripped copy when it has some), whose
    layers carry the inner layers' names: what the channel analysis reads."""
    wrapped = any(isinstance(layer, pruning_wrapper.PruneLowMagnitude) for layer in model.layers)
    return tfmot.sparsity.keras.strip_pruning(model) if wrapped else model


def _set_rho(slot, new):
    """``rho <- new`` with U rescaled so that the unscaled dual rho * U is unchanged."""
    old = float(slot.rho.numpy())
    slot.rho.assign(new)
    slot.u.assign(slot.u * (old / new))


def _relative(diff, reference):
    norm = float(np.linalg.norm(reference))
    return float(np.linalg.norm(diff)) / norm if norm > 0 else 0.0
