"""The keras-tuner search worker's loop: evaluate the chief's Phase I trials, round
after round (``search.workers``)."""
import time

from tfautocompress.search import workers
from tfautocompress.search.oracle import InfeasibleTargetError

__all__ = ["search_worker"]


def search_worker(pipeline, timeout_s, log=print):
    """Evaluate the chief's Phase I search trials, round after round (module doc).

    ``pipeline``: an ``AutoCompress`` on the chief's ``output_dir`` with the chief's
    settings. Returns ``{round: trials evaluated here}`` once Phase I has ended.
    After a search the worker rejoins the same round only once its oracle has
    gone (a resumed chief serving it again), not while it winds down.
    """
    chief, evaluated, built, finished = workers.Chief(), {}, (None, None), None
    deadline = time.monotonic() + timeout_s
    while pipeline.reload_state()["phase1_end"] is None:
        k = len(pipeline.state["rounds"]) + 1
        if built[0] != k:  # before the oracle is up: a late join must not miss the round
            try:
                built = (k, pipeline.search_tuner(k)[1])
            except InfeasibleTargetError:  # the chief ends Phase I there
                time.sleep(workers.POLL_S)
                continue
        tag = chief.served_tag(workers.POLL_S)  # blocks up to that long
        if tag is None:
            finished = None
            if time.monotonic() >= deadline:
                raise chief.timeout_error(timeout_s)
            continue
        deadline = time.monotonic() + timeout_s
        if tag != f"round_{k}" or finished == k:  # another round's oracle, winding down
            time.sleep(workers.POLL_S)
            continue
        tuner, start = built[1], time.perf_counter()
        tuner.search(verbose=0)  # until the oracle answers STOPPED
        finished, evaluated[k] = k, tuner.evaluated
        log(f"search worker: round {k}, {tuner.evaluated} trials evaluated here in "
            f"{time.perf_counter() - start:.2f} s")
    log(f"search worker: Phase I ended ({pipeline.state['phase1_end']}); "
        f"trials evaluated here per round: {evaluated}")
    return evaluated
