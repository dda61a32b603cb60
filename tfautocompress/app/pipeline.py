"""The AutoCompress pipeline (Fig. 3, Algorithm 1): Phase I rounds, Phase II, compaction.

    ac = AutoCompress(model, splits, "runs/compress", Config(max_rounds=4))
    report = ac.run()

Phase I round k: the enhanced SA (``search.EnhancedSAOracle`` + ``PruningTuner``)
picks a policy reaching ~``round_ratio`` x the previous round's compression ratio;
``callbacks.progressive.partial_prune`` runs ADMM -> hard prune -> masked retraining
from the previous round. A round is kept if its validation accuracy stays within
``max_accuracy_drop`` (percentage points) of the baseline's; the first round that
breaks the bound is rejected and Phase I ends with the previous round. Phase I also
ends at ``target_compression_ratio`` (objective ``params`` or ``macs``, counted on
the CONV layers as the paper's tables), at ``max_rounds``, or when the target is
infeasible. Phase II (``purification``) removes near-zero filters/columns and unused
weights under the same bound; ``compact`` builds the smaller dense model, with its
column-sparse convolutions lowered where that is faster (``Config.columns``); optionally
it is exported to TFLite (fp32 / fp16), benchmarked and checked for the GPU delegate.

``Config.distribution`` trains under a ``tf.distribute`` strategy and
``Config.search_parallel`` proposes that many SA neighbours per step, for
keras-tuner search workers (``distribute``: the chief runs this pipeline, the
workers evaluate each round's trials with ``search_tuner``).

Everything is saved under ``output_dir`` (``round_<k>/`` policy JSON, masks npz,
model .keras, metrics JSON; ``purification/``; ``final/``) with ``state.json``, all
atomically; a new ``AutoCompress`` on the same directory continues after the last
finished step. A Keras 3 model is compressed as its tf_keras conversion, and
``final/compact.keras`` is then a Keras 3 model (the rounds' models stay tf_keras:
they are the pipeline's own checkpoints). Each step reseeds from ``Config.seed``, so a resumed run and an
uninterrupted one take the same steps.
"""
import dataclasses
import os
import shutil
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfautocompress import artifacts, cost, distribute, masks as masks_lib, policy as policy_lib
from tfautocompress import purification, space as space_lib
from tfautocompress._keras import as_tf_keras, is_keras3, keras
from tfautocompress.app import report as report_lib
from tfautocompress.app.progressive import PartialModel, Recipe, partial_prune
from tfautocompress.baseline import compile_for_training
from tfautocompress.compact import COLUMNS, apply_masks, compact, compact_lowered, flatten
from tfautocompress.evaluate import accuracy
from tfautocompress.schemes import Scheme
from tfautocompress.search import sa_oracle, thresholds, tuner as tuner_lib, workers
from tfautocompress.search.oracle import InfeasibleTargetError
from tfautocompress.tflite_tools import latency

__all__ = ["Config", "AutoCompress", "round_seed", "step_seed"]

_STATE = "state.json"
# settings a run may resume under another value of (they do not change its result)
_RUNTIME = ("distribution", "validation_freq")


def round_seed(seed, k):
    """The seed of round ``k``'s search (Config.seed = ``seed``)."""
    return seed + k


def step_seed(seed, step):
    """The global seed set before step ``step`` trains (round k is step k;
    purification is step 100)."""
    return seed * 1000 + step


@dataclasses.dataclass
class Config:
    """Settings of one AutoCompress run (saved in ``state.json``).

    ``max_accuracy_drop``: percentage points of validation accuracy the result may
    lose against the baseline (1.0 = one point). ``target_compression_ratio``:
    dense / kept (N x) on ``objective``; None = as far as the bound allows.
    ``admm``: keyword arguments of ``callbacks.admm.ADMM`` (rho, rho_factor, ...).
    ``bn_momentum``: BatchNormalization momentum while pruning (None keeps the
    model's): after a hard prune the moving statistics must follow the pruned
    weights within the few epochs of a round (0.99 would lag ~100 steps).
    ``distribution``: ``"none"``, ``"mirrored"`` or ``"multi_worker"``, the
    ``tf.distribute`` strategy of the training phases (``distribute``; the
    batch size of ``splits.train`` is the global batch, ``lr`` its rate). It does
    not change the result beyond float round-off, so a run may resume under
    another one. ``search_parallel``: SA neighbours evaluated per chain step; set
    it to the number of keras-tuner search workers (the same value gives the same
    trials in one process).
    ``columns``: ``compact``'s column mode for the final model (``compact.COLUMNS``;
    ``"auto"`` lowers the column-sparse convolutions that run faster in host TFLite).
    ``validation_freq``: the training phases' per-epoch validation
    (``evaluate.fit_validation``: every this many epochs, 0: none); the rounds and
    bounds use the validation accuracy measured after each phase either way.
    """

    objective: str = "params"
    target_compression_ratio: float = None
    max_accuracy_drop: float = 1.0
    max_rounds: int = 5
    round_ratio: float = 2.0
    scheme_set: str = "filter+column"
    max_fraction: float = 0.95
    search_trials: int = 24
    search_subset: int = None
    admm_epochs: int = 4
    retrain_epochs: int = 4
    lr: float = 1e-3
    admm: dict = dataclasses.field(default_factory=dict)
    bn_momentum: float = 0.9
    purification_trials: int = 12
    purification_rounds: int = 3
    purification_max_scale: float = 1.0
    export_tflite: bool = False
    columns: str = "auto"
    seed: int = 0
    distribution: str = "none"
    search_parallel: int = 1
    validation_freq: int = 1

    def __post_init__(self):
        cost.check_objective(self.objective)
        if self.columns not in COLUMNS:
            raise ValueError(f"Config.columns={self.columns!r}; accepted: "
                             f"{', '.join(map(repr, COLUMNS))}.")
        if self.scheme_set not in space_lib.SCHEME_SETS:
            raise ValueError(f"scheme_set={self.scheme_set!r}; accepted: {space_lib.SCHEME_SETS}.")
        if self.distribution not in distribute.DISTRIBUTIONS:
            raise ValueError(f"Config.distribution={self.distribution!r}; accepted: "
                             f"{distribute.DISTRIBUTIONS}.")
        checks = {"max_rounds": self.max_rounds >= 1, "search_trials": self.search_trials >= 1,
                  "search_parallel": self.search_parallel >= 1,
                  "validation_freq": self.validation_freq >= 0,
                  "admm_epochs": self.admm_epochs >= 1, "retrain_epochs": self.retrain_epochs >= 0,
                  "purification_trials": self.purification_trials >= 0,
                  "purification_rounds": self.purification_rounds >= 1,
                  "max_accuracy_drop": 0 <= self.max_accuracy_drop <= 100,
                  "round_ratio": self.round_ratio > 1, "lr": self.lr > 0,
                  "bn_momentum": self.bn_momentum is None or 0 <= self.bn_momentum < 1,
                  "target_compression_ratio": self.target_compression_ratio is None
                  or self.target_compression_ratio > 1}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Config.{name}={getattr(self, name)!r} is out of range: "
                                 "rounds, trials, search_parallel and ADMM epochs >= 1, "
                                 "retrain epochs and validation_freq >= 0, "
                                 "max_accuracy_drop in [0, 100] percentage points, "
                                 "round_ratio and target_compression_ratio > 1, lr > 0, "
                                 "bn_momentum in [0, 1) or None.")


class AutoCompress:
    """Phase I rounds, Phase II purification and compaction of ``model`` (see module doc).

    ``splits``: ``data.Splits`` (validation for search and bounds, test for reports).
    ``tensorboard_dir``: per-round scalars and the ADMM/retraining epoch logs.
    ``keras3``: write ``final/compact.keras`` as a Keras 3 model; None: when
    ``model`` is a Keras 3 model (pass True for a tf_keras model converted from one).
    """

    def __init__(self, model, splits, output_dir, config=None, tensorboard_dir=None, verbose=1,
                 keras3=None):
        self.config = config or Config()
        self.keras3 = is_keras3(model) if keras3 is None else bool(keras3)
        self._strategy = distribute.strategy(self.config.distribution)
        self.model = distribute.with_batch_norm(flatten(as_tf_keras(model)),
                                                self.config.bn_momentum,
                                                synchronized=self._strategy is not None)
        self.splits, self.output_dir = splits, os.fspath(output_dir)
        self.verbose = verbose
        self._writer = tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir else None
        self._dense = cost.count(model)
        self._calibration = None
        path = os.path.join(self.output_dir, _STATE)
        if os.path.exists(path):
            self.state = artifacts.read_json(path)
            if _settings(self.state["config"]) != _settings(dataclasses.asdict(self.config)):
                raise ValueError(f"{path} was written with another configuration "
                                 f"{self.state['config']}; rerun with the same settings to "
                                 "resume, or choose a new output_dir.")
        else:
            self.state = {"config": dataclasses.asdict(self.config), "baseline": None,
                          "rounds": [], "phase1_end": None, "purification": None, "final": None}

    # ------------------------------------------------------------ helpers ---
    def reload_state(self):
        """Re-read ``state.json`` (a search worker follows the chief's progress)."""
        self.state = artifacts.read_json(os.path.join(self.output_dir, _STATE))
        return self.state

    def _save_state(self):
        artifacts.write_json(os.path.join(self.output_dir, _STATE), self.state)

    def _log(self, message):
        if self.verbose:
            print(f"[autocompress] {message}", flush=True)

    def _metrics(self, model, masks, wall_s):
        """Accuracies and ratios of ``model`` with ``masks`` against the dense model."""
        counted = cost.count(model, masks) if masks else cost.count(model)
        return {"val_accuracy": accuracy(model, self.splits.val),
                "test_accuracy": accuracy(model, self.splits.test),
                **self._dense.ratios(counted), "objective_ratio": self._ratio(counted),
                "wall_s": float(wall_s)}

    def _ratio(self, counted):
        attr = "conv_params" if self.config.objective == "params" else "conv_macs"
        return getattr(self._dense, attr) / max(getattr(counted, attr), 1)

    def _floor(self):
        return self.state["baseline"]["val_accuracy"] - self.config.max_accuracy_drop / 100.0

    def _recipe(self, step, folder):
        """Adam with a cosine decay over each phase: the last epoch's weights are
        settled, so a round's accuracy does not hinge on a noisy final step. Each
        phase trains on its own freshly shuffled data and keeps epoch checkpoints in
        ``folder/train`` (a killed step resumes at its last finished epoch)."""
        seed = step_seed(self.config.seed, step)
        phases = {"admm": 1, "retrain": 2}
        train_for = lambda phase: self.splits.reshuffled(seed * 10 + phases[phase]).train  # noqa: E731
        batches = int(self.splits.train.cardinality())
        epochs = max(self.config.admm_epochs, self.config.retrain_epochs)
        decay = epochs * batches if batches > 0 else None
        return Recipe(self.splits.train, self.splits.val,
                      lambda m: compile_for_training(m, self.config.lr, decay_steps=decay),
                      admm_epochs=self.config.admm_epochs,
                      retrain_epochs=self.config.retrain_epochs, admm=dict(self.config.admm),
                      verbose=2 if self.verbose else 0, train_for=train_for,
                      validation_freq=self.config.validation_freq,
                      checkpoint_dir=os.path.join(self.output_dir, folder, "train"))

    def _seed(self, step):
        keras.utils.set_random_seed(step_seed(self.config.seed, step))

    def _accepted(self):
        return [r for r in self.state["rounds"] if r["accepted"]]

    def _load_step(self, folder):
        """``(model, masks)`` a finished step saved in ``folder``; an error naming the
        file when it is corrupt."""
        try:
            return (artifacts.load_model(os.path.join(folder, "model.keras"), what="saved step"),
                    masks_lib.load(os.path.join(folder, "masks.npz")))
        except ValueError as err:
            raise ValueError(f"{err} The run in {self.output_dir} cannot resume from it: "
                             "rerun with a new output_dir.") from None

    def _load_round(self, record):
        model, masks = self._load_step(os.path.join(self.output_dir, record["dir"]))
        schemes = {n: Scheme.from_config(c) for n, c in record["schemes"].items()}
        return PartialModel(model, masks, schemes, record["val_accuracy"], {})

    def _current(self):
        """``(model, masks, partial or None)`` of the last accepted round (or the baseline)."""
        accepted = self._accepted()
        if not accepted:
            return self.model, {}, None
        partial = self._load_round(accepted[-1])
        return partial.model, partial.masks, partial

    # -------------------------------------------------------------- steps ---
    def baseline(self):
        """Accuracy and cost of the dense model (once)."""
        if self.state["baseline"] is None:
            self.state["baseline"] = dict(self._metrics(self.model, None, 0.0),
                                          layers=report_lib.layer_summary(self.model, {}))
            self._save_state()
        return self.state["baseline"]

    def next_round(self):
        """Run the next Phase I round; False once Phase I is finished."""
        self.baseline()
        if self.state["phase1_end"] is not None:
            return False
        k = len(self.state["rounds"]) + 1
        previous = self._accepted()[-1]["objective_ratio"] if self._accepted() else 1.0
        if k > self.config.max_rounds:
            return self._end_phase1(f"max_rounds={self.config.max_rounds} reached")
        target = self.config.target_compression_ratio
        if target is not None and previous >= target:
            return self._end_phase1(f"target {target}x reached")
        start = time.perf_counter()
        self._seed(k)
        model, _, partial = self._current()
        folder = f"round_{k}"
        try:
            policy, searched, schedule = self._search(k, model)
        except InfeasibleTargetError as err:
            return self._end_phase1(f"round {k}: {err}")
        self._seed(k)
        with distribute.scope(self._strategy):
            result = partial_prune(self.model, policy, self._recipe(k, folder), start=partial)
        record = dict(self._metrics(result.model, result.masks, time.perf_counter() - start),
                      round=k, dir=folder, accepted=result.score >= self._floor(),
                      search_target_ratio=searched,
                      analytic_ratio=policy.compression_ratio(self.config.objective),
                      schedule=schedule,
                      schemes={n: s.get_config() for n, s in result.schemes.items()},
                      layers=report_lib.layer_summary(self.model, result.masks),
                      admm_residuals=_admm_residuals(result.history))
        self._save_round(folder, policy, result, record)
        self._log(f"round {k}: {record['objective_ratio']:.2f}x {self.config.objective}, "
                  f"val {record['val_accuracy']:.4f} (floor {self._floor():.4f}), "
                  f"{'accepted' if record['accepted'] else 'rejected'}")
        self._summaries(k, record, result.history)
        self.state["rounds"].append(record)
        self._save_state()
        self._drop_checkpoints(folder)
        if not record["accepted"]:
            return self._end_phase1(f"round {k} broke the accuracy bound")
        return True

    def search_tuner(self, k, model=None):
        """Round ``k``'s ``(EnhancedSAOracle, PruningTuner)`` on the state as it is
        (``model``: the last accepted round's, loaded if None); keras-tuner search
        workers build theirs with it too."""
        cfg = self.config
        model = self._current()[0] if model is None else model
        previous = self._accepted()[-1]["objective_ratio"] if self._accepted() else 1.0
        target, kwargs = cfg.target_compression_ratio, {}
        if target is not None and previous * cfg.round_ratio * 1.05 >= target:
            kwargs["target_compression_ratio"] = target
        oracle = sa_oracle.EnhancedSAOracle(
            self._space_of(model), cfg.objective, previous_compression_ratio=previous,
            round_ratio=cfg.round_ratio, max_trials=cfg.search_trials, seed=round_seed(cfg.seed, k),
            parallel=cfg.search_parallel, tag=f"round_{k}", **kwargs)
        tuner = tuner_lib.PruningTuner(oracle, model, self.splits.val, subset_size=cfg.search_subset,
                                       calibration_data=self._calibration_batches(),
                                       directory=os.path.join(self.output_dir, f"round_{k}"),
                                       project_name="search", overwrite=False,
                                       log=self._log if self.verbose else None,
                                       objective=cfg.objective)
        return oracle, tuner

    def _calibration_batches(self):
        """The training batches on which the search recalibrates BatchNormalization:
        drawn once (the first ones of the next pass over ``splits.train``), so a
        trial scores the same in every round of a run, after a resume and on any
        keras-tuner worker (a reshuffled pass depends on the passes before it)."""
        if self._calibration is None:
            xs = [x.numpy() for x, _ in self.splits.train.take(tuner_lib.CALIBRATION_BATCHES)]
            xs = [x for x in xs if x.shape == xs[0].shape]
            self._calibration = tf.data.Dataset.from_tensor_slices(np.stack(xs))
        return self._calibration

    def _search(self, k, model):
        oracle, tuner = self.search_tuner(k, model)
        self._log(f"round {k}: searching {oracle.target_compression_ratio:.2f}x "
                  f"({self.config.objective}) with {oracle.max_trials} trials")
        if len(oracle.end_order) < oracle.max_trials:  # a chief would wait for workers
            tuner.search(verbose=0)
        return (tuner.best_policy(), float(oracle.target_compression_ratio),
                oracle.schedule.as_dict())

    def _space_of(self, model):
        """This round's space (§3.5): ``model``'s layers with floors at what the last
        accepted round's policy removed, ordered by their remaining weights."""
        accepted = self._accepted()
        previous = (policy_lib.PruningPolicy.load(
            os.path.join(self.output_dir, accepted[-1]["dir"], "policy.json"))
            if accepted else None)
        return space_lib.PolicySpace.from_model(model, self.config.scheme_set,
                                                 self.config.max_fraction, previous=previous)

    def _save_round(self, folder, policy, result, record):
        path = os.path.join(self.output_dir, folder)
        policy.save(os.path.join(path, "policy.json"))
        masks_lib.save(os.path.join(path, "masks.npz"), result.masks)
        artifacts.save_model(result.model, os.path.join(path, "model.keras"))
        artifacts.write_json(os.path.join(path, "metrics.json"), record)

    def _drop_checkpoints(self, folder):
        """Remove a finished step's epoch checkpoints (``folder/train``)."""
        shutil.rmtree(os.path.join(self.output_dir, folder, "train"), ignore_errors=True)

    def _end_phase1(self, reason):
        self.state["phase1_end"] = reason
        self._save_state()
        self._log(f"Phase I ends: {reason}")
        return False

    def purify(self):
        """Phase II on the last accepted round (once)."""
        if self.state["purification"] is None:
            start = time.perf_counter()
            self._seed(100)
            model, masks, _ = self._current()
            masks, rounds = self._purification_rounds(model, masks)
            if rounds and self.config.retrain_epochs:
                model = self._fine_tune(model, masks)
            path = os.path.join(self.output_dir, "purification")
            artifacts.save_model(model, os.path.join(path, "model.keras"))
            masks_lib.save(os.path.join(path, "masks.npz"), masks)
            record = dict(self._metrics(apply_masks(model, masks), masks,
                                        time.perf_counter() - start),
                          rounds=rounds, layers=report_lib.layer_summary(self.model, masks))
            artifacts.write_json(os.path.join(path, "metrics.json"), record)
            self.state["purification"] = record
            self._save_state()
            self._drop_checkpoints("purification")
            self._log(f"purification: {record['objective_ratio']:.2f}x, "
                      f"val {record['val_accuracy']:.4f}")
        return self.state["purification"]

    def _purification_rounds(self, model, masks):
        """Threshold searches, each on the previous one's masks, while one still
        removes something within the accuracy bound (at most
        ``purification_rounds``); returns the masks and ``[{"ratio", "scales"}]``."""
        cfg = self.config
        if not masks:
            return masks, []
        masks = purification.remove_unused(model, masks)
        rounds, ratio = [], self._ratio(cost.count(model, masks))
        # No accuracy loss in Phase II: the bound is the Phase I result's validation
        # accuracy (the thresholds cut trained weights, and the fine-tune cannot be
        # relied on to buy back more than noise).
        bound = max(self._floor(), self._accepted()[-1]["val_accuracy"])
        for r in range(1, cfg.purification_rounds + 1 if cfg.purification_trials else 1):
            with workers.local_search():  # search workers serve Phase I only
                found, scales, _ = thresholds.search_thresholds(
                    model, masks, self.splits.val, bound, objective=cfg.objective,
                    max_trials=cfg.purification_trials, max_scale=cfg.purification_max_scale,
                    seed=cfg.seed + r - 1, directory=self.output_dir,
                    project_name=f"purification_{r}")
            reached = self._ratio(cost.count(model, found))
            if reached <= ratio:
                break
            masks, ratio = found, reached
            rounds.append({"ratio": reached, "scales": {n: list(v) for n, v in scales.items()}})
        return masks, rounds

    def _fine_tune(self, model, masks):
        """Masked retraining of the purified structure (``retrain_epochs``): the
        thresholds remove groups of trained weights, not ADMM's near-zero ones."""
        recipe = self._recipe(100, "purification")
        with distribute.scope(self._strategy):
            tuned, _ = recipe.retrain(model, masks, self.config.retrain_epochs, recipe.compile_fn)
        return tuned

    def finish(self):
        """Compaction (and TFLite export) of the purified model (once)."""
        if self.state["final"] is None:
            start = time.perf_counter()
            model, masks = self._load_step(os.path.join(self.output_dir, "purification"))
            path = os.path.join(self.output_dir, "final")
            small, small_masks, lowered = compact_lowered(
                model, masks, self.config.columns,
                latency.LayerLatency(latency.machine_cache_path()), verbose=self.verbose)
            # Keras 3 has no twin of the lowered layer yet: its compact model keeps the
            # zero columns (the TFLite export below runs the lowered one).
            saved = artifacts.save_model(compact(model, masks) if self.keras3 else small,
                                         os.path.join(path, "compact.keras"),
                                         keras3=self.keras3)
            masks_lib.save(os.path.join(path, "masks.npz"), small_masks)
            record = self._metrics(small, small_masks, 0.0)
            x = next(iter(self.splits.val))[0]
            if self.keras3:
                record["keras3_max_abs_diff"] = float(np.max(np.abs(
                    np.asarray(saved(x, training=False)) - small(x, training=False))))
            record["max_abs_diff_vs_masked"] = float(np.max(np.abs(
                small(x, training=False) - apply_masks(model, masks)(x, training=False))))
            record["compact_params"] = cost.count(small).params
            record["lowering"] = report_lib.lowering_summary(small, small_masks, lowered)
            if self.config.export_tflite:
                record["tflite"] = report_lib.tflite_figures(self.model, small, path,
                                                             self.splits.val)
            record["wall_s"] = time.perf_counter() - start
            self.state["final"] = record
            self._save_state()
        return self.state["final"]

    def run(self):
        """All steps; returns the report dict (also written as report.json/.md/.png)."""
        self.baseline()
        for _ in range(self.config.max_rounds + 1):
            if not self.next_round():
                break
        self.purify()
        self.finish()
        for folder in [r["dir"] for r in self.state["rounds"]] + ["purification"]:
            self._drop_checkpoints(folder)  # left by a kill between state and clean-up
        return report_lib.write(self.output_dir, self.state)

    def _summaries(self, k, record, history):
        if self._writer is None:
            return
        with self._writer.as_default():
            for key in ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio"):
                _scalar(f"round/{key}", record[key], k)
            for phase, logs in history.items():
                for key, values in logs.items():
                    for epoch, value in enumerate(values):
                        _scalar(f"round_{k}/{phase}/{key}", value, epoch)
        self._writer.flush()


def _admm_residuals(history):
    """Each regularized layer's primal residual ``||W - Z|| / ||W||`` after the round's
    last ADMM epoch (how far ADMM got W to the structure the hard prune then imposes)."""
    return {key.split("/", 1)[1]: float(values[-1])
            for key, values in history.get("admm", {}).items()
            if key.startswith("admm_res/") and values}


def _settings(config):
    """A saved or new ``Config`` dict without the settings a resume may change."""
    return {k: v for k, v in config.items() if k not in _RUNTIME}


def _scalar(tag, value, step):
    """A TensorBoard scalar without the tensorboard package (``tf.summary.scalar`` needs it)."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR)
    tf.summary.write(tag, tf.constant(float(value)), step=step, metadata=metadata.SerializeToString())

