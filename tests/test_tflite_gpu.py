"""tflite_tools.gpu: the Analyzer's report, op-table check, and the LiteRT GPU run."""
import os
import time

import pytest
import tensorflow as tf

from tfautocompress import lowering
from tfautocompress._keras import keras
from tfautocompress.tflite_tools import export, gpu, litert


def _convert(model):
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _conv_net():
    inputs = keras.Input((8, 8, 3), name="input")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _top_k_net():
    """TOPK_V2 is a TFLite builtin that the GPU delegate does not implement."""
    inputs = keras.Input((8,), name="input")
    x = keras.layers.Lambda(lambda t: tf.math.top_k(t, k=3).values)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_conv_net_is_compatible(tmp_path):
    path = export.export(_conv_net(), tmp_path / "conv.tflite")["path"]
    result = gpu.gpu_compatibility(path)
    assert result.compatible and result.incompatible_ops == [] and result.details == []
    assert "CONV_2D" in result.raw and "DEPTHWISE_CONV_2D" in result.raw


def test_top_k_is_reported_incompatible_by_name():
    result = gpu.gpu_compatibility(_convert(_top_k_net()))
    assert not result.compatible
    assert result.incompatible_ops == ["TOPK_V2"]
    assert result.details == ["Subgraph#0 Op#0 TOPK_V2: not an op type the TFLite GPU "
                              "delegate supports"]
    assert set(result.to_json()) == {"compatible", "incompatible_ops", "details", "raw"}


def test_analyzer_warning_lines_are_attributed_to_their_op():
    # The report format of an Analyzer built with the GPU checker
    # (tensorflow/lite/python/analyzer_wrapper/model_analyzer.cc).
    raw = ("Subgraph#0 main(T#0) -> [T#3]\n"
           "  Op#0 STRIDED_SLICE(T#0, T#1, T#2, T#4) -> [T#5]\n"
           "GPU COMPATIBILITY WARNING: STRIDED_SLICE supports for 3 or 4 dimensional "
           "tensors only.\n"
           "  Op#1 FULLY_CONNECTED(T#5, T#6, T#-1) -> [T#3]\n"
           "\nGPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues "
           "at nodes 0 with TFLite runtime version 2.9.0\n")
    result = gpu.parse_analyzer_report(raw)
    assert result.incompatible_ops == ["STRIDED_SLICE"]
    assert result.details == ["Subgraph#0 Op#0 STRIDED_SLICE: STRIDED_SLICE supports for "
                              "3 or 4 dimensional tensors only."]


@pytest.mark.parametrize("form", lowering.FORMS)
def test_lowered_column_sparse_conv_is_compatible(form):
    inputs = keras.Input((8, 8, 4), name="input")
    x = lowering.ColumnSparseConv2D(5, 3, [0, 1, 5, 9, 20, 35], padding="same", form=form)(inputs)
    result = gpu.gpu_compatibility(_convert(keras.Model(inputs, x)))
    assert result.compatible, result.details
    assert "GATHER" in result.raw and "CONV_2D" in result.raw and "FlexGather" not in result.raw


def test_gather_with_2d_indices_is_reported():
    inputs = keras.Input((8, 8, 4), name="input")
    x = keras.layers.Lambda(lambda t: tf.gather(t, [[0, 1], [2, 3]], axis=3))(inputs)
    result = gpu.gpu_compatibility(_convert(keras.Model(inputs, x)))
    assert result.incompatible_ops == ["GATHER"]
    assert result.details == ["Subgraph#0 Op#0 GATHER: the GPU delegate takes only constant "
                              "1-D indices"]


def test_unreadable_models_and_missing_files_are_errors(tmp_path):
    with pytest.raises(ValueError, match="could not read the model"):
        gpu.gpu_compatibility(b"not a flatbuffer" * 4)
    with pytest.raises(ValueError, match="does not exist"):
        gpu.gpu_compatibility(tmp_path / "missing.tflite")
    with pytest.raises(ValueError, match="does not exist"):
        gpu.gpu_accelerated_run(tmp_path / "missing.tflite")


def test_gpu_run_reports_instead_of_crashing(tmp_path):
    path = export.export(_conv_net(), tmp_path / "conv.tflite", mode="float16")["path"]
    start = time.perf_counter()
    result = gpu.gpu_accelerated_run(path)
    wall_ms = (time.perf_counter() - start) * 1e3
    if result["available"]:  # a machine with a GPU LiteRT can use
        # every op of the conv net is one the GPU delegate takes (the Analyzer agrees:
        # test_conv_net_is_compatible); one inference takes less than the whole call
        assert result["fully_accelerated"] is True
        assert 0 < result["latency_ms"] < wall_ms
        top_k = tmp_path / "top_k.tflite"
        top_k.write_bytes(_convert(_top_k_net()))
        assert gpu.gpu_accelerated_run(top_k)["fully_accelerated"] is False  # TOPK_V2 on CPU
    else:
        assert set(result) == {"available", "reason"}
        assert result["reason"].startswith("not available here: LiteRT") and "GPU" in result["reason"]


def test_the_gpu_accelerator_runs_in_a_process_of_its_own(tmp_path):
    """Whatever happens to LiteRT's GPU accelerator happens in a child process: this
    one never loads it, and a child that gives no answer is "unavailable"."""
    path = export.export(_conv_net(), tmp_path / "conv.tflite", mode="float32")["path"]
    gpu.gpu_accelerated_run(path)
    if os.path.exists("/proc/self/maps"):  # Linux: the libraries this process has loaded
        with open("/proc/self/maps") as maps:
            assert "libLiteRtWebGpuAccelerator" not in maps.read()
    with pytest.raises(litert.GpuUnavailableError, match="no answer in 0.001 s"):
        litert.run_gpu(path, timeout_s=0.001)


def test_litert_error_lines_give_the_reason():
    stderr = ("INFO: [environment.cc:36] Creating LiteRT environment with options\n"
              "ERROR: [delegate_webgpu.cc:359] Failed to initialize WebGPU environment: "
              "INTERNAL: No adapters found\n"
              "E0000 00:00:1796552827.128021    3395 delegate_webgpu.cc:736] Failed to get "
              "or create delegate WebGPU environment\n")
    assert litert._why(stderr) == (": Failed to initialize WebGPU environment: INTERNAL: "
                                   "No adapters found")
    assert litert._why("ERROR: [compiled_model.h:1961]\n", "RuntimeError: x") == (
        ": RuntimeError: x")
