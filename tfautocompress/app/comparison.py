"""Side-by-side comparisons of pruning methods (the benchmarks' tables).

``write_comparison(stem, rows, header, title)`` writes a side-by-side comparison of
pruning methods (``benchmarks/compare.py``): ``stem.json``, the markdown table
``stem.md`` (``comparison_markdown``) and the accuracy-vs-ratio plot ``stem.png``
(``plot_pareto``); a row is one method's dict with ``method``, ``test_accuracy``,
``conv_params_ratio``, ``conv_macs_ratio``, ``latency_ms``, ``search_s`` and ``note``.

``seed_statistics(rows)`` folds such rows of several seeds (each also with ``seed``
and its nominal ``target``) into mean ± std per method and target (the paper-style
table of ``benchmarks/table.py``: ``seed_table_markdown``, ``plot_seed_pareto``);
``largest_ratio_within`` reads off a method's largest ratio (params, MACs or
measured speedup) that keeps its mean test accuracy within a bound of the dense
model's.
"""
import numpy as np

from tfautocompress import artifacts
from tfautocompress.app.report import subplots

__all__ = ["comparison_markdown", "plot_pareto", "write_comparison", "seed_statistics",
           "largest_ratio_within", "seed_table_markdown", "plot_seed_pareto"]


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
    figure, axis = subplots(figsize=(6, 4))
    for r in rows:
        axis.scatter(r["conv_params_ratio"], r["test_accuracy"])
        axis.annotate(r["method"], (r["conv_params_ratio"], r["test_accuracy"]), fontsize=7)
    axis.set_xlabel("CONV params ratio (dense / kept)")
    axis.set_ylabel("test accuracy")
    axis.set_title(title)
    figure.tight_layout()
    artifacts.save_figure(figure, path, dpi=120, bbox_inches=None)


def write_comparison(stem, rows, header, title, **fields):
    """Write ``stem + ".json"`` (``{"rows": rows, **fields}``), ``stem + ".md"``
    (``comparison_markdown(rows, header)``) and ``stem + ".png"``
    (``plot_pareto(rows, ..., title)``); return the markdown table."""
    table = comparison_markdown(rows, header)
    artifacts.write_json(stem + ".json", dict(fields, rows=rows))
    artifacts.write_text(stem + ".md", table)
    plot_pareto(rows, stem + ".png", title)
    return table


# -------------------------------------------------------- several seeds ---
_STATISTICS = ("test_accuracy", "int8_test_accuracy", "conv_params_ratio", "conv_macs_ratio",
               "latency_ms", "int8_latency_ms", "speedup")
RATIO_KEYS = {"params": "conv_params_ratio", "macs": "conv_macs_ratio", "latency": "speedup"}


def seed_statistics(rows):
    """``{(method, target): {"n", "seeds", <key>_mean, <key>_std ...}}`` over the
    rows of several seeds (each row: ``method``, nominal ``target``, ``seed`` and
    the ``_STATISTICS`` keys but ``speedup``: its seed's dense row's fp32 latency /
    its own, measured); std is the sample standard deviation (0 for one seed)."""
    dense_ms = {r["seed"]: r["latency_ms"] for r in rows if r["method"] == "dense"}
    groups = {}
    for r in rows:
        r = dict(r, speedup=dense_ms[r["seed"]] / r["latency_ms"])
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


def largest_ratio_within(statistics, method, dense_accuracy, bound, objective="params"):
    """The largest mean ratio on ``objective`` (CONV params or MACs, or measured
    speedup for latency) of ``method``'s cells whose mean test accuracy is at least
    ``dense_accuracy - bound`` (fractions); None if none is."""
    key = RATIO_KEYS[objective] + "_mean"
    ratios = [c[key] for (m, _), c in statistics.items()
              if m == method and c["test_accuracy_mean"] >= dense_accuracy - bound - 1e-12]
    return max(ratios) if ratios else None


def seed_table_markdown(statistics, methods, targets, dense, bound, header, notes=None,
                        objective="params"):
    """The markdown table: a line per method of ``methods`` (in order), per target
    its test accuracy (mean ± std, %) in fp32 and int8 TFLite, CONV params and MACs
    ratios and measured fp32 speedup, and TFLite latency (fp32 / int8), then its
    largest ratio on ``objective`` within ``bound`` of the ``dense`` cell's accuracy
    (``dense``: the dense model's ``seed_statistics`` cell); ``notes``: ``{method:
    text}`` for a last column."""
    cols = " | ".join(f"{t:g}x: test acc. (%) | int8 | params / MACs / speed | "
                      "ms fp32 / int8" for t in targets)
    lines = [header, "", f"| method | {cols} | largest ratio within {bound * 100:g} pts "
             "| note |", "|---" * (4 * len(targets) + 3) + "|"]
    acc = dense["test_accuracy_mean"]
    lines.append(f"| dense | {_cell(dense, '1x / 1x / 1x')} |" + " | | | |" * (len(targets) - 1)
                 + f" | {(notes or {}).get('dense', '')} |")
    for method in methods:
        cells = []
        for t in targets:
            c = statistics.get((method, t))
            cells.append("— | — | — | —" if c is None else _cell(
                c, f"{c['conv_params_ratio_mean']:.1f}x / {c['conv_macs_ratio_mean']:.1f}x / "
                   f"{c['speedup_mean']:.2f}x"))
        within = largest_ratio_within(statistics, method, acc, bound, objective)
        lowest = min(t for (m, t) in statistics if m == method)
        within = f"{within:.1f}x" if within else f"< {lowest:g}x"
        lines.append(f"| {method} | {' | '.join(cells)} | {within} | "
                     f"{(notes or {}).get(method, '')} |")
    return "\n".join(lines) + "\n"


def _cell(cell, ratios):
    return (f"{_mean_std(cell)} | {cell['int8_test_accuracy_mean'] * 100:.2f} | {ratios} | "
            f"{cell['latency_ms_mean']:.3f} / {cell['int8_latency_ms_mean']:.3f}")


def _mean_std(cell):
    return (f"{cell['test_accuracy_mean'] * 100:.2f} ± {cell['test_accuracy_std'] * 100:.2f}"
            f" (n={cell['n']})")


_AXIS_LABELS = {"params": "CONV params ratio (dense / kept)",
                "macs": "CONV MACs ratio (dense / kept)",
                "latency": "measured speedup (dense / compact host TFLite fp32 latency)"}


def plot_seed_pareto(statistics, dense, bound, path, title, objective="params"):
    """PNG at ``path``: per method, mean test accuracy (± std error bars) against
    its mean ratio on ``objective`` (params, MACs, or measured speedup for latency)
    over its targets (log x), the dense accuracy and the ``bound`` below it as lines."""
    key = RATIO_KEYS[objective] + "_mean"
    figure, axis = subplots(figsize=(8, 5))
    for method in sorted({m for m, _ in statistics}):
        cells = sorted((c for (m, _), c in statistics.items() if m == method),
                       key=lambda c: c[key])
        axis.errorbar([c[key] for c in cells],
                      [c["test_accuracy_mean"] * 100 for c in cells],
                      yerr=[c["test_accuracy_std"] * 100 for c in cells], marker="o",
                      capsize=3, label=method, linewidth=1)
    acc = dense["test_accuracy_mean"] * 100
    axis.axhline(acc, color="black", linewidth=0.8, label="dense")
    axis.axhline(acc - bound * 100, color="black", linestyle="--", linewidth=0.8,
                 label=f"dense - {bound * 100:g} pts")
    axis.set_xscale("log")
    axis.set_xlabel(_AXIS_LABELS[objective])
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(title)
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    artifacts.save_figure(figure, path, dpi=120, bbox_inches=None)
