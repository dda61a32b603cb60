"""GPU-delegate compatibility of a ``.tflite`` model, and a LiteRT GPU run where one exists.

``gpu_compatibility`` reads the report of ``tf.lite.experimental.Analyzer``
(``analyze`` prints, from Python, the string its C++ analyzer returns; we capture
``sys.stdout``). Its per-op ``GPU COMPATIBILITY WARNING`` lines are used where
the build emits them, but the TF 2.21 wheels print "looks compatible" for every
model, even for Flex or TOPK_V2 ops (their analyzer is built without the GPU
checker), so each op is also checked against ``GPU_DELEGATE_OPS``: the op types
that TFLite's GPU delegate accepts (``tensorflow/lite/tools/versioning/
gpu_compatibility.cc``). That check is per op type, except for GATHER (the op of
lowered column-sparse convolutions, ``tfautocompress.lowering``), whose limit is
checked from the report's tensor table: the GPU delegate takes only constant
(read-only) 1-D indices. Other per-op parameter limits (e.g. STRIDED_SLICE rank)
come only from an analyzer that has the checker.
"""
import contextlib
import dataclasses
import io
import os
import re
import time

import numpy as np
import tensorflow as tf
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.hardware_accelerator import HardwareAccelerator

GPU_DELEGATE_OPS = frozenset("""
ABS ADD ADD_N ATAN2 AVERAGE_POOL_2D BATCH_MATMUL CAST CEIL CONCATENATION CONV_2D
COS CUMSUM DENSIFY DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV
DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD
FULLY_CONNECTED GATHER GELU GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS
LESS_EQUAL LOG LOGICAL_AND LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM
MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE
REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE
RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SELECT_V2 SIGN SIN SLICE
SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE
STABLEHLO_CLAMP STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV
Convolution2DTransposeBias MaxPoolingWithArgmax2D MaxUnpooling2D Resampler
""".split())

_OP_LINE = re.compile(r"^\s*Op#(\d+) (\S+?)\((.*?)\) ->")
_TENSOR_LINE = re.compile(r"^\s*T#(\d+)\(.*?\) shape:\[([^\]]*)\], type:\S+?( RO)?[ ,]")
_TENSOR_REF = re.compile(r"T#(-?\d+)")
_SUBGRAPH_LINE = re.compile(r"^Subgraph#(\d+)")
_WARNING = "GPU COMPATIBILITY WARNING:"


@dataclasses.dataclass(frozen=True)
class GpuCompatibility:
    """Whether every op can run on TFLite's GPU delegate, and which cannot."""

    compatible: bool
    incompatible_ops: list  # op names, each once, in graph order
    details: list  # one line per finding: "Subgraph#i Op#j NAME: why"
    raw: str  # the analyzer's full report

    def to_json(self):
        return dataclasses.asdict(self)


def gpu_compatibility(tflite_path_or_bytes):
    """Analyze a ``.tflite`` (path or bytes) for GPU-delegate compatibility."""
    content = _model_bytes(tflite_path_or_bytes)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    return parse_analyzer_report(buffer.getvalue())


def parse_analyzer_report(raw):
    """A :class:`GpuCompatibility` from the text the Analyzer printed."""
    if "Subgraph#" not in raw:
        raise ValueError(f"the TFLite Analyzer could not read the model: {raw.strip()[:300]}")
    ops, details = [], []
    subgraph, node = 0, None
    gathers, tensors = [], {}  # (subgraph, op, indices tensor); (subgraph, T#) -> (rank, const)
    for line in raw.splitlines():
        if match := _SUBGRAPH_LINE.match(line):
            subgraph, node = int(match.group(1)), None
        elif match := _OP_LINE.match(line):
            node = (int(match.group(1)), match.group(2))
            if node[1] not in GPU_DELEGATE_OPS:
                ops.append(node[1])
                details.append(f"Subgraph#{subgraph} Op#{node[0]} {node[1]}: not an op "
                               "type the TFLite GPU delegate supports")
            elif node[1] == "GATHER":
                refs = _TENSOR_REF.findall(re.sub(r"\[[^\]]*\]", "", match.group(3)))
                gathers.append((subgraph, node[0], int(refs[1]) if len(refs) > 1 else None))
        elif match := _TENSOR_LINE.match(line):
            rank = len([d for d in match.group(2).split(",") if d.strip()])
            tensors[(subgraph, int(match.group(1)))] = (rank, bool(match.group(3)))
        elif line.startswith(_WARNING) and node is not None:
            message = line[len(_WARNING):].strip()
            if not message.startswith("Subgraph#"):  # not the subgraph's summary line
                ops.append(node[1])
                details.append(f"Subgraph#{subgraph} Op#{node[0]} {node[1]}: {message}")
            node = None  # one warning line per node
    for sub, op, indices in gathers:
        if tensors.get((sub, indices)) != (1, True):
            ops.append("GATHER")
            details.append(f"Subgraph#{sub} Op#{op} GATHER: the GPU delegate takes only "
                           "constant 1-D indices")
    return GpuCompatibility(compatible=not ops, incompatible_ops=list(dict.fromkeys(ops)),
                            details=details, raw=raw)


class GpuUnavailableError(RuntimeError):
    """LiteRT's GPU accelerator cannot be created on this machine."""


def gpu_accelerated_run(tflite_path):
    """Run the model once with LiteRT's GPU accelerator (CPU fallback for the rest).

    Returns ``{"available": True, "fully_accelerated": bool, "latency_ms": float}``,
    or ``{"available": False, "reason": ...}`` where no GPU accelerator can be created.
    """
    try:
        model = compiled_gpu_model(tflite_path)
        inputs, outputs = compiled_model_buffers(model)
        start = time.perf_counter()
        model.run_by_index(0, inputs, outputs)
        latency_ms = (time.perf_counter() - start) * 1e3
    except RuntimeError as err:  # GpuUnavailableError, or a failed GPU run
        return {"available": False, "reason": " ".join(str(err).split())[:500]}
    return {"available": True, "fully_accelerated": model.is_fully_accelerated(),
            "latency_ms": latency_ms}


def compiled_gpu_model(tflite_path):
    """A LiteRT ``CompiledModel`` on GPU (CPU fallback); GpuUnavailableError if none."""
    _model_bytes(tflite_path)  # a missing file is the caller's error, not "unavailable"
    try:
        return CompiledModel.from_file(
            os.fspath(tflite_path),
            hardware_accel=HardwareAccelerator.GPU | HardwareAccelerator.CPU)
    except RuntimeError as err:
        raise GpuUnavailableError(
            "LiteRT could not create a GPU-accelerated model here (its GPU accelerator "
            "needs a GPU with a Vulkan/OpenCL driver visible to the process): "
            + " ".join(str(err).split())[:300]) from err


def compiled_model_buffers(model, seed=0):
    """Input buffers of signature 0 filled with seeded random data, and output buffers."""
    rng = np.random.default_rng(seed)
    key = next(iter(model.get_signature_list()))
    inputs = model.create_input_buffers(0)
    for buffer, detail in zip(inputs, model.get_input_tensor_details(key).values()):
        buffer.write(random_input(rng, detail["shape"], detail["dtype"]))
    return inputs, model.create_output_buffers(0)


def random_input(rng, shape, dtype):
    """Seeded random model input: uniform [0, 1) floats, or the integer type's full range."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
    return rng.uniform(0, 1, shape).astype(dtype)


def _model_bytes(tflite_path_or_bytes):
    if isinstance(tflite_path_or_bytes, (bytes, bytearray)):
        return bytes(tflite_path_or_bytes)
    path = os.fspath(tflite_path_or_bytes)
    if not os.path.isfile(path):
        raise ValueError(f"TFLite model {path!r} does not exist; give the path of a "
                         ".tflite file (or its bytes).")
    with open(path, "rb") as f:
        return f.read()
