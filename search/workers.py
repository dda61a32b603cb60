"""keras-tuner's chief/worker mode for the Phase I search (``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``, keras-tuner's documented
environment): the same
``tfautocompress-compress`` command is started as the chief and as workers. The
chief runs the whole pipeline; at each Phase I round its SA oracle is served to
the workers, which evaluate that round's trials, and the chief continues with
its decision (ADMM, retraining, purification, compaction: all on the chief,
under ``--distribution``). A worker (``app.search_worker``) follows the rounds
through the chief's ``state.json`` (so the output and baseline folders must be
on a file system every machine sees): it waits for the chief's oracle, checks
that the oracle serves the round the state says is next (the oracle tags its
trials ``sa/tag = round_<k>``), builds that round's ``PruningTuner`` and
evaluates trials until the oracle stops (or has gone: a worker that asks for a
trial after the chief closed the round's oracle gets STOPPED at once, where
keras-tuner's client would wait an hour for it); it exits when Phase I has ended,
and fails after ``timeout_s`` seconds without an answering oracle. Fast evaluation
is seeded by the round, not by the process, so a trial scores the same on any
worker. The threshold search of Phase II runs on the chief alone
(``local_search``).
"""
import contextlib
import functools
import os
import time

__all__ = ["POLL_S", "Chief", "is_search_worker", "local_search", "round_client",
           "wait_for_chief"]

_KT_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
POLL_S = 1.0


def is_search_worker():
    """True in a keras-tuner worker process (``KERASTUNER_TUNER_ID`` other than chief)."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in tuner_id


@contextlib.contextmanager
def local_search():
    """Run the keras-tuner searches inside in this process alone (the chief's Phase II
    threshold search): the ``KERASTUNER_*`` variables are hidden meanwhile."""
    saved = {k: os.environ.pop(k) for k in _KT_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class Chief:
    """A gRPC view of the chief oracle: which search it serves now, if any."""

    def __init__(self):
        # keras-tuner exports no public name for its gRPC protos; the private path is
        # imported here alone, after the env check, as keras-tuner does
        from keras_tuner.src import protos

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
    chief, deadline = Chief(), time.monotonic() + timeout_s
    while chief.served_tag(max(min(POLL_S, deadline - time.monotonic()), 0.01)) is None:
        if time.monotonic() >= deadline:
            raise chief.timeout_error(timeout_s)


@functools.cache
def _round_client_class():
    # keras-tuner's client module imports its gRPC protos: imported in a worker alone
    import grpc
    from keras_tuner.engine import hyperparameters as hp_module
    from keras_tuner.engine import trial as trial_module
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_client

    class RoundClient(oracle_client.OracleClient):
        """keras-tuner's ``OracleClient`` whose ``create_trial`` answers STOPPED when
        the chief's oracle is gone (connection refused) instead of waiting for it: the
        round was closed between the worker's look at it and its first trial."""

        def create_trial(self, tuner_id):
            try:
                response = self.stub.CreateTrial(
                    protos.get_service().CreateTrialRequest(tuner_id=tuner_id),
                    wait_for_ready=False, timeout=oracle_client.TIMEOUT)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return trial_module.Trial(hp_module.HyperParameters(),
                                          status=trial_module.TrialStatus.STOPPED)
            return trial_module.Trial.from_proto(response.trial)

    return RoundClient


def round_client(oracle):
    """A tuner's oracle after ``BaseTuner.__init__``: in a worker (where keras-tuner
    put its ``OracleClient`` in front of the local oracle) a ``RoundClient`` that
    stops when the round has gone; elsewhere ``oracle`` as it is."""
    if not is_search_worker():
        return oracle
    return _round_client_class()(oracle._oracle)
