"""What every search method shares: ``SafeOracle``, seeded draws, Metropolis, errors.

``SafeOracle`` is the keras-tuner Oracle base of our search Oracles.

The chief's Oracle serves every worker, so a bug in one trial's bookkeeping must
neither leak keras-tuner's lock nor kill the server: the trial hooks are
``keras_tuner.synchronized`` and log exceptions instead of raising them.
Subclasses learn from each finished trial in ``learn(trial)``; the Oracle is
saved after it.

``Draws`` gives seeded random generators as seed + counter, so a resumed search
continues its sequence instead of replaying it (both numbers go into the
Oracle's JSON state). ``metropolis`` is simulated annealing's acceptance step,
``levels`` and ``plan_schedule`` its cooling schedule (both SA oracles: the
enhanced SA of Phase I and the threshold search of Phase II).
``InfeasibleTargetError`` is raised by every method whose target cannot be met.
"""
import dataclasses
import logging
import math
import traceback

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module

from tfautocompress.search import encoding

_STATUS = trial_module.TrialStatus
_LOG = logging.getLogger(__name__)

__all__ = ["InfeasibleTargetError", "Draws", "metropolis", "levels", "Schedule", "plan_schedule",
           "best_policy", "SafeOracle"]

DEFAULT_ITERATIONS = 4  # chain steps per temperature when no max_trials is given


class InfeasibleTargetError(ValueError):
    """The target compression ratio cannot be reached within the space."""


class Draws:
    """Seeded generators: the i-th is ``default_rng([seed, i])`` (``count`` so far)."""

    def __init__(self, seed, count=0):
        self.seed, self.count = int(seed), int(count)

    def next(self):
        """A generator for the next draw."""
        rng = np.random.default_rng([self.seed, self.count])
        self.count += 1
        return rng


def metropolis(current, score, temperature, boltzmann, draws):
    """Accept ``score`` over ``current`` (scores to maximise)? None never wins over a
    score; a better or equal score always wins; a worse one with probability
    ``exp(-dE / (k T))``, dE the score lost, drawn from ``draws``."""
    if score is None:
        return False
    if current is None or score >= current:
        return True
    energy = current - score
    return draws.next().uniform() < math.exp(-energy / (boltzmann * temperature))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The annealing schedule an oracle runs.

    Attributes:
      temperatures: one per level, hottest (T0) first; the last is the stop
        temperature or just above it.
      steps_per_temperature: chain steps at each temperature.
      parallel: neighbours per chain step (1: a plain Metropolis chain).
      cooling: the factor between successive temperatures (the given one, or
        the faster one when the budget spreads the temperatures).
      trials: ``1 + len(temperatures) * steps_per_temperature * parallel``.
    """

    temperatures: tuple
    steps_per_temperature: int
    parallel: int
    cooling: float
    trials: int

    @property
    def steps(self):
        """Chain steps after the initial trial."""
        return len(self.temperatures) * self.steps_per_temperature

    def as_dict(self):
        """JSON-clean dict (for reports and the oracle state)."""
        return {"temperatures": [float(t) for t in self.temperatures],
                "steps_per_temperature": int(self.steps_per_temperature),
                "parallel": int(self.parallel), "cooling": float(self.cooling),
                "trials": int(self.trials)}


def levels(start, stop, cooling):
    """Temperatures ``start * cooling**i`` that are >= ``stop`` (inf if never below)."""
    if start == stop:
        return 1
    if cooling >= 1:
        return math.inf
    return int(math.floor(math.log(stop / start) / math.log(cooling) + 1e-9)) + 1


def plan_schedule(start_temperature, stop_temperature, cooling, max_trials=None,
                  iterations=None, parallel=1):
    """The ``Schedule`` that completes the cooling from ``start_temperature`` to
    ``stop_temperature`` within ``max_trials`` (see the module docstring).

    ``iterations``: chain steps per temperature (an upper bound when
    ``max_trials`` is given; default ``DEFAULT_ITERATIONS`` without it).
    ``parallel``: neighbours per step; capped by the budget's ``max_trials - 1``.
    """
    start, stop, cooling = float(start_temperature), float(stop_temperature), float(cooling)
    count = levels(start, stop, cooling)
    parallel = int(parallel)
    if not max_trials:
        if count == math.inf:
            raise ValueError("cooling=1 never reaches the stop temperature: give max_trials.")
        steps = int(iterations or DEFAULT_ITERATIONS)
        temperatures = tuple(start * cooling ** i for i in range(count))
        return Schedule(temperatures, steps, parallel, cooling,
                        1 + count * steps * parallel)
    max_trials = int(max_trials)
    if max_trials == 1:
        return Schedule((), 1, parallel, cooling, 1)
    parallel = min(parallel, max_trials - 1)
    batches = (max_trials - 1) // parallel
    if batches >= count:
        steps = batches // count
        if iterations:
            steps = min(steps, int(iterations))
        temperatures = tuple(start * cooling ** i for i in range(count))
    else:  # spread the temperatures: one step each, T0 down to the stop temperature
        steps = 1
        if batches == 1:
            temperatures = (stop,)
        else:
            ratio = stop / start
            temperatures = tuple(start * ratio ** (i / (batches - 1)) for i in range(batches - 1))
            temperatures += (stop,)
            cooling = ratio ** (1.0 / (batches - 1))
    return Schedule(temperatures, steps, parallel, cooling,
                    1 + len(temperatures) * steps * parallel)


def best_policy(space, trials):
    """The ``PruningPolicy`` of ``space`` that the best completed trial of ``trials``
    evaluated (of equal scores the earliest: trial ids count up as trials start,
    whatever order a reloaded or remote oracle lists them in)."""
    done = [t for t in trials if t.status == _STATUS.COMPLETED and t.score is not None]
    if not done:
        raise ValueError("no completed trial yet: run the search first.")
    best = max(done, key=lambda t: (t.score, -int(t.trial_id)))
    return encoding.from_values(space, best.hyperparameters.values)


class SafeOracle(keras_tuner.Oracle):
    """A keras-tuner Oracle whose trial hooks never raise; subclasses implement ``learn``."""

    def learn(self, trial):
        """Fold a finished trial into the search state (called under the lock)."""
        raise NotImplementedError

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        try:
            return super().create_trial(tuner_id)
        except Exception:  # never leak the lock or kill the chief's server
            _LOG.error("%s.create_trial failed; stopping tuner %s:\n%s",
                       type(self).__name__, tuner_id, traceback.format_exc())
            self.tuner_ids.discard(tuner_id)
            return trial_module.Trial(self.get_space(), status=_STATUS.STOPPED)

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        try:
            return super().update_trial(trial_id, metrics, step=step)
        except Exception:
            _LOG.error("%s.update_trial(%s) failed:\n%s", type(self).__name__, trial_id,
                       traceback.format_exc())
            trial = self.trials.get(trial_id)
            return trial if trial is not None else trial_module.Trial(
                self.get_space(), trial_id=trial_id, status=_STATUS.FAILED)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        try:
            super().end_trial(trial)
        except Exception:
            _LOG.error("%s.end_trial(%s) failed:\n%s", type(self).__name__,
                       trial.trial_id, traceback.format_exc())
        try:
            self.learn(self.trials[trial.trial_id])
            self.save()
        except Exception:
            _LOG.error("%s: learning from trial %s failed:\n%s", type(self).__name__,
                       trial.trial_id, traceback.format_exc())
