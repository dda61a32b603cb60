"""Scaling out training on ``tf.distribute`` (the keras-tuner search workers: ``search.workers``).

**Training** (``--distribution`` / ``Config.distribution``): baseline training,
ADMM, masked retraining and fine-tuning build and compile their models inside
``scope(strategy(name))``:

* ``"none"``: the default strategy (one device);
* ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over all local GPUs, or over
  all logical CPU devices when there is no GPU (then with
  ``ReductionToOneDevice``: the default collective all-reduce on CPUs misorders
  the synchronized BatchNormalization's collectives);
* ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` from the
  ``TF_CONFIG`` environment variable; every task runs the same command, and
  tasks other than the chief write under ``<output_dir>/.tasks/<type>_<id>``
  (``output_dir``).

The global-batch / learning-rate rule: ``batch_size`` is the *global* batch —
each of the N replicas gets ``batch_size / N`` examples of every step (it must
divide evenly, ``check_batch_size``), the gradients are all-reduced into the
mean over the global batch, and ``lr`` is the learning rate of that global
batch, unchanged by N. BatchNormalization layers are synchronized across
replicas (``synchronized=True``, ``with_batch_norm``), so they normalise with the
global batch's statistics. A run therefore takes the same steps on 1 or N
devices, within float round-off; to train a larger batch on more devices, raise
``batch_size`` and ``lr`` together (the linear rule, Goyal et al. 2017). The ADMM
Z/U updates, the hard prune and the BN recalibration run in the callbacks'
cross-replica context: one update per step boundary, assigned to every replica.
"""
import contextlib
import functools
import os

import tensorflow as tf

from tfautocompress._keras import keras

__all__ = ["DISTRIBUTIONS", "strategy", "scope", "check_batch_size", "output_dir",
           "with_batch_norm"]

DISTRIBUTIONS = ("none", "mirrored", "multi_worker")


@functools.lru_cache(maxsize=None)
def strategy(distribution):
    """The ``tf.distribute.Strategy`` of ``distribution`` (see module doc); None for
    ``"none"``. One object per name and process (MultiWorkerMirroredStrategy must
    be created once, before other TensorFlow work)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"--distribution={distribution!r}; accepted: {', '.join(DISTRIBUTIONS)}.")
    if distribution == "none":
        return None
    if distribution == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--distribution=multi_worker needs the TF_CONFIG environment variable "
                '(e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' on the first machine); set it on '
                "every machine, or use --distribution=mirrored on one machine.")
        if "KERASTUNER_ORACLE_IP" in os.environ:
            raise ValueError(
                "--distribution=multi_worker cannot be combined with keras-tuner search "
                "workers (KERASTUNER_ORACLE_IP is set): every TF_CONFIG task runs the whole "
                "job; unset KERASTUNER_TUNER_ID/KERASTUNER_ORACLE_IP/KERASTUNER_ORACLE_PORT, "
                "or use --distribution=mirrored on the keras-tuner chief.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def scope(strategy_):
    """``strategy_.scope()``, or a no-op context for None."""
    return strategy_.scope() if strategy_ is not None else contextlib.nullcontext()


def check_batch_size(batch_size, strategy_, flag="--batch_size"):
    """Raise unless the global ``batch_size`` splits evenly over the replicas."""
    replicas = strategy_.num_replicas_in_sync if strategy_ is not None else 1
    if batch_size % replicas:
        raise ValueError(f"{flag}={batch_size} is the global batch and must be a multiple of "
                         f"the {replicas} replicas; use e.g. {flag}="
                         f"{max(replicas, batch_size // replicas * replicas)}.")


def output_dir(path, strategy_):
    """Where this process writes: ``path``, or ``path/.tasks/<type>_<id>`` for a
    multi-worker task other than the chief (worker 0 when there is no chief)."""
    resolver = getattr(strategy_, "cluster_resolver", None)
    if not isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return path
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0):
        return path
    return os.path.join(path, ".tasks", f"{task_type}_{task_id}")


def with_batch_norm(model, momentum=None, synchronized=False):
    """A copy of ``model`` (same weights) whose BatchNormalization layers use
    ``momentum`` (None: their own) and, with ``synchronized``, the global batch's
    statistics across replicas; ``model`` itself when nothing changes."""
    if momentum is None and not synchronized:
        return model

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            if momentum is not None:
                config["momentum"] = momentum
            if synchronized:
                config.update(synchronized=True, fused=None)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
