"""Hand-crafted layer schedules: the manual baselines of AMC Table 2 / AutoCompress Table 1.

``uniform_policy`` prunes the same fraction from every layer; ``deeper_policy``
prunes deeper layers more (a prune fraction rising linearly with depth, the AMC
paper's *deep* handcraft). Both are scaled by a bounded bisection on a common
factor to the smallest policy whose analytic compression ratio (dense / kept,
N x, ``PolicySpace.compression_ratio``) reaches the target. They need no search
and no model: a ``PolicySpace`` is enough.

Over a ``filter+column`` space every layer also gets the same split of its
fraction between filters and columns (``filter_share``, default 0.5: kept
filters and kept columns both ``sqrt(1 - fraction)``), so ``uniform_policy`` is
the manual combined pruning of AutoCompress Tables 1-2 ("ADMM, manual hyper.
determ." under combined structured pruning).
"""
from tfautocompress import cost, policy as policy_lib
from tfautocompress.search.oracle import InfeasibleTargetError

__all__ = ["uniform_policy", "deeper_policy", "scaled_policy", "smallest_meeting"]

_BISECTION_STEPS = 60


def smallest_meeting(meets, low, high, steps=_BISECTION_STEPS):
    """Smallest ``x`` in ``[low, high]`` with ``meets(x)`` for a monotone predicate
    (False ... False True ... True); ``None`` if ``meets(high)`` is False.
    Bounded bisection: ``steps`` halvings, the answer always satisfies ``meets``."""
    if not meets(high):
        return None
    if meets(low):
        return low
    for _ in range(int(steps)):
        middle = 0.5 * (low + high)
        if meets(middle):
            high = middle
        else:
            low = middle
    return high


def _default_share(space, filter_share):
    if filter_share is None:
        return 0.5 if space.scheme_set == "filter+column" else 1.0
    return float(filter_share)


def scaled_policy(space, weights, target_compression_ratio, objective="params",
                  filter_share=None):
    """Fractions ``min(max_fraction, s * w_l)`` with the smallest ``s`` reaching the target.

    ``weights``: one non-negative relative fraction per layer of ``space``
    (in ``space.names`` order); ``filter_share``: the filter share of every
    layer's fraction (default 1 for 'filter', 0.5 for 'filter+column').
    Raises ``InfeasibleTargetError`` if ``max_fraction`` everywhere falls short.
    """
    cost.check_objective(objective)
    weights = [float(w) for w in weights]
    if len(weights) != len(space.layers) or min(weights) < 0 or max(weights) <= 0:
        raise ValueError(f"weights must hold {len(space.layers)} non-negative numbers "
                         f"(one per layer of the space), not all zero; got {weights}.")
    target = float(target_compression_ratio)
    if not target >= 1.0:
        raise ValueError(f"target_compression_ratio={target} must be >= 1 (dense / kept).")
    share = _default_share(space, filter_share)

    def actions(scale):
        return {name: policy_lib.LayerAction(min(space.max_fraction, scale * w), share)
                for name, w in zip(space.names, weights)}

    high = space.max_fraction / min(w for w in weights if w > 0)
    scale = smallest_meeting(
        lambda s: space.compression_ratio(actions(s), objective) >= target, 0.0, high)
    if scale is None:
        raise InfeasibleTargetError(
            f"target compression ratio {target:.3f}x ({objective}) is out of reach of this "
            f"schedule with max_fraction={space.max_fraction}; lower the target.")
    return policy_lib.PruningPolicy(space, actions(scale))


def uniform_policy(space, target_compression_ratio, objective="params", filter_share=None):
    """The same prune fraction in every layer, the smallest that reaches the target."""
    return scaled_policy(space, [1.0] * len(space.layers), target_compression_ratio,
                         objective, filter_share)


def deeper_policy(space, target_compression_ratio, objective="params", filter_share=None,
                  shallow_weight=0.5):
    """Deeper layers pruned more: fraction ∝ ``shallow_weight + (1 - shallow_weight) * d``,
    ``d`` = depth index / (layers - 1) in ``space.names`` order (graph order)."""
    if not 0.0 <= float(shallow_weight) <= 1.0:
        raise ValueError(f"shallow_weight={shallow_weight} must be in [0, 1] (relative "
                         "fraction of the first layer; the last layer has 1).")
    n = len(space.layers)
    weights = [shallow_weight + (1.0 - shallow_weight) * (i / max(n - 1, 1))
               for i in range(n)]
    if max(weights) <= 0:
        weights = [1.0] * n
    return scaled_policy(space, weights, target_compression_ratio, objective, filter_share)
