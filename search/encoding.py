"""A ``PruningPolicy`` as keras-tuner trial values: plain scalars under fixed names.

``fraction/<layer>`` for every layer of the space and, for ``filter+column``
spaces, ``filter_share/<layer>``. Every search Oracle declares these names up
front and every tuner decodes a trial's values with ``from_values``.
"""
from tfautocompress import policy as policy_lib

__all__ = ["value_names", "to_values", "from_values"]


def value_names(space):
    """Names of the scalar values that encode a policy over ``space``."""
    names = [f"fraction/{n}" for n in space.names]
    if space.scheme_set == "filter+column":
        names += [f"filter_share/{n}" for n in space.names]
    return names


def to_values(policy):
    """``{value name: float}`` of ``policy`` (layers left out at their floors)."""
    values = {}
    for name in policy.space.names:
        action = policy.action(name)
        values[f"fraction/{name}"] = float(action.fraction)
        if policy.space.scheme_set == "filter+column":
            values[f"filter_share/{name}"] = float(action.filter_share)
    return values


def from_values(space, values):
    """The ``PruningPolicy`` over ``space`` that ``values`` encode."""
    missing = [n for n in value_names(space) if n not in values]
    if missing:
        raise ValueError(f"values lack {missing}; a policy over this space needs "
                         f"{value_names(space)}.")
    split = space.scheme_set == "filter+column"
    return policy_lib.PruningPolicy(space, {
        n: policy_lib.LayerAction(values[f"fraction/{n}"],
                                  values[f"filter_share/{n}"] if split else 1.0)
        for n in space.names})
