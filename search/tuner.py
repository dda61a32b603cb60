"""Fast evaluation of pruning policies as a keras-tuner ``BaseTuner`` (AutoCompress §3.1 (ii)).

``PruningTuner`` keeps one tf_keras model and a dense copy of its weights. A
trial decodes the policy from the trial's values, computes magnitude masks on the
dense kernels, closes them over the channel graph (dead filters zero their bias
and BatchNorm gamma/beta, so a dead channel is zero downstream as in the compact
model), assigns the masked weights in place, runs one compiled forward pass over a
cached validation subset and restores the dense weights. Nothing is rebuilt,
recompiled or saved with Keras 3; no keras-tuner callback reaches tf_keras.
"""
import time

import numpy as np
import tensorflow as tf
from keras_tuner.engine import base_tuner

from tfautocompress import evaluate as evaluate_lib, graph as graph_lib, masks as masks_lib
from tfautocompress import compact, cost, layer_kinds, space as space_lib
from tfautocompress._keras import check_model
from tfautocompress.search import encoding, oracle as oracle_lib, workers

__all__ = ["PruningTuner", "CALIBRATION_BATCHES"]

CALIBRATION_BATCHES = 2  # default calibration_batches (see PruningTuner)
# The fast evaluation's scores (PruningTuner score=).
SCORES = {"accuracy": evaluate_lib.accuracy,
          "probability": evaluate_lib.true_class_probability}
_IDLE_SLEEP_S = (0.05, 1.0)  # back-off while the oracle answers IDLE: first, at most


class PruningTuner(base_tuner.BaseTuner):
    """Scores each trial's policy on the validation subset after magnitude pruning.

    Args:
      oracle: an ``EnhancedSAOracle`` (or any Oracle whose trial values encode a
        ``PruningPolicy`` over ``space``).
      model: the tf_keras model to prune (not modified after a trial).
      validation_data: a batched ``tf.data.Dataset`` of ``(x, y)`` or a tuple of
        arrays ``(x, y)`` — the validation split, never the test split.
      subset_size: how many validation examples to score on (all if None).
      space: the ``PolicySpace``; defaults to ``oracle.space``.
      batch_size: forward-pass batch size.
      calibration_data: optional training data — a batched ``tf.data.Dataset`` of
        ``(x, y)`` (or of ``x``), a tuple of arrays ``(x, y)`` or an array ``x``. When
        given to a model with BatchNormalization, each trial re-estimates every
        BatchNormalization's moving mean and variance after masking (adaptive BN recalibration, as in EagleEye): the
        model is run in training mode up to the BN inputs on these batches, and the
        per-channel batch mean and (biased) variance are averaged over the batches
        (a cumulative average, not momentum) and assigned; no weight is updated.
        Without it BN statistics stay the dense model's, which after structured
        pruning scores near chance on conv-BN nets.
      calibration_batches: how many batches of ``calibration_data`` to use (batches
        of another size than the first are dropped so one graph serves every trial).
        The default 2 is the smallest count whose scores rank four random 4x filter
        policies on digits_vgg (batches of 64) as 16 batches do; cost ≈ one
        training-mode forward pass per batch per trial.
      log: ``print``-like callable for one progress line per finished trial
        (``trial k/N: score, best, the policy's ratio on objective, temperature``);
        None: silent.
      objective: what that line's ratio counts (``"params"`` or ``"macs"``).
      score: ``"accuracy"`` (top-1) or ``"probability"`` (the mean probability of the
        true class, ``evaluate.true_class_probability``: smooth where top-1
        saturates, e.g. every policy at 0.97-1.00 on a couple of hundred images).
      **kwargs: ``directory``, ``project_name``, ``overwrite`` of ``BaseTuner``.
    """

    def __init__(self, oracle, model, validation_data, subset_size=None, space=None,
                 batch_size=256, calibration_data=None,
                 calibration_batches=CALIBRATION_BATCHES, log=None, objective="params",
                 score="accuracy", **kwargs):
        self._score = _check_score(score)
        self.space = space if space is not None else getattr(oracle, "space", None)
        if not isinstance(self.space, space_lib.PolicySpace):
            raise TypeError("PruningTuner needs a space.PolicySpace: pass space= or an "
                            f"oracle with .space; got {type(self.space).__name__}.")
        self.model = compact.with_masked_norms(check_model(model))
        self.graph = graph_lib.analyze(self.model)
        self._x, self._y = _subset(validation_data, subset_size)
        self._batch_size = int(batch_size)
        self._dense = {}
        for name, layer in self.graph.layers.items():
            for attr in {_kernel_attr(layer), "bias", "gamma", "beta", "channel_mask"} - {None}:
                variable = getattr(layer, attr, None)
                if isinstance(variable, tf.Variable):
                    self._dense[(name, attr)] = (variable, variable.numpy())
        self.calibration = None
        if calibration_data is not None and evaluate_lib.batch_norm_layers(self.model):
            self.calibration = evaluate_lib.BNCalibration(self.model, calibration_data,
                                                          calibration_batches, self._batch_size)
        self._idle_polls = 0
        self._log, self._objective = log, cost.check_objective(objective)
        self.evaluated = 0  # trials this tuner ran (a keras-tuner worker runs a share)
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)
        self.oracle = workers.round_client(self.oracle)

    # --------------------------------------------------------- evaluation ---
    def evaluate(self, policy, score=None):
        """Validation-subset score (a Python float) of ``policy``'s magnitude masks, by
        the tuner's score or by ``score`` (a name in ``SCORES``)."""
        score = self._score if score is None else _check_score(score)
        kernels = {name: self._dense[(name, _kernel_attr(self.graph.layers[name]))][1]
                   for name in policy.schemes()}
        masks = masks_lib.magnitude_masks(self.model, policy, graph=self.graph,
                                          kernels=kernels)
        closed, _ = self.graph.close(masks)
        touched = []
        try:
            for name, mask in closed.items():
                touched += self._apply(name, mask)
            if self.calibration is not None:
                touched += [(v, v.numpy()) for v in self.calibration.variables]
                self.calibration()
            return score(self.model, (self._x, self._y), self._batch_size)
        finally:
            for variable, dense in touched:
                variable.assign(dense)

    def _apply(self, name, mask):
        layout = layer_kinds.layout_of(self.graph.layers[name])
        if layout is None:  # a normalization's channel mask
            attrs = [(a, mask) for a in ("gamma", "beta", "channel_mask")
                     if (name, a) in self._dense]
        else:
            alive = layer_kinds.alive_filters(mask, layout).astype(np.float32)
            attrs = [(layout.kernel_attr, mask)]
            if (name, "bias") in self._dense and alive.size == self._dense[(name, "bias")][1].size:
                attrs.append(("bias", alive))
        touched = []
        for attr, factor in attrs:
            variable, dense = self._dense[(name, attr)]
            variable.assign(dense * factor.astype(dense.dtype))
            touched.append((variable, dense))
        return touched

    # ------------------------------------------------------------- tuner ---
    def run_trial(self, trial, *args, **kwargs):
        policy = encoding.from_values(self.space, trial.hyperparameters.values)
        score = float(self.evaluate(policy))
        self.evaluated += 1
        return score

    def pre_create_trial(self):
        """Back off while the oracle answers IDLE (two create_trial calls in a row)."""
        if self._idle_polls:
            time.sleep(min(_IDLE_SLEEP_S[0] * 2 ** (self._idle_polls - 1), _IDLE_SLEEP_S[1]))
        self._idle_polls += 1

    def on_trial_begin(self, trial):
        self._idle_polls = 0
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self._log is None or trial.score is None:
            return
        values = trial.hyperparameters.values
        ratio = encoding.from_values(self.space, values).compression_ratio(self._objective)
        best = max(t.score for t in self.oracle.get_best_trials(1) if t.score is not None)
        temperature = values.get("sa/temperature")
        self._log(f"trial {int(trial.trial_id) + 1}/{self.oracle.max_trials}: score "
                  f"{trial.score:.4f} (best {best:.4f}), {ratio:.2f}x {self._objective}"
                  + ("" if temperature is None else f", T={temperature:.3g}"))

    def best_policy(self):
        """The best ``PruningPolicy`` found (asks the chief oracle in distributed mode)."""
        trials = self.oracle.get_best_trials(self.oracle.max_trials or 10**6)
        return oracle_lib.best_policy(self.space, trials)


def _check_score(score):
    if score not in SCORES:
        raise ValueError(f"PruningTuner score={score!r} unknown; use one of "
                         f"{', '.join(SCORES)}.")
    return SCORES[score]


def _kernel_attr(layer):
    layout = layer_kinds.layout_of(layer)
    return None if layout is None else layout.kernel_attr


def _subset(data, size):
    """The first ``size`` examples of ``data`` as (x, y int32) tensors."""
    if isinstance(data, tuple) and len(data) == 2:
        xs, ys = [np.asarray(data[0])], [np.asarray(data[1])]
    elif isinstance(data, tf.data.Dataset):
        xs, ys, count = [], [], 0
        for x, y in data:
            xs.append(x.numpy())
            ys.append(y.numpy())
            count += len(ys[-1])
            if size is not None and count >= size:
                break
    else:
        raise TypeError("validation_data must be a batched tf.data.Dataset of (x, y) or a "
                        f"tuple (x, y) of arrays, got {type(data).__name__}.")
    x, y = np.concatenate(xs), np.concatenate(ys).reshape(-1).astype(np.int32)
    if size is not None:
        x, y = x[:size], y[:size]
    if not len(y):
        raise ValueError("validation_data is empty.")
    return tf.constant(x), tf.constant(y)
