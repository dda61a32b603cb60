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
"""
import os

import numpy as np
# Figures without pyplot: no backend is chosen for the process (importing this
# module changes no global state), and none is needed to save a PNG.
from matplotlib.figure import Figure

from tfautocompress import artifacts, cost, graph as graph_lib, layer_kinds
from tfautocompress import schemes as schemes_lib

__all__ = ["layer_summary", "scheme_split", "lowering_summary", "build", "write", "subplots"]

KEYS = ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio",
        "params_ratio", "macs_ratio", "objective_ratio", "wall_s")

# A round's ADMM figures per layer (report field: prefix of the per-layer ADMM logs).
RESIDUALS = {"admm_residuals": "admm_res/", "admm_dual_residuals": "admm_dual/",
             "hard_prune_cut": "admm_cut/"}


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


def _probe_lines(probe):
    lowered = {n: d for n, d in probe.items() if d["form"] != "keep"}
    filters = {n: d for n, d in probe.items() if d["form"] == "keep"}

    def timings(decisions):
        return ", ".join(f"{n} {d['latency_ms']['keep']:.3f} / "
                         f"{min(v for f, v in d['latency_ms'].items() if f != 'keep'):.3f}"
                         for n, d in decisions.items()) or "none"

    return ["", "Columns were pruned only where TFLite skips them: in the layers whose lowered "
            "form ran faster than their dense conv at half their filters and rows (the layer "
            f"alone, ms dense / lowered: {timings(lowered)}); the others pruned filters only "
            f"({timings(filters)})."]


def _latency_lines(latency):
    """The latency model's prediction of the compact model against its timings."""
    lines = ["", f"## Latency: predicted vs measured ({latency['device']})", "",
             "| layer | filters | inputs | predicted ms | measured ms (alone) | error |",
             "|---|---|---|---|---|---|"]
    for name, v in latency["layers"].items():
        lines.append(f"| {name} | {v['filters']} | {v['inputs']} | {v['predicted_ms']:.4f} | "
                     f"{v['measured_ms']:.4f} | {100 * v['error']:+.1f} % |")
    lines.append(f"\nWhole model: dense {latency['dense_ms']:.3f} ms, compact "
                 f"{latency['compact_ms']:.3f} ms (predicted {latency['predicted_compact_ms']:.3f}"
                 f"): speedup {latency['measured_speedup']:.2f}x measured, "
                 f"{latency['predicted_speedup']:.2f}x predicted.")
    return lines


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
                     **{key: record.get(key, {}) for key in RESIDUALS})
        if "latency" in record:  # a latency run's round: its compact model timed
            entry["latency"] = record["latency"]
        rounds.append(entry)
    final = _entry(state["final"])
    final["layers"] = state["purification"]["layers"]
    final["scheme_split"] = scheme_split(final["layers"])
    final["purification"] = {k: state["purification"][k] for k in KEYS}
    final["purification"]["rounds"] = state["purification"].get("rounds", [])
    for key in ("tflite", "max_abs_diff_vs_masked", "keras3_max_abs_diff", "compact_params",
                "lowering", "latency"):
        if key in state["final"]:
            final[key] = state["final"][key]
    final["wall_s"] = (sum(r["wall_s"] for r in rounds) + state["purification"]["wall_s"]
                       + state["final"]["wall_s"])
    return {"baseline": _entry(state["baseline"]), "rounds": rounds, "final": final,
            "phase1_end": state.get("phase1_end"), "config": state.get("config"),
            "column_probe": state.get("column_probe")}


def _budget_lines(report):
    """Each round's hard constraint: search target, analytic budget of the chosen
    policy, ratio reached after ADMM + masked retraining, and the SA schedule."""
    objective = (report.get("config") or {}).get("objective", "params")
    latency = objective == "latency"
    predicted = (" (predicted by the latency model; measured: the round's compact model "
                 "timed with the dense one)" if latency else "")
    lines = [f"## Phase I: search target vs reached, objective {objective}{predicted}", "",
             "| round | search target | chosen policy (analytic) | reached | "
             + ("measured | " if latency else "") + "SA trials / temperatures |",
             "|---" * (5 + latency) + "|"]
    for r in report["rounds"]:
        if r.get("search_target_ratio") is None:
            continue
        schedule = r.get("schedule") or {}
        analytic = r.get("analytic_ratio")
        reached = r.get("objective_ratio")
        measured = (f"{r['latency']['measured_speedup']:.2f}x | " if "latency" in r
                    else "- | " if latency else "")
        lines.append(f"| {r['round']} | {r['search_target_ratio']:.2f}x | "
                     f"{'-' if analytic is None else f'{analytic:.2f}x'} | "
                     f"{'-' if reached is None else f'{reached:.2f}x'} | {measured}"
                     f"{schedule.get('trials', '-')} / "
                     f"{len(schedule.get('temperatures', ())) or '-'} |")
    purified = report["final"].get("purification", {}).get("rounds", [])
    if purified:
        lines += ["", "Purification rounds reached: "
                  + ", ".join(f"{p['ratio']:.2f}x" for p in purified)]
    return lines


def _markdown(report):
    latency = (report.get("config") or {}).get("objective") == "latency"
    lines = ["# AutoCompress report", "",
             "Ratios are dense / kept (N x) over CONV layers; accuracies in %"
             + ("; latency: dense / compact, predicted by the latency model." if latency else "."),
             "", "| step | val acc | test acc | CONV params | CONV MACs | "
             + ("latency | " if latency else "") + "filter / column share | wall s |",
             "|---" * (7 + latency) + "|"]
    steps = [("baseline", report["baseline"])]
    steps += [(f"round {r['round']}{'' if r['accepted'] else ' (rejected)'}", r)
              for r in report["rounds"]]
    steps.append(("final (purified, compact)", report["final"]))
    for name, e in steps:
        split = e["scheme_split"]
        speedup = f"| {e['objective_ratio']:.2f}x " if latency else ""
        lines.append(f"| {name} | {100 * e['val_accuracy']:.2f} | {100 * e['test_accuracy']:.2f} "
                     f"| {e['conv_params_ratio']:.2f}x | {e['conv_macs_ratio']:.2f}x {speedup}"
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
    rounds = [(name, e) for name, e in steps[1:-1]]
    if any(e["admm_residuals"] for _, e in rounds):
        lines += ["", "## ADMM after each round: primal ||W - Z|| / ||W||, dual "
                  "||Z - Z_prev|| / ||W|| (last update), hard-prune cut ||W - Pi(W)|| / ||W||",
                  "", "| layer | " + " | ".join(name for name, _ in rounds) + " |",
                  "|---" * (len(rounds) + 1) + "|"]
        for layer in names:
            if any(layer in e["admm_residuals"] for _, e in rounds):
                lines.append(f"| {layer} | " + " | ".join(
                    " / ".join(f"{e[key][layer]:.3f}" if layer in e[key] else "-"
                               for key in RESIDUALS)
                    if layer in e["admm_residuals"] else "-" for _, e in rounds) + " |")
    if report["final"].get("lowering"):
        lines += _lowering_lines(report["final"]["lowering"])
    if report.get("column_probe") is not None:
        lines += _probe_lines(report["column_probe"])
    if report["final"].get("latency"):
        lines += _latency_lines(report["final"]["latency"])
    tflite = report["final"].get("tflite")
    if tflite:
        lines += ["", "## TFLite (host, 1 thread)", "",
                  "| model | size KB | latency ms | GPU delegate | matches Keras |", "|---|---|---|---|---|"]
        for key in ("baseline_fp32", "compact_fp32", "compact_fp16"):
            t = tflite[key]
            lines.append(f"| {key} | {t['size_bytes'] / 1024:.1f} | {t['latency_ms']:.3f} | "
                         f"{'yes' if t['gpu_compatible'] else ', '.join(t['gpu_incompatible_ops'])} "
                         f"| {t['equivalence']['passed']} |")
        macs = report["final"]["conv_macs_ratio"]
        lines.append(f"\nsize ratio {tflite['size_ratio']:.2f}x, host speedup "
                     f"{tflite['host_speedup']:.2f}x at {macs:.2f}x fewer CONV MACs counted "
                     f"({tflite['host_speedup'] / macs:.2f} of the counted ratio)")
    return "\n".join(lines) + "\n"


def _plot_layers(report, path):
    steps = [(f"round {r['round']}", r) for r in report["rounds"] if r["accepted"]]
    steps.append(("final", report["final"]))
    names = list(report["baseline"]["layers"])
    figure, axis = subplots(figsize=(max(6, 0.8 * len(names)), 4))
    width = 0.8 / len(steps)
    for i, (label, e) in enumerate(steps):
        pruned = [1.0 - e["layers"].get(n, {"kept": 1.0})["kept"] for n in names]
        axis.bar(np.arange(len(names)) + i * width, pruned, width, label=label)
    axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=60, ha="right")
    axis.set_ylabel("pruned fraction of the kernel")
    axis.set_ylim(0, 1)
    axis.legend()
    artifacts.save_figure(figure, path)


def _plot_accuracy(report, path):
    figure, axis = subplots(figsize=(6, 4))
    steps = [report["baseline"]] + report["rounds"] + [report["final"]]
    for key in ("val_accuracy", "test_accuracy"):
        axis.plot([e["conv_params_ratio"] for e in steps], [100 * e[key] for e in steps],
                  "o-", label=key.replace("_", " "))
    axis.set_xscale("log")
    axis.set_xlabel("CONV params ratio (dense / kept, x)")
    axis.set_ylabel("accuracy (%)")
    axis.legend()
    artifacts.save_figure(figure, path)


def write(output_dir, state):
    """Write report.json, report.md, layers.png and accuracy.png; return the report."""
    report = build(state)
    artifacts.write_json(os.path.join(output_dir, "report.json"), report)
    artifacts.write_text(os.path.join(output_dir, "report.md"), _markdown(report))
    _plot_layers(report, os.path.join(output_dir, "layers.png"))
    _plot_accuracy(report, os.path.join(output_dir, "accuracy.png"))
    return report


# ------------------------------------------------------------ comparisons ---


def subplots(figsize):
    """A matplotlib ``Figure`` (no pyplot: no backend is chosen) and its axes."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots()
