"""What TensorFlow's op determinism costs: epochs of ADMM on ``digits_vgg`` with and
without ``tf.config.experimental.enable_op_determinism()`` (which the console
scripts turn on, so that the same seed gives the same run).

Once on, op determinism cannot be turned off in a process, so each measurement is
a fresh process; the two settings alternate for ``--rounds`` rounds and the
medians are compared.

    python benchmarks/determinism_cost.py --rounds 3 --epochs 3

Ends with ``RESULT deterministic_s=... default_s=... slowdown=...``.
"""
import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

import _common

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 3, "Alternating rounds (one process per setting each).")
flags.DEFINE_integer("epochs", 3, "ADMM epochs timed per process (after one warm-up).")
_common.define_output_flag()

# One process: a digits_vgg ADMM fit, timed after a warm-up epoch; prints seconds.
_CHILD = """
import json, sys, time
import tensorflow as tf
if sys.argv[1] == "1":
    tf.config.experimental.enable_op_determinism()
from tfautocompress import data, schemes, zoo
from tfautocompress._keras import keras
from tfautocompress.baseline import compile_for_training
from tfautocompress.callbacks.admm import ADMM
keras.utils.set_random_seed(0)
splits = data.load("digits", batch_size=32)
model = zoo.build("digits_vgg", splits.input_shape, splits.num_classes)
compile_for_training(model, 1e-3)
policy = {n: schemes.Combined(0.5, 0.5) for n in ("block2_1_conv", "block3_1_conv")}
admm = ADMM(policy)
model.fit(splits.train, epochs=1, callbacks=[admm], verbose=0)
start = time.perf_counter()
model.fit(splits.train, epochs=1 + int(sys.argv[2]), initial_epoch=1, callbacks=[admm],
          verbose=0)
print(json.dumps(time.perf_counter() - start))
"""


def _seconds(deterministic):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _CHILD, str(int(deterministic)),
                           str(FLAGS.epochs)], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    times = {True: [], False: []}
    for r in range(FLAGS.rounds):
        for deterministic in (r % 2 == 0, r % 2 == 1):  # alternate which goes first
            times[deterministic].append(_seconds(deterministic))
            print(f"round {r + 1}: {'deterministic' if deterministic else 'default':13s} "
                  f"{times[deterministic][-1]:7.2f} s for {FLAGS.epochs} epochs", flush=True)
    det, default = (float(np.median(times[k])) for k in (True, False))
    _common.finish({"deterministic_s": round(det, 2), "default_s": round(default, 2),
                    "slowdown": round(det / default, 3)}, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
