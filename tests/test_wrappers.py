"""StructuredPruneLowMagnitude and prune_structured on real tf_keras + TF-MOT."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tfautocompress import schemes, wrappers
from tfautocompress._keras import keras
from tfautocompress.wrappers import SchemeSchedule, StructuredPruneLowMagnitude, prune_structured

L = keras.layers
RNG = np.random.default_rng(0)
X = RNG.random((8, 8, 8, 3), dtype=np.float32)
Y = RNG.integers(0, 3, 8)
WRAPPED = "structured_prune_low_magnitude_"


def conv_bn_model():
    """conv -> BN -> relu -> depthwise -> separable -> pool -> dense; biases start at 1
    so that only bias masking can make a pruned filter's output zero."""
    ones = {"bias_initializer": "ones"}
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="c1", **ones)(inp)
    x = L.BatchNormalization(name="bn1", beta_initializer="ones")(x)
    x = L.ReLU(name="relu")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw", **ones)(x)
    x = L.SeparableConv2D(6, 3, padding="same", name="sep", **ones)(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    out = L.Dense(3, name="fc", **ones)(x)
    return keras.Model(inp, out)


def fixed_masks():
    c1 = np.ones((3, 3, 3, 4), np.float32)
    c1[..., [1, 3]] = 0  # filters 1 and 3 pruned ...
    bn1 = np.array([1, 0, 1, 0], np.float32)  # ... and their channels after BN
    dw = np.ones((3, 3, 4, 2), np.float32)
    dw[:, :, 0, 1] = 0  # output channel 1 of the depthwise layer
    dw[0, 0] = 0  # one column
    sep = schemes.Filter(0.5).mask(RNG.standard_normal((1, 1, 8, 6)))
    fc = schemes.Irregular(0.5).mask(RNG.standard_normal((6, 3)))
    return {"c1": c1, "bn1": bn1, "dw": dw, "sep": sep, "fc": fc}


def compiled(model, optimizer="adam"):
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def wrapper(model, name):
    return model.get_layer(WRAPPED + name)


def masked_values(model, masks):
    """Every masked entry of every wrapped weight, flattened (should be all 0)."""
    out = []
    for name, mask in masks.items():
        w = wrapper(model, name)
        for _, var, m in w._masked():
            out.append((var.numpy() * (1 - m.numpy())).ravel())
    return np.concatenate(out)


@pytest.fixture(scope="module")
def trained():
    """A fixed-mask model after a few SGD-with-momentum steps (no callback)."""
    model = conv_bn_model()
    masks = fixed_masks()
    pruned = compiled(prune_structured(model, masks), keras.optimizers.SGD(0.1, momentum=0.9))
    pruned.fit(X, Y, batch_size=4, epochs=2, verbose=0)
    return model, masks, pruned


def test_prune_structured_wraps_exactly_the_named_layers(trained):
    model, masks, pruned = trained
    wrapped = {l.layer.name for l in pruned.layers if isinstance(l, StructuredPruneLowMagnitude)}
    assert wrapped == set(masks)
    assert isinstance(pruned.get_layer("relu"), L.ReLU)
    for name, mask in masks.items():
        np.testing.assert_array_equal(wrapper(pruned, name).mask.numpy(), mask)


def test_weights_are_copied_and_projected():
    model = conv_bn_model()
    masks = fixed_masks()
    pruned = prune_structured(model, masks)
    for name, mask in masks.items():
        original = model.get_layer(name)
        inner = wrapper(pruned, name).layer
        kernel = {"dw": "depthwise_kernel", "sep": "pointwise_kernel", "bn1": "gamma"}.get(name, "kernel")
        np.testing.assert_array_equal(getattr(inner, kernel).numpy(), getattr(original, kernel).numpy() * mask)
    np.testing.assert_array_equal(wrapper(pruned, "c1").layer.bias.numpy(), [1, 0, 1, 0])
    assert not masked_values(pruned, masks).any()


def test_masked_weights_stay_exactly_zero_through_fit(trained):
    model, masks, pruned = trained
    assert not masked_values(pruned, masks).any()
    kept = wrapper(pruned, "c1").layer.kernel.numpy()[..., [0, 2]]
    initial = model.get_layer("c1").kernel.numpy()[..., [0, 2]]  # copied before fit
    assert np.all(kept != initial)  # every kept weight did train


def test_gradients_of_masked_weights_are_exactly_zero(trained):
    _, masks, pruned = trained
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(Y, pruned(X, training=True))
    grads = dict(zip([v.ref() for v in pruned.trainable_variables],
                     tape.gradient(loss, pruned.trainable_variables)))
    for name in masks:
        for _, var, m in wrapper(pruned, name)._masked():
            g = grads[var.ref()].numpy()
            assert not (g * (1 - m.numpy())).any(), (name, var.name)
            assert (g * m.numpy()).any(), (name, var.name)


@pytest.mark.parametrize("training", [True, False])
def test_pruned_filters_output_exactly_zero_before_and_after_bn(trained, training):
    _, _, pruned = trained
    outputs = [wrapper(pruned, "c1").output, wrapper(pruned, "bn1").output]
    conv_out, bn_out = keras.Model(pruned.input, outputs)(X, training=training)
    assert not conv_out.numpy()[..., [1, 3]].any()
    assert not bn_out.numpy()[..., [1, 3]].any()
    assert bn_out.numpy()[..., [0, 2]].any()


def test_strip_pruning_gives_plain_layers_with_exact_zeros(trained):
    _, masks, pruned = trained
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    assert not any(isinstance(l, keras.layers.Wrapper) for l in stripped.layers)
    assert type(stripped.get_layer("dw")) is L.DepthwiseConv2D
    assert not np.any(stripped.get_layer("c1").kernel.numpy()[..., [1, 3]])
    assert not np.any(stripped.get_layer("bn1").gamma.numpy()[[1, 3]])
    np.testing.assert_array_equal(stripped.get_layer("fc").kernel.numpy() * (1 - masks["fc"]), 0)
    np.testing.assert_allclose(stripped.predict(X, verbose=0), pruned.predict(X, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "layer, mask_shape, kernel_attr",
    [
        (L.Conv2D(4, 3, name="conv"), (3, 3, 3, 4), "kernel"),
        (L.DepthwiseConv2D(3, depth_multiplier=2, name="dwc"), (3, 3, 3, 2), "depthwise_kernel"),
        (L.SeparableConv2D(4, 3, name="sepc"), (1, 1, 3, 4), "pointwise_kernel"),
        (L.BatchNormalization(name="bn"), (3,), None),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_wrapper_equals_the_plain_layer_on_masked_weights(layer, mask_shape, kernel_attr):
    mask = (RNG.random(mask_shape) > 0.4).astype(np.float32)
    mask[..., 0] = 0  # a whole output channel (depthwise: multiplier 0 of every input)
    plain = keras.Sequential([keras.Input((6, 6, 3)), layer])
    weights = [RNG.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()]
    if isinstance(layer, L.BatchNormalization):
        weights[3] = np.abs(weights[3])  # moving variance
    layer.set_weights(weights)
    pruned = prune_structured(plain, {layer.name: mask})
    inner = pruned.layers[0].layer
    # By hand: the kernel times the mask, and the bias zero where every kernel entry of
    # an output channel is masked (depthwise output channel c * 2 + m: kernel[:, :, c, m]);
    # BatchNormalization: gamma and beta times the mask.
    if kernel_attr:
        per_channel = (mask.reshape(9, -1) if kernel_attr == "depthwise_kernel"
                       else mask.reshape(-1, mask.shape[-1]))
        alive = per_channel.max(axis=0)
        assert 0 < alive.sum() < alive.size
        projected = {kernel_attr: getattr(layer, kernel_attr).numpy() * mask,
                     "bias": layer.bias.numpy() * alive}
    else:
        projected = {a: getattr(layer, a).numpy() * mask for a in ("gamma", "beta")}
    for attr, value in projected.items():
        getattr(layer, attr).assign(value)
        np.testing.assert_array_equal(getattr(inner, attr).numpy(), value)
    x = RNG.standard_normal((2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(x).numpy(), plain(x).numpy(), atol=1e-5)


# ---- scheme mode -------------------------------------------------------------

def small_dense_conv():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, name="c", bias_initializer="ones")(inp)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x))


def test_scheme_mode_follows_the_scheme_count_with_update_pruning_step():
    from test_masks import assert_combined_block

    policy = {"c": schemes.Filter(0.5), "fc": schemes.Combined(0.34, 0.5)}
    model = small_dense_conv()
    initial = {name: model.get_layer(name).kernel.numpy() for name in policy}
    pruned = compiled(prune_structured(model, policy, SchemeSchedule(frequency=1)))
    for name in policy:
        assert wrapper(pruned, name).mask.numpy().all()  # nothing pruned before training
    pruned.fit(X, Y, batch_size=4, epochs=1, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    conv, fc = wrapper(pruned, "c"), wrapper(pruned, "fc")
    assert conv.pruning_step.numpy() == 2
    filters_alive = conv.mask.numpy().reshape(-1, 6).max(axis=0)
    assert filters_alive.sum() == 3
    np.testing.assert_array_equal(conv.layer.bias.numpy() != 0, filters_alive == 1)
    gm = fc.mask.numpy()
    assert (gm.max(axis=0) == 0).sum() == 1 and (gm.max(axis=1) == 0).sum() == 3
    for w in (conv, fc):
        kernel = w.layer.kernel.numpy()
        assert not (kernel * (1 - w.mask.numpy())).any()
    # NumPy reference: step 1 projects the initial kernels and step 2 keeps the
    # result (the pruned groups are zero). Filter(0.5): the 3 of 6 filters of
    # largest L2 norm; Combined on fc's 6 x 3 kernel: 2 filters x 3 columns.
    norms = np.linalg.norm(initial["c"].reshape(-1, 6), axis=0)
    np.testing.assert_array_equal(filters_alive, np.isin(np.arange(6), np.argsort(norms)[3:]))
    assert_combined_block(initial["fc"], gm, 2, 3)


def test_scheme_mode_projects_only_when_the_schedule_says():
    pruned = compiled(prune_structured(small_dense_conv(), {"c": schemes.Filter(0.5)},
                                       SchemeSchedule(frequency=10, begin_step=2)))
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    pruned.fit(X[:4], Y[:4], batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
    assert wrapper(pruned, "c").mask.numpy().all()  # step 1 < begin_step
    pruned.fit(X[:4], Y[:4], batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
    assert wrapper(pruned, "c").mask.numpy().mean() == 0.5  # step 2


def test_scheme_schedule():
    schedule = SchemeSchedule(frequency=3, begin_step=2, end_step=8)
    assert [bool(schedule(tf.constant(s, tf.int64))[0]) for s in range(10)] == [
        s in (2, 5, 8) for s in range(10)
    ]
    assert SchemeSchedule.from_config(schedule.get_config()["config"]).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="frequency"):
        SchemeSchedule(frequency=0)


def test_scheme_mode_without_the_callback_fails_with_tfmot_message():
    pruned = compiled(prune_structured(small_dense_conv(), {"c": schemes.Filter(0.5)}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="UpdatePruningStep"):
        pruned.fit(X[:4], Y[:4], batch_size=4, epochs=1, verbose=0)


# ---- config and saving ------------------------------------------------------

def test_config_round_trip_keeps_scheme_mask_and_schedule(trained):
    _, masks, pruned = trained
    scheme_wrapped = StructuredPruneLowMagnitude(
        L.Dense(3, name="d"), scheme=schemes.Combined(0.5, 0.25), pruning_schedule=SchemeSchedule(7)
    )
    for w in [wrapper(pruned, name) for name in masks] + [scheme_wrapped]:
        config = json.loads(json.dumps(w.get_config()))
        again = StructuredPruneLowMagnitude.from_config(config)
        config["layer"].pop("build_config", None)  # only built layers have it
        assert json.loads(json.dumps(again.get_config())) == config
        assert again.scheme == w.scheme and again.pruning_schedule.get_config() == w.pruning_schedule.get_config()
    config = wrapper(pruned, "dw").get_config()
    np.testing.assert_array_equal(wrappers._decode_mask(config["mask"]), masks["dw"])


def test_clone_model_keeps_fixed_masks(trained):
    _, masks, pruned = trained
    clone = keras.models.clone_model(pruned)
    for name, mask in masks.items():
        np.testing.assert_array_equal(wrapper(clone, name).mask.numpy(), mask)


def test_save_and_load_keras_file(trained, tmp_path):
    _, masks, pruned = trained
    scheme_model = prune_structured(small_dense_conv(), {"c": schemes.Column(0.5)})
    for model in (pruned, scheme_model):
        path = str(tmp_path / f"{model.name}.keras")
        model.save(path)
        for loaded in (keras.models.load_model(path),
                       keras.models.load_model(path, custom_objects=wrappers.custom_objects())):
            for a, b in zip(model.layers, loaded.layers):
                assert type(a) is type(b)
                for va, vb in zip(a.weights, b.weights):
                    np.testing.assert_array_equal(va.numpy(), vb.numpy())
            np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert keras.models.load_model(path).get_layer(WRAPPED + "c").scheme == schemes.Column(0.5)


# ---- errors ---------------------------------------------------------------

def test_unknown_layer_name_lists_prunable_layers():
    with pytest.raises(ValueError, match=r"no layer named \['nope'\].*\['bn1', 'c1', 'dw', 'fc', 'sep'\]"):
        prune_structured(conv_bn_model(), {"nope": np.ones(3)})


def test_wrong_mask_shape_names_layer_and_both_shapes():
    with pytest.raises(ValueError, match=r"layer 'c1' has shape \(3, 3, 3, 5\).*shape \(3, 3, 3, 4\)"):
        prune_structured(conv_bn_model(), {"c1": np.ones((3, 3, 3, 5))})
    with pytest.raises(ValueError, match=r"layer 'd' has shape \(4, 2\), but its kernel has shape \(3, 2\)"):
        keras.Sequential([keras.Input((3,)), StructuredPruneLowMagnitude(L.Dense(2, name="d"), mask=np.ones((4, 2)))])


def test_bad_wrapper_arguments():
    with pytest.raises(TypeError, match=r"layer 'relu' is a ReLU; structured pruning wraps"):
        prune_structured(conv_bn_model(), {"relu": np.ones(3)})
    with pytest.raises(TypeError, match="is a Conv2DTranspose"):
        StructuredPruneLowMagnitude(L.Conv2DTranspose(2, 3), mask=np.ones((3, 3, 2, 2)))
    with pytest.raises(ValueError, match="exactly one of scheme= .* or mask="):
        StructuredPruneLowMagnitude(L.Dense(2, name="d"))
    with pytest.raises(ValueError, match="exactly one of"):
        StructuredPruneLowMagnitude(L.Dense(2, name="d"), scheme=schemes.Filter(0.5), mask=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"'bn' is a BatchNormalization: it takes a fixed 1-D"):
        StructuredPruneLowMagnitude(L.BatchNormalization(name="bn"), scheme=schemes.Filter(0.5))
    with pytest.raises(ValueError, match=r"layer 'd' must hold only 0 and 1.*0\.5"):
        StructuredPruneLowMagnitude(L.Dense(2, name="d"), mask=np.full((3, 2), 0.5))
    with pytest.raises(TypeError, match="must be a tfautocompress.schemes.Scheme"):
        StructuredPruneLowMagnitude(L.Dense(2, name="d"), scheme=0.5)


@pytest.mark.parametrize("scale", [True, False])
def test_a_masked_channel_leaves_batch_norm_as_zero_with_or_without_gamma(scale):
    """InceptionV3's BN has no gamma (scale=False): masking beta alone keeps a dead
    channel at zero, since BN normalises the zeros it reads to zero in training."""
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(3, 3, name="c"),
                              L.BatchNormalization(scale=scale, name="bn")])
    model.get_layer("bn").set_weights([np.full(3, 0.5, np.float32)
                                       for _ in model.get_layer("bn").get_weights()])
    mask = np.ones((3, 3, 2, 3), np.float32)
    mask[..., 1] = 0.0
    pruned = prune_structured(model, {"c": mask, "bn": np.array([1.0, 0.0, 1.0], np.float32)})
    y = pruned(np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype(np.float32),
               training=True).numpy()
    assert not y[..., 1].any() and y[..., 0].any()
