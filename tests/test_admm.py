"""ADMM callback: update math and loss term against NumPy references, fit wiring."""
import numpy as np
import pytest
import tensorflow as tf

from tfautocompress._keras import keras
from tfautocompress.callbacks.admm import ADMM
from tfautocompress.schemes import Combined, Filter, Column

POLICY = {"conv": Filter(0.5), "dense": Column(0.5)}


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, name="dense")(x)
    return keras.Model(inputs, outputs)


def compile_sgd(model, lr=0.1):
    model.compile(keras.optimizers.SGD(lr), keras.losses.MeanSquaredError())


def zero_data(n=8):
    # Zero inputs and targets equal to the (zero-bias) output: the data loss has no
    # gradient on either kernel, so SGD moves kernels by the ADMM term alone.
    return np.zeros((n, 4, 4, 2), np.float32), np.zeros((n, 3), np.float32)


def kernels(model):
    return {name: model.get_layer(name).kernel.numpy() for name in POLICY}


def test_updates_match_numpy_reference():
    model = tiny_model()
    admm = ADMM({"conv": Combined(0.5, 0.25)}, rho=1e-2, rho_factor=2.0, rho_every=2,
                rho_max=3e-2)
    admm.set_model(model)
    kernel = model.get_layer("conv").kernel
    scheme = Combined(0.5, 0.25)
    w = kernel.numpy()
    z, u, rho = scheme.project(w, "conv"), np.zeros_like(w), 1e-2
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        w = w + 0.1 * rng.standard_normal(w.shape).astype(np.float32)
        kernel.assign(w)
        admm.update()
        z = scheme.project(w + u, "conv")
        u = u + w - z
        if k % 2 == 0:
            new = min(2.0 * rho, 3e-2)
            u, rho = u * rho / new, new
        state = admm.state["conv"]
        np.testing.assert_allclose(state["z"], z, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(state["u"], u, rtol=1e-5, atol=1e-6)
        assert state["rho"] == pytest.approx(rho)
    assert admm.updates == 5 and rho == 3e-2  # the cap was reached


def test_loss_term_and_gradient_are_squared_frobenius():
    model = tiny_model()
    admm = ADMM(POLICY, rho=0.3)
    admm.set_model(model)
    rng = np.random.default_rng(1)
    admm.on_train_begin()
    for slot in admm._slots:
        slot.z.assign(rng.standard_normal(slot.z.shape))
        slot.u.assign(rng.standard_normal(slot.u.shape))
    state = admm.state
    with tf.GradientTape() as tape:
        (loss,) = model.losses
    grads = tape.gradient(loss, [model.get_layer(n).kernel for n in POLICY])
    expected = 0.0
    for name, grad in zip(POLICY, grads):
        d = kernels(model)[name] - state[name]["z"] + state[name]["u"]
        expected += 0.3 / 2 * np.sum(d ** 2)
        np.testing.assert_allclose(grad.numpy(), 0.3 * d, rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    admm.on_train_end()
    assert model.losses == []


@pytest.mark.parametrize("order", ["compiled_and_trained_before", "compiled_after"])
def test_fit_applies_the_penalty_gradient(order):
    model = tiny_model()
    x, y = zero_data()
    if order == "compiled_and_trained_before":
        compile_sgd(model)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # caches a train function
    admm = ADMM(POLICY, rho=0.5, update_every=1000)
    if order == "compiled_after":
        compile_sgd(model)
    before = kernels(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[admm])
    after = kernels(model)
    for name in POLICY:
        z = admm.state[name]["z"]  # no update yet: Z = Pi(W0), U = 0
        expected = before[name] - 0.1 * 0.5 * (before[name] - z)
        np.testing.assert_allclose(after[name], expected, rtol=1e-5, atol=1e-6)
    assert model.losses == []  # removed at on_train_end


def test_state_persists_across_fits_and_updates_count_steps():
    model = tiny_model()
    compile_sgd(model)
    x, y = zero_data(16)
    admm = ADMM(POLICY, rho=0.5, update_every=3, rho_factor=1.0)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[admm])  # 8 steps
    assert admm.updates == 2
    u = admm.state["conv"]["u"]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[admm])  # 4 more
    assert admm.updates == 4
    assert np.abs(u).sum() > 0 and not np.allclose(admm.state["conv"]["u"], u)


def test_mirrored_strategy_single_device():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = tiny_model()
        compile_sgd(model)
    x, y = zero_data()
    before = kernels(model)
    admm = ADMM(POLICY, rho=0.5, update_every="epoch")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[admm])
    z = admm.state["conv"]["z"]
    # One SGD step on the penalty alone, then the epoch-end update Z = Pi(W1 + 0).
    w0 = before["conv"]
    w1 = model.get_layer("conv").kernel.numpy()
    np.testing.assert_allclose(w1, w0 - 0.05 * (w0 - Filter(0.5).project(w0, "conv")),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z, Filter(0.5).project(w1, "conv"), atol=1e-7)
    assert admm.updates == 1 and "admm_res" in history.history


def test_residual_falls_and_logs_reach_history():
    # A teacher that satisfies the constraints: a pruned zero-loss solution exists.
    teacher = tiny_model(seed=1)
    for name, scheme in POLICY.items():
        kernel = teacher.get_layer(name).kernel
        kernel.assign(scheme.project(kernel.numpy(), None))
    x = np.random.default_rng(0).standard_normal((64, 4, 4, 2)).astype(np.float32)
    y = teacher.predict(x, verbose=0)
    model = tiny_model()
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.MeanSquaredError())
    admm = ADMM(POLICY, rho=1.0, rho_max=10.0)
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0, callbacks=[admm]).history
    for key in ("admm_res", "admm_zero", "admm_rho", "admm_penalty", "task_loss"):
        assert len(history[key]) == 8, key
    for key in ("admm_res/conv", "admm_zero/dense"):  # per layer: not in the printed logs
        assert len(admm.layer_history[key]) == 8 and key not in history, key
    # Keras' loss = the task loss + the rho penalty, each an epoch mean.
    assert history["admm_penalty"][0] > 0
    np.testing.assert_allclose(np.add(history["task_loss"], history["admm_penalty"]),
                               history["loss"], rtol=1e-5)
    assert history["admm_res"][-1] < 0.6 * history["admm_res"][0]
    assert history["admm_zero"][-1] > history["admm_zero"][0]


def test_hard_prune_projects_in_place_and_returns_masks():
    model = tiny_model()
    admm = ADMM(POLICY, hard_prune_on_train_end=True)
    compile_sgd(model)
    before = {}  # the kernels at the end of fit, just before the hard prune
    probe = keras.callbacks.LambdaCallback(on_train_end=lambda logs: before.update(kernels(model)))
    model.fit(*zero_data(), verbose=0, callbacks=[probe, admm])
    masks = admm.masks
    # NumPy reference. conv, Filter(0.5): keep the 2 of 4 filters of largest L2 norm.
    keep_filters = np.zeros(4, bool)
    keep_filters[np.argsort(np.linalg.norm(before["conv"].reshape(-1, 4), axis=0))[2:]] = True
    expected = {"conv": np.broadcast_to(keep_filters, (3, 3, 2, 4)).astype(np.float32)}
    # dense, Column(0.5): Flatten's row r reads conv channel r % 4; the rows of the two
    # dead channels are out, and half of the 32 live rows (largest L2 norms) stay.
    live = np.flatnonzero(np.tile(keep_filters, 16))
    rows = live[np.argsort(np.linalg.norm(before["dense"][live], axis=1))[16:]]
    expected["dense"] = np.zeros((64, 3), np.float32)
    expected["dense"][rows] = 1.0
    for name in POLICY:
        assert masks[name].dtype == np.float32
        np.testing.assert_array_equal(masks[name], expected[name])
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(),
                                      before[name] * expected[name])  # in place
    assert not np.array_equal(before["dense"], before["dense"] * expected["dense"])


class _PolicyLike:
    def schemes(self):
        return {"conv": Filter(0.5)}


def test_policy_objects_and_errors():
    model = tiny_model()
    admm = ADMM(_PolicyLike())
    admm.set_model(model)
    assert list(admm.state) == ["conv"]
    with pytest.raises(ValueError, match="'nope'.*conv"):
        ADMM({"nope": Filter(0.5)}).set_model(model)
    with pytest.raises(TypeError, match="'conv'.*float"):
        ADMM({"conv": 0.5})
    with pytest.raises(ValueError, match="update_every.*'often'"):
        ADMM(POLICY, update_every="often")
    with pytest.raises(ValueError, match="rho_max"):
        ADMM(POLICY, rho=1.0, rho_max=0.5)


def test_final_rho_ramps_the_last_epoch_only():
    model = tiny_model()
    compile_sgd(model)
    admm = ADMM(POLICY, rho=1e-2, rho_factor=1.0, final_rho=5.0)
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(admm.state["conv"]["rho"]))
    model.fit(*zero_data(), epochs=3, verbose=0, callbacks=[admm, probe])
    assert seen == [pytest.approx(1e-2), pytest.approx(1e-2), pytest.approx(5.0)]
    with pytest.raises(ValueError, match="final_rho"):
        ADMM(POLICY, final_rho=0.0)
