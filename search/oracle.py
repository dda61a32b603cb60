"""What every search method shares: ``SafeOracle``, seeded draws, Metropolis, errors.

``SafeOracle`` is the keras-tuner Oracle base of our search Oracles.

The chief's Oracle serves every worker, so a bug in one trial's bookkeeping must
neither leak keras-tuner's lock nor kill the server: the trial hooks are
``keras_tuner.synchronized`` and log exceptions instead of raising them.
Subclasses learn from each finished trial in ``learn(trial)``; the Oracle is
saved after it.

``Draws`` gives seeded random generators as seed + counter, so a resumed search
continues its sequence instead of replaying it (both numbers go into the
Oracle's JSON state). ``metropolis`` is simulated annealing's acceptance step.
``InfeasibleTargetError`` is raised by every method whose target cannot be met.
"""
import logging
import math
import traceback

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module

_STATUS = trial_module.TrialStatus
_LOG = logging.getLogger(__name__)

__all__ = ["InfeasibleTargetError", "Draws", "metropolis", "SafeOracle"]


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
