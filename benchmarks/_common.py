"""What the benchmarks share: wall-clock timing and the closing ``RESULT`` line.

Every benchmark is an absl script run as ``python benchmarks/X.py`` (so this file
is its sibling module ``_common``). It prints a readable table and ends with one
line ``RESULT key=value key=value ...`` holding its headline figures;
``--output FILE`` writes the same figures as JSON, atomically
(``tfautocompress.artifacts``)::

    _common.define_output_flag()
    ...
    with _common.Stopwatch() as watch:
        work()
    _common.finish({"work_s": round(watch.seconds, 1)}, FLAGS.output)

``tfautocompress`` (and with it TensorFlow) is imported only when a file is
written, so a benchmark that imports TensorFlow late stays quick to start.
"""
import time

import numpy as np
from absl import flags

__all__ = ["OUTPUT_HELP", "define_output_flag", "define_tflite_timing_flags", "Stopwatch", "median_seconds",
           "interleaved_median_seconds", "tflite_relative_diff", "dense_model_and_splits",
           "result_line",
           "print_result", "finish"]

OUTPUT_HELP = "Write the RESULT figures here as JSON."


def define_output_flag(help=OUTPUT_HELP):  # noqa: A002 (absl's own argument name)
    """Define the ``--output FILE`` flag (default: none, nothing written)."""
    flags.DEFINE_string("output", None, help)


def define_tflite_timing_flags(runs, rounds):
    """``--threads`` (LiteRT CPU threads, 1), ``--runs`` timed runs per model per round
    and ``--rounds`` alternating rounds: how the TFLite benchmarks time models."""
    flags.DEFINE_integer("threads", 1, "LiteRT CPU threads.")
    flags.DEFINE_integer("runs", runs, "Timed runs per model per round.")
    flags.DEFINE_integer("rounds", rounds, "Alternating timing rounds.")


class Stopwatch:
    """Wall seconds of a ``with`` block: ``watch.seconds`` after it (``time.perf_counter``).

    ``watch.elapsed()`` reads the seconds so far, inside the block or after it.
    """

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = None
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False

    def elapsed(self):
        return time.perf_counter() - self.start


def median_seconds(fn, repeats=5):
    """Median wall seconds of ``repeats`` calls of ``fn()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interleaved_median_seconds(calls, runs, warmup=5):
    """Median seconds per call of each of ``calls`` (zero-argument callables): each
    is first called ``warmup`` times, then the calls alternate ``runs`` times, so
    that load from other processes hits them alike."""
    for call in calls:
        for _ in range(warmup):
            call()
    times = [[] for _ in calls]
    for _ in range(runs):
        for call, t in zip(calls, times):
            start = time.perf_counter()
            call()
            t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def tflite_relative_diff(path, reference, x):
    """max |tflite - reference| over the reference outputs' spread across inputs.

    Random-weight CNN outputs are near-uniform softmax scores (spread ~1e-5), so
    the difference is measured against that spread: a wrong compaction gives ~1.
    Outputs that do not vary at all (spread 0) give the absolute difference.
    """
    from tfautocompress.tflite_tools import benchmark

    want = reference(x, training=False).numpy()
    got = benchmark.run_tflite(path, [x])[0]
    spread = float(np.ptp(want, axis=0).max())
    return float(np.abs(got - want).max() / (spread if spread > 0 else 1.0))


def dense_model_and_splits(f):
    """``(model, splits)`` from the compress command's flags ``f``: its dense model
    (trained, or loaded from ``--baseline_dir``) and the data at the model's input size."""
    from tfautocompress import data
    from tfautocompress.app import compress_cli

    model = compress_cli.load_model(f.model, f.dataset, f.data_dir, f.baseline_dir,
                                    f.baseline_epochs, f.batch_size, f.baseline_lr, f.seed,
                                    train_size=f.train_size, validation_freq=f.validation_freq)
    splits = data.load(f.dataset, batch_size=f.batch_size, seed=f.seed, data_dir=f.data_dir,
                       image_size=tuple(model.input_shape[1:3]), channels=model.input_shape[-1],
                       train_size=f.train_size)
    return model, splits


def result_line(result):
    """``RESULT key=value key=value ...`` of the dict ``result``, in its order."""
    return "RESULT " + " ".join(f"{k}={v}" for k, v in result.items())


def print_result(result):
    print(result_line(result), flush=True)


def finish(result, output=None, extra=None):
    """Print the ``RESULT`` line of ``result``; with ``output`` also write ``result``
    (plus the ``extra`` fields, e.g. per-seed lists) there as JSON, atomically."""
    print_result(result)
    if output:
        from tfautocompress import artifacts
        artifacts.write_json(output, dict(result, **(extra or {})))
