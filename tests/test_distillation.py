"""Distiller: the soft loss against NumPy, its laws, ADMM / masked retraining inside it,
and the teacher's outputs computed once."""
import dataclasses

import numpy as np
import pytest

from tfautocompress import data as data_lib
from tfautocompress._keras import keras
from tfautocompress.callbacks import masked_retraining
from tfautocompress.callbacks.admm import ADMM
from tfautocompress.callbacks.distillation import Distiller, teacher_targets
from tfautocompress.schemes import Filter


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="out")(x))


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 6, 6, 2)).astype(np.float32),
            rng.integers(0, 4, n).astype(np.int64))


def compile_adam(model):
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")


def test_soft_loss_is_the_tempered_kl_divergence():
    teacher, student = tiny_model(0), tiny_model(1)
    distiller = Distiller(student, teacher, temperature=3.0)
    p, q = np.array([[0.7, 0.1, 0.1, 0.1]]), np.array([[0.25, 0.25, 0.4, 0.1]])
    pt, qt = p ** (1 / 3) / np.sum(p ** (1 / 3)), q ** (1 / 3) / np.sum(q ** (1 / 3))
    expected = 9.0 * np.sum(pt * np.log(pt / qt))
    assert float(distiller.soft_loss(p, q)[0]) == pytest.approx(expected, rel=1e-5)
    assert float(distiller.soft_loss(p, p)[0]) == pytest.approx(0.0, abs=1e-6)


def test_evaluation_reports_the_soft_term_on_the_data_it_scores():
    teacher, student = tiny_model(0), tiny_model(1)
    distiller = Distiller(student, teacher, temperature=2.0)
    compile_adam(distiller)
    x, y = data(32)
    logs = distiller.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    expected = np.mean(distiller.soft_loss(teacher.predict(x, verbose=0),
                                           student.predict(x, verbose=0)))
    assert logs["distill_loss"] == pytest.approx(float(expected), rel=1e-4)
    assert logs["distill_loss"] > 0.0  # not the idle training tracker's 0


def test_weight_zero_is_plain_training_and_a_teacher_twin_moves_nothing():
    x, y = data()
    plain = tiny_model(1)
    compile_adam(plain)
    keras.utils.set_random_seed(5)
    plain.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    student = tiny_model(1)
    distiller = Distiller(student, tiny_model(0), weight=0.0)
    compile_adam(distiller)
    keras.utils.set_random_seed(5)
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(plain.get_weights(), student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # only the soft term, towards a teacher computing what the student computes: no
    # gradient (SGD: Adam would blow float round-off up to whole steps)
    twin, before = tiny_model(2), tiny_model(2).get_weights()
    distiller = Distiller(twin, tiny_model(2), weight=1.0)
    distiller.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(before, twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_the_student_moves_towards_the_teacher():
    x, y = data()
    teacher, student = tiny_model(0), tiny_model(1)
    distiller = Distiller(student, teacher, weight=1.0, temperature=1.0)
    compile_adam(distiller)
    gap = lambda: float(np.mean(distiller.soft_loss(teacher.predict(x, verbose=0),  # noqa: E731
                                                    student.predict(x, verbose=0))))
    before = gap()
    history = distiller.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert gap() < 0.3 * before
    assert "distill_loss" in history.history and history.history["distill_loss"][-1] < before


def test_admm_and_masked_retraining_run_inside_a_distiller():
    x, y = data()
    teacher = tiny_model(0)
    masks = {"conv": np.ones((3, 3, 2, 8), np.float32)}
    masks["conv"][..., :4] = 0.0
    pruned = masked_retraining.wrap(tiny_model(1), masks)
    admm = ADMM({"out": Filter(0.5)}, rho=1.0)
    distiller = Distiller(pruned, teacher, weight=0.5)
    compile_adam(distiller)
    history = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0,
                            callbacks=[admm] + masked_retraining.callbacks())
    assert history.history["admm_penalty"][-1] > 0  # the penalty was part of the loss
    stripped = masked_retraining.strip(pruned)
    assert np.all(stripped.get_layer("conv").kernel.numpy()[..., :4] == 0)


def digits_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(x))


def test_teacher_outputs_computed_once_train_as_the_teacher_called_each_step():
    splits = data_lib.load("digits", image_size=8, channels=1, batch_size=64)
    teacher = digits_model(0)
    paired = splits.with_train_targets(teacher_targets(teacher))
    # each reshuffled pass pairs the same batches with the teacher's outputs on them
    for (x, y), (px, py) in zip(splits.reshuffled(3).train, paired.reshuffled(3).train):
        np.testing.assert_array_equal(px, x)
        np.testing.assert_array_equal(py["labels"], y)
        np.testing.assert_allclose(py["teacher_outputs"], teacher(x), atol=1e-6)
    assert paired.take(2).reshuffled(4).train.cardinality() == 2
    # a Distiller reads them from the batch (not calling its own teacher, another
    # model here) and trains as if it called the teacher that computed them
    trained = []
    for train, called in ((splits.reshuffled(5).train, teacher),
                          (paired.reshuffled(5).train, digits_model(7))):
        student = Distiller(digits_model(1), called, weight=0.5)
        compile_adam(student)
        student.fit(train, epochs=2, verbose=0)
        trained.append(student.get_weights())
    for a, b in zip(*trained):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # where a stored example is not what trains, nothing is computed
    augmented = data_lib.load("digits", image_size=8, channels=1, augment=True)
    by_hand = dataclasses.replace(splits, train=splits.train.take(3))
    for kept in (augmented, by_hand):
        assert kept.with_train_targets(teacher_targets(teacher)) is kept


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="temperature"):
        Distiller(tiny_model(), tiny_model(), temperature=0)
    with pytest.raises(ValueError, match="weight"):
        Distiller(tiny_model(), tiny_model(), weight=1.5)
