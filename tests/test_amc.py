"""AMC: 11-feature embedding, Algorithm-1 bound, DDPG learning on a toy problem, oracle."""
import numpy as np
import pytest
from keras_tuner.engine import trial as trial_module

from tfautocompress import policy as P, space as space_lib
from tfautocompress.search import amc, encoding
from tfautocompress.search.oracle import InfeasibleTargetError


def _space(scheme_set="filter"):
    """A 3-layer chain: c1 -> c2 -> c3 (each reads the previous layer's 9 rows/channel)."""
    specs = (space_lib.LayerSpec("c1", "conv2d", 16, 27, 1024, 3),
             space_lib.LayerSpec("c2", "conv2d", 32, 144, 256, 16, ((("c1",), 16, 1),)),
             space_lib.LayerSpec("c3", "conv2d", 64, 288, 64, 32, ((("c2",), 32, 1),)))
    return space_lib.PolicySpace(specs, scheme_set=scheme_set, fixed_params=500, fixed_macs=5000)


GEOMETRY = (amc.LayerGeometry(16, 3, 32, 32, 1, 3), amc.LayerGeometry(32, 16, 32, 32, 2, 3),
            amc.LayerGeometry(64, 32, 16, 16, 2, 3))


def test_state_features_values_and_scaling():
    space = _space()
    embedding = amc.LayerEmbedding(space, GEOMETRY)
    flops = np.array([16 * 27 * 1024, 32 * 144 * 256, 64 * 288 * 64], float)
    total = space.dense_cost("macs")
    s0 = embedding.state(0, {})
    assert s0.shape == (len(amc.FEATURES),) == (11,)
    # index, n, c, h, w, stride, k, FLOPs: min-max over layers (k is constant -> 0)
    np.testing.assert_allclose(s0[:8], [0, 0, 0, 1, 1, 0, 0, (flops[0] - flops.min()) / np.ptp(flops)])
    np.testing.assert_allclose(s0[8:], [0.0, flops[1:].sum() / total, 0.0], rtol=1e-6)
    actions = {"c1": P.LayerAction(0.5)}
    s1 = embedding.state(1, actions, previous_action=0.5)
    np.testing.assert_allclose(s1[:3], [0.5, 16 / 48, 13 / 29], rtol=1e-6)
    # reduced: c1 loses 8 filters and c2 loses the 8 * 9 rows reading them
    reduced = 8 * 27 * 1024 + 72 * 32 * 256
    np.testing.assert_allclose(s1[8:], [reduced / total, flops[2] / total, 0.5], rtol=1e-6)
    s2 = embedding.state(2, dict(actions, c2=P.LayerAction(0.75)), previous_action=0.75)
    assert s2[9] == 0.0 and s2[10] == 0.75 and s2[0] == 1.0
    for state in (s0, s1, s2):
        assert np.all((state >= 0) & (state <= 1))


@pytest.mark.parametrize("objective", ["macs", "params"])
@pytest.mark.parametrize("target", [1.5, 2.5, 4.0])
def test_algorithm1_bound_meets_target_for_any_actor(objective, target):
    space = _space()
    dense = space.dense_cost(objective)
    rng = np.random.default_rng(0)
    proposals = [np.zeros(3), np.ones(3), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])]
    proposals += [rng.uniform(0, 1, 3) for _ in range(20)]
    for proposed in proposals:
        actions = {}
        for t, name in enumerate(space.names):
            a = amc.bound_action(space, actions, t, proposed[t], dense / target, objective, 0.8)
            assert 0.0 <= a <= 0.8
            actions[name] = P.LayerAction(a)
        assert space.compression_ratio(actions, objective) >= target
    # an actor that wants nothing pruned is pushed exactly to the target: the last
    # layer that was raised keeps one filter more than it could and the target fails
    actions = {}
    for t, name in enumerate(space.names):
        actions[name] = P.LayerAction(amc.bound_action(space, actions, t, 0.0, dense / target,
                                                        objective, 0.8))
    raised = [n for n in space.names if actions[n].fraction > 0][-1]
    filters = space.layer(raised).filters
    fewer = round(actions[raised].fraction * filters) - 1
    looser = dict(actions, **{raised: P.LayerAction(fewer / filters)})
    assert space.compression_ratio(looser, objective) < target


def test_infeasible_targets_are_refused():
    with pytest.raises(InfeasibleTargetError, match="a_max=0.5"):
        amc.AMCAgent(_space(), GEOMETRY, target_compression_ratio=50.0, a_max=0.5)
    with pytest.raises(ValueError, match="accepted: 'filter', 'filter\\+column'"):
        amc.AMCAgent(space_lib.PolicySpace(_space().layers, scheme_set="irregular"), GEOMETRY)
    with pytest.raises(InfeasibleTargetError, match="a_max=0.5"):
        amc.AMCAgent(_space("filter+column"), GEOMETRY, target_compression_ratio=50.0, a_max=0.5)
    with pytest.raises(ValueError, match="protocol"):
        amc.AMCAgent(_space(), GEOMETRY, protocol="latency")


def _toy_accuracy(fractions, optimum=(0.1, 0.7, 0.3, 0.6)):
    return 1.0 - 2.0 * float(np.mean((np.asarray(fractions) - np.asarray(optimum)) ** 2))


def test_ddpg_reward_improves_on_toy_problem():
    specs = tuple(space_lib.LayerSpec(f"c{i}", "conv2d", 16, 144, 64) for i in range(4))
    space = space_lib.PolicySpace(specs, scheme_set="filter")
    geometry = tuple(amc.LayerGeometry(16, 16, 8, 8, 1, 3) for _ in specs)
    agent = amc.AMCAgent(space, geometry, target_compression_ratio=1.0, warmup=20, seed=1)
    greedy_before, rewards = _train_on(agent, _toy_accuracy)
    # measured (seeds 0-2): first 20 about -0.22..-0.30, last 20 about -0.075
    assert np.mean(rewards[-20:]) > np.mean(rewards[:20]) + 0.08
    # the greedy policy moved towards the optimum (untrained: ~0.5 everywhere)
    assert _toy_accuracy(agent.rollout(explore=False)[1]) > greedy_before + 0.02


def _train_on(agent, score, episodes=120):
    """``(greedy score before, rewards)`` of ``episodes`` rollouts learned on ``score``."""
    greedy_before = score(agent.rollout(explore=False)[1])
    rewards = []
    for _ in range(episodes):
        states, actions = agent.rollout()
        reward = agent.reward(score(actions), actions)
        agent.learn(states, actions, reward)
        rewards.append(reward)
    return greedy_before, rewards


def test_accuracy_guaranteed_reward():
    agent = amc.AMCAgent(_space(), GEOMETRY, protocol="accuracy", objective="params")
    fractions = [0.5, 0.5, 0.5]
    # AMC's R_err = -error * log(cost), the cost by hand: fixed 500, c1 keeps 8 of 16
    # filters x 27 rows, c2 16 filters x the 72 rows of c1's live channels, c3 32 x 144.
    cost = 500 + 8 * 27 + 16 * 72 + 32 * 144
    assert agent.reward(0.9, fractions) == pytest.approx(-0.1 * np.log(cost), rel=1e-9)
    assert agent.reward(0.9, [0.0] * 3) < agent.reward(0.9, fractions)


def _run_episode(oracle, score):
    trial = oracle.create_trial("tuner0")
    assert trial.status == trial_module.TrialStatus.RUNNING
    assert oracle.create_trial("tuner1").status == trial_module.TrialStatus.IDLE
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = trial_module.TrialStatus.COMPLETED
    oracle.end_trial(trial)
    return trial


def test_oracle_episodes_meet_target_and_resume(tmp_path):
    kwargs = dict(target_compression_ratio=2.0, objective="macs", max_trials=4, warmup=1,
                  seed=3)
    oracle = amc.AMCOracle(_space(), GEOMETRY, **kwargs)
    oracle._set_project_dir(str(tmp_path), "amc")
    trials = [_run_episode(oracle, s) for s in (0.5, 0.8)]
    for trial in trials:
        policy = encoding.from_values(oracle.space, trial.hyperparameters.values)
        assert policy.compression_ratio("macs") >= 2.0
    assert oracle.best_policy() == encoding.from_values(
        oracle.space, trials[1].hyperparameters.values)
    assert oracle.best_reward == pytest.approx(-0.2)
    # a second oracle on the same directory continues where the first stopped
    resumed = amc.AMCOracle(_space(), GEOMETRY, **kwargs)
    resumed._set_project_dir(str(tmp_path), "amc")
    resumed.reload()
    assert resumed.agent.episode == 2 and len(resumed.agent.ddpg.buffer) == 6
    for a, b in zip(resumed.agent.ddpg.get_weights(), oracle.agent.ddpg.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (resumed.create_trial("t").hyperparameters.values
            == oracle.create_trial("t").hyperparameters.values)


# ------------------------------------------------- combined filter + column ---
def test_combined_state_has_previous_filter_share():
    embedding = amc.LayerEmbedding(_space("filter+column"), GEOMETRY)
    assert embedding.features == amc.COMBINED_FEATURES and len(amc.COMBINED_FEATURES) == 12
    s0 = embedding.state(0, {})
    assert s0.shape == (12,) and s0[10] == 0.0 and s0[11] == 0.0
    # the first 11 features are AMC's, the same as over the filter space
    np.testing.assert_array_equal(s0[:11], amc.LayerEmbedding(_space(), GEOMETRY).state(0, {}))
    actions = {"c1": P.LayerAction(0.5, 0.25)}
    s1 = embedding.state(1, actions, previous_action=0.5, previous_share=0.25)
    assert s1[10] == 0.5 and s1[11] == 0.25
    # c1 removes 1 - 0.5 ** 0.25 of its filters only: fewer dead c2 rows than filters only
    filters_only = amc.LayerEmbedding(_space("filter+column"), GEOMETRY).state(
        1, {"c1": P.LayerAction(0.5, 1.0)}, 0.5, 1.0)
    assert 0.0 < s1[8] < filters_only[8]


@pytest.mark.parametrize("objective", ["macs", "params"])
@pytest.mark.parametrize("target", [1.5, 3.0, 6.0])
def test_split_bound_meets_target_for_any_actor(objective, target):
    space = _space("filter+column")
    dense = space.dense_cost(objective)
    rng = np.random.default_rng(0)
    proposals = [(np.zeros(3), np.zeros(3)), (np.zeros(3), np.ones(3)),
                 (np.ones(3), np.zeros(3)), (np.full(3, 0.3), np.full(3, 0.5))]
    proposals += [(rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)) for _ in range(20)]
    for fractions, shares in proposals:
        actions = {}
        for t, name in enumerate(space.names):
            a, share = amc.bound_split_action(space, actions, t, fractions[t], shares[t],
                                              dense / target, objective, 0.8)
            assert 0.0 <= a <= 0.8 and 0.0 <= share <= 1.0
            if a < 0.8:  # the fraction sufficed: the actor's share is kept
                assert share == pytest.approx(min(shares[t], 1.0))
            else:
                assert share >= shares[t] - 1e-12
            actions[name] = P.LayerAction(a, share)
        assert space.compression_ratio(actions, objective) >= target


def test_split_bound_raises_the_share_only_when_the_fraction_cannot():
    space = _space("filter+column")
    # the hardest reachable target: every layer at a_max, filters only
    full = {n: P.LayerAction(0.8) for n in space.names}
    target_cost = space.remaining_cost(full, "params")
    a, share = amc.bound_split_action(space, {}, 0, 0.8, 0.0, target_cost, "params", 0.8)
    assert a == 0.8 and 0.0 < share <= 1.0  # columns only keep c2's rows: not enough
    assert space.remaining_cost(dict(full, c1=P.LayerAction(a, share)), "params") <= target_cost
    # an easy target leaves the actor's action alone
    assert amc.bound_split_action(space, {}, 0, 0.3, 0.2, space.dense_cost("params"),
                                  "params", 0.8) == (0.3, 0.2)
    with pytest.raises(InfeasibleTargetError, match="c1"):
        amc.bound_split_action(space, {}, 0, 0.8, 1.0, target_cost * 0.5, "params", 0.8)


def test_combined_agent_rollout_splits_and_meets_target():
    space = _space("filter+column")
    agent = amc.AMCAgent(space, GEOMETRY, target_compression_ratio=3.0, objective="params",
                         warmup=5, seed=2)
    assert agent.ddpg.action_dim == 2
    shares = set()
    for _ in range(6):
        states, actions = agent.rollout()
        assert all(s.shape == (12,) for s in states)
        assert all(len(a) == 2 for a in actions)
        policy = agent.policy(actions)
        assert policy.compression_ratio("params") >= 3.0
        shares.update(round(policy.actions[n].filter_share, 6) for n in space.names)
        agent.learn(states, actions, agent.reward(0.5, actions))
    assert len(shares) > 3  # the agent chooses the split, not a constant share
    assert agent.ddpg.buffer[0][1].shape == (2,)
    with pytest.raises(ValueError, match="2"):
        agent.ddpg.remember(states[0], 0.5, 0.0, states[1], False)


def test_ddpg_learns_the_split_on_toy_problem():
    specs = tuple(space_lib.LayerSpec(f"c{i}", "conv2d", 16, 144, 64) for i in range(4))
    space = space_lib.PolicySpace(specs, scheme_set="filter+column")
    geometry = tuple(amc.LayerGeometry(16, 16, 8, 8, 1, 3) for _ in specs)
    agent = amc.AMCAgent(space, geometry, target_compression_ratio=1.0, warmup=20, seed=1)
    optimum = np.array([[0.1, 0.9], [0.7, 0.2], [0.3, 0.8], [0.6, 0.1]])

    def toy(actions):
        return 1.0 - 2.0 * float(np.mean((np.asarray(actions) - optimum) ** 2))

    greedy_before, rewards = _train_on(agent, toy)
    # measured (seeds 0-2): first 20 about -0.31..-0.37, last 20 about -0.09..-0.15
    assert np.mean(rewards[-20:]) > np.mean(rewards[:20]) + 0.12
    # the greedy (fraction, share) pairs moved towards the optimum (measured +0.05..+0.10)
    assert toy(agent.rollout(explore=False)[1]) > greedy_before + 0.03


def test_combined_oracle_episodes_meet_target_and_resume(tmp_path):
    kwargs = dict(target_compression_ratio=3.0, objective="params", max_trials=4, warmup=1,
                  seed=3)
    space = _space("filter+column")
    oracle = amc.AMCOracle(space, GEOMETRY, **kwargs)
    oracle._set_project_dir(str(tmp_path), "amc")
    trials = [_run_episode(oracle, s) for s in (0.7, 0.6)]
    for trial in trials:
        values = trial.hyperparameters.values
        assert set(encoding.value_names(space)) <= set(values)
        policy = encoding.from_values(space, values)
        assert policy.compression_ratio("params") >= 3.0
    assert oracle.best_policy() == encoding.from_values(space, trials[0].hyperparameters.values)
    resumed = amc.AMCOracle(space, GEOMETRY, **kwargs)
    resumed._set_project_dir(str(tmp_path), "amc")
    resumed.reload()
    assert resumed.agent.episode == 2 and len(resumed.agent.ddpg.buffer) == 6
    assert resumed.best_policy() == oracle.best_policy()
    assert (resumed.create_trial("t").hyperparameters.values
            == oracle.create_trial("t").hyperparameters.values)
