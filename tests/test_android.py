"""tflite_tools.android: the benchmark_model parser on real logs, and the no-adb errors."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from tfautocompress.tflite_tools import android

DATA = pathlib.Path(__file__).parent / "data" / "benchmark_model"


def _parse(name):
    return android.parse_benchmark_output((DATA / name).read_text())


# The figures of the two logs, read off them by hand (us -> ms).
CPU_FIGURES = {
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
GPU_FIGURES = {
    "platform": "android", "runs": 50, "accelerator": "gpu", "threads": 2,
    "init_ms": 5664.363, "first_inference_ms": 328.14, "warmup_ms": 319.036,
    "latency_ms": {"mean": 309.35, "std": 4.411, "min": 305.938, "max": 333.03,
                   "median": 307.968, "p5": 306.372, "p95": 315.711},
    "memory_mb": {"init": 375.48, "overall": 375.48},
    "model_size_mb": 16.1527,
    "delegate": {"name": "TfLiteGpuDelegateV2", "nodes_delegated": 49,
                 "nodes_total": 49, "fully_delegated": True},
}


def test_cpu_xnnpack_log():
    assert _parse("android_cpu_xnnpack.txt") == CPU_FIGURES


def test_gpu_log():
    assert _approx_equal(_parse("android_gpu.txt"), GPU_FIGURES)


def _approx_equal(got, want):
    """Equal nested dicts, floats up to float rounding (us / 1e3)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            _approx_equal(got[k], want[k]) for k in want)
    if isinstance(want, float):
        return got == pytest.approx(want, rel=1e-12)
    return type(got) is type(want) and got == want


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
  *push*) if [ -n "$FAKE_ADB_PUSH_FAILS" ]; then
            echo "adb: error: failed to copy: remote No space left on device" >&2; exit 1
          fi ;;
  *shell*benchmark_model*--use_gpu=true*) cat "$FAKE_ADB_GPU_OUTPUT" ;;
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
    monkeypatch.setenv("FAKE_ADB_GPU_OUTPUT", str(DATA / "android_gpu.txt"))
    model, binary = tmp_path / "m.tflite", tmp_path / "benchmark_model"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3")
    binary.write_bytes(b"x")

    def run(devices, **kwargs):
        monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
        return android.run_android_benchmark(model, binary, **kwargs)

    run.calls = lambda: (tmp_path / "adb.log").read_text().splitlines()
    run.model, run.binary = model, binary
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


def test_use_gpu_runs_the_gpu_delegate(fake_adb):
    result = fake_adb("R58M123\tdevice\n", threads=2, use_gpu=True)
    assert _approx_equal(result, dict(GPU_FIGURES, device="R58M123",
                                      model=str(fake_adb.model)))
    assert fake_adb.calls()[-1] == ("-s R58M123 shell /data/local/tmp/benchmark_model "
                                    "--graph=/data/local/tmp/m.tflite --num_threads=2 "
                                    "--use_gpu=true")


def test_a_failing_adb_call_is_named_with_its_exit_status(fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_PUSH_FAILS", "1")
    with pytest.raises(android.AndroidBenchmarkError) as caught:
        fake_adb("R58M123\tdevice\n")
    assert str(caught.value) == (  # one line: the console scripts print it as it is
        f"`adb -s R58M123 push {fake_adb.model} /data/local/tmp/m.tflite` failed (exit 1): "
        "adb: error: failed to copy: remote No space left on device")
    assert not any("shell" in call for call in fake_adb.calls())  # nothing ran after it


def test_cli_runs_cpu_and_gpu_and_writes_the_output(fake_adb, tmp_path):
    code = "from tfautocompress.app.export_cli import android_main; android_main()"
    out = tmp_path / "results" / "android.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", FAKE_ADB_DEVICES="R58M123\tdevice\n")
    run = subprocess.run([sys.executable, "-c", code, "--tflite", str(fake_adb.model),
                          "--benchmark_binary", str(fake_adb.binary), "--threads", "2",
                          "--use_gpu", "--output", str(out)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out) as f:
        written = json.load(f)
    model = str(fake_adb.model)
    assert written.keys() == {"cpu", "gpu"}
    assert _approx_equal(written["cpu"], dict(CPU_FIGURES, device="R58M123", model=model))
    assert _approx_equal(written["gpu"], dict(GPU_FIGURES, device="R58M123", model=model))
    assert json.loads(run.stdout) == written
    shells = [c for c in fake_adb.calls() if " shell /data/local/tmp/benchmark_model" in c]
    assert [c.split("--graph=/data/local/tmp/m.tflite ")[1] for c in shells] == [
        "--num_threads=2 --use_gpu=false", "--num_threads=2 --use_gpu=true"]


def test_a_phone_s_latency_model_is_timed_over_adb_and_cached_per_device(fake_adb, tmp_path,
                                                                         monkeypatch):
    """--latency_device=adb: each single-layer model, the filter-cost probe and the whole
    model run through benchmark_model on the phone; the fake serves one real log, so
    every timing is its median and the fitted model is flat at it."""
    from tfautocompress._keras import keras
    from tfautocompress.tflite_tools import latency

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv_a")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="conv_b")(x))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R58M123\tdevice\n")
    timer = android.AndroidTimer(fake_adb.binary, threads=4, runs=20)
    cache = tmp_path / "latency.json"
    measured = latency.measure_latency_model(model, ["conv_a"], timer, cache)
    median = CPU_FIGURES["latency_ms"]["median"]
    assert measured.device == "Android R58M123, benchmark_model, CPU (XNNPACK), 4 thread(s)"
    assert measured.filter_costs == (128.0,) * 128  # every probe count ran as long as 128
    assert measured.layer_ms("conv_a", 2, 1) == pytest.approx(median)
    assert measured.layer_ms("conv_a", 8, 3) == pytest.approx(median)
    assert measured.fixed_ms == pytest.approx(0.0, abs=1e-6)  # the whole model: that layer
    assert measured.volume_ms == pytest.approx(0.0, abs=1e-12)
    runs = [c for c in fake_adb.calls() if " shell /data/local/tmp/benchmark_model " in c]
    graphs = {c.split("--graph=")[1].split()[0] for c in runs}
    # conv_a's grid (8 filters: 1, 4, 8; 3 channels: 1, 2, 3), the probe's 1..32 and
    # 40, 48, .., 128 filters, and the model with its layer alone at all, half and a
    # quarter of the filters (three times)
    assert len(graphs) == 9 + 44 + 2 * 3 and len(runs) == 9 + 44 + 3 * 2 * 3
    assert all(c.endswith("--num_threads=4 --use_gpu=false --num_runs=20") for c in runs)

    latency.LatencyCache._memory.clear()  # noqa: SLF001 - a new process: the file remembers
    again = latency.measure_latency_model(model, ["conv_a"], timer, cache)
    assert again == measured
    assert len([c for c in fake_adb.calls() if "benchmark_model --graph" in c]) == len(runs)
    gpu = android.AndroidTimer(fake_adb.binary, use_gpu=True)  # another setting, timed anew
    assert gpu.key() == ["adb", "R58M123", "gpu", 1] != timer.key()
    assert gpu.device == "Android R58M123, benchmark_model, GPU delegate"
    assert gpu([b"TFL3"]) == [GPU_FIGURES["latency_ms"]["median"]]
