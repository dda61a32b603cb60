"""tflite_tools.benchmark: host latency through LiteRT, and equivalence checks that can fail."""
import json

import numpy as np
import pytest

from tfautocompress._keras import keras
from tfautocompress.tflite_tools import benchmark, export, gpu


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


def test_interleaved_latency_takes_paths_and_bytes(float32_file):
    content = open(float32_file, "rb").read()
    fast, same = benchmark.interleaved_latency_ms([float32_file, content], runs=5, rounds=2)
    assert fast > 0 and same > 0
    with pytest.raises(ValueError, match="rounds=0"):
        benchmark.interleaved_latency_ms([content], rounds=0)


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
