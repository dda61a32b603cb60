"""Scaling out on existing engines: ``tf.distribute`` for training, keras-tuner workers for search.

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

**Search** (keras-tuner's chief/worker mode, ``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``): the same
``tfautocompress-compress`` command is started as the chief and as workers. The
chief runs the whole pipeline; at each Phase I round its SA oracle is served to
the workers, which evaluate that round's trials, and the chief continues with
its decision (ADMM, retraining, purification, compaction: all on the chief,
under ``--distribution``). A worker (``search_worker``) follows the rounds
through the chief's ``state.json`` (so the output and baseline folders must be
on a file system every machine sees): it waits for the chief's oracle, checks
that the oracle serves the round the state says is next (the oracle tags its
trials ``sa/tag = round_<k>``), builds that round's ``PruningTuner`` and
evaluates trials until the oracle stops; it exits when Phase I has ended, and
fails after ``timeout_s`` seconds without an answering oracle. Fast evaluation
is seeded by the round, not by the process, so a trial scores the same on any
worker. The threshold search of Phase II runs on the chief alone
(``local_search``).
"""
import contextlib
import functools
import os
import time

import tensorflow as tf
from keras_tuner.src.distribute import utils as kt_distribute

from tfautocompress._keras import keras
from tfautocompress.search.oracle import InfeasibleTargetError

__all__ = ["DISTRIBUTIONS", "strategy", "scope", "check_batch_size", "output_dir",
           "with_batch_norm", "is_search_worker", "local_search", "search_worker"]

DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
_KT_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
_POLL_S = 1.0


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
        if kt_distribute.has_chief_oracle():
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


def is_search_worker():
    """True in a keras-tuner worker process (``KERASTUNER_TUNER_ID`` other than chief)."""
    return kt_distribute.has_chief_oracle() and not kt_distribute.is_chief_oracle()


@contextlib.contextmanager
def local_search():
    """Run the keras-tuner searches inside in this process alone (the chief's Phase II
    threshold search): the ``KERASTUNER_*`` variables are hidden meanwhile."""
    saved = {k: os.environ.pop(k) for k in _KT_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class _Chief:
    """A gRPC view of the chief oracle: which search it serves now, if any."""

    def __init__(self):
        from keras_tuner.src import protos  # after the env check, as keras-tuner does

        self.address = (f"{os.environ['KERASTUNER_ORACLE_IP']}:"
                        f"{os.environ['KERASTUNER_ORACLE_PORT']}")
        import grpc

        self._grpc, self._protos = grpc, protos
        self._stub = protos.get_service_grpc().OracleStub(grpc.insecure_channel(self.address))

    def served_tag(self, timeout_s):
        """The ``sa/tag`` of the oracle the chief serves, "" for an untagged one, or
        None when no oracle answers within ``timeout_s``."""
        from keras_tuner.engine import hyperparameters as hp_module

        try:
            response = self._stub.GetSpace(self._protos.get_service().GetSpaceRequest(),
                                           wait_for_ready=True, timeout=timeout_s)
        except self._grpc.RpcError:
            return None
        hps = hp_module.HyperParameters.from_proto(response.hyperparameters)
        return str(hps.values.get("sa/tag", ""))

    def timeout_error(self, timeout_s):
        return TimeoutError(
            f"search worker KERASTUNER_TUNER_ID={os.environ['KERASTUNER_TUNER_ID']}: no chief "
            f"oracle answered at KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT={self.address} "
            f"for {timeout_s:g} s (--worker_timeout); start the chief (the same command with "
            "KERASTUNER_TUNER_ID=chief) and check the address, or raise --worker_timeout "
            "above one round's ADMM + retraining time.")


def wait_for_chief(timeout_s):
    """Block until the chief serves an oracle (a worker's first contact)."""
    chief, deadline = _Chief(), time.monotonic() + timeout_s
    while chief.served_tag(max(min(_POLL_S, deadline - time.monotonic()), 0.01)) is None:
        if time.monotonic() >= deadline:
            raise chief.timeout_error(timeout_s)


def search_worker(pipeline, timeout_s, log=print):
    """Evaluate the chief's Phase I search trials, round after round (module doc).

    ``pipeline``: an ``AutoCompress`` on the chief's ``output_dir`` with the chief's
    settings. Returns ``{round: trials evaluated here}`` once Phase I has ended.
    After a search the worker rejoins the same round only once its oracle has
    gone (a resumed chief serving it again), not while it winds down.
    """
    chief, evaluated, built, finished = _Chief(), {}, (None, None), None
    deadline = time.monotonic() + timeout_s
    while pipeline.reload_state()["phase1_end"] is None:
        k = len(pipeline.state["rounds"]) + 1
        if built[0] != k:  # before the oracle is up: a late join must not miss the round
            try:
                built = (k, pipeline.search_tuner(k)[1])
            except InfeasibleTargetError:  # the chief ends Phase I there
                time.sleep(_POLL_S)
                continue
        tag = chief.served_tag(_POLL_S)  # blocks up to that long
        if tag is None:
            finished = None
            if time.monotonic() >= deadline:
                raise chief.timeout_error(timeout_s)
            continue
        deadline = time.monotonic() + timeout_s
        if tag != f"round_{k}" or finished == k:  # another round's oracle, winding down
            time.sleep(_POLL_S)
            continue
        tuner, start = built[1], time.perf_counter()
        tuner.search(verbose=0)  # until the oracle answers STOPPED
        finished, evaluated[k] = k, tuner.evaluated
        log(f"search worker: round {k}, {tuner.evaluated} trials evaluated here in "
            f"{time.perf_counter() - start:.2f} s")
    log(f"search worker: Phase I ended ({pipeline.state['phase1_end']}); "
        f"trials evaluated here per round: {evaluated}")
    return evaluated
