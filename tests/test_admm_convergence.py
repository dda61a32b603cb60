"""ADMM that converges: the proximal W-step, the dual residual, residual balancing,
and the hard prune's cut, against NumPy references."""
import numpy as np
import pytest

from tfautocompress._keras import keras
from tfautocompress.callbacks.admm import ADMM
from tfautocompress.schemes import Combined, Filter


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))


def zero_data(n=8):
    # zero inputs and zero targets: the task loss has no gradient on either kernel
    return np.zeros((n, 4, 4, 2), np.float32), np.zeros((n, 3), np.float32)


def test_the_proximal_step_is_the_penalty_s_closed_form_prox():
    model = tiny_model()
    admm = ADMM({"conv": Combined(0.5, 0.25)}, rho=0.7, prox_step=0.3)
    admm.set_model(model)
    rng = np.random.default_rng(0)
    kernel = model.get_layer("conv").kernel
    slot = admm._slots[0]
    w, z, u = (rng.standard_normal(kernel.shape).astype(np.float32) for _ in range(3))
    kernel.assign(w)
    slot.z.assign(z)
    slot.u.assign(u)
    admm._prox(0.3)
    # argmin_V rho/2 ||V - Z + U||^2 + 1/(2 eta) ||V - W||^2, solved by its normal equation
    eta, rho = 0.3, 0.7
    expected = (w / eta + rho * (z - u)) / (1 / eta + rho)
    np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_dual_residual_and_balanced_rho_follow_boyd():
    model = tiny_model()
    admm = ADMM({"conv": Filter(0.5)}, rho=0.1, rho_max=10.0, rho_factor=2.0,
                rho_schedule="balanced", balance=10.0)
    kernel, scheme = model.get_layer("conv").kernel, Filter(0.5)
    # two strong filters and two weak ones: the support stays put
    w = np.random.default_rng(1).standard_normal(kernel.shape).astype(np.float32)
    w[..., 2:] *= 0.01
    kernel.assign(w)
    admm.set_model(model)
    z, u, rho = scheme.project(w, "conv"), np.zeros_like(w), 0.1
    # W still: primal >> dual (rho rises); then W moved onto its constraint set with
    # its kept filters changed: dual >> primal (rho falls)
    on_the_set = scheme.project(w, "conv") * 3.0
    moves = []
    for w in [w, w, w, on_the_set, on_the_set * 2.0]:
        kernel.assign(w)
        admm.update()
        new_z = scheme.project(w + u, "conv")
        r = np.linalg.norm(w - new_z) / np.linalg.norm(w)
        s = np.linalg.norm(new_z - z) / np.linalg.norm(w)
        u, z = u + w - new_z, new_z
        new_rho = min(max(rho * 2 if r > 10 * s else rho / 2 if s > 10 * r else rho, 0.1), 10.0)
        u, moves, rho = u * rho / new_rho, moves + [np.sign(new_rho - rho)], new_rho
        assert admm._slots[0].residual == pytest.approx(r, rel=1e-5, abs=1e-7)
        assert admm._slots[0].dual == pytest.approx(s, rel=1e-5, abs=1e-7)
        assert admm.state["conv"]["rho"] == pytest.approx(rho)
        np.testing.assert_allclose(admm.state["conv"]["u"], u, rtol=1e-4, atol=1e-6)
    assert moves == [1, 1, 1, -1, -1], moves


def _cut_after(admm, optimizer, steps=40):
    model = tiny_model()
    model.compile(optimizer, keras.losses.MeanSquaredError())
    x, y = zero_data(steps)
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[admm])
    admm.hard_prune()
    return admm.cut


def test_the_proximal_w_step_brings_w_onto_the_constraint_set_where_adam_cannot():
    policy = {"conv": Filter(0.5), "dense": Combined(0.5, 0.5)}
    # the same rho and 40 steps: Adam moves W by at most its learning rate per step
    in_loss = _cut_after(ADMM(policy, rho=1.0, update_every=1), keras.optimizers.Adam(1e-3))
    prox = _cut_after(ADMM(policy, rho=1.0, update_every=1, prox_step=1.0),
                      keras.optimizers.Adam(1e-3))
    assert min(in_loss.values()) > 0.3, in_loss  # the hard prune cuts a third of W or more
    assert max(prox.values()) < 0.02, prox  # W already sits on the constraint set


def test_the_landing_converges_in_the_last_steps_only():
    policy = {"conv": Filter(0.5), "dense": Combined(0.5, 0.5)}
    x, y = zero_data(20)
    runs = {}
    for landing in (None, 0.5):
        model = tiny_model()
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.MeanSquaredError())
        admm = ADMM(policy, rho=1.0, final_rho=10.0, landing=landing)
        first = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs, m=model: (
            runs.setdefault(landing, m.get_layer("conv").kernel.numpy()) if epoch == 0 else None))
        model.fit(x, y, batch_size=1, epochs=2, verbose=0, callbacks=[admm, first])
        admm.hard_prune()
        runs[landing] = (runs[landing], admm.cut, admm.updates)
    (before, slow, updates), (landed_before, landed, landing_updates) = runs[None], runs[0.5]
    np.testing.assert_array_equal(landed_before, before)  # the first epoch: no landing
    assert min(slow.values()) > 0.3, slow  # the penalty in the loss: far from the set
    assert max(landed.values()) < 0.02, landed  # landed: the hard prune cuts nothing
    # once an epoch, plus four times in the 10 landing steps of the last epoch
    assert (updates, landing_updates) == (2, 2 + 4)


def test_the_landing_needs_a_train_set_of_known_length():
    import tensorflow as tf

    model = tiny_model()
    model.compile("adam", keras.losses.MeanSquaredError())
    x, y = zero_data(4)
    unknown = tf.data.Dataset.from_generator(
        lambda: iter([(x[:2], y[:2])]), output_signature=(
            tf.TensorSpec((None, 4, 4, 2)), tf.TensorSpec((None, 3))))
    with pytest.raises(ValueError, match="landing needs the number of steps per epoch"):
        model.fit(unknown, epochs=1, verbose=0,
                  callbacks=[ADMM({"conv": Filter(0.5)}, landing=0.25)])


def test_the_hard_prune_cut_is_the_norm_of_what_it_zeroes():
    model = tiny_model()
    admm = ADMM({"conv": Filter(0.5)})
    admm.set_model(model)
    w = model.get_layer("conv").kernel.numpy()
    norms = np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0)
    dropped = np.sort(norms)[:2]  # half of 4 filters, the smallest L2 norms
    admm.hard_prune()
    assert admm.cut["conv"] == pytest.approx(np.sqrt(np.sum(dropped ** 2)) / np.linalg.norm(w),
                                             rel=1e-5)


def test_the_cut_leaves_out_rows_that_read_a_channel_dying_upstream():
    # conv loses two of its 4 filters; dense (its scheme prunes nothing itself) loses
    # the rows that read them: they read zeros, so the cut is 0 there
    model = tiny_model()
    admm = ADMM({"conv": Filter(0.5), "dense": Filter(0.0)})
    admm.set_model(model)
    dense = model.get_layer("dense").kernel.numpy()
    masks = admm.hard_prune()
    dead_rows = masks["dense"].sum(axis=1) == 0
    assert dead_rows.sum() == 2 * 16 and np.abs(dense[dead_rows]).sum() > 0  # cut, read 0
    assert admm.cut["dense"] == 0.0 and admm.cut["conv"] > 0.3


@pytest.mark.parametrize("kwargs,message", [({"prox_step": 0}, "prox_step"),
                                            ({"rho_schedule": "adaptive"}, "rho_schedule"),
                                            ({"balance": 1.0}, "balance"),
                                            ({"landing": 0}, "landing"),
                                            ({"landing": 1.5}, "landing")])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ADMM({"conv": Filter(0.5)}, **kwargs)
