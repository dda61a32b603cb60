"""tflite_tools.export: four modes of a trained digits_vgg, sidecars, atomic writes, CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfautocompress import artifacts, data, zoo
from tfautocompress._keras import keras
from tfautocompress.tflite_tools import benchmark, export, gpu
from conftest import litert_outputs


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=32, seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    """digits_vgg after 24 training steps (~95 % val accuracy): clear top-1 decisions."""
    keras.utils.set_random_seed(0)
    model = zoo.build("digits_vgg")
    for layer in model.layers:  # BN statistics that settle within a short run
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(digits.train.take(24), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(trained, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    return {mode: export.export(trained, folder / f"digits_{mode}.tflite", mode,
                                representative_data=digits.train.take(2))
            for mode in export.MODES}


@pytest.fixture(scope="module")
def compacted(trained, digits):
    """The trained model with a quarter of every CONV layer's filters physically
    removed, then fine-tuned as briefly as ``trained`` (clear top-1 decisions again)."""
    from tfautocompress import schemes
    from tfautocompress.compact import compact
    from tfautocompress.masks import magnitude_masks, uniform_schemes

    masks = magnitude_masks(trained, uniform_schemes(trained, schemes.Filter(0.25)))
    small = compact(trained, masks)
    assert small.count_params() < trained.count_params()
    keras.utils.set_random_seed(0)
    small.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    small.fit(digits.train.take(24), epochs=1, verbose=0)
    return small


@pytest.fixture(scope="module")
def lowered(trained, digits):
    """The trained model with half of every CONV layer's filters and 3/4 of the
    remaining columns pruned, compacted with every column-sparse Conv2D lowered,
    fine-tuned as briefly as ``trained``; in each lowered form."""
    from tfautocompress import lowering, schemes
    from tfautocompress.compact import compact
    from tfautocompress.masks import magnitude_masks, uniform_schemes

    masks = magnitude_masks(trained, uniform_schemes(trained, schemes.Combined(0.5, 0.75)))
    small = compact(trained, masks, columns="rows")
    assert any(isinstance(l, lowering.ColumnSparseConv2D) for l in small.layers)
    keras.utils.set_random_seed(0)
    small.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    small.fit(digits.train.take(24), epochs=1, verbose=0)

    def as_slices(layer):
        config = layer.get_config()
        if isinstance(layer, lowering.ColumnSparseConv2D):
            config["form"] = "slices"
        return type(layer).from_config(config)

    slices = keras.models.clone_model(small, clone_function=as_slices)
    slices.set_weights(small.get_weights())
    return {"lowered_rows": small, "lowered_slices": slices}


@pytest.mark.parametrize("mode", export.MODES)
@pytest.mark.parametrize("which", ["dense", "compact", "lowered_rows", "lowered_slices"])
def test_every_mode_matches_the_keras_model(mode, which, trained, compacted, lowered, digits,
                                            exported, tmp_path):
    model = {"dense": trained, "compact": compacted, **lowered}[which]
    path = (exported[mode]["path"] if which == "dense" else export.export(
        model, tmp_path / f"{which}_{mode}.tflite", mode,
        representative_data=digits.train.take(2))["path"])
    result = benchmark.check_equivalence(model, path, digits.val)
    assert result["mode"] == mode and result["samples"] == digits.sizes["val"]
    assert result["passed"], result
    if mode == "float16":  # judged here by LiteRT's own output against Keras', in NumPy
        x = np.concatenate([x for x, _ in digits.val.as_numpy_iterator()])
        diff = float(np.abs(litert_outputs(path, x) - model(x, training=False).numpy()).max())
        assert diff <= 1e-2 and result["max_abs_diff"] == pytest.approx(diff, rel=1e-3)
    if mode == "float32":
        assert result["max_abs_diff"] <= 1e-4
    if mode in ("dynamic", "int8"):
        assert result["top1_agreement"] >= 0.99
    if which.startswith("lowered"):  # builtins only, GATHER among them
        raw = gpu.gpu_compatibility(path).raw
        assert "GATHER" in raw and "Flex" not in raw


def test_sidecar_describes_the_file(trained, exported):
    for mode, info in exported.items():
        sidecar = artifacts.read_json(info["path"] + ".json")
        assert sidecar == {k: v for k, v in info.items() if k != "path"}
        assert sidecar["mode"] == mode and sidecar["sparse"] is False
        assert sidecar["size_bytes"] == os.path.getsize(info["path"])
        assert sidecar["weights_sha256"] == export.weights_sha256(trained)
        assert sidecar["tf_version"] == tf.__version__
        (inp,), (out,) = sidecar["inputs"], sidecar["outputs"]
        assert inp["shape_signature"] == [-1, 32, 32, 3] and out["shape"] == [1, 10]
        expected_dtype = "int8" if mode == "int8" else "float32"
        assert inp["dtype"] == out["dtype"] == expected_dtype
        assert (inp["quantization"]["scale"] > 0) == (mode == "int8")


def test_quantized_files_are_smaller(exported):
    size = {mode: info["size_bytes"] for mode, info in exported.items()}
    assert size["float16"] < 0.55 * size["float32"]
    assert size["dynamic"] < 0.3 * size["float32"]
    assert size["int8"] < 0.3 * size["float32"]


def test_writes_leave_only_the_model_and_its_sidecar(exported):
    folder = os.path.dirname(exported["float32"]["path"])
    expected = {f"digits_{m}.tflite{ext}" for m in export.MODES for ext in ("", ".json")}
    assert set(os.listdir(folder)) == expected


def test_errors_leave_nothing_behind(tmp_path):
    model = _tiny_model()
    with pytest.raises(ValueError, match="float32, float16, dynamic, int8"):
        export.export(model, tmp_path / "m.tflite", mode="fp8")
    with pytest.raises(ValueError, match="representative_data"):
        export.export(model, tmp_path / "m.tflite", mode="int8")
    with pytest.raises(ValueError, match="sparse"):
        export.export(model, tmp_path / "m.tflite", mode="int8", sparse=True,
                      representative_data=np.zeros((2, 8, 8, 1), np.float32))
    erf = keras.Model(model.inputs, keras.layers.Lambda(tf.math.erf)(model.outputs[0]))
    with pytest.raises(Exception, match="Erf"):  # not a TFLite builtin op
        export.export(erf, tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_sparse_encoding_shrinks_a_pruned_model(tmp_path):
    inputs = keras.Input((64,), name="input")
    hidden = keras.layers.Dense(256, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))
    kernel, bias = model.get_layer("hidden").get_weights()
    keep = np.random.default_rng(0).uniform(size=kernel.shape) < 0.2
    model.get_layer("hidden").set_weights([kernel * keep, bias])
    dense = export.export(model, tmp_path / "dense.tflite")
    sparse = export.export(model, tmp_path / "sparse.tflite", sparse=True)
    assert sparse["sparse"] and sparse["size_bytes"] < 0.6 * dense["size_bytes"]
    x = np.random.default_rng(1).uniform(size=(4, 64)).astype(np.float32)
    assert benchmark.check_equivalence(model, sparse["path"], x)["passed"]


def test_weights_hash_follows_the_weights():
    model = _tiny_model()
    before = export.weights_sha256(model)
    assert export.weights_sha256(model) == before
    kernel, bias = model.get_layer("conv").get_weights()
    model.get_layer("conv").set_weights([kernel, bias + 1.0])
    assert export.weights_sha256(model) != before


def test_input_batches_accepts_arrays_pairs_and_datasets():
    model = _tiny_model()
    x = np.ones((3, 8, 8, 1), np.float32)
    pairs = tf.data.Dataset.from_tensor_slices((x, np.zeros(3))).batch(2)
    assert [b[0].shape for b in export.input_batches(model, x)] == [(3, 8, 8, 1)]
    assert [b[0].shape for b in export.input_batches(model, pairs)] == [(2, 8, 8, 1),
                                                                       (1, 8, 8, 1)]
    with pytest.raises(ValueError, match=r"'input'.*\(batch, 8, 8, 1\).*\(3, 8, 8\)"):
        list(export.input_batches(model, np.ones((3, 8, 8))))


def test_export_cli_writes_models_and_a_summary(tmp_path):
    import hashlib

    model_path = str(tmp_path / "tiny.keras")
    model = _tiny_model()
    artifacts.save_model(model, model_path)
    out = tmp_path / "out"
    run = _cli(["--model", model_path, "--output_dir", str(out), "--modes",
                "float32,float16", "--runs", "3", "--warmup", "1"])
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((out / "tflite_summary.json").read_text())
    assert summary["model"] == os.path.abspath(model_path)
    assert set(summary["exports"]) == {"float32", "float16"}
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    for mode, bound in (("float32", 1e-4), ("float16", 1e-2)):
        entry = summary["exports"][mode]
        path = entry["export"]["path"]
        assert path == str(out / f"tiny_{mode}.tflite")
        content = open(path, "rb").read()
        assert entry["export"]["tflite_sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["export"]["size_bytes"] == len(content) and content[4:8] == b"TFL3"
        # the file written computes the saved model (LiteRT's output against Keras')
        assert np.abs(litert_outputs(path, x) - model(x).numpy()).max() <= bound
        assert entry["gpu_compatibility"]["compatible"] is True
        bench = entry["host_benchmark"]
        assert (bench["model"], bench["runs"], bench["warmup"]) == (path, 3, 1)
        latency = bench["latency_ms"]
        assert 0 < latency["min"] <= latency["median"] <= latency["max"]
        assert entry["gpu_run"] == {"attempted": False}  # only with --gpu_run

    bad = _cli(["--model", model_path, "--output_dir", str(out), "--modes", "int8"])
    assert bad.returncode != 0 and "--dataset" in bad.stderr


VULKAN_ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d")


def _vulkan_icds():
    return [os.path.join(d, f) for d in VULKAN_ICD_DIRS if os.path.isdir(d)
            for f in sorted(os.listdir(d)) if f.endswith(".json")]


@pytest.mark.skipif(not _vulkan_icds(), reason="no Vulkan ICD here: `apt-get install "
                    "mesa-vulkan-drivers` (.ci/run installs it) to run this test")
def test_export_cli_with_a_vulkan_icd_exits_zero_and_reports_the_gpu(tmp_path):
    """With Mesa's Vulkan drivers, LiteRT's GPU accelerator finds no adapter it can use;
    tried in the exporting process, that aborted it at exit (free(): invalid pointer,
    status 134) after the files were written."""
    model_path = str(tmp_path / "tiny.keras")
    artifacts.save_model(_tiny_model(), model_path)
    out = tmp_path / "out"
    run = _cli(["--model", model_path, "--output_dir", str(out), "--modes", "float32",
                "--runs", "2", "--warmup", "1", "--gpu_run"],
               env={"VK_ICD_FILENAMES": os.pathsep.join(_vulkan_icds())})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "free(): invalid pointer" not in run.stderr
    gpu_run = json.loads((out / "tflite_summary.json").read_text())["exports"]["float32"]["gpu_run"]
    assert gpu_run["attempted"] is True
    if gpu_run["available"]:  # a Vulkan device LiteRT can use
        assert gpu_run["latency_ms"] > 0
        assert "GPU run: " in run.stdout
    else:
        assert gpu_run["reason"].startswith("not available here: LiteRT")
        assert "GPU run: not available here" in run.stdout


def _cli(args, env=None):
    code = "from tfautocompress.app.export_cli import export_main; export_main()"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=300, env=env)


def _tiny_model(filters=4):
    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(filters, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
