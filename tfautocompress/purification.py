"""Purification and unused-weights removal (AutoCompress §3.4, Phase II).

ADMM leaves many small, non-zero filters and columns. ``threshold_masks`` removes,
per layer, every filter (column) whose L2 norm is below ``filter_scale`` (``column_scale``)
times the *median norm of the layer's live filters (columns)*: a scale relative to
the layer's own weights, so one range of scales fits every layer.

``remove_unused`` then drops weights nothing uses, in both directions, to a fixed
point: a dead filter kills its channel in every consumer (``graph.close_masks``), and
a channel that no consumer reads any more (all its columns pruned) kills the
producers' filter (and BatchNorm entries). Depthwise/separable consumers are taken
to read every channel (conservative).

The per-layer scales are searched by simulated annealing (``ThresholdOracle``) on the
keras-tuner machinery, scored by ``PurificationTuner``. ``search.EnhancedSAOracle``
does not fit: its hard constraint is a target compression ratio reached by bisection
on the analytic cost of *fractions of the dense layers*, with the guided heuristic
(bigger layers prune more); purification has no target — it maximises the extra
reduction subject to the validation-accuracy bound, over scales relative to each
layer's live norms. The SA schedule (T0, eta, k) is the paper's, as in Phase I.
"""
import math

import keras_tuner
import numpy as np
from keras_tuner.engine import base_tuner
from keras_tuner.engine import trial as trial_module

from tfautocompress import cost, graph as graph_lib, masks as masks_lib
from tfautocompress import policy as policy_lib, schemes as schemes_lib
from tfautocompress.baseline import accuracy
from tfautocompress.compact import apply_masks
from tfautocompress.search.oracle import SafeOracle

__all__ = ["threshold_masks", "remove_unused", "purify", "ThresholdOracle",
           "PurificationTuner", "search_thresholds"]

_STATUS = trial_module.TrialStatus


def _split_norms(kernel, kind):
    n_filters = schemes_lib.gemm_view(kernel, kind).shape[1]
    norms = schemes_lib.Combined().group_norms(kernel, kind)
    return norms[:n_filters], norms[n_filters:]


def _keep_above(norms, scale):
    """1/0 over groups: norm >= scale * median of the live (non-zero) norms."""
    live = norms[norms > 0]
    if not live.size or scale <= 0:
        return (norms > 0).astype(np.float32) if live.size else np.ones_like(norms, np.float32)
    keep = norms >= scale * float(np.median(live))
    keep[np.argmax(norms)] = True  # a layer keeps at least one group
    return keep.astype(np.float32)


def threshold_masks(model, scales, masks=None):
    """Masks removing every group below its layer's threshold.

    ``scales``: ``{layer: (filter_scale, column_scale)}``, each >= 0; a group goes when
    its L2 norm < scale x median live norm of its kind in that layer. ``masks``: the
    masks so far (their zeros stay); layers not in ``scales`` keep their mask.
    """
    result = {name: np.asarray(m, np.float32) for name, m in (masks or {}).items()}
    for name, pair in scales.items():
        filter_scale, column_scale = (float(s) for s in pair)
        if min(filter_scale, column_scale) < 0 or not math.isfinite(filter_scale + column_scale):
            raise ValueError(f"layer {name!r}: threshold scales {pair!r} must be finite "
                             "and >= 0 (0 removes nothing).")
        layer = model.get_layer(name)
        kind = schemes_lib.kernel_kind(layer)
        kernel = masks_lib.kernel_of(layer).numpy()
        prior = result.get(name, np.ones(kernel.shape, np.float32))
        filters, columns = _split_norms(kernel * prior, kind)
        gemm = np.outer(_keep_above(columns, column_scale), _keep_above(filters, filter_scale))
        result[name] = prior * gemm.reshape(kernel.shape).astype(np.float32)
    return result


def _channels_read(layer, mask):
    """Bool per input channel of a consumer: does its mask read it? None: all
    (no mask, or a depthwise/separable layer, taken to read everything)."""
    if mask is None or hasattr(layer, "depthwise_kernel"):
        return None
    return np.any(mask != 0, axis=tuple(a for a in range(mask.ndim) if a != mask.ndim - 2))


def remove_unused(model, masks):
    """Closed kernel masks with no unused weights (see module doc); inputs unchanged.

    ``model``: a tf_keras model or its ``graph.analyze`` result.
    """
    channel_graph = model if isinstance(model, graph_lib.ChannelGraph) else graph_lib.analyze(model)
    kernels = {n for n, op in channel_graph.ops.items() if op.kernel is not None}
    closed = channel_graph.close(masks)[0]
    total = sum(group.channels for group in channel_graph.groups)
    for _ in range(total + 1):  # every pass kills a channel or stops
        changed = False
        for group in channel_graph.groups:
            read = np.zeros(group.channels, bool)
            for consumer, rows in group.consumers:
                by_row = _channels_read(channel_graph.layers[consumer], closed.get(consumer))
                read |= True if by_row is None else by_row[rows].any(axis=0)
            if not group.consumers or read.all():
                continue
            for producer in group.producers:
                mask = closed.get(producer)
                if mask is None:
                    layer = channel_graph.layers[producer]
                    mask = np.ones(masks_lib.kernel_of(layer).shape, np.float32)
                if np.any(mask[..., ~read]):
                    mask = mask.copy()
                    mask[..., ~read] = 0.0
                    closed[producer], changed = mask, True
        if not changed:
            break
        closed = channel_graph.close(closed)[0]
    return {n: m for n, m in closed.items() if n in kernels}


def purify(model, masks, scales, channel_graph=None):
    """``remove_unused(threshold_masks(...))``: Phase II's masks for ``scales``."""
    return remove_unused(channel_graph or model, threshold_masks(model, scales, masks))


class ThresholdOracle(SafeOracle):
    """Simulated annealing over per-layer ``filter_scale/<layer>``, ``column_scale/<layer>``.

    The first trial is all zeros (nothing removed, always within the bound); each
    next one perturbs a ``perturb_share`` of the layers of the current action by
    ``N(0, (step * max_scale * T / T0)^2)``. Metropolis acceptance as in Phase I:
    better is kept, worse with ``exp(-dE / (k T))``; ``T <- cooling * T`` per trial;
    stops below ``stop_temperature`` or at ``max_trials``. Sequential (one worker).
    """

    def __init__(self, layer_names, max_scale=1.0, start_temperature=20.0,
                 stop_temperature=0.5, cooling=0.7, boltzmann=1e-3, perturb_share=0.5,
                 step=0.5, max_trials=None, seed=0, **kwargs):
        self.layer_names = tuple(layer_names)
        if not self.layer_names:
            raise ValueError("ThresholdOracle needs at least one layer name, got none.")
        if not max_scale > 0 or not 0 < cooling < 1 or not 0 < stop_temperature <= start_temperature:
            raise ValueError(f"ThresholdOracle: need max_scale > 0, 0 < cooling < 1 and "
                             f"0 < stop_temperature <= start_temperature; got "
                             f"max_scale={max_scale}, cooling={cooling}, "
                             f"temperatures={stop_temperature}, {start_temperature}.")
        self.max_scale, self.t0, self.t_stop = float(max_scale), float(start_temperature), float(stop_temperature)
        self.cooling, self.boltzmann = float(cooling), float(boltzmann)
        self.perturb_share, self.step = float(perturb_share), float(step)
        levels = int(math.floor(math.log(self.t_stop / self.t0) / math.log(self.cooling) + 1e-9)) + 1
        hp = keras_tuner.HyperParameters()
        for name in self.value_names():
            hp.Float(name, 0.0, self.max_scale)
        super().__init__(objective=keras_tuner.Objective("score", "max"),
                         max_trials=min(levels + 1, max_trials or levels + 1),
                         hyperparameters=hp, allow_new_entries=False,
                         tune_new_entries=False, seed=int(seed), **kwargs)
        self.seed, self._draws = int(seed), 0
        self._temperature, self._current = self.t0, None  # current: {"score", "values"}

    def value_names(self):
        return [f"{kind}_scale/{n}" for n in self.layer_names for kind in ("filter", "column")]

    @staticmethod
    def scales(values):
        """``{layer: (filter_scale, column_scale)}`` from trial values."""
        names = [k.split("/", 1)[1] for k in values if k.startswith("filter_scale/")]
        return {n: (values[f"filter_scale/{n}"], values[f"column_scale/{n}"]) for n in names}

    def populate_space(self, trial_id):
        if self._current is None:
            return {"status": _STATUS.RUNNING, "values": dict.fromkeys(self.value_names(), 0.0)}
        rng = np.random.default_rng([self.seed, self._draws])
        self._draws += 1
        values = dict(self._current["values"])
        sigma = self.step * self.max_scale * self._temperature / self.t0
        count = max(1, int(round(self.perturb_share * len(self.layer_names))))
        for i in rng.choice(len(self.layer_names), size=count, replace=False):
            for kind in ("filter", "column"):
                key = f"{kind}_scale/{self.layer_names[i]}"
                values[key] = float(np.clip(values[key] + sigma * rng.standard_normal(),
                                            0.0, self.max_scale))
        return {"status": _STATUS.RUNNING, "values": values}

    def learn(self, trial):
        score = trial.score if trial.status == _STATUS.COMPLETED else None
        if score is not None and self._accept(score):
            self._current = {"score": float(score),
                             "values": {k: float(v) for k, v in trial.hyperparameters.values.items()}}
        if self._current is not None and len(self.trials) > 1:
            self._temperature *= self.cooling

    def _accept(self, score):
        if self._current is None or score >= self._current["score"]:
            return True
        rng = np.random.default_rng([self.seed, self._draws])
        self._draws += 1
        energy = self._current["score"] - score
        return rng.uniform() < math.exp(-energy / (self.boltzmann * self._temperature))

    def get_state(self):
        state = super().get_state()
        state["threshold_sa"] = {"temperature": self._temperature, "draws": self._draws,
                                 "seed": self.seed, "current": self._current}
        return state

    def set_state(self, state):
        super().set_state(state)
        sa = state["threshold_sa"]
        self._temperature, self._draws = sa["temperature"], sa["draws"]
        self.seed, self._current = sa["seed"], sa["current"]


class PurificationTuner(base_tuner.BaseTuner):
    """Scores threshold scales: extra removed share of the objective's cost if the
    validation accuracy stays >= ``min_accuracy``, else minus the shortfall."""

    def __init__(self, oracle, model, masks, validation_data, min_accuracy,
                 objective="params", **kwargs):
        self.model, self.masks = model, dict(masks)
        self.validation_data, self.min_accuracy = validation_data, float(min_accuracy)
        self._attr = {"params": "conv_params", "macs": "conv_macs"}[
            policy_lib.check_objective(objective)]
        self._graph = graph_lib.analyze(model)
        self._start_cost = getattr(cost.count(model, self.masks), self._attr)
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)

    def evaluate(self, scales):
        """``(score, val_accuracy, masks)`` of ``scales``."""
        masks = purify(self.model, self.masks, scales, self._graph)
        acc = accuracy(apply_masks(self.model, masks), self.validation_data)
        removed = 1.0 - getattr(cost.count(self.model, masks), self._attr) / max(self._start_cost, 1)
        score = removed if acc >= self.min_accuracy else acc - self.min_accuracy
        return float(score), float(acc), masks

    def run_trial(self, trial, *args, **kwargs):
        score, acc, _ = self.evaluate(ThresholdOracle.scales(trial.hyperparameters.values))
        return {"score": score, "val_accuracy": acc}

    def best_scales(self):
        """The best scales within the accuracy bound (all zeros if none beat them)."""
        trials = [t for t in self.oracle.get_best_trials(1) if t.score is not None and t.score >= 0]
        if not trials:
            return dict.fromkeys(self.oracle.layer_names, (0.0, 0.0))
        return ThresholdOracle.scales(trials[0].hyperparameters.values)


def search_thresholds(model, masks, validation_data, min_accuracy, *, objective="params",
                      max_trials=12, max_scale=1.0, seed=0, directory=None,
                      project_name="purification", verbose=0):
    """Search per-layer scales; returns ``(purified masks, scales, val_accuracy)``.

    The layers are those with a mask. The result keeps validation accuracy >=
    ``min_accuracy`` (the untouched masks, closed, if no setting does).
    """
    names = [n for n in masks if np.ndim(masks[n]) > 1]
    oracle = ThresholdOracle(names, max_scale=max_scale, max_trials=max_trials, seed=seed)
    tuner = PurificationTuner(oracle, model, masks, validation_data, min_accuracy,
                              objective=objective, directory=directory,
                              project_name=project_name, overwrite=False)
    tuner.search(verbose=verbose)
    scales = tuner.best_scales()
    _, acc, purified = tuner.evaluate(scales)
    return purified, scales, acc
