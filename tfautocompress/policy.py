"""Pruning policies: the search's *action* (AutoCompress §3.1).

A ``PruningPolicy`` gives each prunable layer of a ``space.PolicySpace`` a total
prune fraction (share of its kernel removed) and, for combined structured
pruning, how that fraction splits between filters and columns. The kept share
``1 - fraction`` splits multiplicatively: ``keep_filter = (1 - fraction) **
filter_share`` and ``keep_column = (1 - fraction) ** (1 - filter_share)``, so
``filter_share=1`` is filter pruning only and ``keep_filter * keep_column = 1 -
fraction``. A layer the policy leaves out keeps its floor (what the previous
round removed).

Everything that prunes takes a policy or a plain ``{layer name: Scheme}``
mapping; ``schemes.as_schemes`` turns either into the mapping.

The policy file (one format, written by the pipeline for every round and read by
``tfautocompress-admm --policy`` and ``PruningPolicy.load``) is a JSON object
``{"format": "tfautocompress.PruningPolicy/1", "schemes": {layer: Scheme
config}, "space": ..., "actions": ...}``. ``schemes`` is what prunes; ``space``
and ``actions`` (present when a search wrote the file) let ``PruningPolicy.load``
rebuild the policy itself. A hand-written file needs only ``format`` and
``schemes`` (``save_schemes``), and may use any registered scheme
(``schemes.register``).
"""
import dataclasses

import numpy as np

from tfautocompress import artifacts, schemes as schemes_lib, space as space_lib

__all__ = ["LayerAction", "PruningPolicy", "save_schemes", "load_schemes"]

_FORMAT = "tfautocompress.PruningPolicy/1"


def save_schemes(path, schemes):
    """Write ``{layer: Scheme}`` (or a policy) as a policy file, atomically."""
    configs = _scheme_configs(schemes_lib.as_schemes(schemes))
    artifacts.write_json(path, {"format": _FORMAT, "schemes": configs})


def load_schemes(path):
    """``{layer: Scheme}`` of a policy file (see module doc)."""
    obj = _read(path)
    configs = obj.get("schemes")
    if not isinstance(configs, dict):
        raise ValueError(f"policy file {path}: 'schemes' must be an object {{layer: scheme "
                         f"config}}, got {type(configs).__name__}.")
    return {name: schemes_lib.Scheme.from_config(c) for name, c in configs.items()}


def _read(path):
    obj = artifacts.read_json(path)
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a policy file: expected a JSON object with "
                         f"\"format\": \"{_FORMAT}\" (write one with PruningPolicy.save or "
                         "policy.save_schemes).")
    return obj


def _scheme_configs(schemes):
    return {name: scheme.get_config() for name, scheme in schemes.items()}


@dataclasses.dataclass(frozen=True)
class LayerAction:
    """Prune ``fraction`` of a layer's kernel; ``filter_share`` of it as filters."""

    fraction: float = 0.0
    filter_share: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "fraction",
                           space_lib.check_real("LayerAction", "fraction", self.fraction, 0.0, 1.0))
        object.__setattr__(self, "filter_share", space_lib.check_real(
            "LayerAction", "filter_share", self.filter_share, 0.0, 1.0))
        if self.fraction >= 1.0:
            raise ValueError("LayerAction: fraction=1.0 would remove the whole layer; "
                             "accepted: [0, 1).")

    def split(self):
        """``(filter_fraction, column_fraction)`` whose kept shares multiply to 1 - fraction."""
        keep = 1.0 - self.fraction
        return 1.0 - keep ** self.filter_share, 1.0 - keep ** (1.0 - self.filter_share)


class PruningPolicy:
    """``{layer: LayerAction}`` over a ``PolicySpace``; layers left out keep everything."""

    def __init__(self, space, actions):
        if not isinstance(space, space_lib.PolicySpace):
            raise TypeError(f"space must be a PolicySpace, got {type(space).__name__}.")
        self.space = space
        self.actions = {}
        for name, action in dict(actions).items():
            spec = space.layer(name)
            if not isinstance(action, LayerAction):
                raise TypeError(f"action for layer {spec.name!r} must be a LayerAction, "
                                f"got {type(action).__name__}.")
            if action.fraction > space.max_fraction:
                raise ValueError(f"layer {name!r}: fraction={action.fraction} exceeds "
                                 f"max_fraction={space.max_fraction}; accepted: "
                                 f"[0, {space.max_fraction}].")
            if space.scheme_set != "filter+column" and action.filter_share != 1.0:
                raise ValueError(f"layer {name!r}: filter_share={action.filter_share} with "
                                 f"scheme_set={space.scheme_set!r}; only 'filter+column' "
                                 "splits, the others accept filter_share=1.0.")
            _check_floor(space, name, action)
            self.actions[name] = action

    def action(self, name):
        """Layer ``name``'s action; a layer left out keeps its floor (dense if none)."""
        action = self.actions.get(name)
        if action is not None:
            return action
        first, second = self.space.floor(name)
        return _action_from_split(self.space.scheme_set, first, second)

    def effective(self, name):
        """``(filter_fraction, column_fraction)`` this policy prunes in layer ``name``
        (``(fraction, 0.0)`` for irregular spaces), floors included exactly."""
        return self.space.effective(name, self.actions.get(name))

    def __eq__(self, other):
        return (isinstance(other, PruningPolicy) and self.space == other.space
                and self.actions == other.actions)

    def __repr__(self):
        body = ", ".join(f"{n}: {a.fraction:.3f}/{a.filter_share:.2f}"
                         for n, a in self.actions.items())
        return f"PruningPolicy({self.space.scheme_set}; {body})"

    def schemes(self):
        """``{layer name: Scheme}`` for the layers that prune (fraction > 0)."""
        result = {}
        names = [n for n in self.space.names if n in self.actions or self.space.floor(n)[0]
                 or self.space.floor(n)[1]]
        for name in names:
            first, second = self.effective(name)
            if first <= 0.0 and second <= 0.0:
                continue
            if self.space.scheme_set == "irregular":
                result[name] = schemes_lib.Irregular(first)
            elif self.space.scheme_set == "filter":
                result[name] = schemes_lib.Filter(first)
            else:
                result[name] = schemes_lib.Combined(first, second)
        return result

    def remaining_cost(self, objective="params"):
        return self.space.remaining_cost(self.actions, objective)

    def compression_ratio(self, objective="params"):
        """Analytic dense / remaining (N x) over the scope (see module doc)."""
        return self.space.compression_ratio(self.actions, objective)

    # --- JSON (the policy file format, see module doc)
    def to_json(self):
        return {"format": _FORMAT, "schemes": _scheme_configs(self.schemes()),
                "space": self.space.get_config(),
                "actions": {n: dataclasses.asdict(a) for n, a in self.actions.items()}}

    @classmethod
    def from_json(cls, obj):
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError(f"not a PruningPolicy JSON object (expected format "
                             f"{_FORMAT!r}): {str(obj)[:200]}")
        if "space" not in obj or "actions" not in obj:
            raise ValueError("this policy file holds schemes only (no 'space'/'actions', "
                             "e.g. written by hand): read it with policy.load_schemes, or "
                             "use one written by the pipeline.")
        space = space_lib.PolicySpace.from_config(obj["space"])
        return cls(space, {n: LayerAction(**a) for n, a in obj["actions"].items()})

    def save(self, path):
        """Write the policy file (schemes, space and actions), atomically."""
        artifacts.write_json(path, self.to_json())

    @classmethod
    def load(cls, path):
        return cls.from_json(_read(path))


_FLOOR_TOLERANCE = 1e-9


def _action_from_split(scheme_set, first, second):
    """A ``LayerAction`` whose split is ``(first, second)`` up to rounding."""
    if scheme_set != "filter+column" or second == 0.0:
        return LayerAction(first, 1.0)
    keep_first, keep_second = 1.0 - first, 1.0 - second
    if keep_first >= 1.0:
        return LayerAction(second, 0.0)
    share = np.log(keep_first) / (np.log(keep_first) + np.log(keep_second))
    return LayerAction(1.0 - keep_first * keep_second, min(1.0, max(0.0, float(share))))


def _check_floor(space, name, action):
    first, second = space.floor(name)
    if first <= 0.0 and second <= 0.0:
        return
    if space.scheme_set == "filter+column":
        own = dict(zip(("filter_fraction", "column_fraction"), space.split(name, action)))
    else:
        key = "fraction" if space.scheme_set == "irregular" else "filter_fraction"
        own = {key: action.fraction}
    for (key, value), floor in zip(own.items(), (first, second)):
        if value < floor - _FLOOR_TOLERANCE:
            raise ValueError(
                f"layer {name!r}: {key}={value:.6g} is below its floor {floor:.6g} (what "
                "the previous round already removed); accepted: "
                f"{key} >= {floor:.6g} (fraction {action.fraction:.6g}, filter_share "
                f"{action.filter_share:.6g}).")
