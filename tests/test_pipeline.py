"""AutoCompress end to end on digits with tiny budgets: artifacts, report, resume, compaction."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfautocompress import artifacts, data, zoo
from tfautocompress._keras import keras
from tfautocompress.baseline import compile_for_training
from tfautocompress.compact import apply_masks
from tfautocompress.app.config import round_step
from tfautocompress.app.pipeline import AutoCompress, Config, round_recipe

# Phase I lands on the milestone and stops at the target: round 1 searches 2x, round 2
# 3.5x, and no round 3.
TINY = Config(max_rounds=3, target_compression_ratio=3.5, milestones=[2.0], admm_epochs=1,
              retrain_epochs=1, search_trials=2, purification_trials=2,
              max_accuracy_drop=100.0, export_tflite=True, seed=1)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    splits = data.load("digits", batch_size=64).take(8)
    model = zoo.build("digits_vgg", splits.input_shape, splits.num_classes)
    compile_for_training(model, 2e-3)
    model.fit(splits.train, epochs=2, verbose=0)
    return model, splits


def test_pipeline_runs_resumes_and_reports(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TFAUTOCOMPRESS_CACHE_DIR", str(tmp_path / "cache"))
    model, splits = trained
    out = str(tmp_path)
    first = AutoCompress(model, splits, out, TINY, tensorboard_dir=str(tmp_path / "tb"), verbose=0)
    assert first.next_round()  # round 1 only, as if killed after it
    # it distils (the default) from the dense model's outputs, computed once
    assert "teacher_outputs" in first._train_splits.train.element_spec[1]
    round_1 = tmp_path / "round_1"
    for name in ("policy.json", "masks.npz", "model.keras", "metrics.json"):
        assert (round_1 / name).exists()
    stamp = os.path.getmtime(round_1 / "metrics.json")
    with pytest.raises(ValueError, match="another configuration"):
        AutoCompress(model, splits, out, dataclasses.replace(TINY, seed=2))

    # continues; without per-epoch validation now, which does not change the result
    report = AutoCompress(model, splits, out, dataclasses.replace(TINY, validation_freq=0),
                          verbose=0).run()
    assert os.path.getmtime(round_1 / "metrics.json") == stamp  # round 1 was not redone
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert report["phase1_end"] == "target 3.5x reached"
    assert [r["search_target_ratio"] for r in report["rounds"]] == pytest.approx([2.0, 3.5])
    assert report["rounds"][1]["conv_params_ratio"] > report["rounds"][0]["conv_params_ratio"] > 1.5
    for entry in [report["baseline"], report["final"], *report["rounds"]]:
        for key in ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio",
                    "params_ratio", "macs_ratio", "wall_s", "layers", "scheme_split"):
            assert key in entry
    assert report["final"]["conv_params_ratio"] >= report["rounds"][1]["conv_params_ratio"] * 0.999
    for entry in report["rounds"]:  # the hard constraint, after ADMM + masked retraining
        assert 0.98 <= entry["objective_ratio"] / entry["search_target_ratio"] <= 1.05, entry
        residuals = entry["admm_residuals"]  # the layers this round's ADMM regularized
        assert residuals and set(residuals) <= set(entry["layers"]), residuals
        # W - Z is at most a magnitude cut (the smallest groups): energy share <= count share
        assert all(0.0 < r <= (1.0 - entry["layers"][n]["kept"]) ** 0.5
                   for n, r in residuals.items()), residuals
    first_round, second_round = (r["layers"] for r in report["rounds"])
    for name, kept in first_round.items():  # floors: nothing an earlier round removed revives
        later = second_round[name]
        assert later["kept"] <= kept["kept"] + 1e-9, name
        assert later["filters_removed"] >= kept["filters_removed"] - 1e-9, name
        assert later["columns_removed"] >= kept["columns_removed"] - 1e-9, name
    tflite = report["final"]["tflite"]
    assert tflite["compact_fp32"]["size_bytes"] < tflite["baseline_fp32"]["size_bytes"]
    assert tflite["compact_fp32"]["equivalence"]["passed"]
    assert tflite["compact_fp16"]["gpu_compatible"] is True  # conv/pool/dense (+ lowered) ops
    # Config.columns="auto": only the layers whose lowered form beat their dense conv at
    # half their rows pruned columns, and they run lowered: TFLite executes what was counted
    probe = artifacts.read_json(tmp_path / "state.json")["column_probe"]
    lowering = report["final"]["lowering"]
    assert set(probe) == set(lowering["layers"])  # each CONV layer is a Conv2D it can lower
    assert lowering["conv_macs_executed"] == lowering["conv_macs_counted"]
    for name, layer in lowering["layers"].items():
        assert layer["form"] in (("rows", "slices", "dense") if probe[name]["form"] != "keep"
                                 else ("dense",)), name
        assert (layer["form"] == "dense") == (layer["latency_ms"] == {}), name
    assert (tmp_path / "cache" / "layer_latency.json").exists()  # the machine's cache
    text = (tmp_path / "report.md").read_text()
    assert "CONV MACs counted vs executed" in text and "TFLite executes 1.00x" in text
    assert "Columns were pruned only where TFLite skips them" in text
    assert "of the counted ratio" in text
    for name in ("state.json", "report.json", "report.md", "layers.png", "accuracy.png",
                 "purification/masks.npz", "final/compact.keras", "final/compact_fp16.tflite"):
        assert (tmp_path / name).exists(), name
    tags = set()  # the per-round scalars and the ADMM/retraining epoch logs
    for event_file in (tmp_path / "tb").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(value.tag for value in event.summary.value)
    assert {"round/val_accuracy", "round/conv_params_ratio", "round_1/admm/task_loss",
            "round_1/admm/admm_penalty", "round_1/retrain/loss"} <= tags, sorted(tags)
    assert artifacts.read_json(tmp_path / "report.json")["final"] == report["final"]

    # The compact model computes what the purified (fine-tuned) model computes with its masks.
    compact = keras.models.load_model(tmp_path / "final" / "compact.keras")
    pruned = keras.models.load_model(tmp_path / "purification" / "model.keras")
    with np.load(tmp_path / "purification" / "masks.npz") as stored:
        masks = {k: stored[k] for k in stored.files}
    x = next(iter(splits.test))[0]
    np.testing.assert_allclose(compact(x), apply_masks(pruned, masks)(x), atol=1e-4)
    assert compact.count_params() < model.count_params()
    assert AutoCompress(model, splits, out, TINY, verbose=0).run() == report  # all done: no work


@pytest.mark.parametrize("previous, target, want", [
    (1.5, None, (3.0, False)),  # no target: round_ratio x the last (the search varies it)
    (1.0, 5.0, (pytest.approx(5.0 ** (1 / 3)), True)),  # three rounds left: a third each
    (2.1, 5.0, (pytest.approx((5.0 * 2.1) ** 0.5), True)),  # two left: split evenly
    (1.0, 3.0, (pytest.approx(3.0 ** 0.5), True)),
    (2.5, 5.0, (5.0, True)),  # within round_ratio: the target itself
    (4.8, 10.0, (10.0, True)),  # 5 % over round_ratio still ends
])
def test_rounds_toward_a_target_split_what_is_left_evenly(previous, target, want):
    assert round_step(previous, target, 2.0) == want


def test_the_rounds_land_on_each_milestone_then_on_the_target():
    reached, ladder = 1.0, []
    for goal in (10.0, 30.0):
        while reached < goal:
            reached, exact = round_step(reached, goal, 10.0 ** (1 / 3))
            assert exact
            ladder.append(reached)
    assert ladder == pytest.approx([10 ** (1 / 3), 10 ** (2 / 3), 10.0, 300 ** 0.5, 30.0])
    assert ladder[2] == 10.0 and ladder[4] == 30.0  # exactly: no extra round for round-off


def test_milestones_are_ratios_below_the_target():
    assert Config(target_compression_ratio=30, milestones=["10", 5]).milestones == [5.0, 10.0]
    for bad in ([30], [1.0], ["ten"]):
        with pytest.raises(ValueError, match="milestones"):
            Config(target_compression_ratio=30, milestones=bad)


def test_each_phase_decays_its_learning_rate_to_zero_at_its_own_end(trained, tmp_path):
    model, splits = trained
    config = Config(admm_epochs=1, retrain_epochs=3, lr=3e-3)
    recipe = round_recipe(config, splits, str(tmp_path), 1, "round_1", 0, model)
    batches = data.num_batches(splits.train)
    for compile_fn, epochs in ((recipe.compile_fn, 1), (recipe.retrain_compile_fn, 3)):
        optimizer = compile_fn(keras.models.clone_model(model)).optimizer
        schedule = keras.optimizers.schedules.deserialize(
            optimizer.get_config()["learning_rate"])
        for step, rate in ((0, 3e-3), (epochs * batches // 2, 1.5e-3), (epochs * batches, 0.0)):
            assert float(schedule(step)) == pytest.approx(rate, rel=1e-5, abs=1e-10)


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="max_rounds"):
        Config(max_rounds=0)
    with pytest.raises(ValueError, match="objective"):
        Config(objective="flops")
    with pytest.raises(ValueError, match="scheme_set"):
        Config(scheme_set="channel")
    with pytest.raises(ValueError, match="Config.validation_freq=-1"):
        Config(validation_freq=-1)
    with pytest.raises(ValueError, match="Config.columns='fastest'.*'keep', 'lower', 'auto'"):
        Config(columns="fastest")


@pytest.mark.parametrize("flag,message", [("--objective=flops", "--objective"),
                                          ("--target_ratio=0.5", "--target_ratio"),
                                          ("--validation_freq=-1", "--validation_freq"),
                                          ("--milestones=2,x", "--milestones"),
                                          ("--model=no_such_model", "--model")])
def test_compress_command_rejects_bad_flags_by_name(flag, message, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tfautocompress.app.compress_cli", flag,
                           f"--output_dir={tmp_path}"], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode != 0 and message in done.stderr


def test_steps_hand_over_in_memory_closing_masks_once(trained, tmp_path, monkeypatch):
    """A 2-round run analyses each model structure it makes once and closes masks
    once where they are made: per round one closure besides the search's one per
    trial, none in compaction beyond its own model's (before the hand-over in
    memory: 3-4 per round, 16 in purification, 4 in compaction).

    Round 2 breaks the accuracy bound (its floor is raised above any accuracy
    before it): it is rejected, Phase I ends with round 1, and purification starts
    from round 1 (its floor lets no threshold through: it keeps round 1's masks)."""
    from tfautocompress import graph

    monkeypatch.setenv("TFAUTOCOMPRESS_CACHE_DIR", str(tmp_path / "cache"))
    counts = {"analyses": 0, "closures": 0}
    analyse, close = graph.ChannelGraph.__init__, graph.ChannelGraph._close

    def counted(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(graph.ChannelGraph, "__init__", counted("analyses", analyse))
    monkeypatch.setattr(graph.ChannelGraph, "_close", counted("closures", close))
    model, splits = trained
    config = dataclasses.replace(TINY, export_tflite=False, columns="keep", search_trials=3)
    pipeline = AutoCompress(model, splits, str(tmp_path / "run"), config, verbose=0)

    def round_2_below_the_floor():
        pipeline.state["baseline"]["val_accuracy"] = 1.5 + config.max_accuracy_drop / 100.0
        return pipeline.next_round()

    steps = {"baseline": pipeline.baseline, "round_1": pipeline.next_round,
             "round_2": round_2_below_the_floor, "purification": pipeline.purify,
             "final": pipeline.finish}
    per_step, returned = {}, {}
    for name, step in steps.items():
        before = dict(counts)
        returned[name] = step()
        per_step[name] = {k: counts[k] - before[k] for k in counts}
    first, second = pipeline.state["rounds"]
    assert returned["round_1"] is True and first["accepted"]
    assert returned["round_2"] is False and not second["accepted"]
    assert pipeline.state["phase1_end"] == "round 2 broke the accuracy bound"
    assert pipeline.next_round() is False and len(pipeline.state["rounds"]) == 2
    purified = pipeline.state["purification"]
    assert purified["rounds"] == []  # no threshold search result met the floor
    assert purified["conv_params_ratio"] == pytest.approx(first["conv_params_ratio"])
    assert purified["conv_params_ratio"] < second["conv_params_ratio"] / 1.2
    assert purified["test_accuracy"] == pytest.approx(first["test_accuracy"])
    # the tuner's dense copy, ADMM's wrapped model, the Distiller over the same layers,
    # the result
    for name in ("round_1", "round_2"):
        assert per_step[name]["analyses"] <= 4, per_step
        # one per trial, the hard prune's (its cut counts live rows) and the result's
        assert per_step[name]["closures"] <= config.search_trials + 2, per_step
    assert per_step["purification"]["analyses"] == 0, per_step
    searches = min(len(pipeline.state["purification"]["rounds"]) + 1, config.purification_rounds)
    # the Phase I masks once, then each threshold trial's and each search's result once
    assert per_step["purification"]["closures"] <= 1 + searches * (config.purification_trials + 1)
    assert per_step["final"] == {"analyses": 1, "closures": 1}, per_step  # the compact model
    assert per_step["baseline"] == {"analyses": 0, "closures": 0}, per_step
