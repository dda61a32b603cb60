"""Side-by-side comparison of layer schedules and pruning baselines (AutoCompress Tables 1-2).

Every structured method finds a filter (or filter+column) policy reaching the same
CONV compression ratio, then goes through the same ADMM -> hard prune -> masked
retraining (``app.progressive.partial_prune``, equal epochs); every searched
method gets the same trial budget (``--trials``) on the same fast evaluation
(``PruningTuner``: validation accuracy after magnitude pruning), and its note says
how many trials it actually evaluated:

  uniform, deeper      hand-crafted filter schedules (``search.uniform``), no search
                       ("ADMM, manual hyper. determ." under filter pruning)
  uniform_combined     hand-crafted combined pruning: every prunable CONV layer the
                       same fraction and the same filter/column split (0.5)
                       ("ADMM, manual hyper. determ." under combined pruning)
  amc                  DDPG agent, resource-constrained protocol, filters (``search.amc``)
  amc_combined         the same agent over the filter+column space: per layer a
                       fraction and its filter share ("ADMM, DRL hyper. determ.")
  lcp                  layer-compensated global ranking (``search.lcp``)
  autocompress_filter  one round of the enhanced SA (``search.sa_oracle``) straight
  autocompress_combined  to the target, filter only / filter+column
  autocompress         full AutoCompress: the progressive pipeline
                       (``pipeline.AutoCompress``: rounds of ~2x each with the same
                       trials per round and the same ADMM/retraining epochs per round,
                       purification, compaction), filter+column; it spends one
                       ADMM+retraining budget per round, its note gives the total
  tfmot_magnitude      TF-MOT non-structured magnitude pruning, same epochs
  scratch              autocompress_filter structure re-initialised, same total epochs
  scratch_combined     autocompress_combined structure (compact model and its column
                       zeros, held fixed) re-initialised, same total epochs

The dense model is ``baseline.train_baseline``'s (``--baseline_epochs``, same seed and
data). The pipeline keeps its accuracy bound (``Config.max_accuracy_drop``, set with
``--pipeline_accuracy_drop``): a round that breaks it ends Phase I below the target,
and the note says where Phase I ended.
Rows: test accuracy, CONV params / MACs ratios (dense / kept, ``cost.count``),
host TFLite latency of the compacted model (1 thread) in fp32 and full-integer int8
(calibrated on ``INT8_CALIBRATION_BATCHES`` validation batches) with the int8
model's top-1 accuracy on the whole test set, the measured fp32 speedup over the
dense model, search wall time (for ``autocompress`` the whole pipeline's wall time)
and the trials evaluated. With ``--objective latency`` the target is a speedup: every
method budgets the dense model's latency model, timed on this host (1 thread).

    python benchmarks/compare.py --quick --output /tmp/compare.json
"""
import functools
import glob
import json
import math
import os
import shutil

from absl import app, flags, logging

import _common

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfautocompress.app import cli, config as config_lib  # noqa: E402 (after the log level)

FLAGS = flags.FLAGS
INT8_CALIBRATION_BATCHES = 8  # validation batches that calibrate each row's int8 export
flags.DEFINE_string("model", "digits_vgg", "zoo model: digits_vgg, vgg16_cifar, resnet18_cifar, "
                    "mobilenetv3small, efficientnetb0, ...")
flags.DEFINE_string("dataset", "digits", "data set: digits, fashion_mnist (offline) or "
                    "cifar10 (needs --data_dir).")
flags.DEFINE_integer("image_size", None, "resize the images to this height and width "
                     "(e.g. 32 for MobileNetV3 on Fashion-MNIST; default: the data's own).")
flags.DEFINE_integer("channels", None, "convert the images to 1 or 3 channels.")
flags.DEFINE_string("data_dir", None, "folder of the data set's files (cifar10: a "
                    "tensorflow-datasets folder; fashion_mnist: its IDX files, found without "
                    "it when the Debian package is installed).")
cli.define_train_size_flag()
flags.DEFINE_enum("objective", "params", ["params", "macs", "latency"],
                  "what the target ratio counts: CONV params or MACs, or latency (dense / "
                  "compact host TFLite latency at 1 thread, predicted by the dense model's "
                  "latency model timed here; every method then budgets it, and the "
                  "pipeline prunes filters).")
flags.DEFINE_float("target", 10.0, "target compression ratio (dense / kept, N x, on "
                   "--objective); the paper's ordering claims are about high ratios.")
flags.DEFINE_integer("baseline_epochs", 30, "epochs of the dense model.")
flags.DEFINE_integer("admm_epochs", 8, "ADMM epochs per method.")
flags.DEFINE_integer("retrain_epochs", 8, "masked retraining epochs per method.")
flags.DEFINE_integer("trials", 60, "search trials per searched method (per round for the "
                     "progressive autocompress).")
flags.DEFINE_integer("search_subset", None, "validation examples per trial (all if unset).")
config_lib.define_flags(("validation_freq",))
flags.DEFINE_string("lcp_metric", "l2", "LcP filter metric: l1, l2 or taylor.")
flags.DEFINE_integer("batch_size", 32, "batch size.")
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("latency_runs", 50, "TFLite timed runs per model.")
flags.DEFINE_list("methods", ["uniform", "deeper", "uniform_combined", "amc", "amc_combined",
                              "lcp", "autocompress_filter", "autocompress_combined",
                              "autocompress", "tfmot_magnitude", "scratch", "scratch_combined"],
                  "methods to run (scratch needs autocompress_filter before it, "
                  "scratch_combined needs autocompress_combined).")
flags.DEFINE_float("pipeline_max_fraction", 0.95, "the pipeline's max_fraction: the most "
                   "of a layer's kernel a round may remove (the progressive rounds' floors "
                   "can make a late round's target infeasible at 0.95).")
flags.DEFINE_float("pipeline_admm_landing", None, "the pipeline's ADMM landing "
                   "(Config.admm_landing; default: Config's, 0: the paper's ADMM).")
flags.DEFINE_float("pipeline_lr", None, "the pipeline's learning rate (Config.lr, default: "
                   "Config's; --lr is the dense model's and the one-round methods').")
flags.DEFINE_float("pipeline_distill_weight", None, "the pipeline's distillation from the "
                   "dense model (Config.distill_weight; default: Config's, 0: off).")
flags.DEFINE_enum("one_round_recovery", "paper", ["paper", "pipeline"],
                  "the one-round methods' ADMM and masked retraining: the paper's (Adam at "
                  "--lr, no distillation) or the pipeline's (its landing, distillation from "
                  "the dense model and learning rate: the --pipeline_* flags, else Config's).")
flags.DEFINE_enum("pipeline_columns", "auto", list(config_lib.COLUMNS),
                  "the pipeline's Config.columns: auto prunes columns only where TFLite skips "
                  "them (what the exported model runs); keep counts every pruned column as "
                  "saved, as the paper and the one-round rows count CONV params (its compact "
                  "model then multiplies the zeros).")
flags.DEFINE_float("pipeline_accuracy_drop", None,
                   "the progressive autocompress's max_accuracy_drop (percentage points of "
                   "validation accuracy a round and purification may lose); default: "
                   "pipeline.Config's. 100 = no bound (Phase I then always runs to --target, "
                   "but purification also removes all its thresholds allow).")
flags.DEFINE_bool("quick", False, "tiny budget (minutes): 15 baseline, 1+1 pruning epochs, "
                  "16 trials, 15 latency runs.")
flags.DEFINE_string("workdir", "/tmp/tfac_compare", "folder for search state and .tflite files.")
_common.define_output_flag("JSON file for the rows and RESULT figures (with .md and .png "
                           "beside it).")
flags.DEFINE_integer("seed", 0, "seed of data, training and searches.")


def _budget():
    if FLAGS.quick:
        return dict(baseline_epochs=15, admm_epochs=1, retrain_epochs=1, trials=16,
                    latency_runs=15)
    return dict(baseline_epochs=FLAGS.baseline_epochs, admm_epochs=FLAGS.admm_epochs,
                retrain_epochs=FLAGS.retrain_epochs, trials=FLAGS.trials,
                latency_runs=FLAGS.latency_runs)


class Bench:
    """Shared state of one comparison: data, dense model, recipe, measurements."""

    def __init__(self, budget, baseline_dir=None):
        from tfautocompress import cost, data, keras

        self.budget = budget
        keras.utils.set_random_seed(FLAGS.seed)
        self.splits = data.load(FLAGS.dataset, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
                                data_dir=FLAGS.data_dir, train_size=FLAGS.train_size,
                                image_size=FLAGS.image_size, channels=FLAGS.channels)
        self.model, metrics = _dense_model(budget["baseline_epochs"], self.splits, baseline_dir)
        self.baseline_s = metrics["train_wall_s"]
        self.val_accuracy = metrics["val_accuracy"]
        self.dense = cost.count(self.model)
        self.rows, self.structures = [], {}
        self.dense_ms = None  # the dense model's measured latency, once measured

    @functools.cached_property
    def latency(self):
        """``--objective latency``: the dense model's ``LatencyModel``, timed on this
        host at 1 thread (single layers cached per machine, as the pipeline's), also
        written to ``latency_table`` for the pipeline; None for params and MACs."""
        if FLAGS.objective != "latency":
            return None
        from tfautocompress import artifacts
        from tfautocompress.space import PolicySpace
        from tfautocompress.tflite_tools import latency
        names = PolicySpace.from_model(self.model, "filter", include_dense=True).names
        model = latency.measure_latency_model(self.model, names, latency.HostTimer(1),
                                              latency.machine_cache_path())
        artifacts.write_json(self.latency_table, model.get_config())
        return model

    @property
    def latency_table(self):
        return os.path.join(FLAGS.workdir, "latency_model.json")

    def compile_fn(self, epochs, lr=None):
        """Adam at ``lr`` (default ``--lr``) decaying (cosine) to zero over ``epochs`` of
        the train set: the recipe of the baseline and of every pruning phase."""
        from tfautocompress.baseline import compile_for_training
        batches = int(self.splits.train.cardinality())
        return lambda m: compile_for_training(m, lr or FLAGS.lr, decay_steps=epochs * batches)

    def train_for(self, method, splits=None):
        """``phase -> train set`` of ``splits`` (default: the bench's): a fresh shuffle per
        method and phase, seeded from both, so a method's data order does not depend
        on the methods before it."""
        import zlib
        splits = splits or self.splits
        return lambda phase: splits.reshuffled(
            FLAGS.seed * 1000 + zlib.crc32(f"{method}/{phase}".encode()) % 1000).train

    @functools.cached_property
    def distilled_splits(self):
        """The bench's splits with the dense model's outputs on the training examples."""
        from tfautocompress.callbacks.distillation import teacher_targets
        return self.splits.with_train_targets(teacher_targets(self.model))

    def recipe(self, method):
        """A one-round method's ADMM and masked retraining (``--one_round_recovery``)."""
        from tfautocompress.app.pipeline import recovery
        from tfautocompress.app.progressive import Recipe
        budget, lr, extra, splits = self.budget, None, {}, self.splits
        if FLAGS.one_round_recovery == "pipeline":
            config = pipeline_recovery()
            lr, extra = config.lr, recovery(config, self.model)
            if extra["distill"]:
                splits = self.distilled_splits
        return Recipe(self.splits.train, self.splits.val, self.compile_fn(budget["admm_epochs"], lr),
                      retrain_compile_fn=self.compile_fn(budget["retrain_epochs"], lr),
                      admm_epochs=budget["admm_epochs"], retrain_epochs=budget["retrain_epochs"],
                      train_for=self.train_for(method, splits),
                      validation_freq=FLAGS.validation_freq, **extra)

    def space(self, scheme_set):
        from tfautocompress.space import PolicySpace
        return PolicySpace.from_model(self.model, scheme_set, max_fraction=0.95,
                                      include_dense=self.latency is not None,
                                      latency=self.latency)

    def tuner(self, oracle, name):
        from tfautocompress.search.tuner import PruningTuner
        return PruningTuner(oracle, self.model, self.splits.val, subset_size=FLAGS.search_subset,
                            calibration_data=self.train_for("calibration")("search"),
                            directory=os.path.join(FLAGS.workdir, "search"), project_name=name,
                            overwrite=True)

    def measure(self, method, model, masks, search_s, policy=None, compactable=True, note=""):
        from tfautocompress import cost
        from tfautocompress.compact import compact
        from tfautocompress.evaluate import accuracy
        from tfautocompress.tflite_tools import benchmark, export

        ratios = self.dense.ratios(cost.count(model, masks or None))
        small = compact(model, masks) if (compactable and masks) else model
        path = os.path.join(FLAGS.workdir, f"{method}.tflite")
        export.export(small, path, "float32")
        int8_path = os.path.join(FLAGS.workdir, f"{method}.int8.tflite")
        export.export(small, int8_path, "int8",
                      representative_data=self.splits.val.take(INT8_CALIBRATION_BATCHES))
        timing, int8_timing = (
            benchmark.benchmark(p, threads=1, warmup=3, runs=self.budget["latency_runs"])
            for p in (path, int8_path))
        row = {"method": method, "test_accuracy": accuracy(model, self.splits.test),
               "val_accuracy": accuracy(model, self.splits.val),
               "int8_test_accuracy": benchmark.top1_accuracy(int8_path, self.splits.test),
               "conv_params_ratio": ratios["conv_params_ratio"],
               "conv_macs_ratio": ratios["conv_macs_ratio"],
               "latency_ms": timing["latency_ms"]["mean"],
               "int8_latency_ms": int8_timing["latency_ms"]["mean"],
               "search_s": float(search_s), "note": note}
        if method == "dense":
            self.dense_ms = row["latency_ms"]
        row["speedup"] = self.dense_ms / row["latency_ms"]
        if policy is not None:
            row["policy"] = {n: round(a.fraction, 4) for n, a in policy.actions.items()}
        self.rows.append(row)
        print(f"  {method:<24} test {row['test_accuracy']:.4f} (int8 "
              f"{row['int8_test_accuracy']:.4f})  CONV params {row['conv_params_ratio']:.2f}x  "
              f"MACs {row['conv_macs_ratio']:.2f}x  {row['latency_ms']:.3f} ms = "
              f"{row['speedup']:.2f}x faster (int8 "
              f"{row['int8_latency_ms']:.3f})  search {search_s:.1f} s", flush=True)
        return row

    def prune(self, method, policy, search_s, note=""):
        from tfautocompress import keras
        from tfautocompress.app.progressive import partial_prune

        keras.utils.set_random_seed(FLAGS.seed)
        result = partial_prune(self.model, policy, self.recipe(method))
        self.structures[method] = (result.model, result.masks)
        if FLAGS.one_round_recovery == "pipeline":
            note = f"{note}; the pipeline's recovery" if note else "the pipeline's recovery"
        return self.measure(method, result.model, result.masks, search_s, policy, note=note)


# The pipeline's recovery: Config fields and the flags that set them.
RECOVERY = {"admm_landing": "pipeline_admm_landing", "lr": "pipeline_lr",
            "distill_weight": "pipeline_distill_weight"}


def pipeline_recovery():
    """``Config`` with the pipeline's landing, lr and distillation: the ``--pipeline_*``
    flags where given, else ``Config``'s defaults."""
    from tfautocompress.app.pipeline import Config
    given = {field: getattr(FLAGS, flag) for field, flag in RECOVERY.items()}
    return Config(**{k: v for k, v in given.items() if v is not None})


def _dense_model(epochs, splits, folder=None):
    """``(model, metrics)``: the dense model ``baseline.train_baseline`` trains on
    ``splits``, loaded from ``folder`` when an earlier run saved it there."""
    from tfautocompress import artifacts
    from tfautocompress.baseline import train_baseline

    path = os.path.join(folder or "", FLAGS.model + ".keras")
    if folder and os.path.exists(path):
        return (artifacts.load_model(path, what="dense model"),
                artifacts.read_json(path[:-len(".keras")] + ".json"))
    return train_baseline(FLAGS.model, epochs=epochs, lr=FLAGS.lr, seed=FLAGS.seed, verbose=0,
                          splits=splits, output_dir=folder, validation_freq=FLAGS.validation_freq)


# ---------------------------------------------------------------- methods ---
def _evaluated(oracle):
    """Trials of ``oracle`` that completed (were scored by the fast evaluation)."""
    return sum(1 for t in oracle.trials.values() if t.status == "COMPLETED")


def _evaluated_in(project_dir):
    """Completed trials a keras-tuner project folder recorded (``trial_*/trial.json``)."""
    count = 0
    for path in glob.glob(os.path.join(project_dir, "trial_*", "trial.json")):
        with open(path) as f:
            count += json.load(f).get("status") == "COMPLETED"
    return count


def _scheme_name(scheme_set):
    return "filter" if scheme_set == "filter" else "combined"


def run_uniform(bench, deeper=False, scheme_set="filter"):
    from tfautocompress.search import uniform
    with _common.Stopwatch() as watch:
        make = uniform.deeper_policy if deeper else uniform.uniform_policy
        policy = make(bench.space(scheme_set), FLAGS.target, FLAGS.objective)
    if scheme_set == "filter":
        bench.prune("deeper" if deeper else "uniform", policy, watch.seconds,
                    "one round, hand-crafted, filter")
        return
    share = next(iter(policy.actions.values())).filter_share
    bench.prune("uniform_combined", policy, watch.seconds,
                f"one round, hand-crafted, filter+column: one fraction and filter share "
                f"{share:g} in every layer")


def run_amc(bench, scheme_set="filter"):
    from tfautocompress.search import amc
    space = bench.space(scheme_set)
    trials = bench.budget["trials"]
    oracle = amc.AMCOracle(space, amc.geometry_from_model(bench.model, space),
                           max_trials=trials, protocol="resource", objective=FLAGS.objective,
                           target_compression_ratio=FLAGS.target, a_max=0.95,
                           warmup=max(1, trials // 4), seed=FLAGS.seed)
    name = "amc" if scheme_set == "filter" else "amc_combined"
    with _common.Stopwatch() as watch:
        bench.tuner(oracle, name).search(verbose=0)
        policy = oracle.best_policy()
    evaluated = _evaluated(oracle)
    action = "rate" if scheme_set == "filter" else "rate + filter share"
    row = bench.prune(name, policy, watch.seconds,
                      f"one round, DDPG R_err, {evaluated}/{trials} episodes evaluated, "
                      f"{scheme_set} ({action} per layer)")
    row["trials"] = evaluated


def run_lcp(bench):
    from tfautocompress.search import lcp
    space = bench.space("filter")
    trials = bench.budget["trials"]
    pool = max(2, round(trials * 64 / 400))  # the paper's 64 + 336 = 400, scaled
    with _common.Stopwatch() as watch:
        metrics = lcp.filter_metrics(bench.model, space, FLAGS.lcp_metric,
                                     data=bench.train_for("lcp")("metric"))
        ranking = lcp.GlobalRanking(space, metrics, FLAGS.target, FLAGS.objective)
        tuner = bench.tuner(_NoOracle(space), "lcp")
        result = lcp.regularized_evolution(ranking, tuner.evaluate, pool_size=pool,
                                           iterations=trials - pool,
                                           sample_size=max(2, pool // 4), seed=FLAGS.seed)
    row = bench.prune("lcp", result.policy, watch.seconds,
                      f"one round, {FLAGS.lcp_metric}, naive {result.naive_score:.4f} -> "
                      f"{result.score:.4f} (val subset), {len(result.history)}/{trials} "
                      f"proposals, {result.evaluations} evaluated (distinct policies)")
    row["trials"] = result.evaluations


def run_autocompress(bench, scheme_set):
    from tfautocompress.search import sa_oracle
    trials = bench.budget["trials"]
    oracle = sa_oracle.EnhancedSAOracle(bench.space(scheme_set), FLAGS.objective,
                                        target_compression_ratio=FLAGS.target,
                                        max_trials=trials, seed=FLAGS.seed)
    name = "autocompress_" + _scheme_name(scheme_set)
    with _common.Stopwatch() as watch:
        bench.tuner(oracle, name).search(verbose=0)
        policy = oracle.best_policy()
    evaluated = _evaluated(oracle)
    row = bench.prune(name, policy, watch.seconds,
                      f"one round, enhanced SA, {scheme_set}, {evaluated}/{trials} trials "
                      f"evaluated")
    row["trials"] = evaluated


def autocompress_pipeline(bench, folder, target, round_ratio, max_rounds, **settings):
    """Run (or, from ``folder``'s state, finish) the progressive pipeline on the
    bench's dense model: rounds of ~``round_ratio`` x each up to ``target`` on
    ``--objective`` (filter+column; for latency filters, budgeted by the bench's
    latency model), with the bench's epochs and trials per round (``settings``:
    other ``Config`` fields). Returns ``(report, wall_s, trials evaluated per round)``."""
    from tfautocompress import keras
    from tfautocompress.app.pipeline import AutoCompress, Config

    budget, recovery = bench.budget, pipeline_recovery()
    bound = ({} if FLAGS.pipeline_accuracy_drop is None
             else {"max_accuracy_drop": FLAGS.pipeline_accuracy_drop})
    settings = {"objective": FLAGS.objective, "columns": FLAGS.pipeline_columns,
                **{k: getattr(recovery, k) for k in RECOVERY}, **settings}
    if settings["objective"] == "latency" and bench.latency is not None:
        settings.setdefault("latency_table", bench.latency_table)
    config = Config(target_compression_ratio=target, max_fraction=FLAGS.pipeline_max_fraction,
                    **bound,
                    round_ratio=round_ratio, max_rounds=max_rounds,
                    search_trials=budget["trials"], search_subset=FLAGS.search_subset,
                    admm_epochs=budget["admm_epochs"], retrain_epochs=budget["retrain_epochs"],
                    seed=FLAGS.seed, validation_freq=FLAGS.validation_freq,
                    export_tflite=False, **settings)
    keras.utils.set_random_seed(FLAGS.seed)
    with _common.Stopwatch() as watch:
        # a fresh shuffle: the rounds' data order does not depend on what read it before
        report = AutoCompress(bench.model, bench.splits.reshuffled(FLAGS.seed), folder, config,
                              verbose=0).run()
    evaluated = [_evaluated_in(os.path.join(folder, f"round_{r['round']}", "search"))
                 for r in report["rounds"]]
    for r, n in zip(report["rounds"], evaluated):
        print(f"    round {r['round']}: {r['conv_params_ratio']:.2f}x params, val "
              f"{r['val_accuracy']:.4f}, test {r['test_accuracy']:.4f}, {n} trials"
              f"{'' if r['accepted'] else ', rejected'}", flush=True)
    return report, watch.seconds, evaluated


def pipeline_note(report, evaluated, budget, step="purified"):
    """The note of a row measured on the pipeline's ``step``."""
    rounds = report["rounds"]
    epochs = len(rounds) * (budget["admm_epochs"] + budget["retrain_epochs"])
    config = report["config"]
    return (f"full pipeline, {config['objective']}, {config['scheme_set']}, {len(rounds)} rounds x "
            f"({budget['admm_epochs']} ADMM + {budget['retrain_epochs']} retraining) = "
            f"{epochs} epochs, {sum(evaluated)} trials evaluated "
            f"({'/'.join(map(str, evaluated))} of {budget['trials']} per round), {step}, "
            f"bound {config['max_accuracy_drop']:g} points; search_s = whole "
            f"pipeline; Phase I end: {report.get('phase1_end')}")


def run_pipeline(bench):
    """Full AutoCompress: progressive rounds (filter+column), purification, compaction."""
    from tfautocompress import artifacts, masks as masks_lib
    from tfautocompress.app.pipeline import Config

    folder = os.path.join(FLAGS.workdir, "autocompress_pipeline")
    shutil.rmtree(folder, ignore_errors=True)  # a stale state.json would be resumed
    report, seconds, evaluated = autocompress_pipeline(
        bench, folder, FLAGS.target, Config.round_ratio,
        _pipeline_rounds(FLAGS.target, Config.round_ratio))
    final = report["final"]
    model = artifacts.load_model(os.path.join(folder, "final", "compact.keras"))
    masks = masks_lib.load(os.path.join(folder, "final", "masks.npz"))
    note = pipeline_note(report, evaluated, bench.budget,
                         f"purified (report test {final['test_accuracy']:.4f}, "
                         f"{final['conv_params_ratio']:.2f}x)")
    row = bench.measure("autocompress", model, masks, seconds, note=note)
    row.update(trials=sum(evaluated), rounds=len(report["rounds"]),
               epochs=len(report["rounds"]) * (bench.budget["admm_epochs"]
                                               + bench.budget["retrain_epochs"]))


def _pipeline_rounds(target, round_ratio):
    """Rounds of ~``round_ratio`` x each that reach ``target`` x, plus one spare."""
    return max(1, math.ceil(math.log(target) / math.log(round_ratio) - 1e-9)) + 1


def run_tfmot(bench):
    from tfautocompress import keras
    from tfautocompress.app import baselines
    keras.utils.set_random_seed(FLAGS.seed)
    epochs = bench.budget["admm_epochs"] + bench.budget["retrain_epochs"]
    model, masks = baselines.magnitude_prune(bench.model, bench.train_for("tfmot")("prune"),
                                             target_compression_ratio=FLAGS.target,
                                             epochs=epochs, compile_fn=bench.compile_fn(epochs))
    bench.measure("tfmot_magnitude", model, masks, 0.0, compactable=False,
                  note="non-structured: dense TFLite, no speedup")


def run_scratch(bench, scheme_set="filter"):
    from tfautocompress.compact import compact
    from tfautocompress.app import baselines
    source = "autocompress_" + _scheme_name(scheme_set)
    name = "scratch" if scheme_set == "filter" else "scratch_combined"
    if source not in bench.structures:
        raise app.UsageError(f"{name} re-trains the {source} structure: put {source} before "
                             f"{name} in --methods.")
    model, masks = bench.structures[source]
    epochs = sum(bench.budget[k] for k in ("baseline_epochs", "admm_epochs", "retrain_epochs"))
    search_s = next(r["search_s"] for r in bench.rows if r["method"] == source)
    if scheme_set == "filter":
        scratch = baselines.train_from_scratch(compact(model, masks), bench.train_for(name)("train"),
                                               epochs=epochs, compile_fn=bench.compile_fn(epochs),
                                               seed=FLAGS.seed)
        bench.measure(name, scratch, {}, search_s, note=f"{source} structure, "
                      f"{epochs} epochs from scratch")
        return
    # the combined structure: the compact model plus the column zeros inside its kernels
    small, small_masks = compact(model, masks, return_masks=True)
    scratch = baselines.train_from_scratch(small, bench.train_for(name)("train"), epochs=epochs,
                                           compile_fn=bench.compile_fn(epochs), seed=FLAGS.seed,
                                           masks=small_masks)
    bench.measure(name, scratch, small_masks, search_s,
                  note=f"{source} structure (filters and columns, column zeros held), "
                       f"{epochs} epochs from scratch")


def _NoOracle(space):
    import keras_tuner

    class NoOracle(keras_tuner.Oracle):
        """LcP drives ``PruningTuner.evaluate`` itself; the tuner needs an oracle object."""

        def __init__(self, space):
            super().__init__(objective=keras_tuner.Objective("val_accuracy", "max"),
                             max_trials=1)
            self.space = space

        def populate_space(self, trial_id):
            return {"status": "STOPPED", "values": None}

    return NoOracle(space)


RUNNERS = {
    "uniform": run_uniform,
    "deeper": lambda b: run_uniform(b, deeper=True),
    "uniform_combined": lambda b: run_uniform(b, scheme_set="filter+column"),
    "amc": run_amc,
    "amc_combined": lambda b: run_amc(b, "filter+column"),
    "lcp": run_lcp,
    "autocompress_filter": lambda b: run_autocompress(b, "filter"),
    "autocompress_combined": lambda b: run_autocompress(b, "filter+column"),
    "autocompress": run_pipeline,
    "tfmot_magnitude": run_tfmot,
    "scratch": run_scratch,
    "scratch_combined": lambda b: run_scratch(b, "filter+column"),
}


# ------------------------------------------------------------------ main ---
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from tfautocompress.app import comparison
    unknown = [m for m in FLAGS.methods if m not in RUNNERS]
    if unknown:
        raise app.UsageError(f"--methods {unknown} unknown; accepted: {', '.join(RUNNERS)}.")
    os.makedirs(FLAGS.workdir, exist_ok=True)
    budget = _budget()
    with _common.Stopwatch() as wall:
        bench = Bench(budget)
        print(f"{FLAGS.model} on {FLAGS.dataset}: dense val {bench.val_accuracy:.4f} "
              f"({budget['baseline_epochs']} epochs, {bench.baseline_s:.0f} s); budget {budget}",
              flush=True)
        bench.measure("dense", bench.model, {}, 0.0, note="baseline")
        for method in FLAGS.methods:
            RUNNERS[method](bench)
    header = (f"{FLAGS.model} on {FLAGS.dataset}, target {FLAGS.target}x CONV "
              f"{FLAGS.objective}; {budget['admm_epochs']} ADMM + {budget['retrain_epochs']} "
              f"retraining epochs (per round for autocompress), {budget['trials']} search "
              f"trials per searched method (per round for autocompress); host TFLite fp32, "
              f"1 thread")
    print(comparison.comparison_markdown(bench.rows, header))
    stem = os.path.splitext(FLAGS.output)[0] if FLAGS.output else os.path.join(
        FLAGS.workdir, "compare")
    result = {f"{r['method']}_acc": round(r["test_accuracy"], 4) for r in bench.rows}
    result.update({f"{r['method']}_params_x": round(r["conv_params_ratio"], 2)
                   for r in bench.rows if r["method"] != "dense"})
    result.update({f"{r['method']}_trials": r["trials"] for r in bench.rows if "trials" in r})
    result.update({f"{r['method']}_epochs": r["epochs"] for r in bench.rows if "epochs" in r})
    result["wall_s"] = round(wall.seconds, 1)
    comparison.write_comparison(
        stem, bench.rows, header,
        f"{FLAGS.model} on {FLAGS.dataset}, target {FLAGS.target}x {FLAGS.objective}",
        budget=budget, result=result,
        flags={"model": FLAGS.model, "dataset": FLAGS.dataset, "objective": FLAGS.objective,
               "target": FLAGS.target, "seed": FLAGS.seed})
    _common.print_result(result)


if __name__ == "__main__":
    app.run(main)
