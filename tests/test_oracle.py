"""SafeOracle: a failing trial hook logs instead of raising, and the lock is released."""
import keras_tuner
from keras_tuner.engine import trial as trial_module

from tfautocompress.search.oracle import SafeOracle


class _Broken(SafeOracle):
    def __init__(self, **kwargs):
        hps = keras_tuner.HyperParameters()
        hps.Float("x", 0.0, 1.0)
        super().__init__(objective=keras_tuner.Objective("score", "max"), max_trials=3,
                         hyperparameters=hps, **kwargs)
        self.learned = []

    def populate_space(self, trial_id):
        return {"status": trial_module.TrialStatus.RUNNING, "values": {"x": 0.5}}

    def learn(self, trial):
        self.learned.append(trial.trial_id)
        raise RuntimeError("bug in the search state")


def test_failing_learn_is_logged_and_the_oracle_keeps_serving(tmp_path, caplog):
    oracle = _Broken()
    oracle._set_project_dir(str(tmp_path), "p")  # what BaseTuner does for its oracle
    first = oracle.create_trial("tuner0")
    first.status = trial_module.TrialStatus.COMPLETED
    oracle.update_trial(first.trial_id, {"score": 1.0})
    oracle.end_trial(first)  # must not raise
    assert oracle.learned == [first.trial_id]
    assert "learning from trial" in caplog.text and "bug in the search state" in caplog.text
    second = oracle.create_trial("tuner0")  # the lock was released
    assert second.status == trial_module.TrialStatus.RUNNING
