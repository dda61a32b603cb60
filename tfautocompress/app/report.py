"""AutoCompress reports: ``report.json``, ``report.md`` and PNG plots, written atomically.

``write(output_dir, state)`` turns a pipeline state (``pipeline.AutoCompress.state``)
into ``report.json`` with top-level ``baseline``, ``rounds`` (a list) and ``final``,
each with ``val_accuracy``, ``test_accuracy``, ``conv_params_ratio``,
``conv_macs_ratio``, ``params_ratio``, ``macs_ratio``, ``wall_s`` and per-layer
kept fractions (``layers``) with the filter/column ``scheme_split``; ``final`` has
the TFLite figures when they were measured, and ``lowering``
(``lowering_summary``): per CONV layer of the compact model the MACs the pruning
counts vs the MACs TFLite executes, the form each column-sparse Conv2D took and
the single-layer latency of each form measured. Ratios are dense / kept (N x);
accuracies are fractions in [0, 1].

``write_comparison(stem, rows, header, title)`` writes a side-by-side comparison of
pruning methods (``benchmarks/compare.py``): ``stem.json``, the markdown table
``stem.md`` (``comparison_markdown``) and the accuracy-vs-ratio plot ``stem.png``
(``plot_pareto``); a row is one method's dict with ``method``, ``test_accuracy``,
``conv_params_ratio``, ``conv_macs_ratio``, ``latency_ms``, ``search_s`` and ``note``.

``seed_statistics(rows)`` folds such rows of several seeds (each also with ``seed``
and its nominal ``target``) into mean ± std per method and target (the paper-style
table of ``benchmarks/table.py``: ``seed_table_markdown``, ``plot_seed_pareto``);
``largest_ratio_within`` reads off a method's largest ratio that keeps its mean
test accuracy within a bound of the dense model's.
"""
import os

import numpy as np
# Figures without pyplot: no backend is chosen for the process (importing this
# module changes no global state), and none is needed to save a PNG.
from matplotlib.figure import Figure

from tfautocompress import artifacts, cost, graph as graph_lib, layer_kinds
from tfautocompress import schemes as schemes_lib

__all__ = ["layer_summary", "scheme_split", "lowering_summary", "tflite_figures", "build", "write",
           "comparison_markdown", "plot_pareto", "write_comparison", "seed_statistics",
           "largest_ratio_within", "seed_table_markdown", "plot_seed_pareto"]

KEYS = ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio",
        "params_ratio", "macs_ratio", "wall_s")


def layer_summary(model, masks):
    """``{layer: {"kept", "filters_removed", "columns_removed", "params"}}`` for every
    CONV/Dense kernel: kept share of its kernel and shares of all-zero filters and
    columns, after closing ``masks`` over the channel graph."""
    closed = graph_lib.close_masks(model, masks) if masks else {}
    summary = {}
    for layer in model.layers:
        layout = layer_kinds.layout_of(layer)
        if layout is None or not layout.prunable:
            continue
        shape = tuple(layer_kinds.kernel_of(layer).shape)
        mask = np.asarray(closed.get(layer.name, np.ones(shape, np.float32)))
        zero = schemes_lib.zero_group_shares(mask, layout.kind)
        summary[layer.name] = {"kept": float(mask.mean()), "params": int(mask.size),
                               "filters_removed": zero["filter"],
                               "columns_removed": zero["column"]}
    return summary


def scheme_split(layers):
    """Shares of the removed kernel weights that whole filters vs. columns account for."""
    by_filter = sum(v["params"] * v["filters_removed"] for v in layers.values())
    removed = sum(v["params"] * (1.0 - v["kept"]) for v in layers.values())
    if removed <= 0:
        return {"filter": 0.0, "column": 0.0}
    share = min(1.0, by_filter / removed)
    return {"filter": share, "column": 1.0 - share}


def lowering_summary(counted, executed, lowered):
    """``{"layers": {name: {"form", "macs_counted", "macs_executed", "latency_ms"}},
    "conv_macs_counted", "conv_macs_executed", "decision_wall_s"}`` of a compact model
    from its ``cost.count`` with its compact masks (``counted``: the pruned zeros
    skipped) and without (``executed``: what TFLite multiplies, a kept column-sparse
    Conv2D its zeros too, a lowered one only its kept rows), and
    ``compact.compact_lowered``'s ``lowering``."""
    executed = {r.name: r for r in executed.layers}
    decisions = lowered["decisions"]
    layers = {}
    for r in counted.layers:
        if not r.conv:
            continue
        decision = decisions.get(r.name)
        layers[r.name] = {"form": decision.form if decision else "dense",
                          "macs_counted": r.macs, "macs_executed": executed[r.name].macs,
                          "latency_ms": dict(decision.latency_ms) if decision else {}}
    return {"layers": layers, "conv_macs_counted": counted.conv_macs,
            "conv_macs_executed": sum(executed[n].macs for n in layers),
            "decision_wall_s": float(lowered["seconds"])}


def _lowering_lines(lowering):
    forms = ("keep", "rows", "slices")
    lines = ["", "## CONV MACs counted vs executed by TFLite", "",
             "Form: `dense` (no pruned column), `keep` (Conv2D multiplying its zero columns), "
             "`rows` / `slices` (lowered: only the kept rows). Latency: the layer alone in "
             "host TFLite, 1 thread, per form measured.", "",
             "| layer | form | MACs counted | MACs executed | "
             + " | ".join(f"{f} ms" for f in forms) + " |", "|---" * (4 + len(forms)) + "|"]
    for name, v in lowering["layers"].items():
        times = [f"{v['latency_ms'][f]:.3f}" if f in v["latency_ms"] else "-" for f in forms]
        lines.append(f"| {name} | {v['form']} | {v['macs_counted']:,} | {v['macs_executed']:,} | "
                     + " | ".join(times) + " |")
    counted, executed = lowering["conv_macs_counted"], lowering["conv_macs_executed"]
    lines.append(f"| total | | {counted:,} | {executed:,} |" + " |" * len(forms))
    lines.append(f"\nTFLite executes {executed / max(counted, 1):.2f}x the counted CONV MACs; "
                 f"choosing the forms took {lowering['decision_wall_s']:.1f} s.")
    return lines


def tflite_figures(dense_model, compact_model, folder, data, runs=30):
    """Sizes, host latency, GPU-delegate compatibility and equivalence of the dense
    model (fp32) and the compact one (fp32, fp16), exported under ``folder``."""
    from tfautocompress.tflite_tools import benchmark, export, gpu

    sample = data.take(2)
    figures = {}
    for key, model, mode in (("baseline_fp32", dense_model, "float32"),
                             ("compact_fp32", compact_model, "float32"),
                             ("compact_fp16", compact_model, "float16")):
        path = os.path.join(folder, f"{key}.tflite")
        info = export.export(model, path, mode)
        timing = benchmark.benchmark(path, threads=1, warmup=3, runs=runs)
        compatibility = gpu.gpu_compatibility(path)
        figures[key] = {"path": path, "size_bytes": info["size_bytes"],
                        "latency_ms": timing["latency_ms"]["mean"],
                        "gpu_compatible": compatibility.compatible,
                        "gpu_incompatible_ops": compatibility.incompatible_ops,
                        "equivalence": benchmark.check_equivalence(model, path, sample)}
    base, small = figures["baseline_fp32"], figures["compact_fp32"]
    figures["size_ratio"] = base["size_bytes"] / small["size_bytes"]
    figures["host_speedup"] = base["latency_ms"] / small["latency_ms"]
    return figures


def _entry(record):
    entry = {key: record.get(key) for key in KEYS}
    entry["layers"] = record.get("layers", {})
    entry["scheme_split"] = scheme_split(entry["layers"])
    return entry


def build(state):
    """The report dict from a pipeline state."""
    rounds = []
    for record in state["rounds"]:
        entry = _entry(record)
        entry.update(round=record["round"], accepted=record["accepted"],
                     search_target_ratio=record.get("search_target_ratio"),
                     analytic_ratio=record.get("analytic_ratio"),
                     objective_ratio=record.get("objective_ratio"),
                     schedule=record.get("schedule"), schemes=record.get("schemes", {}),
                     admm_residuals=record.get("admm_residuals", {}))
        rounds.append(entry)
    final = _entry(state["final"])
    final["layers"] = state["purification"]["layers"]
    final["scheme_split"] = scheme_split(final["layers"])
    final["purification"] = {k: state["purification"][k] for k in KEYS}
    final["purification"]["rounds"] = state["purification"].get("rounds", [])
    for key in ("tflite", "max_abs_diff_vs_masked", "keras3_max_abs_diff", "compact_params",
                "lowering"):
        if key in state["final"]:
            final[key] = state["final"][key]
    final["wall_s"] = (sum(r["wall_s"] for r in rounds) + state["purification"]["wall_s"]
                       + state["final"]["wall_s"])
    return {"baseline": _entry(state["baseline"]), "rounds": rounds, "final": final,
            "phase1_end": state.get("phase1_end"), "config": state.get("config")}


def _budget_lines(report):
    """Each round's hard constraint: search target, analytic budget of the chosen
    policy, ratio reached after ADMM + masked retraining, and the SA schedule."""
    lines = ["## Phase I: search target vs reached", "",
             "| round | search target | chosen policy (analytic) | reached | SA trials / temperatures |",
             "|---|---|---|---|---|"]
    for r in report["rounds"]:
        if r.get("search_target_ratio") is None:
            continue
        schedule = r.get("schedule") or {}
        analytic = r.get("analytic_ratio")
        reached = r.get("objective_ratio")
        lines.append(f"| {r['round']} | {r['search_target_ratio']:.2f}x | "
                     f"{'-' if analytic is None else f'{analytic:.2f}x'} | "
                     f"{'-' if reached is None else f'{reached:.2f}x'} | "
                     f"{schedule.get('trials', '-')} / "
                     f"{len(schedule.get('temperatures', ())) or '-'} |")
    purified = report["final"].get("purification", {}).get("rounds", [])
    if purified:
        lines += ["", "Purification rounds reached: "
                  + ", ".join(f"{p['ratio']:.2f}x" for p in purified)]
    return lines


def _markdown(report):
    lines = ["# AutoCompress report", "",
             "Ratios are dense / kept (N x) over CONV layers; accuracies in %.", "",
             "| step | val acc | test acc | CONV params | CONV MACs | filter / column share | wall s |",
             "|---|---|---|---|---|---|---|"]
    steps = [("baseline", report["baseline"])]
    steps += [(f"round {r['round']}{'' if r['accepted'] else ' (rejected)'}", r)
              for r in report["rounds"]]
    steps.append(("final (purified, compact)", report["final"]))
    for name, e in steps:
        split = e["scheme_split"]
        lines.append(f"| {name} | {100 * e['val_accuracy']:.2f} | {100 * e['test_accuracy']:.2f} "
                     f"| {e['conv_params_ratio']:.2f}x | {e['conv_macs_ratio']:.2f}x "
                     f"| {split['filter']:.2f} / {split['column']:.2f} | {e['wall_s']:.1f} |")
    lines += ["", f"Phase I ended: {report.get('phase1_end')}", ""]
    lines += _budget_lines(report)
    lines += ["",
              "## Per-layer kept fraction (filters removed / columns removed)", ""]
    names = list(report["baseline"]["layers"])
    header = [name for name, _ in steps[1:]]
    lines += ["| layer | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for layer in names:
        cells = []
        for _, e in steps[1:]:
            v = e["layers"].get(layer, {"kept": 1.0, "filters_removed": 0.0, "columns_removed": 0.0})
            cells.append(f"{v['kept']:.3f} ({v['filters_removed']:.2f} / {v['columns_removed']:.2f})")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    rounds = [(name, e["admm_residuals"]) for name, e in steps[1:-1]]
    if any(residuals for _, residuals in rounds):
        lines += ["", "## ADMM primal residual ||W - Z|| / ||W|| after each round's ADMM", "",
                  "| layer | " + " | ".join(name for name, _ in rounds) + " |",
                  "|---" * (len(rounds) + 1) + "|"]
        for layer in names:
            if any(layer in residuals for _, residuals in rounds):
                lines.append(f"| {layer} | " + " | ".join(
                    f"{residuals[layer]:.3f}" if layer in residuals else "-"
                    for _, residuals in rounds) + " |")
    if report["final"].get("lowering"):
        lines += _lowering_lines(report["final"]["lowering"])
    tflite = report["final"].get("tflite")
    if tflite:
        lines += ["", "## TFLite (host, 1 thread)", "",
                  "| model | size KB | latency ms | GPU delegate | matches Keras |", "|---|---|---|---|---|"]
        for key in ("baseline_fp32", "compact_fp32", "compact_fp16"):
            t = tflite[key]
            lines.append(f"| {key} | {t['size_bytes'] / 1024:.1f} | {t['latency_ms']:.3f} | "
                         f"{'yes' if t['gpu_compatible'] else ', '.join(t['gpu_incompatible_ops'])} "
                         f"| {t['equivalence']['passed']} |")
        lines.append(f"\nsize ratio {tflite['size_ratio']:.2f}x, host speedup "
                     f"{tflite['host_speedup']:.2f}x")
    return "\n".join(lines) + "\n"


def _write_text(path, text):
    with artifacts.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def _save_figure(figure, path, dpi=100, bbox_inches="tight"):
    with artifacts.atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches=bbox_inches)


def _subplots(figsize):
    figure = Figure(figsize=figsize)
    return figure, figure.subplots()


def _plot_layers(report, path):
    steps = [(f"round {r['round']}", r) for r in report["rounds"] if r["accepted"]]
    steps.append(("final", report["final"]))
    names = list(report["baseline"]["layers"])
    figure, axis = _subplots(figsize=(max(6, 0.8 * len(names)), 4))
    width = 0.8 / len(steps)
    for i, (label, e) in enumerate(steps):
        pruned = [1.0 - e["layers"].get(n, {"kept": 1.0})["kept"] for n in names]
        axis.bar(np.arange(len(names)) + i * width, pruned, width, label=label)
    axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=60, ha="right")
    axis.set_ylabel("pruned fraction of the kernel")
    axis.set_ylim(0, 1)
    axis.legend()
    _save_figure(figure, path)


def _plot_accuracy(report, path):
    figure, axis = _subplots(figsize=(6, 4))
    steps = [report["baseline"]] + report["rounds"] + [report["final"]]
    for key in ("val_accuracy", "test_accuracy"):
        axis.plot([e["conv_params_ratio"] for e in steps], [100 * e[key] for e in steps],
                  "o-", label=key.replace("_", " "))
    axis.set_xscale("log")
    axis.set_xlabel("CONV params ratio (dense / kept, x)")
    axis.set_ylabel("accuracy (%)")
    axis.legend()
    _save_figure(figure, path)


def write(output_dir, state):
    """Write report.json, report.md, layers.png and accuracy.png; return the report."""
    report = build(state)
    artifacts.write_json(os.path.join(output_dir, "report.json"), report)
    _write_text(os.path.join(output_dir, "report.md"), _markdown(report))
    _plot_layers(report, os.path.join(output_dir, "layers.png"))
    _plot_accuracy(report, os.path.join(output_dir, "accuracy.png"))
    return report


# ------------------------------------------------------------ comparisons ---
def comparison_markdown(rows, header):
    """The markdown table of a method comparison under the line ``header`` (rows: see
    the module doc), one line per row in order, ending with a newline."""
    lines = [header, "",
             "| method | test acc. | CONV params ratio | CONV MACs ratio | TFLite latency (ms) "
             "| search (s) | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['test_accuracy']:.4f} | {r['conv_params_ratio']:.2f}x "
                     f"| {r['conv_macs_ratio']:.2f}x | {r['latency_ms']:.3f} | {r['search_s']:.1f} "
                     f"| {r['note']} |")
    return "\n".join(lines) + "\n"


def plot_pareto(rows, path, title):
    """PNG at ``path``: each row's test accuracy against its CONV params ratio,
    labelled with its method, under ``title``."""
    figure, axis = _subplots(figsize=(6, 4))
    for r in rows:
        axis.scatter(r["conv_params_ratio"], r["test_accuracy"])
        axis.annotate(r["method"], (r["conv_params_ratio"], r["test_accuracy"]), fontsize=7)
    axis.set_xlabel("CONV params ratio (dense / kept)")
    axis.set_ylabel("test accuracy")
    axis.set_title(title)
    figure.tight_layout()
    _save_figure(figure, path, dpi=120, bbox_inches=None)


def write_comparison(stem, rows, header, title, **fields):
    """Write ``stem + ".json"`` (``{"rows": rows, **fields}``), ``stem + ".md"``
    (``comparison_markdown(rows, header)``) and ``stem + ".png"``
    (``plot_pareto(rows, ..., title)``); return the markdown table."""
    table = comparison_markdown(rows, header)
    artifacts.write_json(stem + ".json", dict(fields, rows=rows))
    _write_text(stem + ".md", table)
    plot_pareto(rows, stem + ".png", title)
    return table


# -------------------------------------------------------- several seeds ---
_STATISTICS = ("test_accuracy", "conv_params_ratio", "conv_macs_ratio", "latency_ms")


def seed_statistics(rows):
    """``{(method, target): {"n", "seeds", <key>_mean, <key>_std ...}}`` over the
    rows of several seeds (each row: ``method``, nominal ``target``, ``seed`` and
    the ``_STATISTICS`` keys); std is the sample standard deviation (0 for one seed)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["target"]), []).append(r)
    out = {}
    for key, group in groups.items():
        cell = {"n": len(group), "seeds": sorted(r["seed"] for r in group)}
        for name in _STATISTICS:
            values = np.array([r[name] for r in group], dtype=float)
            cell[name + "_mean"] = float(values.mean())
            cell[name + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[key] = cell
    return out


def largest_ratio_within(statistics, method, dense_accuracy, bound):
    """The largest mean CONV params ratio of ``method``'s cells whose mean test
    accuracy is at least ``dense_accuracy - bound`` (fractions); None if none is."""
    ratios = [c["conv_params_ratio_mean"] for (m, _), c in statistics.items()
              if m == method and c["test_accuracy_mean"] >= dense_accuracy - bound - 1e-12]
    return max(ratios) if ratios else None


def seed_table_markdown(statistics, methods, targets, dense, bound, header, notes=None):
    """The markdown table: a line per method of ``methods`` (in order), per target
    its test accuracy (mean ± std, %), CONV params and MACs ratios and TFLite
    latency, then its largest ratio within ``bound`` of the ``dense`` cell's
    accuracy (``dense``: the dense model's ``seed_statistics`` cell); ``notes``:
    ``{method: text}`` for a last column."""
    cols = " | ".join(f"{t:g}x: test acc. (%) | params / MACs | ms" for t in targets)
    lines = [header, "", f"| method | {cols} | largest ratio within {bound * 100:g} pts "
             "| note |", "|---" * (3 * len(targets) + 3) + "|"]
    acc = dense["test_accuracy_mean"]
    lines.append(f"| dense | {_mean_std(dense)} | 1x / 1x | "
                 f"{dense['latency_ms_mean']:.3f} |" + " | | |" * (len(targets) - 1)
                 + f" | {(notes or {}).get('dense', '')} |")
    for method in methods:
        cells = []
        for t in targets:
            c = statistics.get((method, t))
            cells.append("— | — | —" if c is None else
                         f"{_mean_std(c)} | {c['conv_params_ratio_mean']:.1f}x / "
                         f"{c['conv_macs_ratio_mean']:.1f}x | {c['latency_ms_mean']:.3f}")
        within = largest_ratio_within(statistics, method, acc, bound)
        lowest = min(t for (m, t) in statistics if m == method)
        within = f"{within:.1f}x" if within else f"< {lowest:g}x"
        lines.append(f"| {method} | {' | '.join(cells)} | {within} | "
                     f"{(notes or {}).get(method, '')} |")
    return "\n".join(lines) + "\n"


def _mean_std(cell):
    return (f"{cell['test_accuracy_mean'] * 100:.2f} ± {cell['test_accuracy_std'] * 100:.2f}"
            f" (n={cell['n']})")


def plot_seed_pareto(statistics, dense, bound, path, title):
    """PNG at ``path``: per method, mean test accuracy (± std error bars) against
    mean CONV params ratio over its targets (log x), the dense accuracy and the
    ``bound`` below it as lines."""
    figure, axis = _subplots(figsize=(8, 5))
    for method in sorted({m for m, _ in statistics}):
        cells = sorted((c for (m, _), c in statistics.items() if m == method),
                       key=lambda c: c["conv_params_ratio_mean"])
        axis.errorbar([c["conv_params_ratio_mean"] for c in cells],
                      [c["test_accuracy_mean"] * 100 for c in cells],
                      yerr=[c["test_accuracy_std"] * 100 for c in cells], marker="o",
                      capsize=3, label=method, linewidth=1)
    acc = dense["test_accuracy_mean"] * 100
    axis.axhline(acc, color="black", linewidth=0.8, label="dense")
    axis.axhline(acc - bound * 100, color="black", linestyle="--", linewidth=0.8,
                 label=f"dense - {bound * 100:g} pts")
    axis.set_xscale("log")
    axis.set_xlabel("CONV params ratio (dense / kept)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(title)
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    _save_figure(figure, path, dpi=120, bbox_inches=None)
