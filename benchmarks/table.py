"""The paper's Tables 1-2 on real data: every method of ``compare.py``, several seeds.

Per seed one dense model (``--baseline_epochs`` on a ``--train_size`` stratified
subset of Fashion-MNIST's training images; validation 9,000 and test the official
10,000 images, always whole), shared by every method; per CONV-params target
(``--targets``) every one-round method of ``compare.py`` with the same ADMM and
retraining epochs and the same search trials; and one progressive AutoCompress run
per seed whose rounds land on every target (rounds of ~2x, the lower targets
as milestones: ``ladder``), so its row at a lower target is that round's model and at the
highest target the purified, compacted result. Table cells are the mean ± sample
std over the seeds of the test accuracy, and the means of the CONV params / MACs
ratios and the host TFLite fp32 latency (1 thread) of the compacted model; the
last column is each method's largest ratio whose mean test accuracy stays within
``--bound`` points of the dense mean (the paper's "no accuracy loss"): the
pipeline's own rounds for AutoCompress, the targets for the one-round methods.

With ``--objective latency`` the targets are speedups (dense / compact host TFLite
fp32 latency, 1 thread): every method budgets the dense model's latency model timed
here, AutoCompress prunes filters, and ``autocompress_params`` (AutoCompress on
CONV params, filters too, rounds of 2x up to ``PARAMS_REACH`` x) gives at each
target the first round that runs that much faster, measured: the rows then compare
accuracy at equal measured speed, and the last column is the largest speedup.

    python benchmarks/table.py --objective latency --targets 3,6 --methods uniform,amc,autocompress,autocompress_params --output results/table_speed.json

Each finished cell is kept in ``--workdir`` (``seed_<k>/<target>x/<method>.json``;
the pipeline, per set of targets, resumes from its own state), so a rerun of the same command carries
on where a killed one stopped. Writes ``--output`` (.json, with .md and .png beside).

    python benchmarks/table.py --output results/table.json
"""
import math
import os

from absl import app, flags, logging

import _common
import compare
from tfautocompress.app.config import round_step

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds: of the data split and subset, the dense "
                  "model, every search and every training.")
flags.DEFINE_list("targets", ["10", "30"], "CONV compression targets (dense / kept, on "
                  "--objective).")
flags.DEFINE_float("bound", 0.5, "percentage points of mean test accuracy below the dense "
                   "mean that still count as no loss (the last column).")
# This table's defaults: sized to finish within 2 hours on 2 CPU cores (1 h 13 min measured,
# see README, "Results on real data").
for _name, _value in {"dataset": "fashion_mnist", "train_size": 4000, "baseline_epochs": 10,
                      "admm_epochs": 2, "retrain_epochs": 2, "trials": 16,
                      "search_subset": 1000, "latency_runs": 20,
                      "pipeline_accuracy_drop": 100.0, "validation_freq": 0,
                      "workdir": "/tmp/tfac_table"}.items():
    FLAGS.set_default(_name, _value)

PIPELINE = "autocompress"
PARAMS_PIPELINE = "autocompress_params"  # a latency table's AutoCompress on CONV params
PARAMS_REACH = 64.0  # how far (CONV params) its rounds of 2x go
SCRATCH_SOURCES = {"scratch": "autocompress_filter",
                   "scratch_combined": "autocompress_combined"}


def ladder(targets):
    """``(round_ratio, nominal targets of the rounds)``: the pipeline's rounds
    (``config.round_step``) of a ~2x ``round_ratio`` whose power is the lowest target,
    landing on each target, the lower ones as milestones (10, 30: 2.15x, 4.64x, 10x,
    then 17.3x and 30x, the last two splitting what is left)."""
    ratio = min(targets) ** (1.0 / max(1, round(math.log2(min(targets)))))
    nominal, reached = [], 1.0
    for goal in sorted(targets):
        while reached < goal:
            reached = round_step(reached, goal, ratio)[0]
            nominal.append(round(reached, 6))
    return ratio, nominal


class Cells:
    """Finished rows kept as ``workdir/seed_<k>/<target>x/<method>.json`` (atomic;
    target None: the seed's folder itself)."""

    def __init__(self, folder):
        self.folder = folder

    def path(self, target, method, suffix=".json"):
        where = "" if target is None else f"{target:g}x"
        return os.path.join(self.folder, where, method + suffix)

    def get(self, target, method):
        from tfautocompress import artifacts
        path = self.path(target, method)
        return artifacts.read_json(path) if os.path.exists(path) else None

    def put(self, target, method, row):
        from tfautocompress import artifacts
        artifacts.write_json(self.path(target, method), row)
        return row

    def save_structure(self, target, method, model, masks):
        from tfautocompress import artifacts, masks as masks_lib
        artifacts.save_model(model, self.path(target, method, ".keras"))
        masks_lib.save(self.path(target, method, ".npz"), masks)

    def load_structure(self, target, method):
        from tfautocompress import artifacts, masks as masks_lib
        return (artifacts.load_model(self.path(target, method, ".keras"), what="structure"),
                masks_lib.load(self.path(target, method, ".npz")))


def run_method(bench, cells, method, target):
    """The row of one one-round ``method`` at ``target`` (run, or read back), also
    appended to ``bench.rows`` (the scratch rows read their source's there)."""
    row = cells.get(target, method)
    if row is None:
        source = SCRATCH_SOURCES.get(method)
        if source and source not in bench.structures:
            bench.structures[source] = cells.load_structure(target, source)
        FLAGS.target = target
        compare.RUNNERS[method](bench)
        if method in SCRATCH_SOURCES.values():
            cells.save_structure(target, method, *bench.structures[method])
        row = cells.put(target, method, dict(bench.rows.pop(), seed=FLAGS.seed, target=target))
    bench.rows.append(row)
    return row


def pipeline_through(bench, folder, targets, **settings):
    """``(report, wall_s, trials evaluated per round, nominal targets of the rounds)``
    of ``compare.autocompress_pipeline`` in ``folder`` through every target (``ladder``;
    ``settings``: other ``Config`` fields)."""
    ratio, nominal = ladder(targets)
    report, seconds, evaluated = compare.autocompress_pipeline(
        bench, folder, max(targets), ratio, len(nominal), milestones=sorted(targets)[:-1],
        **settings)
    return report, seconds, evaluated, nominal


def run_pipeline(bench, cells, targets):
    """The AutoCompress rows of one seed: one per round (nominal target), the
    highest one on the purified, compacted model. Kept per ladder
    (``autocompress_<targets>x``): runs toward other targets share the workdir."""
    name = f"{PIPELINE}_{'_'.join(f'{t:g}' for t in targets)}x"
    done = cells.get(None, name)
    if done is not None:
        return done["rows"]
    folder = os.path.join(cells.folder, name)
    report, seconds, evaluated, nominal = pipeline_through(bench, folder, targets)
    rows = [dict(row, target=target) for row, target in
            zip(_measured_rounds(bench, PIPELINE, folder, report, seconds, evaluated), nominal)]
    cells.put(None, name, {"rows": rows, "phase1_end": report["phase1_end"]})
    return rows


def run_params_pipeline(bench, cells, speeds):
    """A latency table's AutoCompress on CONV params, pruning filters as the latency
    run does: rounds of 2x up to ``PARAMS_REACH`` x, each round measured; its row at
    a speed S is the first round whose compacted model runs at least S x faster than
    the dense one, measured (none where no round does)."""
    name = f"{PARAMS_PIPELINE}_{PARAMS_REACH:g}x"
    done = cells.get(None, name)
    if done is None:
        folder = os.path.join(cells.folder, name)
        report, seconds, evaluated, _ = pipeline_through(bench, folder, [PARAMS_REACH],
                                                         objective="params", scheme_set="filter")
        done = cells.put(None, name, {
            "rows": _measured_rounds(bench, PARAMS_PIPELINE, folder, report, seconds,
                                     evaluated),
            "phase1_end": report["phase1_end"]})
    rows = []
    for speed in speeds:
        row = next((r for r in done["rows"] if r["speedup"] >= speed), None)
        if row is not None:
            rows.append(dict(row, target=speed))
    return rows


def _measured_rounds(bench, method, folder, report, seconds, evaluated):
    """A row of ``method`` per accepted round of the pipeline run in ``folder``, in
    order, the last one on its purified, compacted model."""
    from tfautocompress import artifacts, masks as masks_lib

    rows, last = [], len(report["rounds"])
    for r in report["rounds"]:
        if not r["accepted"]:
            break
        step = "purified" if r["round"] == last else f"round {r['round']}"
        path = (os.path.join(folder, "final") if step == "purified"
                else os.path.join(folder, f"round_{r['round']}"))
        model = artifacts.load_model(os.path.join(path, "compact.keras" if step == "purified"
                                                  else "model.keras"), what="pipeline step")
        masks = masks_lib.load(os.path.join(path, "masks.npz"))
        row = bench.measure(method, model, masks, seconds,
                            note=compare.pipeline_note(report, evaluated, bench.budget, step))
        rows.append(dict(row, seed=FLAGS.seed, round=r["round"],
                         search_target_ratio=r["search_target_ratio"]))
    return rows


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from tfautocompress import artifacts
    from tfautocompress.app import comparison

    targets = sorted(float(t) for t in FLAGS.targets)
    seeds = [int(s) for s in FLAGS.seeds]
    methods = [m for m in FLAGS.methods if m not in (PIPELINE, PARAMS_PIPELINE)]
    unknown = [m for m in methods if m not in compare.RUNNERS]
    if unknown or min(targets) <= 1:
        raise app.UsageError(f"--methods {unknown} unknown (accepted: "
                             f"{', '.join(compare.RUNNERS)}, {PIPELINE}, {PARAMS_PIPELINE}) "
                             "or a --targets value <= 1.")
    if PARAMS_PIPELINE in FLAGS.methods and FLAGS.objective != "latency":
        raise app.UsageError(f"--methods {PARAMS_PIPELINE} is the params run a latency "
                             "table compares at equal speed: add --objective latency.")
    budget, root, rows = compare._budget(), FLAGS.workdir, []
    with _common.Stopwatch() as wall:
        for seed in seeds:
            FLAGS.seed = seed
            FLAGS.workdir = os.path.join(root, f"seed_{seed}")
            cells = Cells(FLAGS.workdir)
            bench = compare.Bench(budget, baseline_dir=os.path.join(FLAGS.workdir, "dense"))
            print(f"seed {seed}: dense val {bench.val_accuracy:.4f} ({wall.elapsed():.0f} s "
                  "so far)", flush=True)
            dense_row = cells.get(None, "dense") or cells.put(None, "dense", dict(
                bench.measure("dense", bench.model, {}, 0.0, note="baseline"),
                seed=seed, target=1.0))
            bench.dense_ms = dense_row["latency_ms"]
            rows.append(dense_row)
            if PIPELINE in FLAGS.methods:
                rows += run_pipeline(bench, cells, targets)
            if PARAMS_PIPELINE in FLAGS.methods:
                rows += run_params_pipeline(bench, cells, targets)
            for target in targets:
                bench.rows, bench.structures = [], {}
                for method in methods:
                    rows.append(run_method(bench, cells, method, target))
    FLAGS.workdir = root
    statistics = comparison.seed_statistics(rows)
    dense = statistics.pop(("dense", 1.0))
    order = [m for m in FLAGS.methods if any(k[0] == m for k in statistics)]
    header = (f"{FLAGS.model} on {FLAGS.dataset} ({FLAGS.train_size or 'all'} training "
              f"images, test {bench.splits.sizes['test']}), seeds {','.join(map(str, seeds))}; "
              f"dense {budget['baseline_epochs']} epochs; per method {budget['admm_epochs']} "
              f"ADMM + {budget['retrain_epochs']} retraining epochs (per round for "
              f"{PIPELINE}), {budget['trials']} search trials (per round for {PIPELINE}); "
              f"CONV {FLAGS.objective} targets; host TFLite fp32, 1 thread")
    table = comparison.seed_table_markdown(statistics, order, targets, dense, FLAGS.bound / 100,
                                           header, notes=_notes(rows, budget),
                                           objective=FLAGS.objective)
    print(table)
    stem = os.path.splitext(FLAGS.output)[0] if FLAGS.output else os.path.join(root, "table")
    artifacts.write_json(stem + ".json", {
        "rows": rows, "budget": budget, "seeds": seeds, "targets": targets,
        "bound_points": FLAGS.bound, "train_size": FLAGS.train_size, "wall_s": wall.seconds,
        "statistics": [dict(c, method=m, target=t) for (m, t), c in statistics.items()],
        "dense": dense})
    with open(stem + ".md.tmp", "w") as f:
        f.write(table)
    os.replace(stem + ".md.tmp", stem + ".md")
    comparison.plot_seed_pareto(statistics, dense, FLAGS.bound / 100, stem + ".png",
                                f"{FLAGS.model} on {FLAGS.dataset}, {len(seeds)} seeds",
                                FLAGS.objective)
    result = {"dense_acc": round(dense["test_accuracy_mean"], 4), "wall_s": round(wall.seconds)}
    for m in order:
        for t in targets:
            if (m, t) in statistics:
                result[f"{m}_{t:g}x_acc"] = round(statistics[(m, t)]["test_accuracy_mean"], 4)
        within = comparison.largest_ratio_within(statistics, m, dense["test_accuracy_mean"],
                                                 FLAGS.bound / 100, FLAGS.objective)
        result[f"{m}_within"] = round(within, 2) if within else 0
    _common.print_result(result)


def _notes(rows, budget):
    """One note per method: its last row's (the seeds differ only in figures; the
    pipeline's last row is its purified result)."""
    notes = {}
    for r in rows:
        notes[r["method"]] = r["note"].split("; search_s")[0]
    return notes


if __name__ == "__main__":
    app.run(main)
