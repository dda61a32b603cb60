"""Phase II's threshold search (AutoCompress §3.4): per-layer purification scales.

The math (``threshold_masks``, ``remove_unused``, ``purify``) lives in
``tfautocompress.purification``; this module searches its per-layer scales by
simulated annealing (``ThresholdOracle``) on the keras-tuner machinery, scored by
``PurificationTuner``. ``EnhancedSAOracle`` does not fit: its hard constraint is a
target compression ratio reached by bisection on the analytic cost of *fractions
of the dense layers*, with the guided heuristic (bigger layers prune more);
purification has no target — it maximises the extra reduction subject to the
validation-accuracy bound, over scales relative to each layer's live norms. The
SA schedule (T0, eta, k) is the paper's, as in Phase I.
"""

import keras_tuner
import numpy as np
from keras_tuner.engine import base_tuner
from keras_tuner.engine import trial as trial_module

from tfautocompress import cost, evaluate, graph as graph_lib, purification
from tfautocompress.compact import apply_masks
from tfautocompress.search.oracle import Draws, SafeOracle, levels, metropolis

__all__ = ["ThresholdOracle", "PurificationTuner", "search_thresholds"]

_STATUS = trial_module.TrialStatus


class ThresholdOracle(SafeOracle):
    """Simulated annealing over per-layer ``filter_scale/<layer>``, ``column_scale/<layer>``.

    The first trial is all zeros (nothing removed, always within the bound); each
    next one perturbs a ``perturb_share`` of the layers of the current action by
    ``N(0, (step * max_scale * T / T0)^2)``. Metropolis acceptance as in Phase I:
    better is kept, worse with ``exp(-dE / (k T))``; ``T <- cooling * T`` per trial;
    stops below ``stop_temperature`` or at ``max_trials``. Sequential (one worker).
    ``column_layers``: the layers whose columns purification may remove (None: all;
    the others' column scale stays 0: their exported form would multiply the zeros).
    """

    def __init__(self, layer_names, max_scale=1.0, start_temperature=20.0,
                 stop_temperature=0.5, cooling=0.7, boltzmann=1e-3, perturb_share=0.5,
                 step=0.5, max_trials=None, seed=0, column_layers=None, **kwargs):
        self.layer_names = tuple(layer_names)
        self.column_layers = frozenset(self.layer_names if column_layers is None
                                       else column_layers)
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
        count = levels(self.t0, self.t_stop, self.cooling)
        hp = keras_tuner.HyperParameters()
        for name in self.value_names():
            hp.Float(name, 0.0, self.max_scale)
        super().__init__(objective=keras_tuner.Objective("score", "max"),
                         max_trials=min(count + 1, max_trials or count + 1),
                         hyperparameters=hp, allow_new_entries=False,
                         tune_new_entries=False, seed=int(seed), **kwargs)
        self.seed, self._draws = int(seed), Draws(seed)
        self._temperature, self._current = self.t0, None  # current: {"score", "values"}

    def value_names(self):
        return [f"{kind}_scale/{n}" for n in self.layer_names for kind in ("filter", "column")
                if kind == "filter" or n in self.column_layers]

    @staticmethod
    def scales(values):
        """``{layer: (filter_scale, column_scale)}`` from trial values (column scale 0
        where the trial has none)."""
        names = [k.split("/", 1)[1] for k in values if k.startswith("filter_scale/")]
        return {n: (values[f"filter_scale/{n}"], values.get(f"column_scale/{n}", 0.0))
                for n in names}

    def populate_space(self, trial_id):
        if self._current is None:
            return {"status": _STATUS.RUNNING, "values": dict.fromkeys(self.value_names(), 0.0)}
        rng = self._draws.next()
        values = dict(self._current["values"])
        sigma = self.step * self.max_scale * self._temperature / self.t0
        count = max(1, int(round(self.perturb_share * len(self.layer_names))))
        for i in rng.choice(len(self.layer_names), size=count, replace=False):
            for kind in ("filter", "column"):
                key = f"{kind}_scale/{self.layer_names[i]}"
                if key in values:
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
        current = None if self._current is None else self._current["score"]
        return metropolis(current, score, self._temperature, self.boltzmann, self._draws)

    def get_state(self):
        state = super().get_state()
        state["threshold_sa"] = {"temperature": self._temperature, "draws": self._draws.count,
                                 "seed": self.seed, "current": self._current}
        return state

    def set_state(self, state):
        super().set_state(state)
        sa = state["threshold_sa"]
        self._temperature, self._draws = sa["temperature"], Draws(sa["seed"], sa["draws"])
        self.seed, self._current = sa["seed"], sa["current"]


class PurificationTuner(base_tuner.BaseTuner):
    """Scores threshold scales: extra removed share of the objective's cost if the
    validation accuracy stays >= ``min_accuracy``, else minus the shortfall."""

    def __init__(self, oracle, model, masks, validation_data, min_accuracy,
                 objective="params", latency=None, **kwargs):
        self.model, self.masks = model, dict(masks)
        self.validation_data, self.min_accuracy = validation_data, float(min_accuracy)
        self._cost = _cost_of(objective, latency)
        self._graph = graph_lib.analyze(model)
        self._start_cost = self._cost(cost.count(model, self.masks))
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)

    def evaluate(self, scales):
        """``(score, val_accuracy, masks)`` of ``scales``."""
        masks = purification.purify(self.model, self.masks, scales, self._graph)
        acc = evaluate.accuracy(apply_masks(self.model, masks), self.validation_data)
        removed = 1.0 - self._cost(cost.count(self.model, masks)) / max(self._start_cost, 1e-9)
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


def _cost_of(objective, latency):
    """What purification removes a share of: CONV params or MACs of a ``cost.count``,
    or the ms ``latency`` (a ``LatencyModel``) predicts for it."""
    if cost.check_objective(objective) != "latency":
        attr = {"params": "conv_params", "macs": "conv_macs"}[objective]
        return lambda report: getattr(report, attr)
    if latency is None:
        raise ValueError("objective 'latency' needs latency= (the model's LatencyModel).")
    return latency.predict_report


def search_thresholds(model, masks, validation_data, min_accuracy, *, objective="params",
                      latency=None, max_trials=12, max_scale=1.0, seed=0, directory=None,
                      project_name="purification", column_layers=None, verbose=0):
    """Search per-layer scales; returns ``(purified masks, scales, val_accuracy)``.

    The layers are those with a mask. The result keeps validation accuracy >=
    ``min_accuracy`` (the untouched masks, closed, if no setting does).
    ``latency``: the model's ``LatencyModel`` when ``objective="latency"``.
    ``column_layers``: the layers whose columns it may remove (None: all).
    """
    names = [n for n in masks if np.ndim(masks[n]) > 1]
    oracle = ThresholdOracle(names, max_scale=max_scale, max_trials=max_trials, seed=seed,
                             column_layers=column_layers)
    tuner = PurificationTuner(oracle, model, masks, validation_data, min_accuracy,
                              objective=objective, latency=latency, directory=directory,
                              project_name=project_name, overwrite=False)
    tuner.search(verbose=verbose)
    scales = tuner.best_scales()
    _, acc, purified = tuner.evaluate(scales)
    return purified, scales, acc
