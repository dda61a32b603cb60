"""Compaction: the compact model computes what the masked model computes."""
import json

import numpy as np
import pytest

from tfautocompress import cost, graph, lowering, zoo
from tfautocompress._keras import keras
from tfautocompress.compact import apply_masks, compact, compact_lowered
from tfautocompress.tflite_tools import latency

L = keras.layers


def _randomize_bn(model, rng):
    """Non-trivial BatchNorm statistics, so that a wrong BN slice shows."""
    for layer in model.submodules:
        if isinstance(layer, L.BatchNormalization):
            for weight in layer.weights:
                n = weight.shape[0]
                scale = ("gamma" in weight.name) or ("variance" in weight.name)
                weight.assign(rng.uniform(0.5, 1.5, n) if scale else rng.normal(0, 0.2, n))


def _random_masks(model, rng, filters=0.5, columns=0.3):
    """Random filter (``filters``) and column (``columns``) masks for every kernel."""
    masks = {}
    for layer in model.submodules:
        op = graph.op_for(layer)
        if op is None or op.kernel is None:
            continue
        shape = getattr(layer, op.kernel).shape
        mask = np.ones(shape, np.float32)
        mask[rng.random(shape[:-1]) < columns] = 0
        mask[..., rng.random(shape[-1]) < filters] = 0
        masks[layer.name] = mask
    return masks


def _assert_same(model, masks, candidate, x, reference=None):
    """``candidate`` computes the masked model's outputs and its features before the
    last layer (``reference``: ``apply_masks(model, masks)``, made when not given):
    equal on the kept channels, which are all the non-zero ones."""
    reference = reference or apply_masks(model, masks)
    last = model.layers[-1].name
    kept = graph.analyze(model).kept_channels(masks)[last].inputs
    (out_a, feat_a), (out_b, feat_b) = (
        [t.numpy() for t in keras.Model(m.inputs, [m.output, m.get_layer(last).input])(
            x, training=False)] for m in (reference, candidate))
    assert np.abs(out_a - out_b).max() <= 1e-4
    assert not feat_a[:, ~kept].any()
    feat_a = feat_a[:, kept]
    assert np.abs(feat_a - feat_b).max() <= 1e-4 * max(1.0, np.abs(feat_a).max())


ZOO = [("lenet5", (32, 32, 1)), ("digits_vgg", (32, 32, 3)), ("vgg16_cifar", (32, 32, 3)),
       ("resnet18_cifar", (32, 32, 3)), ("resnet56_cifar", (32, 32, 3)),
       ("mobilenetv2_cifar", (32, 32, 3)), ("resnet50", (32, 32, 3)),
       ("mobilenetv2", (32, 32, 3))]


@pytest.mark.parametrize("name,shape", ZOO, ids=[n for n, _ in ZOO])
def test_zoo_compact_matches_masked_and_round_trips(name, shape, tmp_path):
    rng = np.random.default_rng(0)
    model = zoo.build(name, input_shape=shape, num_classes=10)
    _randomize_bn(model, rng)
    masks = _random_masks(model, rng)
    small, small_masks = compact(model, masks, return_masks=True)
    x = rng.normal(size=(2,) + shape).astype(np.float32)
    reference = apply_masks(model, masks)
    _assert_same(model, masks, small, x, reference)
    assert small.count_params() < 0.8 * model.count_params()
    assert [l.name for l in small.layers] == [l.name for l in model.layers]
    # what the graph says is kept is what the compact model has
    kept = graph.analyze(model).kept_channels(masks)
    assert small.count_params() == _compact_param_count(model, kept)
    # the cost model counts the masked model as the compact one
    assert cost.count(model, masks).params == cost.count(small, small_masks).params
    assert cost.count(model, masks).conv_macs == cost.count(small, small_masks).conv_macs
    path = str(tmp_path / f"{name}.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                  small(x, training=False).numpy())
    # lowered: the same outputs from the kept rows only, in either form
    form = lowering.FORMS[ZOO.index((name, shape)) % len(lowering.FORMS)]
    low, low_masks = compact(model, masks, return_masks=True, columns=form)
    _assert_same(model, masks, low, x, reference)
    lowered = [l for l in low.submodules if isinstance(l, lowering.ColumnSparseConv2D)]
    sparse = [l for l in small.submodules if lowering.lowerable(l, small_masks.get(l.name))
              is not None]
    assert {l.name for l in lowered} == {l.name for l in sparse} and lowered
    assert all(l.form == form for l in lowered)
    assert cost.count(low, low_masks).conv_macs == cost.count(model, masks).conv_macs
    executed, kept_executed = cost.count(low).conv_macs, cost.count(small).conv_macs
    assert cost.count(model, masks).conv_macs <= executed < kept_executed
    if name not in ("digits_vgg", "resnet18_cifar", "mobilenetv2_cifar"):
        return  # the layer's round trip does not depend on the model around it
    low.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path)(x, training=False).numpy(),
                                  low(x, training=False).numpy())


def _compact_param_count(model, kept):
    """Parameters of ``model`` with every channel axis cut to what ``kept`` keeps."""
    total = 0
    for layer in model.layers:
        op = graph.op_for(layer)
        entry = kept.get(layer.name)
        for weight in layer.weights:
            shape = list(weight.shape)
            if entry is not None:
                for attr, axis, _ in op.in_weights:
                    if getattr(layer, attr, None) is weight:
                        repeat = shape[axis] // entry.inputs.size
                        shape[axis] = int(entry.inputs.sum()) * repeat
                for attr, axis in op.out_weights:
                    if getattr(layer, attr, None) is weight:
                        shape[axis] = int(entry.outputs.sum())
            total += int(np.prod(shape))
    return total


def test_apply_masks_is_a_copy_with_dead_channels_zeroed():
    model = zoo.build("digits_vgg")
    before = [w.copy() for w in model.get_weights()]
    masks = {"block1_1_conv": np.ones((3, 3, 3, 32), np.float32)}
    masks["block1_1_conv"][..., :8] = 0
    masked = apply_masks(model, masks)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    bn = masked.get_layer("block1_1_bn")
    assert not bn.gamma.numpy()[:8].any() and not bn.beta.numpy()[:8].any()
    assert not masked.get_layer("block1_2_conv").kernel.numpy()[:, :, :8].any()
    assert compact(model, masks).get_layer("block1_1_conv").filters == 24


def test_column_zeros_stay_inside_the_compact_kernel():
    model = zoo.build("lenet5")
    masks = {"conv2": np.ones((5, 5, 6, 16), np.float32)}
    masks["conv2"][0, 0, 0, :] = 0   # a column: not a whole channel
    masks["conv2"][..., 3] = 0       # a filter
    small = compact(model, masks)
    kernel = small.get_layer("conv2").kernel.numpy()
    assert kernel.shape == (5, 5, 6, 15) and not kernel[0, 0, 0].any()
    assert small.get_layer("fc1").kernel.shape == (5 * 5 * 15, 120)


def test_emptied_group_keeps_one_zero_channel():
    rng = np.random.default_rng(1)
    model = zoo.build("lenet5")
    masks = {"conv1": np.zeros((5, 5, 1, 6), np.float32)}
    small = compact(model, masks)
    assert small.get_layer("conv1").filters == 1
    _assert_same(model, masks, small, rng.normal(size=(1, 32, 32, 1)))


class Scale(L.Layer):
    def call(self, x):
        return x * 2.0


@pytest.mark.parametrize("make", [lambda: L.Lambda(lambda t: t * 2.0, name="custom"),
                                  lambda: Scale(name="custom")])
def test_compaction_prunes_around_an_unknown_layer(make):
    rng = np.random.default_rng(2)
    x = inputs = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(8, 3, name="c1")(x)))
    x = L.Conv2D(6, 3, name="c2")(make()(x))
    x = L.Conv2D(4, 1, name="c3")(x)
    model = keras.Model(inputs, L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x)))
    _randomize_bn(model, rng)
    masks = _random_masks(model, rng)
    small = compact(model, masks)
    assert small.get_layer("c1").filters == 8       # feeds the barrier
    assert small.get_layer("c2").filters < 6        # pruned around it
    _assert_same(model, masks, small, rng.normal(size=(2, 8, 8, 3)))
    with pytest.raises(ValueError, match="'custom'"):
        graph.analyze(model, strict=True)


def test_nested_model_and_concat_compact():
    rng = np.random.default_rng(3)
    inner_in = keras.Input((8, 8, 6), name="inner_input")
    y = L.BatchNormalization(name="inner_bn")(L.Conv2D(5, 3, padding="same", name="ic")(inner_in))
    inner = keras.Model(inner_in, L.ReLU(name="inner_relu")(y), name="inner")
    x = inputs = keras.Input((8, 8, 3), name="input")
    a = L.Conv2D(4, 1, name="a")(x)
    cat = L.Concatenate(name="cat")([a, L.SeparableConv2D(2, 3, padding="same",
                                                          name="sep")(x)])
    z = L.DepthwiseConv2D(3, padding="same", name="dw")(inner(cat))
    z = L.Flatten(name="flat")(L.MaxPooling2D(4, name="pool")(z))
    model = keras.Model(inputs, L.Dense(3, name="out")(z))
    _randomize_bn(model, rng)
    masks = _random_masks(model, rng)
    small = compact(model, masks)
    assert small.get_layer("inner").get_layer("ic").filters < 5
    _assert_same(model, masks, small, rng.normal(size=(2, 8, 8, 3)))


def test_sequential_and_shared_layer_compact():
    rng = np.random.default_rng(4)
    seq = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(6, 3, name="s1"),
                            L.BatchNormalization(name="s1_bn"), L.ReLU(name="s1_relu"),
                            L.Flatten(name="s_flat"), L.Dense(3, name="s_out")])
    _randomize_bn(seq, rng)
    masks = _random_masks(seq, rng)
    _assert_same(seq, masks, compact(seq, masks), rng.normal(size=(2, 8, 8, 2)))
    # one Conv2D called on two branches: the branches' channels are coupled
    x = inputs = keras.Input((6, 6, 2))
    shared = L.Conv2D(4, 1, name="shared")
    y = L.Add()([shared(L.Conv2D(5, 1, name="p")(x)), shared(L.Conv2D(5, 1, name="q")(x))])
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y)))
    coupled = [g for g in graph.analyze(model, strict=True).groups if "p" in g.producers]
    assert len(coupled) == 1 and set(coupled[0].producers) == {"p", "q"}
    masks = _random_masks(model, rng, filters=0.0)
    masks["p"][..., :2] = 0
    masks["q"][..., 1:3] = 0
    small = compact(model, masks)
    assert small.get_layer("shared").kernel.shape == (1, 1, 4, 4)  # channel 1 is dead in both
    _assert_same(model, masks, small, rng.normal(size=(2, 6, 6, 2)))


def test_bad_column_mode_is_an_error():
    with pytest.raises(ValueError, match="columns='fast'.*'keep', 'lower', 'auto'"):
        compact(zoo.build("lenet5"), {}, columns="fast")


def test_auto_without_a_measure_names_the_one_to_pass():
    model = zoo.build("lenet5")
    masks = _random_masks(model, np.random.default_rng(5), filters=0.0, columns=0.5)
    with pytest.raises(ValueError, match=r"columns='auto' .* measure=tfautocompress.tflite_tools"):
        compact(model, masks, columns="auto")


def test_auto_measures_each_layer_once_and_caches_on_disk(tmp_path):
    rng = np.random.default_rng(6)
    x = inputs = keras.Input((16, 16, 8))
    x = L.Conv2D(16, 3, padding="same", name="wide")(x)
    model = keras.Model(inputs, L.Conv2D(8, 3, padding="same", name="narrow")(x))
    masks = _random_masks(model, rng, filters=0.0, columns=0.7)
    cache = tmp_path / "latency.json"
    small, _, lowered = compact_lowered(model, masks, "auto", latency.LayerLatency(cache))
    decisions = lowered["decisions"]
    assert set(decisions) == {"wide", "narrow"} and lowered["seconds"] > 0
    for name, decision in decisions.items():
        assert set(decision.latency_ms) == {"keep", *lowering.FORMS}
        assert all(v > 0 for v in decision.latency_ms.values())
        best = min(decision.latency_ms, key=decision.latency_ms.get)
        assert decision.form in ("keep", best)
        layer = small.get_layer(name)
        assert (decision.form == "keep") == (type(layer) is L.Conv2D)
    assert len(json.loads(cache.read_text())) == 2
    latency.LatencyCache._memory.clear()  # a new process: only the file remembers
    again = compact_lowered(model, masks, "auto", latency.LayerLatency(cache))[2]
    assert again["decisions"] == decisions and again["seconds"] < lowered["seconds"]
    _assert_same(model, masks, small, rng.normal(size=(2, 16, 16, 8)).astype(np.float32))


def test_the_probe_times_each_conv2d_at_half_its_rows_and_lowered_only_never_keeps(tmp_path):
    x = inputs = keras.Input((16, 16, 8))
    x = L.Conv2D(16, 3, padding="same", name="wide")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    model = keras.Model(inputs, L.Conv2D(8, 1, name="narrow")(x))
    measure = latency.LayerLatency(tmp_path / "latency.json")
    probed = lowering.probe(model, ["wide", "dw", "narrow"], measure)
    assert set(probed) == {"wide", "narrow"}  # a depthwise conv has no lowered form
    only = latency.LayerLatency(tmp_path / "latency.json", lowered_only=True)
    for name, rows in (("wide", 3 * 3 * 8), ("narrow", 16)):
        layer = model.get_layer(name)  # timed at half its filters, every other kernel row
        half = L.Conv2D.from_config(dict(layer.get_config(), filters=layer.filters // 2))
        half(keras.Input(batch_shape=(1,) + tuple(layer.input_shape)[1:]))
        rows = np.arange(0, rows, 2)
        assert measure(half, rows) == probed[name]  # the cached timings
        decision = only(half, rows)
        assert decision.latency_ms == probed[name].latency_ms
        assert decision.form == min(lowering.FORMS, key=decision.latency_ms.get)


def test_a_lowered_model_compacts_again():
    rng = np.random.default_rng(7)
    x = inputs = keras.Input((8, 8, 4))
    x = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(6, 3, padding="same", name="c1")(x)))
    x = L.Conv2D(5, 3, padding="same", name="c2")(x)
    model = keras.Model(inputs, L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x)))
    _randomize_bn(model, rng)
    masks = _random_masks(model, rng, filters=0.0, columns=0.5)
    low, low_masks = compact(model, masks, return_masks=True, columns="rows")
    assert all(isinstance(low.get_layer(n), lowering.ColumnSparseConv2D) for n in ("c1", "c2"))
    low_masks["c1"][:, 2] = 0  # c1 feeds a lowered layer: its channels are kept
    low_masks["c2"][:, 1] = 0  # c2 feeds Dense: its filter goes
    again = compact(low, low_masks)
    assert again.get_layer("c1").filters == 6 and again.get_layer("c2").filters == 4
    assert again.get_layer("c2").rows == low.get_layer("c2").rows
    assert again.get_layer("out").kernel.shape == (4, 3)
    _assert_same(low, low_masks, again, rng.normal(size=(2, 8, 8, 4)).astype(np.float32))
