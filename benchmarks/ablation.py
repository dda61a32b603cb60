"""Which of the ADMM and recovery levers buys what (issue #29's ablation).

One seed of ``table.py``'s setting (Fashion-MNIST, the same dense model, subset,
epochs and trials per round; its flags and defaults), one progressive AutoCompress
run per variant through the table's targets (``--targets``, default 10x and 30x).
Each variant is the pipeline's default with one lever turned off or on; every
variant pins every lever, so a later change of ``Config``'s defaults does not change
what a name measured:

  default                the pipeline's defaults: the paper's ADMM (the penalty
                         rho/2 ||W - Z + U||^2 in the loss, Z/U once an epoch,
                         multi-rho with the last epoch's ramp) with the landing
                         (the last quarter of each round's last ADMM epoch is
                         proximal with Z/U four times: W lands on the constraint
                         set), distillation from the dense model (weight 0.5, T 4),
                         Adam at lr 3e-3, cosine-decayed over each phase, and the
                         search ranking by the true class's mean probability
  no_landing             ... without the landing
  no_distill             ... without distillation
  updates4               ... with Z/U four times an epoch
  balanced               ... with residual balancing (rho per layer from the primal
                         and dual residuals, Boyd et al. 2011, 3.4.1)
  accuracy_score         ... with the search ranking by top-1 (the paper's)
  lr1e-3                 ... at the paper's lr 1e-3
  updates4_prox          ... with Z/U four times an epoch and the proximal W-step
                         (eta 0.05) from the first step instead of the penalty in
                         the loss
  paper                  the paper's ADMM and recovery: no landing, no
                         distillation, lr 1e-3, top-1

The first six (``--variants``' default) take about 30 minutes on 2 cores.

Per variant: test accuracy at each target (the round whose nominal target it is; the
highest on the purified, compacted model), the CONV params ratio reached, the largest
primal residual ||W - Z|| / ||W|| at the end of any round's ADMM and the largest
hard-prune cut ||W - Pi(W)|| / ||W|| of any layer, and the wall time. Runs resume from
``--workdir`` (``seed_<k>/ablation/<variant>``), sharing ``table.py``'s dense model.

    python benchmarks/ablation.py --output results/ablation.json [--variants paper,distill]
"""
import os

from absl import app, flags, logging

import _common
import compare
import table

FLAGS = flags.FLAGS


def variants(batches):
    """``{variant: Config fields}`` (see the module's doc); ``batches``: steps an epoch."""
    default = {"admm_landing": 0.25, "distill_weight": 0.5, "lr": 3e-3,
               "search_score": "probability", "admm": {}}
    updates4 = {"update_every": max(1, batches // 4)}
    return {"default": default,
            "no_landing": {**default, "admm_landing": 0.0},
            "no_distill": {**default, "distill_weight": 0.0},
            "updates4": {**default, "admm": updates4},
            "balanced": {**default, "admm": {"rho_schedule": "balanced"}},
            "accuracy_score": {**default, "search_score": "accuracy"},
            "lr1e-3": {**default, "lr": 1e-3},
            "updates4_prox": {**default, "admm": {**updates4, "prox_step": 0.05}},
            "paper": {**default, "admm_landing": 0.0, "distill_weight": 0.0, "lr": 1e-3,
                      "search_score": "accuracy"}}


VARIANTS = tuple(variants(1))
flags.DEFINE_list("variants", list(VARIANTS[:6]), "variants to run (see the module's doc; "
                  f"all: {','.join(VARIANTS)}).")


def largest(rounds, key):
    """The largest per-layer value of report field ``key`` over ``rounds``."""
    return max((v for r in rounds for v in r.get(key, {}).values()), default=float("nan"))


def variant_row(bench, folder, targets, settings):
    """One variant's figures (see the module's doc)."""
    report, seconds, _, nominal = table.pipeline_through(bench, folder, targets, **settings)
    rounds = report["rounds"]
    row = {"wall_s": round(seconds, 1),
           "max_residual": largest(rounds, "admm_residuals"),
           "max_cut": largest(rounds, "hard_prune_cut"),
           "phase1_end": report["phase1_end"]}
    for r, target in zip(rounds, nominal):
        if target not in targets or not r["accepted"]:
            continue
        step = report["final"] if target == max(targets) else r
        row[f"{target:g}x"] = {"test_accuracy": step["test_accuracy"],
                               "conv_params_ratio": step["conv_params_ratio"]}
    return row


def markdown(rows, dense, targets):
    cells = " | ".join(f"{t:g}x: test % (ratio)" for t in targets)
    lines = [f"dense test {100 * dense:.2f} %", "",
             f"| variant | {cells} | max residual | max cut | wall |",
             "|---" * (len(targets) + 4) + "|"]
    for name, row in rows.items():
        figures = " | ".join(
            f"{100 * row[k]['test_accuracy']:.2f} ({row[k]['conv_params_ratio']:.1f}x)"
            if k in row else "not reached" for k in (f"{t:g}x" for t in targets))
        lines.append(f"| {name} | {figures} | {row['max_residual']:.2g} | "
                     f"{row['max_cut']:.2g} | {row['wall_s'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from tfautocompress import artifacts
    from tfautocompress.evaluate import accuracy

    unknown = sorted(set(FLAGS.variants) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"--variants {unknown} unknown; use some of {', '.join(VARIANTS)}.")
    targets = sorted(float(t) for t in FLAGS.targets)
    FLAGS.seed = int(FLAGS.seeds[0])
    seed_dir = os.path.join(FLAGS.workdir, f"seed_{FLAGS.seed}")
    FLAGS.workdir = seed_dir
    bench = compare.Bench(compare._budget(), baseline_dir=os.path.join(seed_dir, "dense"))
    dense = accuracy(bench.model, bench.splits.test)
    cells, rows = table.Cells(os.path.join(seed_dir, "ablation")), {}
    settings = variants(int(bench.splits.train.cardinality()))
    for name in FLAGS.variants:
        rows[name] = cells.get(None, name) or cells.put(None, name, variant_row(
            bench, os.path.join(cells.folder, name), targets, settings[name]))
        print(f"{name}: {rows[name]}", flush=True)
    text = markdown(rows, dense, targets)
    print(text)
    _common.finish({"seed": FLAGS.seed, "dense_test_accuracy": dense}, FLAGS.output,
                   extra={"variants": rows})
    if FLAGS.output:
        artifacts.write_text(os.path.splitext(FLAGS.output)[0] + ".md", text)


if __name__ == "__main__":
    app.run(main)
