"""Trial throughput of a Phase I search with 1 and 2 keras-tuner worker processes.

Starts ``tfautocompress-compress`` as keras-tuner's chief plus N workers on
127.0.0.1 (one round, ``--search_parallel=2`` in both runs, so the trials are the
same), and reads each worker's "trials evaluated here in S s" line: the round's
throughput is all trials / the longest worker's search seconds. The digits
baseline is trained once (into a temporary folder) by the first run's chief.

    python benchmarks/search_workers.py [--trials 13] [--steps 8] [--output r.json]
"""
import os
import re
import socket
import subprocess
import sys
import tempfile

from absl import app, flags

import _common

FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 13, "Search trials of the round (1 + 2 per chain step).")
flags.DEFINE_integer("steps", 8, "Validation batches of 32 the fast evaluation scores on.")
_common.define_output_flag()

_LINE = re.compile(r"search worker: round 1, (\d+) trials evaluated here in ([\d.]+) s")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _run(workers, folder):
    """``(trials, seconds)`` of the round searched by ``workers`` worker processes."""
    port, procs = _free_port(), []
    flags_ = [f"--baseline_dir={folder}/baseline", f"--output_dir={folder}/run_{workers}",
              "--baseline_epochs=3", "--rounds=1", "--admm_epochs=1", "--retrain_epochs=1",
              f"--steps_per_epoch={FLAGS.steps}", f"--search_trials={FLAGS.trials}",
              "--search_parallel=2", "--purification_trials=0", "--noexport_tflite",
              "--max_accuracy_drop=100", "--worker_timeout=600"]
    roles = ["chief"] + [f"tuner{i}" for i in range(workers)]
    for role in roles:
        env = dict(os.environ, KERASTUNER_TUNER_ID=role, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=port, TF_CPP_MIN_LOG_LEVEL="3")
        log = open(os.path.join(folder, f"{workers}_{role}.log"), "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "tfautocompress.app.compress_cli",
                                       *flags_], env=env, stdout=log, stderr=subprocess.STDOUT))
    for role, proc in zip(roles, procs):
        if proc.wait(timeout=1800):
            tail = open(os.path.join(folder, f"{workers}_{role}.log")).read()[-2000:]
            raise RuntimeError(f"{role} failed:\n{tail}")
    found = [_LINE.search(open(os.path.join(folder, f"{workers}_{r}.log")).read())
             for r in roles[1:]]
    found = [(int(m.group(1)), float(m.group(2))) for m in found if m]
    return sum(t for t, _ in found), max(s for _, s in found)


def main(argv):
    del argv
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for workers in (1, 2):
            rows[workers] = _run(workers, folder)
    print(f"{'workers':>8} {'trials':>7} {'search s':>9} {'trials/s':>9}")
    for workers, (trials, seconds) in rows.items():
        print(f"{workers:>8} {trials:>7} {seconds:>9.2f} {trials / seconds:>9.2f}")
    one, two = (rows[w][0] / rows[w][1] for w in (1, 2))
    _common.finish({"trials_per_s_1_worker": round(one, 3), "trials_per_s_2_workers": round(two, 3),
                    "speedup": round(two / one, 2), "cpus": os.cpu_count()}, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
