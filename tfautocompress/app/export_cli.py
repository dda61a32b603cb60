"""absl entry points: ``tfautocompress-export`` and ``tfautocompress-android-benchmark``.

pyproject.toml's ``[project.scripts]``:
``tfautocompress-export=tfautocompress.app.export_cli:export_main`` and
``tfautocompress-android-benchmark=tfautocompress.app.export_cli:android_main``.
"""
import json
import os

from absl import flags

from tfautocompress.app.cli import check_output_dir, check_output_file, model_classes, run_app

SUMMARY_NAME = "tflite_summary.json"


def export_main():
    """``tfautocompress-export``: .keras -> .tflite per mode + GPU check + host benchmark."""
    flags.DEFINE_string("model", None, "A .keras file (tf_keras or Keras 3).")
    flags.DEFINE_string("output_dir", None, "Where the .tflite files and "
                        f"{SUMMARY_NAME} are written.")
    flags.DEFINE_list("modes", ["float32", "float16"],
                      "Comma list of float32, float16, dynamic, int8.")
    flags.DEFINE_bool("sparse", False, "Also encode remaining zero weights sparsely.")
    flags.DEFINE_string("dataset", None, "Data for int8 calibration and the equivalence "
                        "check (tfautocompress.data.load source, e.g. 'digits'); "
                        "required for int8.")
    flags.DEFINE_integer("calibration_batches", 4, "Training batches used to calibrate int8.")
    flags.DEFINE_integer("check_batches", 4, "Validation batches for the equivalence check.")
    flags.DEFINE_integer("threads", 1, "CPU threads for the host benchmark.")
    flags.DEFINE_integer("runs", 50, "Timed runs of the host benchmark.")
    flags.DEFINE_integer("warmup", 5, "Warm-up runs of the host benchmark.")
    flags.DEFINE_bool("gpu_run", False, "Also run each model once on LiteRT's GPU "
                      "accelerator (in a process of its own); reported 'not available "
                      "here' where the machine has no GPU LiteRT can use. The host "
                      "benchmark is always the CPU's (XNNPACK).")
    flags.mark_flags_as_required(["model", "output_dir"])
    run_app(_export)


def android_main():
    """``tfautocompress-android-benchmark``: benchmark_model over adb, CPU (and GPU)."""
    flags.DEFINE_string("tflite", None, "The .tflite model to benchmark.")
    flags.DEFINE_string("benchmark_binary", None,
                        "TFLite's benchmark_model binary built for the device's ABI.")
    flags.DEFINE_integer("threads", 4, "CPU threads (--num_threads of benchmark_model).")
    flags.DEFINE_bool("use_gpu", False, "Also run with the GPU delegate (--use_gpu=true).")
    flags.DEFINE_string("device", None, "adb serial, when several devices are attached.")
    flags.DEFINE_integer("timeout_s", 600, "Timeout of each adb call, in seconds.")
    flags.DEFINE_string("output", None, "JSON file for the results (written atomically).")
    flags.mark_flags_as_required(["tflite", "benchmark_binary"])
    run_app(_android)


def _export(argv):
    del argv
    from tfautocompress import artifacts
    from tfautocompress.tflite_tools import benchmark, export, gpu

    f = flags.FLAGS
    _require_file("--model", f.model, ".keras")
    check_output_dir("--output_dir", f.output_dir)
    unknown = [m for m in f.modes if m not in export.MODES]
    if unknown or not f.modes:
        raise ValueError(f"--modes={','.join(f.modes)}: {unknown or 'empty'} not "
                             f"accepted; choose from {','.join(export.MODES)}.")
    if "int8" in f.modes and not f.dataset:
        raise ValueError("--modes includes int8, which needs --dataset to calibrate "
                             "on (e.g. --dataset=digits).")
    model = artifacts.load_model(f.model, compile=False)
    splits = _splits(model, f.dataset) if f.dataset else None
    stem = os.path.splitext(os.path.basename(f.model))[0]
    summary = {"model": os.path.abspath(f.model), "exports": {}}
    for mode in f.modes:
        path = os.path.join(f.output_dir, f"{stem}_{mode}.tflite")
        calibration = splits.train.take(f.calibration_batches) if mode == "int8" else None
        entry = {"export": export.export(model, path, mode, calibration, sparse=f.sparse)}
        compat = gpu.gpu_compatibility(path).to_json()
        del compat["raw"]
        entry["gpu_compatibility"] = compat
        entry["gpu_run"] = ({"attempted": True, **gpu.gpu_accelerated_run(path)}
                            if f.gpu_run else {"attempted": False})
        entry["host_benchmark"] = benchmark.benchmark(path, threads=f.threads,
                                                      warmup=f.warmup, runs=f.runs)
        if splits is not None:
            entry["equivalence"] = benchmark.check_equivalence(
                model, path, splits.val.take(f.check_batches))
        summary["exports"][mode] = entry
        print(_summary_line(mode, entry))
    out = os.path.join(f.output_dir, SUMMARY_NAME)
    artifacts.write_json(out, summary)
    print(f"summary: {out}")


def _android(argv):
    del argv
    from tfautocompress import artifacts
    from tfautocompress.tflite_tools import android

    f = flags.FLAGS
    _require_file("--tflite", f.tflite, ".tflite")
    _require_file("--benchmark_binary", f.benchmark_binary)
    check_output_file("--output", f.output)
    if f.threads < 1:
        raise ValueError(f"--threads={f.threads} must be at least 1.")
    configs = {"cpu": False, **({"gpu": True} if f.use_gpu else {})}
    results = {name: android.run_android_benchmark(
        f.tflite, f.benchmark_binary, threads=f.threads, use_gpu=use_gpu,
        device=f.device, timeout_s=f.timeout_s) for name, use_gpu in configs.items()}
    if f.output:
        artifacts.write_json(f.output, results)
    print(json.dumps(results, indent=2))


def _splits(model, source):
    from tfautocompress import data

    shape = tuple(model.inputs[0].shape[1:])
    classes = model_classes(model)
    if len(shape) == 3:
        return data.load(source, image_size=shape[:2], channels=shape[2], num_classes=classes)
    return data.load(source, num_classes=classes)


def _require_file(flag, path, suffix=None):
    if not os.path.isfile(path):
        raise ValueError(f"{flag}={path!r} does not exist; give an existing file.")
    if suffix and not path.endswith(suffix):
        raise ValueError(f"{flag}={path!r} is not a {suffix} file.")
    if suffix == ".tflite":
        with open(path, "rb") as f:
            if f.read(8)[4:] != b"TFL3":  # the FlatBuffer file identifier of a TFLite model
                raise ValueError(f"{flag}={path!r} is not a TFLite model (no TFL3 "
                                     "identifier; truncated or corrupt?): export it again.")


def _summary_line(mode, entry):
    bench = entry["host_benchmark"]
    gpu = "yes" if entry["gpu_compatibility"]["compatible"] else \
        "no (" + ", ".join(entry["gpu_compatibility"]["incompatible_ops"]) + ")"
    line = (f"{mode:8s} {entry['export']['size_bytes'] / 2**20:8.2f} MB  "
            f"median {bench['latency_ms']['median']:8.3f} ms  GPU-compatible: {gpu}")
    run = entry["gpu_run"]
    if run["attempted"]:
        line += (f"  GPU run: {run['latency_ms']:.3f} ms" if run["available"]
                 else f"  GPU run: {run['reason'].split(':')[0]} ({SUMMARY_NAME} says why)")
    if "equivalence" in entry:
        eq = entry["equivalence"]
        line += f"  equivalence: {'pass' if eq['passed'] else 'FAIL'} ({eq['criterion']})"
    return line
