"""Benchmark a ``.tflite`` on an Android device with TFLite's ``benchmark_model`` over adb.

``run_android_benchmark`` pushes the model and the official ``benchmark_model``
binary (build it with ``bazel build -c opt --config=android_arm64
//tensorflow/lite/tools/benchmark:benchmark_model`` or download the nightly) to
``/data/local/tmp``, runs it (CPU with ``--num_threads=N``, or ``--use_gpu=true``)
and parses its log with ``parse_benchmark_output`` into the keys that
``benchmark.benchmark`` reports on the host. Every adb call has a timeout.
"""
import hashlib
import os
import re
import subprocess
import tempfile

DEVICE_DIR = "/data/local/tmp"
PLATFORM_TOOLS_URL = "https://developer.android.com/tools/releases/platform-tools"

_N = r"([\d.e+]+)"  # an integer or a float as benchmark_model prints it
_RUN_STATS = re.compile(rf"count=(\d+).*?min={_N} max={_N} avg={_N} std={_N}"
                        rf"(?: p5={_N})? median={_N}(?: p95={_N})?")
_TIMINGS = re.compile(rf"Inference timings in us: Init: {_N}, First inference: {_N}, "
                      rf"Warmup \(avg\): {_N}, Inference \(avg\): {_N}")
_MEMORY = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): "
                     rf"init={_N} overall={_N}")
_DELEGATION = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)")
_THREADS = re.compile(r"Num threads: \[(\d+)\]")
_USE_GPU = re.compile(r"Use gpu: \[(\d)\]")
_MODEL_MB = re.compile(rf"The input model file size \(MB\): {_N}")


class AndroidBenchmarkError(OSError):
    """adb, the device or ``benchmark_model`` failed; the message says what and how to fix."""


def parse_benchmark_output(text):
    """The figures of a ``benchmark_model`` log, in ms and MB (see the module docstring)."""
    timings, stats = _TIMINGS.search(text), _RUN_STATS.findall(text)
    if not timings or not stats:
        lines = text.strip().splitlines()
        errors = [line.strip() for line in lines if line.startswith("ERROR:")]
        raise AndroidBenchmarkError(
            "benchmark_model did not finish a timed run (no 'Inference timings' line): "
            + " | ".join(errors or lines[-3:] or ["<empty output>"]))
    count, lo, hi, avg, std, p5, median, p95 = stats[-1]  # the last block is the timed runs
    result = {
        "platform": "android",
        "runs": int(count),
        "init_ms": float(timings.group(1)) / 1e3,
        "first_inference_ms": float(timings.group(2)) / 1e3,
        "warmup_ms": float(timings.group(3)) / 1e3,
        "latency_ms": {"mean": float(avg) / 1e3, "std": float(std) / 1e3,
                       "min": float(lo) / 1e3, "max": float(hi) / 1e3,
                       "median": float(median) / 1e3},
    }
    result["latency_ms"].update({k: float(v) / 1e3 for k, v in (("p5", p5), ("p95", p95)) if v})
    if memory := _MEMORY.search(text):
        result["memory_mb"] = {"init": float(memory.group(1)), "overall": float(memory.group(2))}
    if threads := _THREADS.search(text):
        result["threads"] = int(threads.group(1))
    use_gpu = _USE_GPU.search(text)
    result["accelerator"] = "gpu" if use_gpu and use_gpu.group(1) == "1" else "cpu"
    if size := _MODEL_MB.search(text):
        result["model_size_mb"] = float(size.group(1))
    delegations = _DELEGATION.findall(text)
    if delegations:
        replaced, total, name = delegations[-1]
        result["delegate"] = {"name": name, "nodes_delegated": int(replaced),
                              "nodes_total": int(total),
                              "fully_delegated": replaced == total}
    return result


def run_android_benchmark(tflite_path, benchmark_binary, threads=1, use_gpu=False,
                          device=None, timeout_s=600, extra_args=()):
    """Push and run ``benchmark_binary`` on ``tflite_path`` on the device; the parsed dict."""
    for what, path in (("TFLite model", tflite_path), ("benchmark_model binary",
                                                       benchmark_binary)):
        if not os.path.isfile(path):
            raise ValueError(f"{what} {os.fspath(path)!r} does not exist.")
    if int(threads) < 1:
        raise ValueError(f"threads={threads} must be at least 1.")
    serial = _device(device, timeout_s)
    remote_model = f"{DEVICE_DIR}/{os.path.basename(tflite_path)}"
    remote_binary = f"{DEVICE_DIR}/benchmark_model"
    _adb(["-s", serial, "push", os.fspath(tflite_path), remote_model], timeout_s)
    _adb(["-s", serial, "push", os.fspath(benchmark_binary), remote_binary], timeout_s)
    _adb(["-s", serial, "shell", "chmod", "+x", remote_binary], timeout_s)
    command = [remote_binary, f"--graph={remote_model}", f"--num_threads={int(threads)}",
               f"--use_gpu={'true' if use_gpu else 'false'}", *extra_args]
    output = _adb(["-s", serial, "shell", *command], timeout_s, check=False)
    result = parse_benchmark_output(output)
    result.update(device=serial, model=os.fspath(tflite_path))
    return result


class AndroidTimer:
    """Times ``.tflite`` models on an Android device: ``benchmark_model`` over adb
    (``run_android_benchmark``), the median of ``runs`` runs each, on the CPU
    (XNNPACK, ``threads``) or with ``use_gpu`` the GPU delegate. What
    ``tflite_tools.latency.measure_latency_model`` times a phone's latency model with
    (the host's twin is ``latency.HostTimer``)."""

    def __init__(self, benchmark_binary, threads=1, use_gpu=False, device=None, runs=50,
                 timeout_s=600):
        self.binary, self.threads = os.fspath(benchmark_binary), int(threads)
        self.use_gpu, self.runs, self.timeout_s = use_gpu, int(runs), timeout_s
        self._device, self._serial = device, None

    @property
    def serial(self):
        if self._serial is None:
            self._serial = _device(self._device, self.timeout_s)
        return self._serial

    @property
    def device(self):
        where = "GPU delegate" if self.use_gpu else f"CPU (XNNPACK), {self.threads} thread(s)"
        return f"Android {self.serial}, benchmark_model, {where}"

    def key(self):
        """What a timing is cached under beside the model: this device and setting."""
        return ["adb", self.serial, "gpu" if self.use_gpu else "cpu", self.threads]

    def __call__(self, contents):
        """Median ms of each model of ``contents`` (``.tflite`` bytes) on the device."""
        medians = []
        with tempfile.TemporaryDirectory() as folder:
            for content in contents:
                name = f"tfac_{hashlib.sha256(content).hexdigest()[:16]}.tflite"
                path = os.path.join(folder, name)
                with open(path, "wb") as f:
                    f.write(content)
                result = run_android_benchmark(path, self.binary, self.threads, self.use_gpu,
                                               self.serial, self.timeout_s,
                                               (f"--num_runs={self.runs}",))
                medians.append(result["latency_ms"]["median"])
        return medians


def _device(device, timeout_s):
    """The serial to use: ``device`` if attached, else the only attached device."""
    listing = _adb(["devices"], timeout_s)
    rows = [line.split()[:2] for line in listing.splitlines()[1:] if len(line.split()) >= 2]
    attached = [serial for serial, state in rows if state == "device"]
    not_ready = "".join(f"; {serial} is {state}" for serial, state in rows if state != "device")
    hint = (" (unauthorized: unlock the phone and accept its USB-debugging prompt)"
            if "unauthorized" in not_ready else "")
    if device is not None and device not in attached:
        raise AndroidBenchmarkError(
            f"device {device!r} is not attached and authorized (adb devices lists "
            f"{attached or 'none'} ready{not_ready}){hint}; check the serial with "
            "`adb devices`.")
    if device is None and len(attached) != 1:
        raise AndroidBenchmarkError(
            f"{'no Android device' if not attached else 'several devices'} ready "
            f"(adb devices lists {attached or 'none'}{not_ready}){hint}. Connect a "
            "phone with USB debugging enabled and accept its prompt, or start an "
            "emulator; with several devices, pass the serial (--device).")
    return device or attached[0]


def _adb(args, timeout_s, check=True):
    """Run ``adb args`` and return its stdout + stderr text."""
    try:
        done = subprocess.run(["adb", *args], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except FileNotFoundError as err:
        raise AndroidBenchmarkError(
            "adb was not found on PATH (PATH="
            f"{os.environ.get('PATH', '')!r}). Install Android SDK platform-tools "
            f"({PLATFORM_TOOLS_URL}) and add the folder holding adb to PATH.") from err
    except subprocess.TimeoutExpired as err:
        raise AndroidBenchmarkError(
            f"`adb {' '.join(args)}` did not finish within {timeout_s} s; check the "
            "device connection or raise the timeout.") from err
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise AndroidBenchmarkError(
            f"`adb {' '.join(args)}` failed (exit {done.returncode}): {output.strip()[:500]}")
    return output
