"""The one place that runs LiteRT: the CPU interpreter, and the GPU accelerator in a
process of its own.

**CPU.** ``cpu_interpreter`` is LiteRT's ``Interpreter`` with the built-in op
resolver that applies the XNNPACK delegate (``OpResolverType.BUILTIN``), chosen
explicitly: a CPU figure is always XNNPACK's, whatever accelerators the machine has.

**GPU.** LiteRT's GPU accelerator (WebGPU on Dawn, over Vulkan) is never created in
the caller's process: in a process that has loaded TensorFlow, a failed attempt
(e.g. Mesa's Vulkan drivers, where Dawn finds "No adapters found") corrupts the heap
and the process dies at exit with ``free(): invalid pointer`` (SIGABRT, exit status
134; ai-edge-litert 2.3, TF 2.21), after a run that had succeeded. ``run_gpu`` runs
this file as a script in a child process that imports only NumPy and LiteRT, reads
its one JSON answer from stdout, and turns every failure (an error, a crash, a
timeout) into ``GpuUnavailableError`` with LiteRT's own reason.
"""
import base64
import json
import os
import re
import resource
import subprocess
import sys
import time

if __name__ == "__main__":  # the child (run_gpu): this folder's modules are no top-level names
    del sys.path[0]

import numpy as np  # noqa: E402

_ANSWER = "tfautocompress-litert-gpu:"  # the child's answer line starts with it
# A LiteRT/Dawn error line: "ERROR: [file.cc:12] why" or "E0000 ... file.cc:12] why".
_ERROR_LINE = re.compile(r"^(?:ERROR: \[[^\]]*\]|E\d{4} [^\]]*\])\s*(\S.*)$")


# A 728-byte .tflite, y = x + 1 on a (1, 2) float32 input (TF 2.21's converter).
_TINY_MODEL = base64.b64decode(
    "HAAAAFRGTDMUACAAHAAYABQAEAAMAAAACAAEABQAAAAcAAAAHAAAAHQAAAA8AQAATAEAAJQCAAADAAAAAAAA"
    "AAIAAAA0AAAABAAAANz///8FAAAABAAAABMAAABDT05WRVJTSU9OX01FVEFEQVRBAAgADAAIAAQACAAAAAQA"
    "AAAEAAAAEwAAAG1pbl9ydW50aW1lX3ZlcnNpb24ABgAAAMQAAAC8AAAAqAAAAJgAAAB0AAAABAAAAG7///8E"
    "AAAAYAAAABAAAAAAAAAACAAOAAgABAAIAAAAEAAAACQAAAAAAAYACAAEAAYAAAAEAAAAAAAAAAwAGAAUABAA"
    "DAAEAAwAAACiizxWq3mHQwMAAAACAAAABAAAAAYAAAAyLjIxLjAAANr///8EAAAAEAAAADEuNS4wAAAAAAAA"
    "AAAAAAAEAAYABAAAAAAABgAIAAQABgAAAAQAAAAEAAAAAACAP5D+//+U/v//DwAAAE1MSVIgQ29udmVydGVk"
    "LgABAAAAFAAAAAAADgAYABQAEAAMAAgABAAOAAAAFAAAABwAAABcAAAAYAAAAGQAAAAEAAAAbWFpbgAAAAAB"
    "AAAAFAAAAAAADgAUAAAAEAAMAAsABAAOAAAAEAAAAAAAAAsMAAAAEAAAABT///8BAAAAAgAAAAIAAAAAAAAA"
    "AQAAAAEAAAACAAAAAQAAAAAAAAADAAAAiAAAAEAAAAAEAAAAmv///wAAAAEQAAAAEAAAAAMAAAAYAAAAZP//"
    "/wgAAABJZGVudGl0eQAAAAACAAAAAQAAAAIAAADS////AAAAARAAAAAQAAAAAgAAABQAAACc////BQAAAGFk"
    "ZC95AAAAAAAAAAAAFgAYABQAAAAQAAwACAAAAAAAAAAHABYAAAAAAAABEAAAABAAAAABAAAAEAAAAOD///8B"
    "AAAAeAAAAAIAAAABAAAAAgAAAAEAAAAIAAAABAAEAAQAAAA=")


class GpuUnavailableError(RuntimeError):
    """LiteRT's GPU accelerator cannot run the model on this machine."""


def cpu_interpreter(model, threads=None):
    """A LiteRT ``Interpreter`` on the CPU with XNNPACK; ``model``: a path or bytes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = "model_content" if isinstance(model, (bytes, bytearray)) else "model_path"
    model = bytes(model) if kind == "model_content" else os.fspath(model)
    return Interpreter(**{kind: model}, num_threads=threads,
                       experimental_op_resolver_type=OpResolverType.BUILTIN)


def say_start_up_notice():
    """Start LiteRT's CPU runtime once, on a tiny model: it prints "Created TensorFlow
    Lite XNNPACK delegate for CPU" once per process, when its first interpreter starts
    (no log level turns it off); the console scripts call this while their stderr is
    set aside (``tfautocompress.app.cli``), so the line does not cut into their output."""
    interpreter = cpu_interpreter(_TINY_MODEL)
    interpreter.allocate_tensors()
    interpreter.invoke()


def run_gpu(tflite_path, warmup=1, runs=1, seed=0, timeout_s=300):
    """Run ``tflite_path`` on LiteRT's GPU accelerator (CPU fallback for the ops it
    does not take) in a child process: ``warmup`` then ``runs`` timed inferences on
    seeded random inputs. Returns ``{"fully_accelerated", "init_ms", "warmup_ms":
    [...], "latencies_ms": [...], "memory_mb": {"init", "overall", "peak_rss"}}``;
    raises ``GpuUnavailableError`` saying why where it cannot."""
    request = {"model": os.path.abspath(os.fspath(tflite_path)), "warmup": int(warmup),
               "runs": int(runs), "seed": int(seed)}
    try:
        child = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(request)],
                               capture_output=True, text=True, timeout=timeout_s,
                               stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise GpuUnavailableError(f"LiteRT's GPU accelerator gave no answer in {timeout_s} s"
                                  ) from err
    answers = [line[len(_ANSWER):] for line in child.stdout.splitlines()
               if line.startswith(_ANSWER)]
    if not answers:
        how = (f"signal {-child.returncode}" if child.returncode < 0
               else f"exit status {child.returncode}")
        raise GpuUnavailableError(f"LiteRT's GPU accelerator ended its process ({how})"
                                  + _why(child.stderr))
    answer = json.loads(answers[-1])
    if "error" in answer:
        raise GpuUnavailableError("LiteRT could not create a GPU-accelerated model (it "
                                  "needs a GPU whose Vulkan or OpenCL driver it can use)"
                                  + _why(child.stderr, answer["error"]))
    return answer


def _why(stderr, fallback=""):
    """LiteRT's first error line with a reason (e.g. Dawn's "No adapters found")."""
    for line in stderr.splitlines():
        match = _ERROR_LINE.match(line.strip())
        if match and not match.group(1).startswith(("ERROR", "└")):
            return ": " + match.group(1)[:300]
    fallback = " ".join(fallback.split())
    return f": {fallback[:300]}" if fallback else ""


def random_input(rng, shape, dtype):
    """Seeded random model input: uniform [0, 1) floats, or the integer type's full range."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
    return rng.uniform(0, 1, shape).astype(dtype)


def rss_mb():
    """Current resident set size in MB (Linux ``/proc``; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 2**10


def _child_run(model, warmup, runs, seed):
    """The child's work (``run_gpu``): only NumPy and LiteRT are loaded here."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator

    rss_before = rss_mb()
    start = time.perf_counter()
    compiled = CompiledModel.from_file(
        model, hardware_accel=HardwareAccelerator.GPU | HardwareAccelerator.CPU)
    rng = np.random.default_rng(seed)
    key = next(iter(compiled.get_signature_list()))
    inputs = compiled.create_input_buffers(0)
    for buffer, detail in zip(inputs, compiled.get_input_tensor_details(key).values()):
        buffer.write(random_input(rng, detail["shape"], detail["dtype"]))
    outputs = compiled.create_output_buffers(0)
    init_ms = (time.perf_counter() - start) * 1e3
    rss_init = rss_mb()

    def timed():
        begin = time.perf_counter()
        compiled.run_by_index(0, inputs, outputs)
        return (time.perf_counter() - begin) * 1e3

    warmup_ms = [timed() for _ in range(warmup)]
    latencies_ms = [timed() for _ in range(runs)]
    return {"fully_accelerated": bool(compiled.is_fully_accelerated()), "init_ms": init_ms,
            "warmup_ms": warmup_ms, "latencies_ms": latencies_ms,
            "memory_mb": {"init": rss_init - rss_before, "overall": rss_mb() - rss_before,
                          "peak_rss": peak_rss_mb()}}


def _child_main(argv):
    try:
        answer = _child_run(**json.loads(argv[1]))
    except Exception as err:  # noqa: BLE001 -- every failure is the parent's answer
        answer = {"error": f"{type(err).__name__}: {err}"}
    sys.stdout.write(_ANSWER + json.dumps(answer) + "\n")
    sys.stdout.flush()
    # No interpreter teardown: the accelerator's native destructors are not ours to
    # trust (module doc); the answer is out.
    os._exit(0)


if __name__ == "__main__":
    _child_main(sys.argv)
