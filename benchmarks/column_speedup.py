"""Host TFLite latency of column-pruned models: dense vs compact "keep" vs compact "auto".

``vgg16_cifar`` and ``resnet18_cifar`` (random weights; latency does not depend on
them) get uniform ``Combined(0.5, 0.75)`` magnitude masks (half the filters, then
3/4 of the remaining columns); ``compact(columns="keep")`` keeps the zero columns
inside dense Conv2D kernels, ``compact(columns="auto")`` lowers the column-sparse
Conv2D layers where the layer alone runs faster in host TFLite
(``tfautocompress.lowering``). The third model is digits: ``--digits_model`` with
``--digits_masks`` (a masked or compact .keras and its masks, e.g. a
``tfautocompress-compress`` run's ``final/compact.keras`` + ``final/masks.npz``),
or, when absent, an untrained ``digits_vgg`` from the zoo with the same uniform
Combined masks. Each model is exported as float32 ``.tflite`` (checked against the
masked model) and timed with LiteRT (XNNPACK, batch 1, ``--threads``) in
``--rounds`` alternating rounds of ``--runs`` inferences; latency is the median
over rounds of the round medians. Executed MACs count what TFLite multiplies
(the kept zero columns of "keep" included). The target: ``*_speedup`` ("keep"
latency / "auto" latency) >= 0.6 x ``*_macs_ratio`` ("keep" MACs / "auto" MACs);
``*_auto_vs_dense_*`` compare "auto" with the dense model.

    python benchmarks/column_speedup.py [--digits_model m.keras --digits_masks m.npz]
        [--threads 1] [--runs 40] [--rounds 9] [--output r.json]
"""
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # auto converts every layer alone

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import _common  # noqa: E402
from tfautocompress import (  # noqa: E402
    apply_masks, artifacts, count, keras, masks as masks_lib, zoo)
from tfautocompress.compact import compact, compact_lowered  # noqa: E402
from tfautocompress.masks import magnitude_masks, uniform_schemes  # noqa: E402
from tfautocompress.schemes import Combined  # noqa: E402
from tfautocompress.tflite_tools import benchmark, export, latency  # noqa: E402

flags.DEFINE_list("fractions", ["0.5", "0.75"], "Combined(filter_fraction, column_fraction).")
flags.DEFINE_string("digits_model", None, "A masked or compact digits .keras model "
                    "(default: the zoo's digits_vgg with the uniform Combined masks).")
flags.DEFINE_string("digits_masks", None, "The masks (.npz) of --digits_model.")
_common.define_tflite_timing_flags(runs=40, rounds=9)
flags.DEFINE_integer("seed", 0, "Seed of the random weights and inputs.")
_common.define_output_flag()
FLAGS = flags.FLAGS

FORMS = ("dense", "keep", "auto")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if (FLAGS.digits_model is None) != (FLAGS.digits_masks is None):
        raise ValueError("--digits_model and --digits_masks go together: give both (a "
                         "masked or compact model and its masks) or neither.")
    scheme = Combined(*(float(f) for f in FLAGS.fractions))
    keras.utils.set_random_seed(FLAGS.seed)
    cases = {}
    for tag, name in (("vgg16", "vgg16_cifar"), ("resnet18", "resnet18_cifar")):
        dense = zoo.build(name)
        cases[tag] = (dense, dense, magnitude_masks(dense, uniform_schemes(dense, scheme)))
    cases["digits"] = _digits(scheme)
    figures, extra = {}, {}
    with _common.Stopwatch() as total:
        for tag, case in cases.items():
            figures[tag], extra[f"{tag}_decisions"] = _measure(tag, *case)
    # the headline figures first, in the order; then the details
    result = {f"{tag}_{key}": figures[tag][key] for tag in cases
              for key in ("speedup", "macs_ratio")}
    result.update({f"{tag}_{key}": value for tag in cases for key, value in figures[tag].items()
                   if key not in ("speedup", "macs_ratio")})
    result.update(threads=FLAGS.threads, wall_s=round(total.seconds, 1))
    _common.finish(result, FLAGS.output, extra)


def _digits(scheme):
    """``(dense, model, masks)`` of the digits case (module doc)."""
    if FLAGS.digits_model is None:
        dense = zoo.build("digits_vgg")
        return dense, dense, magnitude_masks(dense, uniform_schemes(dense, scheme))
    model = artifacts.load_model(FLAGS.digits_model, what="--digits_model")
    masks = masks_lib.load(FLAGS.digits_masks)
    dense = zoo.build("digits_vgg", model.input_shape[1:], model.output_shape[-1])
    return dense, model, masks


def _measure(tag, dense, model, masks):
    """Latency, executed MACs and equivalence of dense / keep / auto; prints the table."""
    keep = compact(model, masks, columns="keep")
    auto, _, lowered = compact_lowered(model, masks, "auto", latency.LayerLatency())
    reference = apply_masks(model, masks)
    models = dict(zip(FORMS, (dense, keep, auto)))
    macs = {form: count(m).conv_macs for form, m in models.items()}
    x = np.random.default_rng(FLAGS.seed).uniform(
        size=(4,) + tuple(dense.input_shape[1:])).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="column_speedup_") as folder:
        files = {form: export.export(m, os.path.join(folder, f"{form}.tflite"))["path"]
                 for form, m in models.items()}
        diff = max(_common.tflite_relative_diff(files[f], reference, x) for f in ("keep", "auto"))
        latency = dict(zip(FORMS, benchmark.interleaved_latency_ms(
            list(files.values()), threads=FLAGS.threads, runs=FLAGS.runs,
            rounds=FLAGS.rounds)))
    decisions = {n: d.to_json() for n, d in lowered["decisions"].items()}
    print(f"\n{tag}: {model.name}, {len(decisions)} column-sparse Conv2D, lowered: "
          f"{sum(d['form'] != 'keep' for d in decisions.values())} "
          f"(decided in {lowered['seconds']:.1f} s)")
    print(f"{'layer':<28}{'form':>8}{'keep ms':>10}{'rows ms':>11}{'slices ms':>11}")
    for name, d in decisions.items():
        t = d["latency_ms"]
        print(f"{name:<28}{d['form']:>8}{t['keep']:>10.3f}{t['rows']:>11.3f}"
              f"{t['slices']:>11.3f}")
    print(f"{'model':<10}{'CONV MMACs executed':>21}{'median ms':>11}{'vs dense':>10}")
    for form in FORMS:
        print(f"{form:<10}{macs[form] / 1e6:>21.2f}{latency[form]:>11.3f}"
              f"{latency['dense'] / latency[form]:>10.2f}")
    print(f"CONV MMACs counted {count(model, masks).conv_macs / 1e6:.2f}; TFLite vs masked "
          f"model: max relative diff {diff:.1e}")
    figures = {"speedup": round(latency["keep"] / latency["auto"], 3),
               "macs_ratio": round(macs["keep"] / macs["auto"], 3),
               "keep_ms": round(latency["keep"], 3), "auto_ms": round(latency["auto"], 3),
               "dense_ms": round(latency["dense"], 3),
               "auto_vs_dense_speedup": round(latency["dense"] / latency["auto"], 3),
               "auto_vs_dense_macs_ratio": round(macs["dense"] / macs["auto"], 3),
               "decide_s": round(lowered["seconds"], 1), "max_rel_diff": float(f"{diff:.2g}")}
    return figures, decisions


if __name__ == "__main__":
    app.run(main)
