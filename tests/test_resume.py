"""A run you can trust: the same command and seed give the same report, and a run
killed (SIGKILL) at any stage and rerun ends with the uninterrupted run's report.
The runs search a latency target: the latency model, timed once, is part of the run."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

# Two rounds of 2 ADMM + 2 retraining epochs, so that every stage lasts long enough
# to be killed inside.
TINY = ["--rounds=2", "--admm_epochs=2", "--retrain_epochs=2", "--search_trials=3",
        "--purification_trials=2", "--steps_per_epoch=4", "--max_accuracy_drop=100",
        "--export_tflite=false", "--columns=keep", "--seed=1", "--objective=latency"]
# Where each stage is when its file appears (the kill lands right after).
STAGES = {"search trial": "round_1/search/trial_*/trial.json",
          "ADMM epoch": "round_1/train/admm/checkpoint.json",
          "retraining epoch": "round_2/train/retrain/checkpoint.json",
          "round written, state not": "round_2/metrics.json",
          "purification search": "purification_1/*"}
# Figures that are measurements of the machine, not results of the run.
UNTIMED = ("wall_s", "decision_wall_s", "measured_ms", "dense_ms", "compact_ms",
           "measured_speedup", "error")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    from tfautocompress import data, zoo
    from tfautocompress._keras import keras
    from tfautocompress.baseline import compile_for_training

    keras.utils.set_random_seed(0)
    splits = data.load("digits", batch_size=64)
    model = zoo.build("digits_vgg", splits.input_shape, splits.num_classes)
    compile_for_training(model, 2e-3)
    model.fit(splits.train.take(8), epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("baseline") / "digits_vgg.keras"
    model.save(path)
    return str(path)


def command(model, out, *extra):
    exe = os.path.join(os.path.dirname(sys.executable), "tfautocompress-compress")
    return [exe, f"--model={model}", f"--output_dir={out}", *TINY, *extra]


ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run_to_end(model, out, *extra):
    done = subprocess.run(command(model, out, *extra), capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def report(out):
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in UNTIMED}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    with open(os.path.join(out, "report.json")) as f:
        figures = strip(json.load(f))
    del figures["config"]["latency_table"]  # where the latency model came from
    return figures


@pytest.fixture(scope="module")
def uninterrupted(baseline, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("uninterrupted"))
    done = run_to_end(baseline, out)
    return out, done.stdout + done.stderr


def test_the_console_output_follows_the_run(uninterrupted):
    _, output = uninterrupted
    assert "[autocompress] trial 3/3: score" in output  # one line per search trial
    assert "task_loss" in output and "admm_penalty" in output  # ADMM's loss, apart
    assert "admm_res/" not in output  # per-layer logs stay out of the epoch line
    assert "retracing" not in output
    assert "timing 7 layers alone for the latency model" in output  # six CONV and fc1


def test_the_latency_target_is_predicted_and_checked(uninterrupted):
    out, _ = uninterrupted
    with open(os.path.join(out, "report.json")) as f:
        final = json.load(f)["final"]
    latency, last_round = final["latency"], final["purification"]
    timed = {f"block{b}_{k}_conv" for b in (1, 2, 3) for k in (1, 2)} | {"fc1"}
    assert set(latency["layers"]) == timed  # every layer the search prunes, each alone
    for name, layer in latency["layers"].items():
        assert layer["predicted_ms"] > 0 and layer["measured_ms"] > 0, name
        assert layer["filters"] <= 128 and layer["inputs"] >= 1, name
    # the purified model's predicted ratio is what the final step predicts for its compact model
    assert latency["predicted_speedup"] == pytest.approx(last_round["objective_ratio"], rel=1e-6)
    # each round's compact model is timed with the dense one: target vs predicted vs measured
    with open(os.path.join(out, "report.json")) as f:
        rounds = json.load(f)["rounds"]
    for r in rounds:
        timed = r["latency"]
        assert timed["measured_speedup"] == pytest.approx(timed["dense_ms"] / timed["compact_ms"])
        assert timed["measured_speedup"] > 1.0, r["round"]
    with open(os.path.join(out, "report.md")) as f:
        md = f.read()
    assert "## Latency: predicted vs measured" in md
    assert "| reached | measured | SA trials" in md
    assert f"| {rounds[0]['latency']['measured_speedup']:.2f}x |" in md


def test_a_kill_at_any_stage_resumes_to_the_same_report(baseline, uninterrupted, tmp_path):
    """The same command and seed, given the first run's latency model as a table
    (--latency_table), killed at every stage and rerun: the first run's report."""
    out = str(tmp_path)
    table = f"--latency_table={uninterrupted[0]}/latency_model.json"
    killed = []
    for stage, pattern in STAGES.items():
        process = subprocess.Popen(command(baseline, out, table), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.time() + 600
        while process.poll() is None and not glob.glob(os.path.join(out, pattern)):
            assert time.time() < deadline, stage
            time.sleep(0.01)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed.append(stage)
        process.wait()
    assert len(killed) >= 4, killed  # each of those was killed inside its stage
    run_to_end(baseline, out, table)
    # the same command, seed and latency model: the uninterrupted run's report, policies, masks
    assert report(out) == report(uninterrupted[0])
    for name in ("round_1/policy.json", "round_2/policy.json"):
        with open(os.path.join(uninterrupted[0], name)) as a, open(os.path.join(out, name)) as b:
            assert json.load(a) == json.load(b), name
    with np.load(os.path.join(uninterrupted[0], "final", "masks.npz")) as a, \
            np.load(os.path.join(out, "final", "masks.npz")) as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert not glob.glob(os.path.join(out, "round_*", "train"))  # checkpoints cleaned up


def test_a_corrupt_state_file_is_named(baseline, uninterrupted, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted[0], out)
    with open(out / "state.json") as f:
        state = json.load(f)
    state["final"] = None  # finish() must read the purified model again
    (out / "state.json").write_text(json.dumps(state))
    data = (out / "purification" / "model.keras").read_bytes()
    (out / "purification" / "model.keras").write_bytes(data[:100])
    done = subprocess.run(command(baseline, str(out)), capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "purification/model.keras' is not a .keras archive" in done.stderr
    assert "cannot resume from it: rerun with a new output_dir" in done.stderr
