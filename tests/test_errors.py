"""Every user error of the console scripts: one line ``<script>: error: ...`` (or absl's
flag line) on stderr, a non-zero exit status, no traceback, nothing half-written."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

POLICY = "tfautocompress.PruningPolicy/1"
# A compress run that would end in seconds if the input were good.
QUICK = ["--rounds=1", "--search_trials=1", "--admm_epochs=1", "--retrain_epochs=0",
         "--steps_per_epoch=2", "--purification_trials=0", "--export_tflite=false"]

# (script, arguments, the text the error line must hold); {d} is the folder of bad files.
CASES = [
    ("compress", ["--model={d}/missing.keras"], "--model '{d}/missing.keras' does not exist"),
    ("compress", ["--model={d}/truncated.keras"], "is not a .keras archive (truncated or corrupt?)"),
    ("compress", ["--model={d}/nothing.keras"], "has nothing to prune"),
    ("compress", ["--model=resnet1000"], "is neither a .keras file nor a zoo model"),
    ("compress", ["--model={d}/base.keras", "--dataset=imagenet9"], "unknown data set 'imagenet9'"),
    ("compress", ["--model={d}/base.keras", "--dataset={d}/empty.npz"],
     "x_train holds 0 images"),
    ("compress", ["--model={d}/base.keras", "--dataset={d}/nolabels.npz"],
     "lacks ['y_test', 'y_train']"),
    ("compress", ["--model={d}/base.keras", "--target_ratio=0.5"], "--target_ratio must be > 1"),
    ("compress", ["--model={d}/base.keras", "--objective=latency", "--output_dir={d}/latency",
                  "--latency_table={d}/not_a_policy.json"],
     "--latency_table {d}/not_a_policy.json: not a latency model"),
    ("compress", ["--model={d}/base.keras", "--output_dir={d}/corrupt_state"],
     "state.json is not valid JSON: Expecting value at line 1 column 1"),
    ("admm", ["--model={d}/base.keras", "--policy={d}/missing.json"], "missing.json does not exist"),
    ("admm", ["--model={d}/base.keras", "--policy={d}/broken.json"],
     "broken.json is not valid JSON: Expecting value at line 2 column 11"),
    ("admm", ["--model={d}/base.keras", "--policy={d}/not_a_policy.json"],
     "is not a policy file"),
    ("admm", ["--model={d}/base.keras", "--policy={d}/fraction.json"],
     "Filter.fraction must be in [0, 1)"),
    ("admm", ["--model={d}/base.keras", "--policy={d}/unknown_layer.json"],
     "policy names layer 'nope', which model 'digits_vgg' does not have"),
    ("admm", ["--model={d}/base.keras", "--policy={d}/unknown_scheme.json"],
     "class_name must be one of"),
    ("admm", ["--model={d}/base.keras", "--filter_fraction=1.0"],
     "Combined.filter_fraction must be in [0, 1)"),
    ("admm", ["--model={d}/base.keras", "--update_every=sometimes"],
     "--update_every must be a positive number of steps or 'epoch'"),
    ("export", ["--model={d}/truncated.keras", "--output_dir={d}/out"],
     "is not a .keras archive"),
    ("export", ["--model={d}/base.keras", "--output_dir={d}/out", "--modes=fp64"],
     "--modes=fp64: ['fp64'] not accepted"),
    ("android-benchmark", ["--tflite={d}/corrupt.tflite", "--benchmark_binary=/bin/true"],
     "is not a TFLite model"),
    ("train", ["--model=resnet1000", "--output_dir={d}/out"], "unknown model 'resnet1000'"),
    ("train", ["--epochs=0", "--output_dir={d}/out"], "--epochs=0: 0 is not a positive integer"),
    # Bad data stops at the door (not in TensorFlow's fit), naming file, split and index.
    ("compress", ["--model={d}/base.keras", "--dataset={d}/negative.npz"],
     "data file '{d}/negative.npz', y_train: label -3 at index 2 is negative"),
    ("compress", ["--model={d}/base.keras", "--dataset={d}/nan.npz"],
     "data file '{d}/nan.npz', x_train: image 5 holds NaN or infinite pixels"),
    ("compress", ["--model={d}/base.keras", "--dataset={d}/eleven.npz"],
     "data file '{d}/eleven.npz', y_test: label 10 at index 3 is outside [0, 10): the model "
     "has 10 classes"),
    ("admm", ["--model={d}/base.keras", "--dataset={d}/negative.npz"],
     "y_train: label -3 at index 2 is negative"),
    # Output paths, with the flag named.
    ("compress", ["--model={d}/base.keras", "--output_dir={d}/a_file"],
     "--output_dir='{d}/a_file' is an existing file, not a folder"),
    ("compress", ["--model={d}/base.keras", "--tensorboard_dir={d}/a_file/logs"],
     "--tensorboard_dir='{d}/a_file/logs': '{d}/a_file' is a file"),
    ("admm", ["--model={d}/base.keras", "--output_dir={d}/a_file"],
     "--output_dir='{d}/a_file' is an existing file"),
    ("export", ["--model={d}/base.keras", "--output_dir={d}/a_file"],
     "--output_dir='{d}/a_file' is an existing file"),
    ("train", ["--output_dir={d}/a_file"], "--output_dir='{d}/a_file' is an existing file"),
    ("android-benchmark", ["--tflite={d}/good.tflite", "--benchmark_binary=/bin/true",
                           "--output={d}"], "--output='{d}' is a folder"),
]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of bad inputs beside one good model."""
    from tfautocompress import zoo
    from tfautocompress._keras import keras

    d = tmp_path_factory.mktemp("bad")
    zoo.build("digits_vgg", (32, 32, 3), 10).save(d / "base.keras")
    data = (d / "base.keras").read_bytes()
    (d / "truncated.keras").write_bytes(data[: len(data) // 2])
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(10, activation="softmax")]).save(d / "nothing.keras")
    (d / "broken.json").write_text('{"format": "%s", "schemes": {\n  "conv": }' % POLICY)
    (d / "not_a_policy.json").write_text("[1, 2]")
    for name, schemes in {
            "fraction": {"block1_1_conv": {"class_name": "Filter", "config": {"fraction": 1.5}}},
            "unknown_layer": {"nope": {"class_name": "Filter", "config": {"fraction": 0.5}}},
            "unknown_scheme": {"block1_1_conv": {"class_name": "Diagonal", "config": {}}}}.items():
        (d / f"{name}.json").write_text(json.dumps({"format": POLICY, "schemes": schemes}))
    empty = np.zeros((0, 8, 8, 1), np.float32)
    np.savez(d / "empty.npz", x_train=empty, y_train=np.zeros(0, np.int32), x_test=empty,
             y_test=np.zeros(0, np.int32))
    np.savez(d / "nolabels.npz", x_train=np.zeros((10, 8, 8, 1)), x_test=np.zeros((4, 8, 8, 1)))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(60, 8, 8, 1)).astype(np.float32), np.arange(60) % 10
    np.savez(d / "negative.npz", x_train=x, y_train=np.where(np.arange(60) == 2, -3, y),
             x_test=x[:20], y_test=y[:20])
    np.savez(d / "nan.npz", x_train=np.where(np.arange(60)[:, None, None, None] == 5, np.nan, x),
             y_train=y, x_test=x[:20], y_test=y[:20])
    np.savez(d / "eleven.npz", x_train=x, y_train=y, x_test=x[:20],
             y_test=np.where(np.arange(20) == 3, 10, y[:20]))
    (d / "a_file").write_text("not a folder")
    (d / "good.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(32))
    (d / "corrupt.tflite").write_bytes(b"not a flatbuffer at all")
    (d / "corrupt_state").mkdir()
    (d / "corrupt_state" / "state.json").write_text("")
    return d


def run_script(script, args, cwd):
    exe = os.path.join(os.path.dirname(sys.executable), f"tfautocompress-{script}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


@pytest.mark.parametrize("script,args,message", CASES,
                         ids=[f"{c[0]}-{c[2][:40]}" for c in CASES])
def test_bad_input_gives_one_line(bad, script, args, message):
    args = [a.format(d=bad) for a in args]
    if script == "compress":
        args = [*QUICK, f"--output_dir={bad}/out_compress", *args]
    before = sorted(p.name for p in bad.rglob("*"))
    done = run_script(script, args, cwd=bad)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines()
             if line.startswith((f"tfautocompress-{script}: error: ", "FATAL Flags parsing error"))]
    assert len(lines) == 1, done.stderr
    assert message.format(d=bad) in lines[0], lines[0]
    leftovers = [p for p in bad.rglob(".tmp-*")]
    assert not leftovers  # nothing half-written
    if script != "compress":  # a compress run may create its (empty) output folder
        assert sorted(p.name for p in bad.rglob("*")) == before


def test_traceback_flag_shows_the_traceback(bad):
    done = run_script("admm", [f"--model={bad}/base.keras", f"--policy={bad}/fraction.json",
                               "--traceback"], cwd=bad)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "Filter.fraction must be in [0, 1)" in done.stderr
