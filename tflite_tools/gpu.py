"""GPU-delegate compatibility of a ``.tflite`` model, and a LiteRT GPU run where asked.

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

``gpu_accelerated_run`` runs the model on LiteRT's GPU accelerator in a child
process (``tflite_tools.litert``: a failed accelerator start can abort the process
that has TensorFlow loaded) and reports "not available here" where it cannot.
"""
import contextlib
import dataclasses
import io
import os
import re

import tensorflow as tf

from tfautocompress.tflite_tools.litert import GpuUnavailableError, random_input, run_gpu

__all__ = ["GPU_DELEGATE_OPS", "GpuCompatibility", "GpuUnavailableError", "NOT_AVAILABLE",
           "gpu_accelerated_run", "gpu_compatibility", "parse_analyzer_report", "random_input"]

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


NOT_AVAILABLE = "not available here"


def gpu_accelerated_run(tflite_path, timeout_s=300):
    """Run the model once with LiteRT's GPU accelerator (CPU fallback for the rest),
    in a child process (module doc).

    Returns ``{"available": True, "fully_accelerated": bool, "latency_ms": float}``,
    or ``{"available": False, "reason": "not available here: <LiteRT's reason>"}``.
    """
    _model_bytes(tflite_path)  # a missing file is the caller's error, not "unavailable"
    try:
        result = run_gpu(tflite_path, warmup=0, runs=1, timeout_s=timeout_s)
    except GpuUnavailableError as err:
        return {"available": False, "reason": f"{NOT_AVAILABLE}: {err}"[:500]}
    return {"available": True, "fully_accelerated": result["fully_accelerated"],
            "latency_ms": result["latencies_ms"][0]}


def _model_bytes(tflite_path_or_bytes):
    if isinstance(tflite_path_or_bytes, (bytes, bytearray)):
        return bytes(tflite_path_or_bytes)
    path = os.fspath(tflite_path_or_bytes)
    if not os.path.isfile(path):
        raise ValueError(f"TFLite model {path!r} does not exist; give the path of a "
                         ".tflite file (or its bytes).")
    with open(path, "rb") as f:
        return f.read()
