"""tflite_tools.android: the benchmark_model parser on real logs, and the no-adb errors."""
import os
import pathlib
import subprocess
import sys

import pytest

from tfautocompress.tflite_tools import android

DATA = pathlib.Path(__file__).parent / "data" / "benchmark_model"


def _parse(name):
    return android.parse_benchmark_output((DATA / name).read_text())


def test_cpu_xnnpack_log():
    result = _parse("android_cpu_xnnpack.txt")
    assert result == {
        "platform": "android", "runs": 50, "accelerator": "cpu", "threads": 4,
        "init_ms": 102.32, "first_inference_ms": 670.083, "warmup_ms": 670.083,
        "latency_ms": {"mean": 699.438, "std": 325.425, "min": 502.355,
                       "max": 2270.688, "median": 576.856, "p5": 502.674,
                       "p95": 1373.207},
        "memory_mb": {"init": 98.0977, "overall": 99.2031},
        "model_size_mb": 16.1527,
        "delegate": {"name": "TfLiteXNNPackDelegate", "nodes_delegated": 49,
                     "nodes_total": 49, "fully_delegated": True},
    }


def test_gpu_log():
    result = _parse("android_gpu.txt")
    assert (result["accelerator"], result["threads"], result["runs"]) == ("gpu", 2, 50)
    assert result["init_ms"] == pytest.approx(5664.363)
    assert result["latency_ms"]["mean"] == pytest.approx(309.35)
    assert result["latency_ms"]["median"] == pytest.approx(307.968)
    assert result["memory_mb"] == {"init": 375.48, "overall": 375.48}
    assert result["delegate"]["name"] == "TfLiteGpuDelegateV2"
    assert result["delegate"]["fully_delegated"] is True


def test_failed_prepare_log_names_the_failure():
    with pytest.raises(android.AndroidBenchmarkError,
                       match=r"Node number 57 \(BATCH_MATMUL\) failed to prepare"):
        _parse("android_failed_prepare.txt")


def test_truncated_log_is_an_error():
    with pytest.raises(android.AndroidBenchmarkError, match="did not finish a timed run"):
        android.parse_benchmark_output("INFO: STARTING!\nINFO: Loaded model m.tflite\n")


def test_no_adb_on_path_is_a_clear_error(tmp_path, monkeypatch):
    model, binary = tmp_path / "m.tflite", tmp_path / "benchmark_model"
    model.write_bytes(b"x")
    binary.write_bytes(b"x")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(android.AndroidBenchmarkError,
                       match="adb was not found on PATH.*platform-tools"):
        android.run_android_benchmark(model, binary, timeout_s=10)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="benchmark_model binary .*nope"):
        android.run_android_benchmark(DATA / "README.md", tmp_path / "nope")


def test_cli_without_adb_exits_with_the_fix(tmp_path):
    model, binary = tmp_path / "m.tflite", tmp_path / "benchmark_model"
    model.write_bytes(b"x")
    binary.write_bytes(b"x")
    code = "from tfautocompress.tflite_tools.cli import android_main; android_main()"
    env = dict(os.environ, PATH="", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", code, "--tflite", str(model),
                          "--benchmark_binary", str(binary), "--output",
                          str(tmp_path / "out.json")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1
    assert "adb was not found on PATH" in run.stderr
    assert not (tmp_path / "out.json").exists()
