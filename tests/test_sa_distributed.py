"""Distributed search: a chief oracle and two workers on 127.0.0.1, as real processes.

The workers run a tiny BaseTuner whose run_trial scores the action analytically
(``test_sa_oracle.score``). Each worker, once stopped, waits until the chief has
every trial completed and writes the best policy it reads over gRPC; the chief
writes its own and exits. An ``observer`` tuner id keeps the chief serving until
the workers have read the result (keras-tuner's chief exits when no tuner is left).
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 240
WORKERS = ("worker0", "worker1")


def _search_objects(directory):
    from keras_tuner.engine import base_tuner
    from test_sa_oracle import SPACE, score

    from tfautocompress.search import sa_oracle

    class ScoreTuner(base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            return score(trial.hyperparameters.values)

    oracle = sa_oracle.EnhancedSAOracle(SPACE, target_compression_ratio=4.0, iterations=2,
                                        start_temperature=20.0, stop_temperature=5.0, seed=11)
    tuner = ScoreTuner(oracle, directory=directory, project_name="dist")
    return oracle, tuner, SPACE


def _write(path, policy):
    from tfautocompress import artifacts

    artifacts.write_json(path, policy.to_json())


def _chief(directory):
    oracle, tuner, _ = _search_objects(directory)
    oracle.tuner_ids.add("observer")  # keep serving until the workers have read
    done = [os.path.join(directory, f"{w}.json") for w in WORKERS]

    def finish():
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline and not all(map(os.path.exists, done)):
            time.sleep(0.2)
        _write(os.path.join(directory, "chief.json"), oracle.best_policy())
        json.dump({"trials": len(oracle.trials), "max_trials": oracle.max_trials},
                  open(os.path.join(directory, "chief-trials.json"), "w"))
        os._exit(0)

    threading.Thread(target=finish, daemon=True).start()
    tuner.search(verbose=0)
    finish()


def _worker(directory, name):
    from tfautocompress.search import encoding

    oracle, tuner, space = _search_objects(directory)
    tuner.search(verbose=0)
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        trials = tuner.oracle.get_best_trials(oracle.max_trials)
        if len(trials) == oracle.max_trials and all(t.status == "COMPLETED" for t in trials):
            break
        time.sleep(0.2)
    best = tuner.oracle.get_best_trials(1)[0]
    _write(os.path.join(directory, f"{name}.json"),
           encoding.from_values(space, best.hyperparameters.values))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_agree(tmp_path):
    pytest.importorskip("grpc")
    from tfautocompress import artifacts
    from tfautocompress import policy as policy_lib
    from tfautocompress.search import encoding

    port = _free_port()
    procs = []
    try:
        for role in ("chief",) + WORKERS:
            env = dict(os.environ, KERASTUNER_TUNER_ID=role, KERASTUNER_ORACLE_IP="127.0.0.1",
                       KERASTUNER_ORACLE_PORT=str(port), PYTHONPATH=HERE,
                       TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
            procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), role, str(tmp_path)], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        deadline = time.time() + TIMEOUT_S
        for proc in procs:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
            assert proc.returncode == 0, out[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    policies = {role: policy_lib.PruningPolicy.from_json(
        artifacts.read_json(tmp_path / f"{role}.json")) for role in ("chief",) + WORKERS}
    assert policies["chief"] == policies["worker0"] == policies["worker1"]
    counts = json.load(open(tmp_path / "chief-trials.json"))
    assert counts["trials"] == counts["max_trials"] == 1 + 4 * 2  # temperatures 20, 14, 9.8, 6.9 (>= 5), two neighbours each
    scores = [json.load(open(f))["score"] for f in tmp_path.glob("dist/trial_*/trial.json")]
    from test_sa_oracle import score

    assert score(encoding.to_values(policies["chief"])) == pytest.approx(max(scores))


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    role, folder = sys.argv[1], sys.argv[2]
    _chief(folder) if role == "chief" else _worker(folder, role)
