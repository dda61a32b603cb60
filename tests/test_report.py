"""report: layer summaries, scheme split, report.json keys, Markdown and plots."""
import json
import os
import struct

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tfautocompress.app import comparison, report
from tfautocompress._keras import keras


def _model():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def test_layer_summary_counts_closed_filters_and_columns():
    model = _model()
    mask = np.ones((3, 3, 2, 4), np.float32)
    mask[..., 0] = 0.0  # one filter of c1 -> c2 loses input channel 0 (9 of 36 columns)
    summary = report.layer_summary(model, {"c1": mask})
    assert summary["c1"] == {"kept": 0.75, "params": 72, "filters_removed": 0.25,
                             "columns_removed": 0.0}
    assert summary["c2"]["columns_removed"] == pytest.approx(0.25)
    assert summary["c2"]["kept"] == pytest.approx(0.75)
    assert summary["out"]["kept"] == 1.0
    split = report.scheme_split(summary)
    assert split["filter"] == pytest.approx(18 / (18 + 54))  # c1's filter vs c2's columns
    assert split["filter"] + split["column"] == pytest.approx(1.0)


def _record(val, ratio, layers):
    return {"val_accuracy": val, "test_accuracy": val - 0.01, "conv_params_ratio": ratio,
            "conv_macs_ratio": ratio / 2, "params_ratio": ratio / 3, "macs_ratio": ratio / 4,
            "objective_ratio": ratio, "wall_s": 1.5, "layers": layers}


def test_write_produces_keys_markdown_and_plots(tmp_path):
    layers = report.layer_summary(_model(), {})
    half = {n: dict(v, kept=0.5, filters_removed=0.5) for n, v in layers.items()}
    state = {"config": {"objective": "params"}, "baseline": _record(0.98, 1.0, layers),
             "rounds": [dict(_record(0.97, 2.0, half), round=1, accepted=True, schemes={},
                             admm_residuals={"c1": 0.0123}, admm_dual_residuals={"c1": 0.004},
                             hard_prune_cut={"c1": 0.0151}),
                        dict(_record(0.80, 4.0, half), round=2, accepted=False, schemes={})],
             "phase1_end": "round 2 broke the accuracy bound",
             "purification": dict(_record(0.97, 2.5, half), rounds=[{"ratio": 2.5, "scales": {"c1": [0.1, 0.2]}}]),
             "final": dict(_record(0.97, 2.5, {}), max_abs_diff_vs_masked=0.0)}
    result = report.write(str(tmp_path), state)
    assert set(result) >= {"baseline", "rounds", "final"}
    assert isinstance(result["rounds"], list) and len(result["rounds"]) == 2
    for entry in [result["baseline"], result["final"], *result["rounds"]]:
        assert set(entry) >= set(report.KEYS) | {"layers", "scheme_split"}
    assert result["final"]["layers"] == half
    assert result["final"]["wall_s"] == pytest.approx(1.5 * 4)
    md = (tmp_path / "report.md").read_text()
    assert "round 2 (rejected)" in md and "| c1 |" in md and "2.50x" in md
    # ADMM per round: primal / dual residual / hard-prune cut
    assert "| c1 | 0.012 / 0.004 / 0.015 | - |" in md and "| c2 | 0.0" not in md
    with open(tmp_path / "report.json", encoding="utf-8") as f:
        written = json.load(f)
    assert written == result
    assert [(r["round"], r["accepted"], r["conv_params_ratio"]) for r in written["rounds"]] \
        == [(1, True, 2.0), (2, False, 4.0)]
    assert (written["baseline"]["val_accuracy"], written["final"]["conv_params_ratio"],
            written["final"]["purification"]["test_accuracy"]) == (0.98, 2.5, 0.96)
    assert written["final"]["wall_s"] == 6.0  # 2 rounds + purification + final, 1.5 s each
    assert written["phase1_end"] == "round 2 broke the accuracy bound"
    assert written["rounds"][0]["admm_residuals"] == {"c1": 0.0123}
    assert written["rounds"][0]["hard_prune_cut"] == {"c1": 0.0151}
    for name in ("layers.png", "accuracy.png"):
        _check_png(tmp_path / name)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_lowering_summary_counts_counted_and_executed_macs(tmp_path):
    from tfautocompress import cost
    from tfautocompress.compact import compact_lowered

    model = _model()
    mask = np.ones((3, 3, 4, 6), np.float32)
    mask[0, :, :, :] = 0.0  # a kernel row of c2: 12 of its 36 columns, no whole channel
    small, small_masks, lowered = compact_lowered(model, {"c2": mask}, "slices")
    summary = report.lowering_summary(cost.count(small, small_masks), cost.count(small), lowered)
    positions = 4 * 4  # c2's output
    assert summary["layers"]["c1"] == {"form": "dense", "macs_counted": 3 * 3 * 2 * 4 * 36,
                                       "macs_executed": 3 * 3 * 2 * 4 * 36, "latency_ms": {}}
    assert summary["layers"]["c2"] == {"form": "slices", "macs_counted": 24 * 6 * positions,
                                       "macs_executed": 24 * 6 * positions, "latency_ms": {}}
    kept, kept_masks, none = compact_lowered(model, {"c2": mask}, "keep")
    assert report.lowering_summary(cost.count(kept, kept_masks), cost.count(kept),
                                   none)["layers"]["c2"]["macs_executed"] \
        == 36 * 6 * positions
    assert summary["conv_macs_counted"] == summary["conv_macs_executed"]
    state = {"config": {}, "baseline": _record(0.98, 1.0, {}), "rounds": [],
             "purification": dict(_record(0.97, 2.5, {}), rounds=[]),
             "final": dict(_record(0.97, 2.5, {}), lowering=summary)}
    md = report.write(str(tmp_path), state) and (tmp_path / "report.md").read_text()
    assert "## CONV MACs counted vs executed by TFLite" in md
    assert f"| c2 | slices | {24 * 6 * positions:,} | {24 * 6 * positions:,} | - | - | - |" in md


def _seed_rows():
    rows = []
    for seed, (dense, a10, a30, b10) in enumerate([(0.90, 0.899, 0.88, 0.85),
                                                    (0.92, 0.917, 0.90, 0.87),
                                                    (0.91, 0.908, 0.89, 0.86)]):
        figures = dict(conv_macs_ratio=1.0, latency_ms=1.0, int8_latency_ms=0.5, note="n",
                       seed=seed)
        rows += [dict(figures, method="dense", target=1.0, test_accuracy=dense,
                      int8_test_accuracy=dense, conv_params_ratio=1.0),
                 dict(figures, method="a", target=10.0, test_accuracy=a10,
                      int8_test_accuracy=a10 - 0.01 * seed, conv_params_ratio=10.0 + seed,
                      latency_ms=0.5),
                 dict(figures, method="a", target=30.0, test_accuracy=a30,
                      int8_test_accuracy=a30, conv_params_ratio=30.0, latency_ms=0.25),
                 dict(figures, method="b", target=10.0, test_accuracy=b10,
                      int8_test_accuracy=b10, conv_params_ratio=10.0)]
    return rows


def test_seed_statistics_mean_and_sample_std():
    stats = comparison.seed_statistics(_seed_rows())
    cell = stats[("a", 10.0)]
    assert cell["n"] == 3 and cell["seeds"] == [0, 1, 2]
    assert cell["test_accuracy_mean"] == pytest.approx(np.mean([0.899, 0.917, 0.908]))
    assert cell["test_accuracy_std"] == pytest.approx(np.std([0.899, 0.917, 0.908], ddof=1))
    assert cell["conv_params_ratio_mean"] == pytest.approx(11.0)
    # speedup: the seed's dense row's latency over the row's own (1.0 / 0.5 ms)
    assert cell["speedup_mean"] == 2.0 and stats[("dense", 1.0)]["speedup_mean"] == 1.0
    one = comparison.seed_statistics(_seed_rows()[:4])
    assert one[("a", 10.0)]["test_accuracy_std"] == 0.0


def test_largest_ratio_within_the_bound_of_the_dense_mean():
    stats = comparison.seed_statistics(_seed_rows())
    dense = stats.pop(("dense", 1.0))["test_accuracy_mean"]  # 0.91
    # a at 10x: 0.908 (within 0.5 points), at 30x: 0.89 (2 points below)
    assert comparison.largest_ratio_within(stats, "a", dense, 0.005) == pytest.approx(11.0)
    assert comparison.largest_ratio_within(stats, "a", dense, 0.03) == pytest.approx(30.0)
    assert comparison.largest_ratio_within(stats, "b", dense, 0.005) is None
    # on latency the ratio is the measured speedup (2x at 10x params, 4x at 30x)
    assert comparison.largest_ratio_within(stats, "a", dense, 0.005, "latency") == 2.0
    assert comparison.largest_ratio_within(stats, "a", dense, 0.03, "latency") == 4.0


def test_seed_table_markdown_and_pareto(tmp_path):
    stats = comparison.seed_statistics(_seed_rows())
    dense = stats.pop(("dense", 1.0))
    table = comparison.seed_table_markdown(stats, ["a", "b"], [10.0, 30.0], dense, 0.005, "H",
                                       notes={"a": "note of a"})
    lines = table.splitlines()
    assert lines[0] == "H" and "largest ratio within 0.5 pts" in lines[2]
    row_a = next(x for x in lines if x.startswith("| a |"))
    # 10x: fp32 mean ± std, int8 mean (0.899, 0.907, 0.888), ratios and speedup, fp32 /
    # int8 ms
    assert "| 90.80 ± 0.90 (n=3) | 89.80 | 11.0x / 1.0x / 2.00x | 0.500 / 0.500 |" in row_a
    assert row_a.rstrip().endswith("| 11.0x | note of a |")
    assert all(len(x.split("|")) == len(lines[2].split("|")) for x in lines[2:])
    row_b = next(x for x in lines if x.startswith("| b |"))
    assert "— | — | — | —" in row_b and "< 10x" in row_b  # no 30x cell; never within
    comparison.plot_seed_pareto(stats, dense, 0.005, str(tmp_path / "p.png"), "t")
    assert _check_png(tmp_path / "p.png") == (960, 600)  # 8 x 5 in at 120 dpi
    # a latency table: the last column is the largest measured speedup within the bound
    speed = comparison.seed_table_markdown(stats, ["a"], [10.0, 30.0], dense, 0.005, "H",
                                           objective="latency")
    assert next(x for x in speed.splitlines() if x.startswith("| a |")).endswith("| 2.0x |  |")
    comparison.plot_seed_pareto(stats, dense, 0.005, str(tmp_path / "s.png"), "t", "latency")
    assert _check_png(tmp_path / "s.png") == (960, 600)


def _check_png(path):
    """``path`` is a PNG that is not blank, read by its own format: the 8-byte
    signature, the IHDR chunk's size, and matplotlib's PNG reader; its (width, height)."""
    from matplotlib import image

    content = path.read_bytes()
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind, width, height = struct.unpack(">I4sII", content[8:24])
    assert (length, kind) == (13, b"IHDR")
    pixels = image.imread(path)
    assert pixels.shape[:2] == (height, width) and pixels.shape[2] in (3, 4)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 2  # drawn on
    return width, height


ROWS = [{"method": "dense", "test_accuracy": 0.98765, "conv_params_ratio": 1.0,
         "conv_macs_ratio": 1.0, "latency_ms": 2.5, "search_s": 0.0, "note": "baseline"},
        {"method": "autocompress", "test_accuracy": 0.95, "conv_params_ratio": 12.345,
         "conv_macs_ratio": 4.5, "latency_ms": 0.6666, "search_s": 123.45, "note": "SA"}]


def test_write_comparison_writes_json_markdown_and_plot(tmp_path):
    from matplotlib import image

    stem = str(tmp_path / "cmp")
    table = comparison.write_comparison(stem, ROWS, "## digits", "digits_vgg",
                                        dataset="digits", seed=3)
    with open(stem + ".json", encoding="utf-8") as f:
        assert json.load(f) == {"rows": ROWS, "dataset": "digits", "seed": 3}
    assert (tmp_path / "cmp.md").read_text() == table
    assert table.splitlines() == [
        "## digits", "",
        "| method | test acc. | CONV params ratio | CONV MACs ratio | TFLite latency (ms) "
        "| search (s) | note |", "|---|---|---|---|---|---|---|",
        "| dense | 0.9877 | 1.00x | 1.00x | 2.500 | 0.0 | baseline |",
        "| autocompress | 0.9500 | 12.35x | 4.50x | 0.667 | 123.5 | SA |"]
    assert _check_png(tmp_path / "cmp.png") == (720, 480)  # 6 x 4 in at 120 dpi
    assert sorted(os.listdir(tmp_path)) == ["cmp.json", "cmp.md", "cmp.png"]
    # plot_pareto: the rows decide the picture (one point moved: other pixels)
    comparison.plot_pareto([ROWS[0], dict(ROWS[1], test_accuracy=0.90)],
                           str(tmp_path / "moved.png"), "digits_vgg")
    assert _check_png(tmp_path / "moved.png") == (720, 480)
    assert not np.array_equal(image.imread(tmp_path / "cmp.png"),
                              image.imread(tmp_path / "moved.png"))
