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
    model.write_bytes(b"\x1c\x00\x00\x00TFL3")
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
    model.write_bytes(b"\x1c\x00\x00\x00TFL3")
    binary.write_bytes(b"x")
    code = "from tfautocompress.app.export_cli import android_main; android_main()"
    env = dict(os.environ, PATH="", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", code, "--tflite", str(model),
                          "--benchmark_binary", str(binary), "--output",
                          str(tmp_path / "out.json")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1
    assert "adb was not found on PATH" in run.stderr
    assert not (tmp_path / "out.json").exists()


# A fake adb on PATH: `devices` prints $FAKE_ADB_DEVICES, `shell <benchmark_model> ...`
# prints a real benchmark_model log (or sleeps when $FAKE_ADB_SLEEP is set); every call
# is appended to $FAKE_ADB_LOG.
FAKE_ADB = """#!/bin/sh
echo "$@" >> "$FAKE_ADB_LOG"
case "$*" in
  devices) printf 'List of devices attached\\n%b' "$FAKE_ADB_DEVICES" ;;
  *shell*benchmark_model*--graph*) [ -n "$FAKE_ADB_SLEEP" ] && sleep "$FAKE_ADB_SLEEP"
                                   cat "$FAKE_ADB_OUTPUT" ;;
esac
"""


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "adb").write_text(FAKE_ADB)
    (bin_dir / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "adb.log"))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "android_cpu_xnnpack.txt"))
    model, binary = tmp_path / "m.tflite", tmp_path / "benchmark_model"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3")
    binary.write_bytes(b"x")

    def run(devices, **kwargs):
        monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
        return android.run_android_benchmark(model, binary, **kwargs)

    run.calls = lambda: (tmp_path / "adb.log").read_text().splitlines()
    return run


def test_one_device_pushes_runs_and_parses(fake_adb):
    result = fake_adb("R58M123\tdevice\n", threads=4)
    assert result == dict(_parse("android_cpu_xnnpack.txt"), device="R58M123",
                          model=result["model"])
    calls = fake_adb.calls()
    assert calls[0] == "devices"
    assert calls[1].startswith("-s R58M123 push ") and calls[1].endswith("/data/local/tmp/m.tflite")
    assert calls[-1] == ("-s R58M123 shell /data/local/tmp/benchmark_model "
                         "--graph=/data/local/tmp/m.tflite --num_threads=4 --use_gpu=false")


def test_no_device_is_a_clear_error(fake_adb):
    with pytest.raises(android.AndroidBenchmarkError, match="no Android device ready"):
        fake_adb("")


def test_several_devices_need_a_serial(fake_adb):
    devices = "R58M123\tdevice\nemulator-5554\tdevice\n"
    with pytest.raises(android.AndroidBenchmarkError, match="several devices ready.*--device"):
        fake_adb(devices)
    assert fake_adb(devices, device="emulator-5554")["device"] == "emulator-5554"
    with pytest.raises(android.AndroidBenchmarkError, match="'R99' is not attached"):
        fake_adb(devices, device="R99")


def test_unauthorized_device_says_accept_the_prompt(fake_adb):
    with pytest.raises(android.AndroidBenchmarkError,
                       match="R58M123 is unauthorized.*accept its USB-debugging prompt"):
        fake_adb("R58M123\tunauthorized\n")


def test_a_hanging_run_times_out(fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_SLEEP", "10")
    with pytest.raises(android.AndroidBenchmarkError, match="did not finish within 1 s"):
        fake_adb("R58M123\tdevice\n", timeout_s=1)
