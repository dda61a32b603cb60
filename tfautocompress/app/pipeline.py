"""The AutoCompress pipeline (Fig. 3, Algorithm 1): Phase I rounds, Phase II, compaction.

    ac = AutoCompress(model, splits, "runs/compress", Config(max_rounds=4))
    report = ac.run()

Phase I round k: the enhanced SA (``search.EnhancedSAOracle`` + ``PruningTuner``)
picks a policy reaching ~``round_ratio`` x the previous round's compression ratio
(toward the target, and ``Config.milestones`` on the way, even steps that land on
each exactly: ``config.round_step``);
``app.progressive.partial_prune`` runs ADMM -> hard prune -> masked retraining
from the previous round. A round is kept if its validation accuracy stays within
``max_accuracy_drop`` (percentage points) of the baseline's; the first round that
breaks the bound is rejected and Phase I ends with the previous round. Phase I also
ends at ``target_compression_ratio`` (objective ``params`` or ``macs``, counted on
the CONV layers as the paper's tables, or ``latency``: dense / compact TFLite latency
as predicted by the ``LatencyModel`` timed on this host, which the final step checks
against the measured speedup), at ``max_rounds``, or when the target is
infeasible. Phase II (``purification``) removes near-zero filters/columns and unused
weights under the same bound; ``compact`` builds the smaller dense model, with its
column-sparse convolutions lowered where that is faster (``Config.columns``); optionally
it is exported to TFLite (fp32 / fp16), benchmarked and checked for the GPU delegate.

``Config.distribution`` trains under a ``tf.distribute`` strategy and
``Config.search_parallel`` proposes that many SA neighbours per step, for
keras-tuner search workers (``search.workers``: the chief runs this pipeline, the
workers evaluate each round's trials with ``search_tuner``).

Each step hands its result (model, closed masks, schemes, policy) to the next in
memory. Everything is also saved under ``output_dir`` (``round_<k>/`` policy JSON,
masks npz, model .keras, metrics JSON; ``purification/``; ``final/``) with
``state.json``, all atomically, and read back only to resume: a new
``AutoCompress`` on the same directory continues after the last finished step. A Keras 3 model is compressed as its tf_keras conversion, and
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

from tfautocompress import artifacts, cost, data, distribute, graph as graph_lib, lowering
from tfautocompress import masks as masks_lib, policy as policy_lib, purification
from tfautocompress import space as space_lib
from tfautocompress._keras import as_tf_keras, is_keras3, keras
from tfautocompress.app import report as report_lib
from tfautocompress.app.config import RUNTIME, Config, round_seed, round_step, step_seed
from tfautocompress.app.progressive import PartialModel, Recipe, partial_prune
from tfautocompress.baseline import compile_for_training
from tfautocompress.callbacks.distillation import teacher_targets
from tfautocompress.compact import apply_masks, compact, compact_lowered, flatten
from tfautocompress.evaluate import accuracy
from tfautocompress.latency_model import LatencyModel
from tfautocompress.schemes import Scheme
from tfautocompress.search import sa_oracle, thresholds, tuner as tuner_lib, workers
from tfautocompress.search.oracle import InfeasibleTargetError
from tfautocompress.tflite_tools import android, benchmark, latency

__all__ = ["Config", "AutoCompress", "round_recipe", "training_splits", "round_seed",
           "step_seed"]

_STATE = "state.json"


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
        self._train_splits = None  # self.splits, with the teacher's outputs when distilling
        self._steps = {}  # folder -> PartialModel made (or read back) in this process
        path = os.path.join(self.output_dir, _STATE)
        if os.path.exists(path):
            self.state = artifacts.read_json(path)
            saved = {k: v for k, v in self.state["config"].items() if k not in RUNTIME}
            if saved != self.config.resumable_settings():
                raise ValueError(f"{path} was written with another configuration "
                                 f"{self.state['config']}; rerun with the same settings to "
                                 "resume, or choose a new output_dir.")
        else:
            self.state = {"config": dataclasses.asdict(self.config), "baseline": None,
                          "rounds": [], "phase1_end": None, "purification": None, "final": None,
                          "latency_model": None}

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

    def _metrics(self, model, counted, wall_s):
        """Accuracies of ``model`` and ratios of its count ``counted`` against the dense model."""
        return {"val_accuracy": accuracy(model, self.splits.val),
                "test_accuracy": accuracy(model, self.splits.test),
                **self._dense.ratios(counted), "objective_ratio": self._ratio(counted),
                "wall_s": float(wall_s)}

    def _ratio(self, counted):
        if self.config.objective == "latency":
            model = self._latency_model()
            return model.predict_report(self._dense) / model.predict_report(counted)
        attr = "conv_params" if self.config.objective == "params" else "conv_macs"
        return getattr(self._dense, attr) / max(getattr(counted, attr), 1)

    def _latency_model(self):
        """``objective="latency"``: the dense model's ``LatencyModel`` (``latency_table``,
        or timed where ``latency_device`` says), made once and kept in the state (a
        resumed run and the search workers use the same one) and in
        ``latency_model.json`` (a ``--latency_table`` for later runs); None for the
        counted objectives."""
        cfg = self.config
        if cfg.objective != "latency":
            return None
        if self.state.get("latency_model") is None:
            if cfg.latency_table:
                try:
                    model = LatencyModel.from_config(artifacts.read_json(cfg.latency_table))
                except ValueError as err:
                    raise ValueError(f"--latency_table {cfg.latency_table}: {err}") from None
            else:
                names = self._space(self.model).names
                self._log(f"timing {len(names)} layers alone for the latency model")
                model = latency.measure_latency_model(self.model, names, self._timer(),
                                                      latency.machine_cache_path())
            self.state["latency_model"] = model.get_config()
            artifacts.write_json(os.path.join(self.output_dir, "latency_model.json"),
                                 self.state["latency_model"])
            self._save_state()
        return LatencyModel.from_config(self.state["latency_model"])

    def _space(self, model, previous=None, latency_model=None):
        """The search space of ``model`` (floors at ``previous``). A latency target
        prunes the Dense layers too: they read the pruned channels, and their time
        counts as much as the convolutions'."""
        cfg = self.config
        return space_lib.PolicySpace.from_model(
            model, cfg.scheme_set, cfg.max_fraction, include_dense=cfg.objective == "latency",
            previous=previous, latency=latency_model, skip_columns=self._column_layers())

    def _column_layers(self):
        """The layers that may prune columns when the search counts them (a counted
        objective over filter+column) and the export lowers where TFLite runs faster
        (``columns="auto"``): those whose lowered form beats their dense conv at half
        their filters and rows (``lowering.probe`` of the dense model, timed once and
        kept in the state), so that no column the exported model multiplies counts as
        saved; None otherwise: every layer counts its columns."""
        cfg = self.config
        if (cfg.columns, cfg.scheme_set) != ("auto", "filter+column") or cfg.objective == "latency":
            return None
        if self.state.get("column_probe") is None:
            names = space_lib.PolicySpace.from_model(self.model, cfg.scheme_set).names
            self._log(f"timing {len(names)} layers at half their filters and columns, dense "
                      "and lowered")
            decisions = lowering.probe(self.model, names,
                                       latency.LayerLatency(latency.machine_cache_path()))
            self.state["column_probe"] = {n: d.to_json() for n, d in decisions.items()}
            self._save_state()
        return [n for n, d in self.state["column_probe"].items() if d["form"] != lowering.KEEP]

    def _timer(self, runs=50):
        """Where ``objective="latency"`` times models (``Config.latency_device``)."""
        cfg = self.config
        if cfg.latency_device == "host":
            return latency.HostTimer(cfg.latency_threads, runs)
        return android.AndroidTimer(cfg.benchmark_binary, cfg.latency_threads,
                                    use_gpu=cfg.latency_device == "adb_gpu", runs=runs)

    def _floor(self):
        return self.state["baseline"]["val_accuracy"] - self.config.max_accuracy_drop / 100.0

    def _seed(self, step):
        keras.utils.set_random_seed(step_seed(self.config.seed, step))

    def _accepted(self):
        return [r for r in self.state["rounds"] if r["accepted"]]

    def _previous_ratio(self):
        return self._accepted()[-1]["objective_ratio"] if self._accepted() else 1.0

    def _step(self, folder, record=None):
        """The step (``PartialModel``) saved in ``folder`` (a round's ``record`` gives its schemes):
        the one made in this process, else read back (a resumed run)."""
        if folder not in self._steps:
            try:
                self._steps[folder] = _read_step(os.path.join(self.output_dir, folder), record)
            except ValueError as err:
                raise ValueError(f"{err} The run in {self.output_dir} cannot resume from it: "
                                 "rerun with a new output_dir.") from None
        return self._steps[folder]

    def current_step(self):
        """The ``PartialModel`` of the last accepted round, or None (the baseline)."""
        accepted = self._accepted()
        return self._step(accepted[-1]["dir"], accepted[-1]) if accepted else None

    def _recipe(self, step, folder):
        if self._train_splits is None:  # the dense model's outputs, computed once a run
            self._train_splits = training_splits(self.config, self.splits, self.model)
        return round_recipe(self.config, self._train_splits, self.output_dir, step, folder,
                            self.verbose, self.model)

    def _drop_checkpoints(self, folder):
        """Remove a finished step's epoch checkpoints (``folder/train``)."""
        shutil.rmtree(os.path.join(self.output_dir, folder, "train"), ignore_errors=True)

    # -------------------------------------------------------------- steps ---
    def baseline(self):
        """Accuracy and cost of the dense model (once)."""
        if self.state["baseline"] is None:
            self.state["baseline"] = dict(self._metrics(self.model, self._dense, 0.0),
                                          layers=report_lib.layer_summary(self.model, {}))
            self._save_state()
        return self.state["baseline"]

    def next_round(self):
        """Run the next Phase I round; False once Phase I is finished."""
        self.baseline()
        if self.state["phase1_end"] is not None:
            return False
        k, target = len(self.state["rounds"]) + 1, self.config.target_compression_ratio
        if k > self.config.max_rounds:
            return self._end_phase1(f"max_rounds={self.config.max_rounds} reached")
        if target is not None and self._previous_ratio() >= target:
            return self._end_phase1(f"target {target}x reached")
        start = time.perf_counter()
        self._seed(k)
        current = self.current_step()
        try:
            policy, searched, schedule = self._search(k, current)
        except InfeasibleTargetError as err:
            return self._end_phase1(f"round {k}: {err}")
        self._seed(k)
        recipe = self._recipe(k, f"round_{k}")
        with distribute.scope(self._strategy):
            step = partial_prune(self.model, policy, recipe, start=current)
        record = dict(self._metrics(step.model, cost.count(step.model, step.masks),
                                    time.perf_counter() - start),
                      round=k, dir=f"round_{k}", accepted=step.score >= self._floor(),
                      search_target_ratio=searched,
                      analytic_ratio=policy.compression_ratio(self.config.objective),
                      schedule=schedule,
                      schemes={n: s.get_config() for n, s in step.schemes.items()},
                      layers=report_lib.layer_summary(self.model, step.masks),
                      **_admm_residuals(step.history))
        if self.config.objective == "latency":  # the round's compact model against the dense
            record["latency"] = latency.measured_speedup(
                self.model, compact(step.model, step.masks), self._timer())
        _write_step(os.path.join(self.output_dir, record["dir"]), step, record)
        self._log(f"round {k}: {record['objective_ratio']:.2f}x {self.config.objective}, "
                  f"val {record['val_accuracy']:.4f} (floor {self._floor():.4f}), "
                  f"{'accepted' if record['accepted'] else 'rejected'}")
        _summaries(self._writer, k, record, step.history)
        if record["accepted"]:
            self._steps[record["dir"]] = step
        self.state["rounds"].append(record)
        self._save_state()
        self._drop_checkpoints(record["dir"])
        if not record["accepted"]:
            return self._end_phase1(f"round {k} broke the accuracy bound")
        return True

    def next_goal(self):
        """The ratio the rounds aim at next: the first milestone above the last
        accepted round's ratio (1 % under it counts as reached), else the target
        (None: none)."""
        previous = self._previous_ratio()
        return next((m for m in self.config.milestones if m > previous * 1.01),
                    self.config.target_compression_ratio)

    def search_tuner(self, k, current=None):
        """Round ``k``'s ``(EnhancedSAOracle, PruningTuner)`` on the state as it is
        (``current``: the last accepted round's ``PartialModel``, looked up if None);
        keras-tuner search workers build theirs with it too."""
        cfg, current = self.config, current or self.current_step()
        model, previous = (current.model if current else self.model), self._previous_ratio()
        aim, exact = round_step(previous, self.next_goal(), cfg.round_ratio)
        kwargs = {"target_compression_ratio": aim} if exact else {}
        # This round's space (§3.5): floors at what the last accepted round removed.
        space = self._space(model, current.policy if current else None, self._latency_model())
        oracle = sa_oracle.EnhancedSAOracle(
            space, cfg.objective, previous_compression_ratio=previous,
            round_ratio=aim / previous, max_trials=cfg.search_trials,
            seed=round_seed(cfg.seed, k), parallel=cfg.search_parallel, tag=f"round_{k}",
            **kwargs)
        if self._calibration is None:
            self._calibration = _calibration_batches(self.splits.train)
        tuner = tuner_lib.PruningTuner(oracle, model, self.splits.val, subset_size=cfg.search_subset,
                                       calibration_data=self._calibration,
                                       directory=os.path.join(self.output_dir, f"round_{k}"),
                                       project_name="search", overwrite=False,
                                       log=self._log if self.verbose else None,
                                       objective=cfg.objective, score=cfg.search_score)
        return oracle, tuner

    def _search(self, k, current):
        oracle, tuner = self.search_tuner(k, current)
        self._log(f"round {k}: searching {oracle.target_compression_ratio:.2f}x "
                  f"({self.config.objective}) with {oracle.max_trials} trials")
        if len(oracle.end_order) < oracle.max_trials:  # a chief would wait for workers
            tuner.search(verbose=0)
        return (tuner.best_policy(), float(oracle.target_compression_ratio),
                oracle.schedule.as_dict())

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
            current = self.current_step()
            model, masks = (current.model, current.masks) if current else (self.model, {})
            masks, rounds = self._purification_rounds(model, masks)
            if rounds and self.config.retrain_epochs:
                # reseeded: the fine-tune draws the same numbers in a resumed run
                # (which read the round back, building a model) as in an uninterrupted one
                self._seed(100)
                recipe = self._recipe(100, "purification")
                with distribute.scope(self._strategy):
                    model, _ = recipe.retrain(model, masks)
            step = PartialModel(model, graph_lib.close_masks(model, masks) if masks else {})
            record = dict(self._metrics(apply_masks(model, step.masks),
                                        cost.count(model, step.masks),
                                        time.perf_counter() - start),
                          rounds=rounds, layers=report_lib.layer_summary(self.model, step.masks))
            _write_step(os.path.join(self.output_dir, "purification"), step, record)
            self._steps["purification"] = step
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
                    latency=self._latency_model(), max_trials=cfg.purification_trials,
                    max_scale=cfg.purification_max_scale,
                    seed=cfg.seed + r - 1, directory=self.output_dir,
                    project_name=f"purification_{r}", column_layers=self._column_layers())
            reached = self._ratio(cost.count(model, found))
            if reached <= ratio:
                break
            masks, ratio = found, reached
            rounds.append({"ratio": reached, "scales": {n: list(v) for n, v in scales.items()}})
        return masks, rounds

    def finish(self):
        """Compaction (and TFLite export) of the purified model (once)."""
        if self.state["final"] is None:
            start = time.perf_counter()
            purified = self._step("purification")
            model, masks = purified.model, purified.masks
            path = os.path.join(self.output_dir, "final")
            # the layers the search let prune columns run lowered, as it counted them
            measure = latency.LayerLatency(latency.machine_cache_path(),
                                           lowered_only=self._column_layers() is not None)
            # the latency model times each conv as it is kept: its compact model keeps them
            columns = "keep" if self.config.objective == "latency" else self.config.columns
            small, small_masks, lowered = compact_lowered(model, masks, columns,
                                                          measure, verbose=self.verbose)
            # Keras 3 has no twin of the lowered layer yet: its compact model keeps the
            # zero columns (the TFLite export below runs the lowered one).
            saved = artifacts.save_model(compact(model, masks) if self.keras3 else small,
                                         os.path.join(path, "compact.keras"),
                                         keras3=self.keras3)
            masks_lib.save(os.path.join(path, "masks.npz"), small_masks)
            counted, executed = cost.count(small, small_masks), cost.count(small)
            record = self._metrics(small, counted, 0.0)
            x = next(iter(self.splits.val))[0]
            if self.keras3:
                record["keras3_max_abs_diff"] = float(np.max(np.abs(
                    np.asarray(saved(x, training=False)) - small(x, training=False))))
            record["max_abs_diff_vs_masked"] = float(np.max(np.abs(
                small(x, training=False) - apply_masks(model, masks)(x, training=False))))
            record["compact_params"] = executed.params
            record["lowering"] = report_lib.lowering_summary(counted, executed, lowered)
            if self.config.export_tflite:
                record["tflite"] = benchmark.dense_vs_compact(self.model, small, path,
                                                              self.splits.val)
            if self.config.objective == "latency":
                record["latency"] = latency.predicted_vs_measured(
                    self.model, small, self._latency_model(), self._timer(runs=100))
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


def _read_step(path, record=None):
    """The ``PartialModel`` written in folder ``path``; a round's ``record`` adds its schemes,
    score and policy. An error naming the file when one is corrupt."""
    model = artifacts.load_model(os.path.join(path, "model.keras"), what="saved step")
    masks = masks_lib.load(os.path.join(path, "masks.npz"))
    step = PartialModel(model, graph_lib.close_masks(model, masks) if masks else masks)
    if record is not None:
        step.schemes = {n: Scheme.from_config(c) for n, c in record["schemes"].items()}
        step.score = record["val_accuracy"]
        step.policy = policy_lib.PruningPolicy.load(os.path.join(path, "policy.json"))
    return step


def _write_step(path, step, record):
    """Write a finished step's files in folder ``path`` (each atomically)."""
    if step.policy is not None:
        step.policy.save(os.path.join(path, "policy.json"))
    masks_lib.save(os.path.join(path, "masks.npz"), step.masks)
    artifacts.save_model(step.model, os.path.join(path, "model.keras"))
    artifacts.write_json(os.path.join(path, "metrics.json"), record)


def round_recipe(config, splits, output_dir, step, folder, verbose, teacher):
    """The ``Recipe`` of a pipeline step (round ``step``, kept in ``output_dir/folder``).

    Adam with a cosine decay over each phase: the last epoch's weights are
    settled, so a round's accuracy does not hinge on a noisy final step. Each
    phase trains on its own freshly shuffled data and keeps epoch checkpoints in
    ``folder/train`` (a killed step resumes at its last finished epoch); with
    ``config.distill_weight``, as a ``Distiller`` of ``teacher``."""
    seed = step_seed(config.seed, step)
    phases = {"admm": 1, "retrain": 2}
    batches = data.num_batches(splits.train)

    extra = recovery(config, teacher)

    def decayed(epochs):  # compiles for a phase of ``epochs``, decaying to 0 at its end
        steps = epochs * batches if batches else None
        return lambda m: compile_for_training(m, config.lr, decay_steps=steps)

    return Recipe(splits.train, splits.val, decayed(config.admm_epochs),
                  retrain_compile_fn=decayed(config.retrain_epochs),
                  admm_epochs=config.admm_epochs, retrain_epochs=config.retrain_epochs,
                  admm={**extra["admm"], **config.admm},
                  verbose=2 if verbose else 0,
                  train_for=lambda phase: splits.reshuffled(seed * 10 + phases[phase]).train,
                  validation_freq=config.validation_freq,
                  checkpoint_dir=os.path.join(output_dir, folder, "train"),
                  distill=extra["distill"])


def training_splits(config, splits, teacher):
    """``splits`` whose training examples carry ``teacher``'s outputs when ``config``
    distils (computed once here, read by the ``Distiller`` at every step), else ``splits``."""
    return (splits.with_train_targets(teacher_targets(teacher)) if config.distill_weight
            else splits)


def recovery(config, teacher):
    """``Recipe`` keyword arguments of ``config``'s ADMM landing and distillation from
    ``teacher`` (beyond the paper; ``{}`` / None where off)."""
    return dict(admm={"landing": config.admm_landing} if config.admm_landing else {},
                distill=dict(teacher=teacher, weight=config.distill_weight,
                             temperature=config.distill_temperature)
                if config.distill_weight else None)


def _calibration_batches(train):
    """The training batches on which the search recalibrates BatchNormalization:
    drawn once (the first ones of the next pass over ``train``), so a trial scores
    the same in every round of a run, after a resume and on any keras-tuner worker
    (a reshuffled pass depends on the passes before it)."""
    xs = [x.numpy() for x, _ in train.take(tuner_lib.CALIBRATION_BATCHES)]
    xs = [x for x in xs if x.shape == xs[0].shape]
    return tf.data.Dataset.from_tensor_slices(np.stack(xs))


def _admm_residuals(history):
    """Per regularized layer, after the round's last ADMM update: the primal residual
    ``||W - Z|| / ||W||`` and the dual one ``||Z - Z_prev|| / ||W||``; and the hard
    prune's cut ``||W - Pi(W)|| / ||W||`` (how much of W the hard prune removed: 0 when
    ADMM had brought W onto the structure)."""
    logs = history.get("admm", {})
    return {field: {key.split("/", 1)[1]: float(values[-1])
                    for key, values in logs.items() if key.startswith(prefix) and values}
            for field, prefix in report_lib.RESIDUALS.items()}


def _summaries(writer, k, record, history):
    """Round ``k``'s scalars and epoch logs to TensorBoard (``writer``: None, none)."""
    if writer is None:
        return
    with writer.as_default():
        for key in ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio"):
            _scalar(f"round/{key}", record[key], k)
        for phase, logs in history.items():
            for key, values in logs.items():
                for epoch, value in enumerate(values):
                    _scalar(f"round_{k}/{phase}/{key}", value, epoch)
    writer.flush()


def _scalar(tag, value, step):
    """A TensorBoard scalar without the tensorboard package (``tf.summary.scalar`` needs it)."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR)
    tf.summary.write(tag, tf.constant(float(value)), step=step, metadata=metadata.SerializeToString())
