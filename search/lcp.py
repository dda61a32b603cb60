"""Layer-compensated pruning (LcP; Chin et al., 2018): global filter ranking with learned
per-layer compensations.

*Naive pruning* (LcP §3.2) ranks every filter of the network by a metric ``M_j``
(``l1``, ``l2`` of its weights or first-order Taylor ``sum |w * dL/dw|``) and
removes the lowest-ranked filters globally until the resource constraint
(``objective`` = ``"macs"`` or ``"params"``, a compression ratio dense / kept)
holds. *Layer-compensated* pruning (Eq. 9) ranks ``M_j + beta_l(j)`` instead,
with one ``beta_l`` per layer learned by regularized evolution (Real et al.):
a pool of 64 candidates (``beta_l ~ N(0, sigma_l)``, ``sigma_l`` the std of the
layer's metric; the first candidate is ``beta = 0``, the naive solution), then 336
iterations of: sample a subset, take the fittest, mutate 10 % of its layers by
``N(0, alpha * sigma_l)``, replace the oldest. ``alpha`` decays linearly from 1
(the paper says "linearly reduce the step size"; its ``alpha = cur/total``
formula as printed would grow, we decay ``1 - cur/total``).

Filters of producers coupled by a residual merge (one ``graph`` group) are one
ranking unit: their channel's metric is the sum of the producers' metrics and
they drop together. Every unit keeps at least ``min_keep`` (10 %) of its channels.

Fitness is the same fast evaluation as every other method of the comparison:
``PruningTuner.evaluate(policy)`` (validation accuracy after magnitude pruning).
LcP is a driver calling that function rather than an Oracle because a candidate
(``beta``) becomes a policy only through the model's filter metrics (weights and
gradients), which an Oracle — it proposes and records, and knows no model —
does not have; and regularized evolution is a sequential loop over one pool.
A policy fixes how many filters each layer loses; which ones go is decided by
the magnitude masks (and later by ADMM's projection) as for every method, which
matches the ranking exactly for ``l2``.
"""
import collections
import dataclasses
import math

import numpy as np
import tensorflow as tf

from tfautocompress import cost, graph as graph_lib, policy as policy_lib
from tfautocompress import layer_kinds, schemes as schemes_lib
from tfautocompress._keras import keras
from tfautocompress.layer_kinds import kernel_of
from tfautocompress.search.oracle import InfeasibleTargetError

__all__ = ["METRICS", "filter_metrics", "RankingUnit", "GlobalRanking", "EvolutionResult",
           "regularized_evolution"]

METRICS = ("l1", "l2", "taylor")


# -------------------------------------------------------------- metrics ---
def filter_metrics(model, space, metric="l2", data=None, batches=4):
    """``{layer: per-filter metric}`` for the layers of ``space``.

    ``taylor`` needs ``data`` (batched ``(x, y)`` tf.data, the training split):
    ``sum |w * dL/dw|`` per filter (sparse categorical cross-entropy on the
    model's outputs) summed over ``batches`` batches.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; accepted: {METRICS}.")
    layers = {name: graph_lib.analyze(model).layers[name] for name in space.names}
    if metric != "taylor":
        result = {}
        for name, layer in layers.items():
            gemm = np.abs(schemes_lib.gemm_view(kernel_of(layer).numpy(),
                                                layer_kinds.prunable_layout(layer).kind))
            result[name] = gemm.sum(axis=0) if metric == "l1" else np.sqrt(
                np.square(gemm).sum(axis=0))
        return result
    if data is None:
        raise ValueError("metric='taylor' needs data= (batched (x, y) training data).")
    kernels = [kernel_of(layer) for layer in layers.values()]
    totals = [np.zeros(k.shape, np.float64) for k in kernels]
    loss_fn = keras.losses.sparse_categorical_crossentropy
    for x, y in data.take(int(batches)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y, model(x, training=False)))
        for total, kernel, grad in zip(totals, kernels, tape.gradient(loss, kernels)):
            total += np.abs(kernel.numpy() * grad.numpy())
    return {name: schemes_lib.gemm_view(total, layer_kinds.prunable_layout(layer).kind).sum(axis=0)
            for (name, layer), total in zip(layers.items(), totals)}


# -------------------------------------------------------------- ranking ---
@dataclasses.dataclass(frozen=True)
class RankingUnit:
    """Producers whose filters are ranked and removed together (one channel group)."""

    producers: tuple
    channels: int


class GlobalRanking:
    """Naive pruning with per-unit compensations ``beta`` (LcP Eqs. 6, 8 and 9).

    ``metrics``: ``{layer: per-filter metric}`` (``filter_metrics``) for every
    layer of the filter-pruning ``space``. The constraint is
    ``remaining cost <= dense cost / target_compression_ratio`` on ``objective``.
    """

    def __init__(self, space, metrics, target_compression_ratio, objective="macs",
                 min_keep=0.1):
        if space.scheme_set != "filter":
            raise ValueError(f"LcP ranks filters: the space's scheme_set is "
                             f"{space.scheme_set!r}; accepted: 'filter'.")
        if not 0.0 < float(min_keep) < 1.0:
            raise ValueError(f"min_keep={min_keep} must be in (0, 1) (share of filters "
                             "a layer keeps at least).")
        self.space, self.objective = space, cost.check_objective(objective)
        self.target_compression_ratio = float(target_compression_ratio)
        self.target_cost = space.dense_cost(objective) / self.target_compression_ratio
        self.units = self._units(space)
        self.metric = []
        for unit in self.units:
            values = sum(np.asarray(metrics[p], np.float64).reshape(-1)
                         for p in unit.producers)
            if values.size != unit.channels:
                raise ValueError(f"metrics of {unit.producers} have {values.size} entries; "
                                 f"the layer has {unit.channels} filters.")
            self.metric.append(values)
        self.sigma = np.array([float(np.std(m)) for m in self.metric])
        keep_min = [max(1, math.ceil(min_keep * u.channels)) for u in self.units]
        self.cap = [min(u.channels - k, int(math.floor(space.max_fraction * u.channels)))
                    for u, k in zip(self.units, keep_min)]
        # Within a unit the order never depends on beta: its ``cap`` smallest are eligible.
        self._eligible = [np.sort(m)[:c] for m, c in zip(self.metric, self.cap)]
        if self._cost(self.cap) > self.target_cost:
            raise InfeasibleTargetError(
                f"target compression ratio {self.target_compression_ratio:.3f}x "
                f"({objective}) is out of reach with every layer keeping "
                f"{min_keep:.0%} of its filters.")

    @staticmethod
    def _units(space):
        units, seen = [], set()
        for spec in space.layers:
            producers = tuple(p for p in spec.coupled if p in space.names) or (spec.name,)
            if producers in seen:
                continue
            seen.add(producers)
            units.append(RankingUnit(producers, spec.filters))
        return tuple(units)

    def _actions(self, counts):
        actions = {}
        for unit, count in zip(self.units, counts):
            for name in unit.producers:
                actions[name] = policy_lib.LayerAction(count / unit.channels)
        return actions

    def _cost(self, counts):
        return self.space.remaining_cost(self._actions(counts), self.objective)

    def counts(self, beta=None):
        """Filters removed per unit: the shortest prefix of the global ranking by
        ``metric + beta`` that meets the constraint."""
        beta = np.zeros(len(self.units)) if beta is None else np.asarray(beta, np.float64)
        if beta.shape != (len(self.units),):
            raise ValueError(f"beta must hold {len(self.units)} values (one per ranking "
                             f"unit), got shape {beta.shape}.")
        scores = np.concatenate([e + b for e, b in zip(self._eligible, beta)])
        owner = np.concatenate([np.full(e.size, i) for i, e in enumerate(self._eligible)])
        order = owner[np.argsort(scores, kind="stable")]

        def prefix(k):
            return np.bincount(order[:k], minlength=len(self.units))

        low, high = 0, order.size  # bounded bisection: log2(#filters) steps
        while low < high:
            middle = (low + high) // 2
            if self._cost(prefix(middle)) <= self.target_cost:
                high = middle
            else:
                low = middle + 1
        return prefix(low)

    def policy(self, beta=None):
        """The ``PruningPolicy`` of naive pruning with compensations ``beta`` (0: naive)."""
        return policy_lib.PruningPolicy(self.space, self._actions(self.counts(beta)))


# ------------------------------------------------------------ evolution ---
@dataclasses.dataclass
class EvolutionResult:
    beta: np.ndarray
    policy: policy_lib.PruningPolicy
    score: float
    naive_score: float
    evaluations: int  # distinct policies evaluated
    history: list     # score of every candidate, in order


def regularized_evolution(ranking, evaluate, pool_size=64, iterations=336, sample_size=16,
                          mutate_share=0.1, seed=0):
    """Learn ``beta`` maximising ``evaluate(policy)`` (e.g. ``PruningTuner.evaluate``).

    Returns the best candidate ever evaluated, so never worse than the naive one
    (``beta = 0``, the pool's first member). Policies already scored are not
    evaluated again (different ``beta`` often give the same filter counts).
    """
    if int(pool_size) < 1 or int(iterations) < 0 or int(sample_size) < 1:
        raise ValueError(f"pool_size={pool_size} and sample_size={sample_size} must be >= 1 "
                         f"and iterations={iterations} >= 0.")
    rng = np.random.default_rng(seed)
    n_units = len(ranking.units)
    cache, history = {}, []

    def score(beta):
        counts = tuple(int(c) for c in ranking.counts(beta))
        if counts not in cache:
            cache[counts] = float(evaluate(policy_lib.PruningPolicy(
                ranking.space, ranking._actions(counts))))
        history.append(cache[counts])
        return cache[counts]

    pool = collections.deque()
    best = None
    for i in range(int(pool_size)):
        beta = np.zeros(n_units) if i == 0 else rng.normal(0.0, ranking.sigma)
        pool.append((beta, score(beta)))
        best = pool[-1] if best is None or pool[-1][1] > best[1] else best
    naive_score = pool[0][1]
    d = max(1, int(round(mutate_share * n_units)))
    for i in range(int(iterations)):
        alpha = 1.0 - i / max(int(iterations), 1)
        sample = rng.choice(len(pool), size=min(int(sample_size), len(pool)), replace=False)
        parent = max((pool[j] for j in sample), key=lambda c: c[1])[0]
        child = parent.copy()
        layers = rng.choice(n_units, size=d, replace=False)
        child[layers] += rng.normal(0.0, alpha * ranking.sigma[layers])
        pool.append((child, score(child)))
        pool.popleft()
        best = pool[-1] if pool[-1][1] > best[1] else best
    return EvolutionResult(best[0], ranking.policy(best[0]), best[1], naive_score,
                           len(cache), history)
