"""LcP: naive global ranking by hand, the 10 % floor, coupled units, evolution >= naive."""
import numpy as np
import pytest

from tfautocompress import policy as P, space as space_lib
from tfautocompress.search import lcp
from tfautocompress.search.oracle import InfeasibleTargetError


def _space(filters_a=4):
    # a: 10 MACs per filter, b: 5 columns x 4 positions = 20 MACs per filter; independent
    specs = (space_lib.LayerSpec("a", "conv2d", filters_a, 10, 1), space_lib.LayerSpec("b", "conv2d", 4, 5, 4))
    return space_lib.PolicySpace(specs, scheme_set="filter")


def _counts(policy):
    return {n: round(a.fraction * policy.space.layer(n).filters)
            for n, a in policy.actions.items()}


def test_naive_global_ranking_under_macs_by_hand():
    metrics = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([1.5, 2.5, 3.5, 4.5])}
    ranking = lcp.GlobalRanking(_space(), metrics, 1.5, objective="macs")
    # dense 120 MACs, budget 80: remove a(1) -> 110, b(1.5) -> 90, a(2) -> 80: stop
    policy = ranking.policy()
    assert _counts(policy) == {"a": 2, "b": 1}
    assert policy.remaining_cost("macs") == 80
    # a compensation that makes b's filters look cheaper moves the cuts to b
    assert _counts(ranking.policy([10.0, 0.0])) == {"a": 0, "b": 2}


def test_every_layer_keeps_ten_percent():
    space = _space(filters_a=20)  # a: 200 MACs, b: 80 MACs
    metrics = {"a": np.linspace(0.01, 0.2, 20), "b": np.array([1.0, 2.0, 3.0, 4.0])}
    ranking = lcp.GlobalRanking(space, metrics, 4.0, objective="macs")  # budget 70: 18 of a -> 100, b -> 80 -> 60
    counts = _counts(ranking.policy())
    assert counts["a"] == 18  # every filter of a ranks first, but 2 (10 %) stay
    assert counts["b"] == 2 and space.compression_ratio(ranking.policy().actions, "macs") >= 4.0
    with pytest.raises(InfeasibleTargetError, match="10%"):
        lcp.GlobalRanking(space, metrics, 20.0, objective="macs")


def test_coupled_producers_form_one_unit():
    specs = (space_lib.LayerSpec("r1", "conv2d", 8, 9, 16, coupled=("r1", "r2")),
             space_lib.LayerSpec("r2", "conv2d", 8, 9, 16, coupled=("r1", "r2")),
             space_lib.LayerSpec("c", "conv2d", 8, 72, 16, 8, ((("r1", "r2"), 8, 1),)))
    space = space_lib.PolicySpace(specs, scheme_set="filter")
    metrics = {"r1": np.arange(8.0), "r2": np.arange(8.0)[::-1], "c": np.full(8, 10.0)}
    ranking = lcp.GlobalRanking(space, metrics, 1.5, objective="params")
    assert [u.producers for u in ranking.units] == [("r1", "r2"), ("c",)]
    np.testing.assert_allclose(ranking.metric[0], np.full(8, 7.0))
    policy = ranking.policy()
    assert policy.actions["r1"] == policy.actions["r2"]
    assert policy.compression_ratio("params") >= 1.5


def test_evolution_never_worse_than_naive():
    space = space_lib.PolicySpace(tuple(space_lib.LayerSpec(f"l{i}", "conv2d", 16, 9 * (i + 1), 4)
                                for i in range(5)), scheme_set="filter")
    rng = np.random.default_rng(0)
    metrics = {n: rng.uniform(0, 1, 16) for n in space.names}
    ranking = lcp.GlobalRanking(space, metrics, 2.0, objective="params")

    def evaluate(policy):  # a toy accuracy that prefers pruning l0 and l4 most
        fractions = np.array([policy.actions[n].fraction for n in space.names])
        return float(1.0 - np.sum((fractions - [0.8, 0.2, 0.2, 0.2, 0.6]) ** 2))

    result = lcp.regularized_evolution(ranking, evaluate, pool_size=8, iterations=40, seed=0)
    assert result.naive_score == evaluate(ranking.policy())
    assert result.score >= result.naive_score
    assert result.score == evaluate(result.policy) == max(result.history)
    assert result.score > result.naive_score + 0.05  # measured: +0.3 on this toy
    assert result.evaluations <= 8 + 40 and len(result.history) == 48
    assert result.policy.compression_ratio("params") >= 2.0
    again = lcp.regularized_evolution(ranking, evaluate, pool_size=8, iterations=40, seed=0)
    np.testing.assert_array_equal(again.beta, result.beta)


def test_metrics_from_a_model():
    from tfautocompress import zoo
    import tensorflow as tf

    model = zoo.build("lenet5", input_shape=(32, 32, 1), num_classes=3)
    space = space_lib.PolicySpace.from_model(model, scheme_set="filter")
    l1 = lcp.filter_metrics(model, space, "l1")
    l2 = lcp.filter_metrics(model, space, "l2")
    name = space.names[0]
    kernel = model.get_layer(name).kernel.numpy()
    np.testing.assert_allclose(l1[name], np.abs(kernel).sum(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(l2[name], np.sqrt((kernel ** 2).sum(axis=(0, 1, 2))), rtol=1e-5)
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 1)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 3)).batch(4)
    taylor = lcp.filter_metrics(model, space, "taylor", data=data, batches=2)
    assert set(taylor) == set(space.names)
    assert all(v.shape == (space.layer(n).filters,) and np.all(v >= 0) and v.sum() > 0
               for n, v in taylor.items())
    with pytest.raises(ValueError, match="needs data"):
        lcp.filter_metrics(model, space, "taylor")
