"""EnhancedSAOracle without models: create_trial/end_trial with a synthetic score."""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from keras_tuner.engine import trial as trial_module

from tfautocompress import policy as policy_lib, space as space_lib
from tfautocompress.search import encoding, oracle as oracle_lib, sa_oracle

STATUS = trial_module.TrialStatus

# Five layers of different sizes, the largest ones wide enough for fine rounding.
SPACE = space_lib.PolicySpace(
    layers=[space_lib.LayerSpec(f"conv{i}", "conv", f, c, p)
            for i, (f, c, p) in enumerate([(64, 27, 1024), (128, 576, 256), (256, 1152, 64),
                                           (512, 2304, 16), (512, 4608, 4)])],
    scheme_set="filter+column", max_fraction=0.99, fixed_params=5000, fixed_macs=10000)
# The synthetic optimum: each layer's best fraction and filter share.
OPTIMUM = {"conv0": (0.1, 0.9), "conv1": (0.3, 0.5), "conv2": (0.5, 0.5),
           "conv3": (0.8, 0.3), "conv4": (0.9, 0.2)}


def score(values):
    """Accuracy-like score in (0, 1], 1 at OPTIMUM."""
    loss = sum((values[f"fraction/{n}"] - f) ** 2 + 0.1 * (values[f"filter_share/{n}"] - s) ** 2
               for n, (f, s) in OPTIMUM.items())
    return math.exp(-loss)


def make_oracle(tmp_path, project="p", **kwargs):
    kwargs.setdefault("target_compression_ratio", 4.0)
    oracle = sa_oracle.EnhancedSAOracle(SPACE, seed=kwargs.pop("seed", 3), **kwargs)
    oracle._set_project_dir(str(tmp_path), project)
    oracle.verbose = 0
    return oracle


def run_one(oracle, tuner_id="tuner0", score_fn=score):
    trial = oracle.create_trial(tuner_id)
    if trial.status != STATUS.RUNNING:
        return trial
    oracle.update_trial(trial.trial_id, {"val_accuracy": score_fn(trial.hyperparameters.values)})
    trial.status = STATUS.COMPLETED
    oracle.end_trial(trial)
    return trial


def run_search(oracle, limit=500, score_fn=score):
    trials = []
    for _ in range(limit):
        trial = run_one(oracle, score_fn=score_fn)
        if trial.status == STATUS.STOPPED:
            return trials
        trials.append(trial)
    raise AssertionError("search did not stop within the limit")


def test_every_action_is_guided_and_hits_the_target(tmp_path):
    oracle = make_oracle(tmp_path)
    trials = run_search(oracle)
    # No max_trials: the schedule's own budget, 4 chain steps at each of the 11 temperatures.
    assert len(trials) == oracle.max_trials == oracle.schedule.trials == 1 + 11 * 4
    for trial in trials:
        policy = encoding.from_values(SPACE, trial.hyperparameters.values)
        assert sa_oracle.follows_size_order(policy)
        assert 4.0 <= policy.compression_ratio("params") <= 4.0 * 1.01
    best = oracle.best_policy()
    assert score(encoding.to_values(best)) == max(t.score for t in oracle.trials.values())
    # The chain moves towards the optimum: its final state has lost at least 20 % of the
    # start's loss (seeds 0-5: 29-84 %); a chain that accepts nothing ends at its start.
    loss = lambda values: -math.log(score(values))  # noqa: E731
    assert loss(encoding.to_values(oracle.current_policy())) <= \
        0.8 * loss(trials[0].hyperparameters.values)
    assert oracle.temperature < oracle.stop_temperature


@pytest.mark.parametrize("target,max_fraction", [(40.0, 0.99), (90.0, 0.995)])
def test_high_targets_end_within_budget(tmp_path, target, max_fraction):
    space = space_lib.PolicySpace(SPACE.layers, "filter", max_fraction, 5000, 10000)
    oracle = sa_oracle.EnhancedSAOracle(space, objective="macs", target_compression_ratio=target,
                                        max_trials=12, seed=1)
    oracle._set_project_dir(str(tmp_path), "high")
    oracle.verbose = 0
    values = [t.hyperparameters.values for t in run_search(
        oracle, score_fn=lambda v: 1.0 - v["fraction/conv0"])]
    assert len(values) == 12
    for v in values:
        policy = encoding.from_values(space, v)
        assert policy.compression_ratio("macs") >= target
        assert sa_oracle.follows_size_order(policy)


def test_infeasible_target_fails_at_construction():
    space = space_lib.PolicySpace(SPACE.layers, "filter", 0.9, 5000, 10000)
    with pytest.raises(oracle_lib.InfeasibleTargetError, match=r"max_fraction=0.9 .*at most 9.9"):
        sa_oracle.EnhancedSAOracle(space, target_compression_ratio=40.0)


def test_round_target_is_about_twice_the_previous_and_seeded():
    targets = [sa_oracle.EnhancedSAOracle(SPACE, previous_compression_ratio=3.0,
                                          round_variance=0.05, seed=s).target_compression_ratio
               for s in (1, 2, 1)]
    assert targets[0] == targets[2] != targets[1]
    assert all(6.0 * 0.95 <= t <= 6.0 * 1.05 for t in targets)


def test_bad_schedule_is_rejected():
    with pytest.raises(ValueError, match="cooling=1 never"):
        sa_oracle.EnhancedSAOracle(SPACE, cooling=1.0)
    with pytest.raises(ValueError, match="stop_temperature"):
        sa_oracle.EnhancedSAOracle(SPACE, start_temperature=1.0, stop_temperature=2.0)


def test_metropolis_acceptance_rate(tmp_path):
    """Every neighbour scores dE below its parent: the rate is exp(-dE / (k T))."""
    temperature, k, n = 2.0, 1e-3, 300
    delta = -math.log(0.3) * k * temperature  # acceptance probability 0.3
    oracle = make_oracle(tmp_path, start_temperature=temperature, stop_temperature=temperature,
                         cooling=1.0, boltzmann=k, max_trials=n + 1, seed=7)
    assert oracle.schedule.temperatures == (temperature,)
    assert oracle.schedule.steps_per_temperature == n
    scores = {}

    def parent_minus_delta(values):
        parent = values["sa/parent"]
        return 0.9 if parent == "" else scores[parent] - delta

    trials = []
    for _ in range(n + 1):
        trial = oracle.create_trial("tuner0")
        value = parent_minus_delta(trial.hyperparameters.values)
        scores[trial.trial_id] = value
        oracle.update_trial(trial.trial_id, {"val_accuracy": value})
        trial.status = STATUS.COMPLETED
        oracle.end_trial(trial)
        trials.append(trial)
    parents = [t.hyperparameters.values["sa/parent"] for t in trials[1:]]
    # Neighbour i+1's parent is neighbour i iff neighbour i was accepted.
    accepted = sum(parents[i + 1] == trials[i + 1].trial_id for i in range(n - 1))
    rate, p = accepted / (n - 1), 0.3
    half_width = 3.3 * math.sqrt(p * (1 - p) / (n - 1))  # ~99.9% binomial interval
    assert abs(rate - p) < half_width, (rate, p, half_width)
    assert 0 < accepted < n - 1


def test_kill_and_resume_gives_the_same_policy(tmp_path):
    reference = make_oracle(tmp_path, project="whole")
    run_search(reference)

    first = make_oracle(tmp_path, project="killed")
    for _ in range(6):
        run_one(first)
    in_flight = first.create_trial("tuner0")  # killed while this trial runs
    assert in_flight.status == STATUS.RUNNING
    resumed = make_oracle(tmp_path, project="killed")
    resumed.reload()
    retried = run_one(resumed)
    assert retried.trial_id == in_flight.trial_id
    assert retried.hyperparameters.values == in_flight.hyperparameters.values
    run_search(resumed)
    assert resumed.best_policy() == reference.best_policy()
    assert resumed.current_policy() == reference.current_policy()
    assert resumed.get_state()["sa"]["draws"] == reference.get_state()["sa"]["draws"]


def test_parallel_batch_idle_and_arrival_order(tmp_path):
    """parallel=3: a step's three neighbours run at once; results in any order fold the same."""
    results = []
    for reverse in (False, True):
        oracle = make_oracle(tmp_path, project=f"order{reverse}", parallel=3)
        run_one(oracle, "w0")  # the initial action
        batch = [oracle.create_trial(f"w{i}") for i in range(3)]
        assert [t.status for t in batch] == [STATUS.RUNNING] * 3
        assert {t.hyperparameters.values["sa/parent"] for t in batch} == {"0" * len(batch[0].trial_id)}
        assert oracle.create_trial("w3").status == STATUS.IDLE
        state = oracle.get_state()["sa"]
        assert oracle.create_trial("w3").status == STATUS.IDLE
        assert oracle.get_state()["sa"] == state  # IDLE has no side effects
        for trial in (reversed(batch) if reverse else batch):
            oracle.update_trial(trial.trial_id, {"val_accuracy": score(trial.hyperparameters.values)})
            trial.status = STATUS.COMPLETED
            oracle.end_trial(trial)
        results.append((oracle.get_state()["sa"]["current"], oracle.temperature))
    assert results[0] == results[1]


def test_state_is_json_clean(tmp_path):
    import json

    oracle = make_oracle(tmp_path)
    for _ in range(3):
        run_one(oracle)
    state = oracle.get_state()
    assert json.loads(json.dumps(state, allow_nan=False)) == json.loads(json.dumps(state))


def test_failed_trials_are_rejected_and_search_continues(tmp_path):
    # Metropolis decides the next trial: a better score is always accepted; one 0.4
    # worse at k T = 1e-3 * 20 only with probability exp(-20).
    for later, accepted in ((0.9, True), (0.1, False)):
        oracle = make_oracle(tmp_path, project=f"p{later}", iterations=2)
        run_one(oracle, score_fn=lambda values: 0.5)
        trial = oracle.create_trial("tuner0")
        trial.status = STATUS.FAILED
        oracle.end_trial(trial)
        assert oracle.get_state()["sa"]["current"]["trial_id"] == "00"  # the failure is not taken
        other = run_one(oracle, score_fn=lambda values: later)
        assert other.status == STATUS.COMPLETED and other.trial_id not in {"00", trial.trial_id}
        current = oracle.get_state()["sa"]["current"]
        assert current["trial_id"] == (other.trial_id if accepted else "00"), later
        assert current["score"] == (later if accepted else 0.5)
        assert oracle.get_state()["sa"]["level"] == 1


# ------------------------------------------------------------------ the chain schedule ---
def _trial_values(oracle):
    return [oracle.trials[t].hyperparameters.values for t in oracle.start_order]


def test_default_budget_of_24_visits_every_temperature(tmp_path):
    oracle = make_oracle(tmp_path, max_trials=24)
    schedule = oracle.schedule
    nominal = tuple(20.0 * 0.7 ** i for i in range(11))  # 20 ... 0.565 >= 0.5
    assert schedule.temperatures == pytest.approx(nominal)
    assert (schedule.steps_per_temperature, schedule.parallel, schedule.trials) == (2, 1, 23)
    assert schedule.cooling == 0.7
    trials = run_search(oracle)
    assert len(trials) == oracle.max_trials == 23
    temperatures = [v["sa/temperature"] for v in _trial_values(oracle)[1:]]
    assert temperatures == [t for t in schedule.temperatures for _ in range(2)]
    assert [v["sa/step"] for v in _trial_values(oracle)] == list(range(23))
    assert [v["sa/level"] for v in _trial_values(oracle)[1:]] == [i // 2 for i in range(22)]
    stop = oracle.stop_temperature
    assert stop <= temperatures[-1] <= stop / oracle.cooling
    assert oracle.temperature < stop and oracle.level == 11


@pytest.mark.parametrize("max_trials", [8, 3])
def test_small_budget_spreads_the_temperatures_to_the_stop(tmp_path, max_trials):
    oracle = make_oracle(tmp_path, max_trials=max_trials)
    schedule = oracle.schedule
    steps = max_trials - 1
    assert len(schedule.temperatures) == steps and schedule.steps_per_temperature == 1
    assert schedule.temperatures[0] == 20.0 and schedule.temperatures[-1] == 0.5
    assert schedule.cooling < 0.7
    assert schedule.cooling ** (steps - 1) * 20.0 == pytest.approx(0.5)
    trials = run_search(oracle)
    assert len(trials) == schedule.trials == max_trials
    temperatures = [v["sa/temperature"] for v in _trial_values(oracle)[1:]]
    assert temperatures == list(schedule.temperatures)
    assert temperatures[-1] == oracle.stop_temperature


def test_plan_schedule_cases():
    plan = oracle_lib.plan_schedule
    full = plan(20.0, 0.5, 0.7)  # no budget: 4 steps at each of 11 temperatures
    assert (len(full.temperatures), full.steps_per_temperature, full.trials) == (11, 4, 45)
    assert plan(20.0, 0.5, 0.7, iterations=2, parallel=3).trials == 1 + 11 * 2 * 3
    assert plan(20.0, 0.5, 0.7, max_trials=100).steps_per_temperature == 9
    assert plan(20.0, 0.5, 0.7, max_trials=100, iterations=3).trials == 1 + 11 * 3
    assert plan(20.0, 0.5, 0.7, max_trials=12).trials == 12  # one step per temperature
    parallel = plan(20.0, 0.5, 0.7, max_trials=24, parallel=2)  # 11 steps of 2
    assert len(parallel.temperatures) == 11
    assert (parallel.steps_per_temperature, parallel.trials) == (1, 23)
    spread = plan(20.0, 0.5, 0.7, max_trials=24, parallel=3)  # 7 steps of 3: spread
    assert len(spread.temperatures) == 7 and spread.temperatures[-1] == 0.5
    assert spread.trials == 22
    assert plan(20.0, 0.5, 0.7, max_trials=2).temperatures == (0.5,)
    assert plan(20.0, 0.5, 0.7, max_trials=3, parallel=4).parallel == 2
    assert plan(20.0, 0.5, 0.7, max_trials=1).trials == 1
    constant = plan(2.0, 2.0, 1.0, max_trials=11)
    assert constant.temperatures == (2.0,) and constant.steps_per_temperature == 10
    annealed = plan(20.0, 0.5, 1.0, max_trials=6)  # cooling=1: spread over the budget
    assert annealed.temperatures[0] == 20.0 and annealed.temperatures[-1] == 0.5
    assert oracle_lib.Schedule(**full.as_dict() | {"temperatures": full.temperatures}) == full
    for schedule in (full, parallel, spread, constant, annealed):
        assert schedule.trials == 1 + schedule.steps * schedule.parallel
        assert all(a > b for a, b in zip(schedule.temperatures, schedule.temperatures[1:]))


def test_chain_parent_is_the_then_current_action(tmp_path):
    oracle = make_oracle(tmp_path, max_trials=24)
    parents, currents = [], []
    while True:
        current = oracle.get_state()["sa"]["current"]
        trial = run_one(oracle)
        if trial.status == STATUS.STOPPED:
            break
        currents.append("" if current is None else current["trial_id"])
        parents.append(trial.hyperparameters.values["sa/parent"])
    assert parents == currents
    ids = oracle.start_order
    moves = sum(parents[i + 1] == ids[i] for i in range(1, len(ids) - 1))
    assert 0 < moves < len(ids) - 2  # some neighbours accepted, some rejected
    assert oracle.get_state()["sa"]["current"]["trial_id"] in ids
    best = max(oracle.trials.values(), key=lambda t: t.score)
    assert oracle.best_policy() == encoding.from_values(SPACE, best.hyperparameters.values)
    final = oracle.get_state()["sa"]["current"]["score"]  # the chain's final state
    assert score(encoding.to_values(oracle.best_policy())) >= final


def test_parallel_steps_share_the_then_current_parent(tmp_path):
    oracle = make_oracle(tmp_path, max_trials=24, parallel=3)
    assert oracle.schedule.parallel == 3 and oracle.schedule.trials == 22
    run_one(oracle)  # the initial action
    steps = 0
    while True:
        current = oracle.get_state()["sa"]["current"]["trial_id"]
        batch = [oracle.create_trial(f"w{i}") for i in range(3)]
        if batch[0].status == STATUS.STOPPED:
            break
        assert [t.status for t in batch] == [STATUS.RUNNING] * 3
        if len(oracle.trials) < oracle.max_trials:  # else keras-tuner answers STOPPED
            assert oracle.create_trial("w3").status == STATUS.IDLE
        values = [t.hyperparameters.values for t in batch]
        assert {v["sa/parent"] for v in values} == {current}
        assert {v["sa/step"] for v in values} == {steps + 1}
        assert len({v["sa/temperature"] for v in values}) == 1
        for trial in batch:
            value = score(trial.hyperparameters.values)
            oracle.update_trial(trial.trial_id, {"val_accuracy": value})
            trial.status = STATUS.COMPLETED
            oracle.end_trial(trial)
        steps += 1
    assert steps == len(oracle.schedule.temperatures) == 7
    assert len(oracle.trials) == 22
    temperatures = [v["sa/temperature"] for v in _trial_values(oracle)]
    assert temperatures[-1] == oracle.stop_temperature


@pytest.mark.parametrize("parallel,done,in_flight", [(1, 6, True), (1, 9, False),
                                                      (3, 5, True), (3, 7, False)])
def test_resume_gives_the_same_trials_and_draws(tmp_path, parallel, done, in_flight):
    reference = make_oracle(tmp_path, project="whole", max_trials=24, parallel=parallel)
    run_search(reference)

    first = make_oracle(tmp_path, project="killed", max_trials=24, parallel=parallel)
    for _ in range(done):
        run_one(first)
    if in_flight:  # killed while this trial runs
        assert first.create_trial("tuner0").status == STATUS.RUNNING
    resumed = make_oracle(tmp_path, project="killed", max_trials=24, parallel=parallel)
    resumed.reload()
    run_search(resumed)
    assert resumed.start_order == reference.start_order
    assert _trial_values(resumed) == _trial_values(reference)
    assert ([resumed.trials[t].score for t in resumed.start_order]
            == [reference.trials[t].score for t in reference.start_order])
    state, expected = resumed.get_state()["sa"], reference.get_state()["sa"]
    assert state["draws"] == expected["draws"]
    assert state["current"] == expected["current"]
    assert resumed.best_policy() == reference.best_policy()
    assert state["folded"] == expected["folded"] == reference.start_order


# ---------------------------------------------------------------- progressive rounds ---
# A round-1 policy that leaves conv4 (the largest dense layer) with fewer remaining
# weights than conv1, so the round-2 order differs from the dense order.
ROUND1 = policy_lib.PruningPolicy(SPACE, {
    "conv0": policy_lib.LayerAction(0.1, 0.5), "conv1": policy_lib.LayerAction(0.3, 0.4),
    "conv2": policy_lib.LayerAction(0.5, 0.6), "conv3": policy_lib.LayerAction(0.6, 0.3),
    "conv4": policy_lib.LayerAction(0.98, 0.7)})


def _counts(space, name, split):
    spec = space.layer(name)
    from tfautocompress import schemes

    return (schemes.prune_count(split[0], spec.filters),
            schemes.prune_count(split[1], spec.columns))


def test_round_two_respects_floors_order_and_doubles_the_ratio(tmp_path):
    space = SPACE.next_round(ROUND1)
    remaining = space.remaining_sizes()
    assert remaining["conv4"] < remaining["conv1"]  # dense order says the opposite
    oracle = sa_oracle.EnhancedSAOracle(space, iterations=3, max_trials=10, seed=5)
    oracle._set_project_dir(str(tmp_path), "round2")
    oracle.verbose = 0
    assert oracle.previous_compression_ratio == pytest.approx(ROUND1.compression_ratio())
    target = oracle.target_compression_ratio
    assert 2 * 0.95 <= target / ROUND1.compression_ratio() <= 2 * 1.05
    trials = run_search(oracle)
    assert len(trials) == 10
    for trial in trials:
        policy = encoding.from_values(space, trial.hyperparameters.values)
        assert target <= policy.compression_ratio() <= target * 1.01
        assert sa_oracle.follows_size_order(policy)
        g = {n: sa_oracle.increment(space, n, policy.action(n))[0] for n in space.names}
        assert g["conv4"] <= g["conv1"] + 1e-12  # ordered by remaining, not dense, weights
        for name in space.names:
            old, new = ROUND1.effective(name), policy.effective(name)
            assert new[0] >= old[0] and new[1] >= old[1]  # exact, no tolerance
            assert all(n >= o for n, o in zip(_counts(space, name, new),
                                                _counts(space, name, old)))
            own = policy.action(name).split()
            assert own[0] >= old[0] - 1e-9 and own[1] >= old[1] - 1e-9
            assert policy.action(name).fraction >= ROUND1.action(name).fraction - 1e-9


@pytest.mark.parametrize("scheme_set", ["filter", "irregular"])
def test_round_two_floors_for_single_fraction_schemes(tmp_path, scheme_set):
    base = space_lib.PolicySpace(SPACE.layers, scheme_set, 0.99, 5000, 10000)
    round1 = policy_lib.PruningPolicy(base, {n: policy_lib.LayerAction(a.fraction)
                                             for n, a in ROUND1.actions.items()})
    space = base.next_round(round1)
    oracle = sa_oracle.EnhancedSAOracle(space, iterations=2, max_trials=5, seed=1)
    oracle._set_project_dir(str(tmp_path), scheme_set)
    oracle.verbose = 0
    for trial in run_search(oracle, score_fn=lambda v: 1.0 - v["fraction/conv0"]):
        policy = encoding.from_values(space, trial.hyperparameters.values)
        assert sa_oracle.follows_size_order(policy)
        assert policy.compression_ratio() >= oracle.target_compression_ratio
        for name in space.names:
            assert policy.effective(name)[0] >= round1.effective(name)[0]


def test_increment_round_trip_and_floor_errors():
    space = SPACE.next_round(ROUND1)
    for name in space.names:
        for g, t in ((0.0, 0.5), (0.3, 0.0), (0.45, 1.0), (0.2, 0.3)):  # below every cap
            action = sa_oracle.from_increment(space, name, g, t)
            back = sa_oracle.increment(space, name, action)
            assert back[0] == pytest.approx(g, abs=1e-9)
            if g > 0:
                assert back[1] == pytest.approx(t, abs=1e-9)
            policy_lib.PruningPolicy(space, {name: action})  # never below the floor
    with pytest.raises(ValueError, match=r"'conv4'.*filter_fraction=.*below its floor 0\.93"):
        policy_lib.PruningPolicy(space, {"conv4": policy_lib.LayerAction(0.99, 0.2)})
    with pytest.raises(ValueError, match=r"'conv2'.*below its floor"):
        policy_lib.PruningPolicy(space, {"conv2": policy_lib.LayerAction(0.4, 0.6)})
    with pytest.raises(ValueError, match=r"'conv4'.*floor.*exceeds max_fraction=0.9"):
        space_lib.PolicySpace(SPACE.layers, "filter+column", 0.9, 5000, 10000).next_round(ROUND1)
    with pytest.raises(ValueError, match=r"'conv0'.*'irregular'.*do not chain"):
        space_lib.PolicySpace(SPACE.layers, "irregular", 0.99).next_round(ROUND1)
    with pytest.raises(oracle_lib.InfeasibleTargetError, match="floors"):
        sa_oracle.EnhancedSAOracle(space, target_compression_ratio=1e4)


def tiled_latency_space():
    """Four independent 32-filter convs whose device computes filters in 8-wide tiles
    (1..8 filters cost 8): a latency budget moves in steps of a quarter layer."""
    from tfautocompress.latency_model import LatencyModel, LayerLatencyModel
    layers = [space_lib.LayerSpec(f"conv{i}", "conv", 32, 27, 64) for i in range(4)]
    laws = {f"conv{i}": LayerLatencyModel(0.01, per_filter, 0.0, 0.0)
            for i, per_filter in enumerate((0.01, 0.02, 0.04, 0.08))}
    costs = (8.0,) * 8 + (16.0,) * 8 + (24.0,) * 8 + (32.0,) * 8
    return space_lib.PolicySpace(layers, "filter", 0.9,
                                 latency=LatencyModel(laws, 0.05, "", costs))


@pytest.mark.parametrize("seed", range(8))
def test_a_latency_policy_gives_back_every_tile_the_target_does_not_need(seed):
    """With costs in steps, the common scale passes the target by a tile; the guided
    policy then gives back, smallest layer first, whatever keeps the target: no layer
    can lose any of its increment without the ratio falling below the target, unless
    it sits at a smaller layer's increment (the size order)."""
    space = tiled_latency_space()
    heuristic = sa_oracle.GuidedHeuristic(space, "latency")
    rng = np.random.default_rng(seed)
    target = float(rng.uniform(1.5, 3.0))
    policy = heuristic.policy(list(rng.uniform(0.1, 1.0, 4)), [1.0] * 4, target)
    ratio = lambda actions: space.compression_ratio(actions, "latency")  # noqa: E731
    actions = {n: policy.action(n) for n in space.names}
    assert ratio(actions) >= target
    below = 0.0  # the largest increment of a layer with less time left
    for name in sorted(space.names, key=space.remaining_sizes().__getitem__):
        g = actions[name].fraction
        less = {**actions, name: policy_lib.LayerAction(max(0.0, g - 1e-6), 1.0)}
        assert g <= below + 1e-9 or ratio(less) < target, (name, g, below)
        below = max(below, g)
