"""tf.distribute for the training phases; keras-tuner chief/workers for the search (distribute.py).

Two logical CPU devices must be configured before TensorFlow initialises its
devices, so the mirrored comparisons run in a subprocess (this file's
``__main__``), which prints one JSON line of its measurements.
"""
import json
import os
import socket
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

HERE = os.path.abspath(__file__)
TIMEOUT_S = 600


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERASTUNER_", "TF_CONFIG"))}
    return dict(env, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **extra)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------ bad input ---
def test_multi_worker_without_tf_config_names_the_variable(monkeypatch):
    from tfautocompress import distribute

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="--distribution=multi_worker needs the TF_CONFIG"):
        distribute.strategy("multi_worker")
    with pytest.raises(ValueError, match="accepted: none, mirrored, multi_worker"):
        distribute.strategy("horovod")


def test_batch_size_must_split_over_replicas():
    import tensorflow as tf

    from tfautocompress import distribute

    one = tf.distribute.MirroredStrategy(["/cpu:0"])
    distribute.check_batch_size(33, one)
    distribute.check_batch_size(33, None)

    class Two:
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match=r"--batch_size=33 is the global batch .* 2 replicas"):
        distribute.check_batch_size(33, Two())


def test_worker_without_chief_fails_after_its_timeout(monkeypatch):
    from tfautocompress.search import workers

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(_free_port()))
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT=127.0.0.1"):
        workers.wait_for_chief(1.5)
    assert 1.4 < time.monotonic() - start < 10


def test_worker_asking_a_gone_oracle_for_a_trial_is_stopped_at_once(monkeypatch):
    # the chief closed the round between the worker's look and its first trial:
    # keras-tuner's client would wait an hour for the oracle to come back
    import keras_tuner
    from keras_tuner.engine import trial as trial_module

    from tfautocompress.search import workers

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(_free_port()))
    local = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("score", "max"), max_trials=1)
    from keras_tuner.src.distribute import oracle_client  # what BaseTuner puts in front

    client = workers.round_client(oracle_client.OracleClient(local))
    assert isinstance(client, oracle_client.OracleClient)
    start = time.monotonic()
    assert client.create_trial("tuner0").status == trial_module.TrialStatus.STOPPED
    assert time.monotonic() - start < 10
    monkeypatch.delenv("KERASTUNER_ORACLE_IP")
    assert workers.round_client(local) is local  # not a worker: the oracle itself


# ------------------------------------------- search: chief + two workers ---
TINY_FLAGS = ("--rounds=1", "--admm_epochs=1", "--retrain_epochs=1", "--steps_per_epoch=3",
              "--search_trials=5", "--search_parallel=2", "--purification_trials=2",
              "--export_tflite=false", "--max_accuracy_drop=100", "--worker_timeout=300",
              "--columns=keep")  # "auto" times layers: concurrent runs would time them apart


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "wall_s" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_compress_cli_chief_and_two_workers_equal_one_process(tmp_path):
    pytest.importorskip("grpc")
    import dataclasses

    from tfautocompress import artifacts, data
    from tfautocompress._keras import keras
    from tfautocompress.baseline import compile_for_training

    keras.utils.set_random_seed(0)
    splits = data.load("digits", batch_size=32)
    model = _tiny_model(keras)
    compile_for_training(model, 3e-3)
    model.fit(dataclasses.replace(splits).train.take(6), epochs=1, verbose=0)
    artifacts.save_model(model, str(tmp_path / "tiny.keras"))
    command = [sys.executable, "-m", "tfautocompress.app.compress_cli",
               f"--model={tmp_path / 'tiny.keras'}", *TINY_FLAGS]
    port, procs = str(_free_port()), {}
    try:
        for role in ("chief", "tuner0", "tuner1", "single"):
            env = (_env() if role == "single" else
                   _env(KERASTUNER_TUNER_ID=role, KERASTUNER_ORACLE_IP="127.0.0.1",
                        KERASTUNER_ORACLE_PORT=port))
            folder = tmp_path / ("single" if role == "single" else "distributed")
            with open(tmp_path / f"{role}.log", "w") as log:  # a full pipe would block it
                procs[role] = subprocess.Popen(command + [f"--output_dir={folder}"], env=env,
                                               stdout=log, stderr=subprocess.STDOUT)
        deadline, outputs = time.time() + TIMEOUT_S, {}
        for role, proc in procs.items():
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:  # say where each process stood
                pytest.fail(f"{role} still running after {TIMEOUT_S} s; logs:\n" + "\n".join(
                    f"--- {r}:\n" + (tmp_path / f"{r}.log").read_text()[-2000:] for r in procs))
            outputs[role] = (tmp_path / f"{role}.log").read_text()
            assert proc.returncode == 0, (role, outputs[role][-3000:])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    counts = {}  # trials each worker evaluated (one that joins late may get none)
    for role in ("tuner0", "tuner1"):
        assert "search worker: Phase I ended (max_rounds=1 reached)" in outputs[role]
        lines = [l for l in outputs[role].splitlines() if "search worker: round 1," in l]
        counts[role] = int(lines[-1].split("round 1, ")[1].split()[0]) if lines else 0
    assert sum(counts.values()) == 5, counts  # the workers evaluated all 5 trials
    distributed = artifacts.read_json(tmp_path / "distributed" / "report.json")
    single = artifacts.read_json(tmp_path / "single" / "report.json")
    assert _without_times(distributed) == _without_times(single)
    for folder in ("distributed", "single"):
        assert artifacts.read_json(tmp_path / folder / "round_1" / "policy.json") == \
            artifacts.read_json(tmp_path / "single" / "round_1" / "policy.json")


# ------------------------------------------------------ mirrored == one ---
def test_mirrored_on_two_cpus_matches_one_device():
    out = subprocess.run([sys.executable, HERE, "mirrored"], env=_env(), capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # penalty, Z, U, kernels: float32 round-off of the cross-replica sum grows over the
    # steps (2.3e-5 seen on CI's machine); the masks and the policy must be equal.
    assert result["admm_max_abs_diff"] < 1e-4, result
    assert result["admm_masks_equal"], result
    assert result["policy_equal"], result
    for key, diff in result["accuracy_abs_diff"].items():
        assert diff < 1e-6, (key, result)


def _tiny_model(keras):
    layers = keras.layers
    inputs = keras.Input((32, 32, 3), name="input")
    x = inputs
    for i, width in enumerate((8, 16)):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


def _mirrored_main():
    import dataclasses
    import tempfile

    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from tfautocompress import artifacts, data, distribute
    from tfautocompress._keras import keras
    from tfautocompress.baseline import compile_for_training
    from tfautocompress.callbacks.admm import ADMM
    from tfautocompress.callbacks.distillation import Distiller
    from tfautocompress.app.pipeline import AutoCompress, Config
    from tfautocompress.schemes import Combined

    strategy = distribute.strategy("mirrored")
    start = time.perf_counter()

    def splits():  # a fresh copy (the pipeline distils from outputs paired with it)
        return data.load("digits", batch_size=32).take(4)

    keras.utils.set_random_seed(0)
    model = _tiny_model(keras)
    compile_for_training(model, 3e-3)
    model.fit(splits().train, epochs=2, verbose=0)

    # ADMM inside a Distiller (its soft term and ADMM's penalty are scaled for the
    # replicas as Keras scales the task loss): the same fit on one device and on two.
    policy = {"conv0": Combined(0.5, 0.25), "conv1": Combined(0.5, 0.5)}
    admm_runs = []
    for strategy_ in (None, strategy):
        keras.utils.set_random_seed(1)
        with distribute.scope(strategy_):
            work = distribute.with_batch_norm(model, momentum=0.9,  # a copy in both runs
                                              synchronized=strategy_ is not None)
            # SGD: Adam turns float round-off in near-zero gradients into lr-sized
            # steps (g / sqrt(v)), which would hide what this compares.
            student = Distiller(work, model, weight=0.5)
            student.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
            admm = ADMM(policy, rho=0.1, update_every=2)
            student.fit(splits().train, epochs=2, verbose=0, callbacks=[admm])
        penalty = float(admm.penalty())
        state = admm.state
        masks = admm.hard_prune()
        admm_runs.append((penalty, state, masks,
                          {n: work.get_layer(n).kernel.numpy() for n in policy}))
    (p0, s0, m0, k0), (p1, s1, m1, k1) = admm_runs
    diffs = [abs(p0 - p1)] + [float(np.max(np.abs(s0[n][key] - s1[n][key])))
                              for n in policy for key in ("z", "u", "rho")]
    diffs += [float(np.max(np.abs(k0[n] - k1[n]))) for n in policy]

    print(f"admm seconds: {time.perf_counter() - start:.1f}", file=sys.stderr)
    # A tiny pipeline (one round, purification, compaction; distilling) without and with
    # replicas, at lr 1e-3: Adam at the default 3e-3 turns the cross-replica sum's
    # round-off into steps that flip one of the 128 validation images after purification.
    config = Config(max_rounds=1, admm_epochs=1, retrain_epochs=1, search_trials=3,
                    purification_trials=2, purification_rounds=1, max_accuracy_drop=100.0,
                    seed=1, export_tflite=False, lr=1e-3)
    reports, policies = [], []
    for name in ("none", "mirrored"):
        folder = tempfile.mkdtemp()
        cfg = dataclasses.replace(config, distribution=name)
        reports.append(AutoCompress(model, splits(), folder, cfg, verbose=0).run())
        policies.append(artifacts.read_json(os.path.join(folder, "round_1", "policy.json")))
    accuracies = {}
    for step in ("baseline", "final"):
        for key in ("val_accuracy", "test_accuracy"):
            accuracies[f"{step}/{key}"] = abs(reports[0][step][key] - reports[1][step][key])
    for key in ("val_accuracy", "test_accuracy"):
        accuracies[f"round_1/{key}"] = abs(reports[0]["rounds"][0][key]
                                           - reports[1]["rounds"][0][key])
    print(f"seconds: {time.perf_counter() - start:.1f}", file=sys.stderr)
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync, "admm_max_abs_diff": max(diffs),
        "admm_masks_equal": all(np.array_equal(m0[n], m1[n]) for n in policy),
        "policy_equal": policies[0] == policies[1], "accuracy_abs_diff": accuracies}))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    {"mirrored": _mirrored_main}[sys.argv[1]]()
