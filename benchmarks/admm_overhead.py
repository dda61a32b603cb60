"""Step time of ``model.fit`` with the ADMM callback over plain ``fit``, one run.

Same model (digits_vgg), data and batch; plain and ADMM fits alternate
(``--rounds`` times) and each fit's first epoch (tracing) is left out. An epoch's
time includes the ADMM epoch-end Z/U update and logs.

    python benchmarks/admm_overhead.py [--update_every epoch] [--output r.json]
"""
import time

import numpy as np
from absl import app, flags


import _common
from tfautocompress import data, keras, zoo
from tfautocompress.baseline import compile_for_training
from tfautocompress.callbacks.admm import ADMM
from tfautocompress.masks import uniform_schemes
from tfautocompress.schemes import Combined

flags.DEFINE_integer("rounds", 3, "Alternating plain/ADMM fits.")
flags.DEFINE_integer("epochs", 3, "Epochs per fit (the first is not timed).")
flags.DEFINE_string("update_every", "epoch", "ADMM steps between Z/U updates, or 'epoch'.")
_common.define_output_flag()
FLAGS = flags.FLAGS


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds, self.steps = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if epoch > 0:
            self.seconds.append(time.perf_counter() - self._start)
            self.steps.append(self._steps)


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    splits = data.load("digits", batch_size=32)
    model = zoo.build("digits_vgg", splits.input_shape, splits.num_classes)
    compile_for_training(model, 1e-3)
    every = FLAGS.update_every if FLAGS.update_every == "epoch" else int(FLAGS.update_every)
    admm = ADMM(uniform_schemes(model, Combined(0.75, 0.5)), update_every=every)
    timers = {"plain": _EpochTimer(), "admm": _EpochTimer()}
    for _ in range(FLAGS.rounds):
        for name, extra in (("plain", []), ("admm", [admm])):
            model.fit(splits.train, epochs=FLAGS.epochs, verbose=0,
                      callbacks=extra + [timers[name]])
    step = {name: float(np.sum(t.seconds) / np.sum(t.steps)) for name, t in timers.items()}
    ratio = step["admm"] / step["plain"]
    print(f"{'fit':<8}{'ms/step':>10}{'timed steps':>13}")
    for name, t in timers.items():
        print(f"{name:<8}{1e3 * step[name]:>10.2f}{int(np.sum(t.steps)):>13}")
    result = {"admm_step_ratio": round(ratio, 4), "plain_ms": round(1e3 * step["plain"], 3),
              "admm_ms": round(1e3 * step["admm"], 3), "update_every": FLAGS.update_every}
    _common.finish(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
