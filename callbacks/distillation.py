"""Knowledge distillation from the dense model, in any ``model.fit`` (beyond the paper).

    student = Distiller(pruned_model, teacher=dense_model, temperature=4.0, weight=0.5)
    student.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    student.fit(train, callbacks=[ADMM(policy)])         # or masked retraining's

``Distiller`` is the student model itself (a functional model on the same layers,
so training it trains them, and ``ADMM`` and masked retraining find their layers)
whose training step minimises

    (1 - weight) * task loss + weight * T^2 * KL(softmax(t / T) || softmax(s / T))
        + the model's own losses (ADMM's penalty)

with ``t``, ``s`` the teacher's and the student's logits (Hinton et al. 2015; the
T^2 keeps the soft term's gradients on the task loss's scale). Outputs that are
probabilities (a softmax layer, ``from_logits=False``) are turned into logits by
their log. The teacher only predicts: it is neither trained nor saved with the
student. ``loss`` in the logs is the task loss plus the model's own losses, as
without distillation; ``distill_loss`` is the soft term.

The teacher's forward pass costs about a third of a training step. Where the
training examples are not augmented, compute its outputs once instead:
``splits.with_train_targets(teacher_targets(teacher))`` pairs each label with them
(``{"labels": y, "teacher_outputs": t}``), and the training step reads them from
the batch. Validation batches carry plain labels; the teacher predicts them.
"""
import tensorflow as tf

from tfautocompress._keras import keras

__all__ = ["Distiller", "teacher_targets"]

LABELS, TEACHER_OUTPUTS = "labels", "teacher_outputs"


def teacher_targets(teacher):
    """``(x, y) -> {"labels": y, "teacher_outputs": teacher(x)}``: training targets
    that carry ``teacher``'s outputs, for ``Splits.with_train_targets``."""
    return lambda x, y: {LABELS: y, TEACHER_OUTPUTS: teacher(x, training=False)}


class Distiller(keras.Model):
    """``student`` trained towards ``teacher``'s softened predictions (module doc).

    Args:
      student: the tf_keras model to train (its layers are shared, not copied).
      teacher: a model of the same inputs and classes; only called.
      temperature: T > 0, the softening of both distributions.
      weight: share of the soft term, in [0, 1] (0: plain training).
      from_logits: whether the models output logits (default: probabilities).
    """

    def __init__(self, student, teacher, temperature=4.0, weight=0.5, from_logits=False):
        if not temperature > 0:
            raise ValueError(f"Distiller temperature must be > 0, got {temperature!r}.")
        if not 0 <= weight <= 1:
            raise ValueError(f"Distiller weight must be in [0, 1], got {weight!r}.")
        if tuple(teacher.output_shape) != tuple(student.output_shape):
            raise ValueError(
                f"Distiller teacher {teacher.name!r} outputs {teacher.output_shape}, student "
                f"{student.name!r} {student.output_shape}: distil between models of the "
                "same classes.")
        super().__init__(inputs=student.inputs, outputs=student.outputs, name=student.name)
        # not a tracked attribute: the teacher's weights are neither trained nor saved
        object.__setattr__(self, "_teacher", teacher)
        self.temperature, self.weight = float(temperature), float(weight)
        self.from_logits = bool(from_logits)
        self._distill_tracker = keras.metrics.Mean(name="distill_loss")

    @property
    def metrics(self):
        return super().metrics + [self._distill_tracker]

    def soft_loss(self, teacher_out, student_out):
        """Per-example ``T^2 * KL(softmax(t / T) || softmax(s / T))``."""
        t, s = (self._logits(v) / self.temperature for v in (teacher_out, student_out))
        log_p, log_q = tf.nn.log_softmax(t), tf.nn.log_softmax(s)
        return self.temperature ** 2 * tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)

    def _logits(self, outputs):
        outputs = tf.cast(outputs, tf.float32)
        return outputs if self.from_logits else tf.math.log(tf.maximum(outputs, 1e-12))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(y, dict) and TEACHER_OUTPUTS in y:  # computed once (teacher_targets)
            y, teacher_out = y[LABELS], y[TEACHER_OUTPUTS]
        else:
            teacher_out = self._teacher(x, training=False)
        teacher_out = tf.stop_gradient(teacher_out)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            own = tf.add_n(self.losses) if self.losses else tf.constant(0.0)
            # compiled_loss divides its terms by the replicas (their gradients are
            # summed over them); the soft term and the own losses are divided alike
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            own = own / replicas
            loss = self.compiled_loss(y, y_pred, sample_weight, regularization_losses=self.losses)
            soft = tf.reduce_mean(self.soft_loss(teacher_out, y_pred))
            total = (1.0 - self.weight) * (loss - own) + (self.weight * soft) / replicas + own
        self.optimizer.minimize(total, self.trainable_variables, tape=tape)
        self._distill_tracker.update_state(soft)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data):
        # Model.test_step's loss and metrics, and the soft term (``val_distill_loss``)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        self.compute_loss(x, y, y_pred, sample_weight)
        self._distill_tracker.update_state(tf.reduce_mean(
            self.soft_loss(self._teacher(x, training=False), y_pred)))
        return self.compute_metrics(x, y, y_pred, sample_weight)
