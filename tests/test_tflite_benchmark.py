"""tflite_tools.benchmark: host latency through LiteRT, and equivalence checks that can fail."""
import json
import os

import numpy as np
import pytest

from tfautocompress._keras import keras
from tfautocompress.tflite_tools import benchmark, export, gpu
from conftest import litert_outputs


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3), name="input")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


@pytest.fixture(scope="module")
def float32_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "m.tflite"
    return export.export(_model(), path)["path"]


def test_benchmark_reports_json_clean_figures(float32_file):
    result = benchmark.benchmark(float32_file, threads=2, warmup=2, runs=7)
    assert json.loads(json.dumps(result)) == result
    assert {"platform", "model", "model_size_bytes", "accelerator", "threads", "warmup",
            "runs", "init_ms", "first_inference_ms", "warmup_ms", "latency_ms",
            "memory_mb"} <= set(result)
    assert (result["platform"], result["accelerator"], result["threads"],
            result["runs"]) == ("host", "cpu", 2, 7)
    latency = result["latency_ms"]
    assert set(latency) == {"mean", "std", "min", "max", "median", "p90"}
    assert 0 < latency["min"] <= latency["median"] <= latency["p90"] <= latency["max"]
    assert set(result["memory_mb"]) == {"init", "overall", "peak_rss"}
    assert result["memory_mb"]["peak_rss"] > 0


def _big_model():
    """~300x the MACs of ``_model``: 16x16x32 outputs of 3x3x32 kernels."""
    inputs = keras.Input((16, 16, 3), name="input")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="head")(x))


def test_interleaved_latency_takes_paths_and_bytes(float32_file):
    """One median per model, in the order given: the model with ~300x the MACs is the
    slower one wherever it stands."""
    small = open(float32_file, "rb").read()
    import tensorflow as tf

    big = tf.lite.TFLiteConverter.from_keras_model(_big_model()).convert()
    first, second, third = benchmark.interleaved_latency_ms([float32_file, big, small],
                                                            runs=5, rounds=2)
    assert 0 < first < second / 3 and 0 < third < second / 3
    slow, fast = benchmark.interleaved_latency_ms([big, small], runs=5, rounds=2)
    assert 0 < fast < slow / 3
    with pytest.raises(ValueError, match="rounds=0"):
        benchmark.interleaved_latency_ms([small], rounds=0)


def test_dense_vs_compact_measures_the_files_it_writes(tmp_path):
    import tensorflow as tf

    from tfautocompress import schemes
    from tfautocompress.compact import compact
    from tfautocompress.masks import magnitude_masks, uniform_schemes

    dense = _big_model()
    small = compact(dense, magnitude_masks(dense, uniform_schemes(dense, schemes.Filter(0.75))))
    assert [small.get_layer(n).filters for n in ("c1", "c2")] == [8, 8]
    x = np.random.default_rng(0).uniform(size=(12, 16, 16, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(12, np.int32))).batch(4)
    figures = benchmark.dense_vs_compact(dense, small, str(tmp_path), data, runs=3)

    checked = {"baseline_fp32": (dense, "float32", 1e-4), "compact_fp32": (small, "float32", 1e-4),
               "compact_fp16": (small, "float16", 1e-2)}
    for key, (model, mode, bound) in checked.items():
        entry = figures[key]
        assert entry["path"] == str(tmp_path / f"{key}.tflite")
        assert entry["size_bytes"] == os.path.getsize(entry["path"])
        with open(entry["path"] + ".json") as f:
            assert json.load(f)["mode"] == mode
        assert entry["gpu_compatible"] is True and entry["gpu_incompatible_ops"] == []
        assert entry["latency_ms"] > 0
        # Equivalence on the first two batches, against LiteRT's own output in NumPy.
        diff = float(np.abs(litert_outputs(entry["path"], x[:8]) - model(x[:8]).numpy()).max())
        equivalence = entry["equivalence"]
        assert equivalence["samples"] == 8 and equivalence["mode"] == mode
        assert equivalence["max_abs_diff"] == pytest.approx(diff, rel=1e-3, abs=1e-7)
        assert diff <= bound and equivalence["passed"]
    base, fp32, fp16 = (figures[k]["size_bytes"] for k in checked)
    assert figures["size_ratio"] == pytest.approx(base / fp32)
    assert base > 5 * fp32 and fp16 < fp32  # ~1/13 of the weights; half-size floats
    assert figures["host_speedup"] == pytest.approx(
        figures["baseline_fp32"]["latency_ms"] / figures["compact_fp32"]["latency_ms"])


def test_latency_summary_matches_numpy():
    summary = benchmark.latency_summary([4.0, 1.0, 3.0, 2.0, 10.0])
    assert summary == {"mean": 4.0, "std": pytest.approx(np.std([4, 1, 3, 2, 10])),
                       "min": 1.0, "max": 10.0, "median": 3.0,
                       "p90": pytest.approx(np.percentile([1, 2, 3, 4, 10], 90))}


def test_bad_arguments_are_named(float32_file, tmp_path):
    with pytest.raises(ValueError, match="accelerator='tpu'.*cpu, gpu"):
        benchmark.benchmark(float32_file, accelerator="tpu")
    with pytest.raises(ValueError, match="runs=0"):
        benchmark.benchmark(float32_file, runs=0)
    with pytest.raises(ValueError, match="does not exist"):
        benchmark.benchmark(tmp_path / "missing.tflite")


def test_gpu_benchmark_runs_or_says_why(float32_file):
    if gpu.gpu_accelerated_run(float32_file)["available"]:
        result = benchmark.benchmark(float32_file, warmup=1, runs=3, accelerator="gpu")
        assert result["accelerator"] == "gpu" and result["latency_ms"]["median"] > 0
    else:
        with pytest.raises(gpu.GpuUnavailableError, match="accelerator='cpu'"):
            benchmark.benchmark(float32_file, accelerator="gpu")


def test_equivalence_fails_for_different_weights(float32_file):
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype(np.float32)
    same = benchmark.check_equivalence(_model(seed=0), float32_file, x)
    assert same["passed"] and same["samples"] == 16 and same["max_abs_diff"] <= 1e-4
    other = benchmark.check_equivalence(_model(seed=1), float32_file, x)
    assert not other["passed"] and other["max_abs_diff"] > 1e-4
    assert other["criterion"] == "max_abs_diff <= 0.0001"


def test_equivalence_needs_the_sidecar(float32_file, tmp_path):
    copy = tmp_path / "copy.tflite"
    copy.write_bytes(open(float32_file, "rb").read())
    with pytest.raises(ValueError, match="copy.tflite.json.*re-export"):
        benchmark.check_equivalence(_model(), copy, np.zeros((1, 8, 8, 3), np.float32))


def test_top1_accuracy_is_the_keras_model_s_on_float32_and_close_on_int8(float32_file, tmp_path):
    import tensorflow as tf

    model = _model()
    x = np.random.default_rng(0).standard_normal((50, 8, 8, 3)).astype(np.float32)
    predicted = model.predict(x, verbose=0).argmax(-1)
    labels = np.where(np.arange(50) % 3 == 0, (predicted + 1) % 4, predicted)  # 17 wrong
    data = tf.data.Dataset.from_tensor_slices((x, labels)).batch(16)  # a last batch of 2
    assert benchmark.top1_accuracy(float32_file, data) == pytest.approx(33 / 50)
    one_hot = [(x[:25], np.eye(4)[labels[:25]]), (x[25:], np.eye(4)[labels[25:]])]
    assert benchmark.top1_accuracy(float32_file, one_hot) == pytest.approx(33 / 50)
    int8 = export.export(model, tmp_path / "m.int8.tflite", "int8", representative_data=x)
    assert abs(benchmark.top1_accuracy(int8["path"], data) - 33 / 50) <= 0.06
    with pytest.raises(ValueError, match="no labelled batches"):
        benchmark.top1_accuracy(float32_file, [])
