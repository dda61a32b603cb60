"""Host latency of a ``.tflite`` through LiteRT, and its equivalence with the Keras model.

``benchmark`` times ``Interpreter.invoke`` (XNNPACK on CPU, chosen explicitly;
``num_threads`` configurable) or, with ``accelerator="gpu"``, a LiteRT
``CompiledModel`` on the GPU accelerator, timed in a child process of its own
(``tflite_tools.litert``). Its dict has the same keys as ``android.parse_benchmark_output``
(``init_ms``, ``first_inference_ms``, ``warmup_ms``, ``latency_ms`` with
mean/std/min/max/median, ``memory_mb`` with init/overall), plus ``p90``.
"""
import os
import statistics
import time

import numpy as np

from tfautocompress.tflite_tools import export as export_lib
from tfautocompress.tflite_tools import gpu, litert

ACCELERATORS = ("cpu", "gpu")
# How check_equivalence judges each export mode: (figure, bound).
CRITERIA = {
    "float32": ("max_abs_diff", 1e-4),
    "float16": ("max_abs_diff", 1e-2),
    "dynamic": ("top1_agreement", 0.99),
    "int8": ("top1_agreement", 0.99),
}


def benchmark(tflite_path, threads=1, warmup=5, runs=50, accelerator="cpu", seed=0):
    """Time ``runs`` inferences after ``warmup`` ones on seeded random inputs."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator={accelerator!r}; accepted: {', '.join(ACCELERATORS)}.")
    if int(threads) < 1 or int(warmup) < 1 or int(runs) < 1:
        raise ValueError(f"threads={threads}, warmup={warmup} and runs={runs} must all "
                         "be at least 1.")
    path = _existing(tflite_path)
    if accelerator == "gpu":
        timing = _gpu_timing(path, int(warmup), int(runs), seed)
    else:
        timing = _cpu_timing(path, int(threads), int(warmup), int(runs), seed)
    return {
        "platform": "host",
        "model": path,
        "model_size_bytes": os.path.getsize(path),
        "accelerator": accelerator,
        "threads": int(threads),
        "warmup": int(warmup),
        "runs": int(runs),
        "init_ms": timing["init_ms"],
        "first_inference_ms": timing["warmup_ms"][0],
        "warmup_ms": statistics.fmean(timing["warmup_ms"]),
        "latency_ms": latency_summary(timing["latencies_ms"]),
        "memory_mb": timing["memory_mb"],
    }


def _cpu_timing(path, threads, warmup, runs, seed):
    rss_before = litert.rss_mb()
    start = time.perf_counter()
    invoke = _cpu_invoker(path, threads, seed)
    init_ms = (time.perf_counter() - start) * 1e3
    rss_init = litert.rss_mb()
    warmup_ms = [_timed(invoke) for _ in range(warmup)]
    latencies_ms = [_timed(invoke) for _ in range(runs)]
    return {"init_ms": init_ms, "warmup_ms": warmup_ms, "latencies_ms": latencies_ms,
            "memory_mb": {"init": rss_init - rss_before, "overall": litert.rss_mb() - rss_before,
                          "peak_rss": litert.peak_rss_mb()}}


def _gpu_timing(path, warmup, runs, seed):
    """The GPU accelerator's timing, from its own process (``litert.run_gpu``); memory
    figures are that process's."""
    try:
        return litert.run_gpu(path, warmup=warmup, runs=runs, seed=seed)
    except litert.GpuUnavailableError as err:
        raise litert.GpuUnavailableError(
            f"accelerator='gpu' cannot run {path!r}: {err}. Use accelerator='cpu' "
            "on this machine.") from err


def interleaved_latency_ms(models, threads=1, runs=20, rounds=3, warmup=3, seed=0):
    """Median latency (ms) of each of ``models`` (``.tflite`` paths or bytes), timed in
    ``rounds`` alternating rounds of ``runs`` inferences, so that load from other
    processes hits them alike: per model the median over rounds of its round medians."""
    if int(threads) < 1 or int(runs) < 1 or int(rounds) < 1:
        raise ValueError(f"threads={threads}, runs={runs} and rounds={rounds} must all "
                         "be at least 1.")
    invokers = [_cpu_invoker(m if isinstance(m, (bytes, bytearray)) else _existing(m),
                             int(threads), seed) for m in models]
    for invoke in invokers:
        for _ in range(int(warmup)):
            invoke()
    medians = [[] for _ in invokers]
    for _ in range(int(rounds)):
        for invoke, per_round in zip(invokers, medians):
            per_round.append(statistics.median(_timed(invoke) for _ in range(int(runs))))
    return [float(np.median(m)) for m in medians]


def latency_summary(latencies_ms):
    """mean/std/min/max/median/p90 of a list of latencies, in ms."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()),
            "median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def run_tflite(tflite_path, arrays, threads=None):
    """Outputs (float32, dequantized) of the ``.tflite`` on one batch of float inputs."""
    return _run(litert.cpu_interpreter(_existing(tflite_path), threads), arrays)


def _run(interpreter, arrays):
    inputs = interpreter.get_input_details()
    if any(tuple(d["shape"]) != a.shape for d, a in zip(inputs, arrays)):
        for detail, array in zip(inputs, arrays):
            interpreter.resize_tensor_input(detail["index"], array.shape)
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
    for detail, array in zip(inputs, arrays):
        interpreter.set_tensor(detail["index"], _quantize(array, detail))
    interpreter.invoke()
    return [_dequantize(interpreter.get_tensor(d["index"]), d)
            for d in interpreter.get_output_details()]


def top1_accuracy(tflite_path, data, threads=None):
    """Top-1 accuracy of the ``.tflite``'s first output on ``data`` (an iterable or
    ``tf.data.Dataset`` of ``(inputs, labels)`` batches, labels as class ids or
    one-hot): what the exported model, quantized or not, scores on a test set."""
    interpreter = litert.cpu_interpreter(_existing(tflite_path), threads)
    interpreter.allocate_tensors()
    n_inputs, right, total = len(interpreter.get_input_details()), 0, 0
    if hasattr(data, "as_numpy_iterator"):
        data = data.as_numpy_iterator()
    for inputs, labels in data:
        arrays = [np.asarray(a, np.float32) for a in
                  (inputs if isinstance(inputs, (tuple, list)) else (inputs,))]
        if len(arrays) != n_inputs:
            raise ValueError(f"a batch holds {len(arrays)} input array(s) but "
                             f"{tflite_path!r} has {n_inputs} inputs.")
        scores, labels = _run(interpreter, arrays)[0], np.asarray(labels)
        if labels.ndim == scores.ndim:  # one-hot
            labels = labels.argmax(-1)
        right += int(np.sum(scores.argmax(-1) == labels.reshape(-1)))
        total += len(labels)
    if not total:
        raise ValueError("data holds no labelled batches to score the .tflite model on.")
    return right / total


def check_equivalence(model, tflite_path, data):
    """Compare the ``.tflite`` with ``model`` on ``data`` by its export mode's criterion.

    ``data`` takes the forms of ``export.input_batches``. Float32 must match within
    1e-4 max abs, float16 within 1e-2; dynamic and int8 need top-1 agreement >= 99 %.
    """
    mode = export_lib.read_sidecar(tflite_path)["mode"]
    max_abs, agree, samples = 0.0, [], 0
    for arrays in export_lib.input_batches(model, data):
        expected = model(arrays if len(arrays) > 1 else arrays[0], training=False)
        expected = [np.asarray(e) for e in (expected if isinstance(expected, (list, tuple))
                                            else [expected])]
        for want, got in zip(expected, run_tflite(tflite_path, arrays)):
            max_abs = max(max_abs, float(np.abs(want - got).max()))
            if want.ndim >= 2 and want.shape[-1] > 1:
                agree.append(want.argmax(-1).ravel() == got.argmax(-1).ravel())
        samples += len(arrays[0])
    if not samples:
        raise ValueError("data holds no samples to compare the model on.")
    figures = {"max_abs_diff": max_abs,
               "top1_agreement": float(np.concatenate(agree).mean()) if agree else None}
    figure, bound = CRITERIA[mode]
    if figures[figure] is None:
        raise ValueError(f"mode {mode!r} is judged by top-1 agreement, but model "
                         f"{model.name!r} has no class-score output (last dim > 1).")
    passed = figures[figure] <= bound if figure == "max_abs_diff" else figures[figure] >= bound
    return {"mode": mode, "samples": samples, **figures,
            "criterion": f"{figure} {'<=' if figure == 'max_abs_diff' else '>='} {bound}",
            "passed": bool(passed)}


def _cpu_invoker(model, threads, seed):
    """``model``: a ``.tflite`` path or its bytes; XNNPACK on the CPU."""
    interpreter = litert.cpu_interpreter(model, threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"],
                               litert.random_input(rng, detail["shape"], detail["dtype"]))
    return interpreter.invoke


def _quantize(array, detail):
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return array.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(array / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(array, detail):
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(array.dtype, np.integer) or scale == 0:
        return array.astype(np.float32)
    return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _timed(invoke):
    start = time.perf_counter()
    invoke()
    return (time.perf_counter() - start) * 1e3


def _existing(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"TFLite model {path!r} does not exist; export one with "
                         "tflite_tools.export.export or give the path of a .tflite file.")
    return path


def dense_vs_compact(dense_model, compact_model, folder, data, runs=30):
    """Sizes, host latency, GPU-delegate compatibility and equivalence of the dense
    model (fp32) and the compact one (fp32, fp16), exported under ``folder``."""
    sample = data.take(2)
    figures = {}
    for key, model, mode in (("baseline_fp32", dense_model, "float32"),
                             ("compact_fp32", compact_model, "float32"),
                             ("compact_fp16", compact_model, "float16")):
        path = os.path.join(folder, f"{key}.tflite")
        info = export_lib.export(model, path, mode)
        timing = benchmark(path, threads=1, warmup=3, runs=runs)
        compatibility = gpu.gpu_compatibility(path)
        figures[key] = {"path": path, "size_bytes": info["size_bytes"],
                        "latency_ms": timing["latency_ms"]["mean"],
                        "gpu_compatible": compatibility.compatible,
                        "gpu_incompatible_ops": compatibility.incompatible_ops,
                        "equivalence": check_equivalence(model, path, sample)}
    base, small = figures["baseline_fp32"], figures["compact_fp32"]
    figures["size_ratio"] = base["size_bytes"] / small["size_bytes"]
    figures["host_speedup"] = base["latency_ms"] / small["latency_ms"]
    return figures
