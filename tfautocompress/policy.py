"""Pruning policies: the search's *action* (AutoCompress §3.1).

A ``PruningPolicy`` gives each prunable layer a total prune fraction (share of its
kernel removed) and, for combined structured pruning, how that fraction splits
between filters and columns. The kept share ``1 - fraction`` splits
multiplicatively: ``keep_filter = (1 - fraction) ** filter_share`` and
``keep_column = (1 - fraction) ** (1 - filter_share)``, so ``filter_share=1`` is
filter pruning only and ``keep_filter * keep_column = 1 - fraction``.

A ``PolicySpace`` holds what a policy needs to know about the model: each
prunable layer's GEMM shape (filters x columns) and output positions, the scheme
set and the cost of the CONV layers it does not prune. Costs are counted over the
*scope*: every CONV layer plus the Dense layers in the space, as the AutoCompress
tables count "CONV params" / "CONV FLOPs". The analytic estimate counts each
layer's kept kernel entries exactly as the scheme's rounding keeps them, and
counts everything outside the kernels as dense, so it never overstates the
compression; ``exact_compression_ratio`` checks it on the model through
``cost.count`` (which also removes the consumers' input channels).

Progressive rounds (§3.5): ``PolicySpace.from_model(model, previous=policy)``
records what each layer already lost in the previous round as a *floor*, in the
scheme's own terms (``filter_fraction`` and ``column_fraction`` for structured
spaces, ``fraction`` for irregular ones). Every policy over the space prunes at
least its floors, checked on the filter and column fractions separately, so the
kept filters and columns can only shrink; the schemes use ``max(action, floor)``
per fraction, so rounding noise never drops a group the previous round removed.
A layer a policy leaves out keeps its floor. Costs and ratios stay against the
dense model; ``remaining_weights()`` gives each layer's weights left after the
floors, which orders the guided search.
"""
import dataclasses
import numbers

import numpy as np

from tfautocompress import artifacts, schemes as schemes_lib

__all__ = ["SCHEME_SETS", "OBJECTIVES", "check_objective", "LayerSpec", "LayerAction", "PolicySpace",
           "PruningPolicy"]

SCHEME_SETS = ("filter", "filter+column", "irregular")
OBJECTIVES = ("params", "macs")
_FORMAT = "tfautocompress.PruningPolicy/1"


def _real(owner, name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number in [{low}, {high}], "
                        f"got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not low <= value <= high:  # also rejects NaN
        raise ValueError(f"{owner}: {name}={value!r} is outside the accepted range "
                         f"[{low}, {high}].")
    return value


def check_objective(objective):
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}.")
    return objective


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One prunable layer: kernel kind, GEMM shape, output positions and inputs.

    ``reads``: ``(producers, channels, rows)`` for each channel group in the
    space that this layer reads: ``rows`` entries of its kernel's input axis
    (``in_size`` long) per channel. When the producers drop filters, those rows die.
    ``coupled``: the producers of this layer's own channel group when a residual
    merge couples several (they drop the same filters).
    """

    name: str
    kind: str
    filters: int
    columns: int
    positions: int
    in_size: int = 1
    reads: tuple = ()
    coupled: tuple = ()

    def __post_init__(self):
        reads = tuple((tuple(p), int(c), int(r)) for p, c, r in self.reads)
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "coupled", tuple(self.coupled))

    @property
    def params(self):
        """Kernel entries of the dense layer."""
        return self.filters * self.columns

    def kept(self, action, scheme_set, alive_in=1.0, filter_fraction=None,
             column_fraction=None):
        """Kernel entries kept by ``action`` (its scheme's exact rounding) times the
        share ``alive_in`` of input rows whose channels survive upstream;
        ``filter_fraction`` / ``column_fraction`` override the action's (coupled
        producers, floors)."""
        if scheme_set == "irregular":
            kept = self.params - schemes_lib.prune_count(action.fraction, self.params)
        else:
            own_fraction, own_column_fraction = action.split()
            if filter_fraction is None:
                filter_fraction = own_fraction
            if column_fraction is None:
                column_fraction = own_column_fraction
            kept = ((self.filters - schemes_lib.prune_count(filter_fraction, self.filters))
                    * (self.columns - schemes_lib.prune_count(column_fraction, self.columns)))
        return kept * alive_in


@dataclasses.dataclass(frozen=True)
class LayerAction:
    """Prune ``fraction`` of a layer's kernel; ``filter_share`` of it as filters."""

    fraction: float = 0.0
    filter_share: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "fraction",
                           _real("LayerAction", "fraction", self.fraction, 0.0, 1.0))
        object.__setattr__(self, "filter_share", _real(
            "LayerAction", "filter_share", self.filter_share, 0.0, 1.0))
        if self.fraction >= 1.0:
            raise ValueError("LayerAction: fraction=1.0 would remove the whole layer; "
                             "accepted: [0, 1).")

    def split(self):
        """``(filter_fraction, column_fraction)`` whose kept shares multiply to 1 - fraction."""
        keep = 1.0 - self.fraction
        return 1.0 - keep ** self.filter_share, 1.0 - keep ** (1.0 - self.filter_share)


@dataclasses.dataclass(frozen=True)
class PolicySpace:
    """The prunable layers of one model and the costs outside them."""

    layers: tuple
    scheme_set: str = "filter+column"
    max_fraction: float = 0.99
    fixed_params: int = 0
    fixed_macs: int = 0
    floors: tuple = ()

    def __post_init__(self):
        layers = tuple(l if isinstance(l, LayerSpec) else LayerSpec(**l) for l in self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise ValueError("PolicySpace needs at least one prunable layer, got none.")
        if self.scheme_set not in SCHEME_SETS:
            raise ValueError(f"scheme_set {self.scheme_set!r} is not one of {SCHEME_SETS}.")
        object.__setattr__(self, "max_fraction", _real(
            "PolicySpace", "max_fraction", self.max_fraction, 0.0, 1.0))
        if self.max_fraction >= 1.0:
            raise ValueError("PolicySpace: max_fraction=1.0 would allow removing whole "
                             "layers; accepted: [0, 1).")
        object.__setattr__(self, "floors", self._check_floors(self.floors))
        object.__setattr__(self, "_floor_map", {n: (a, b) for n, a, b in self.floors})
        object.__setattr__(self, "_name_set", frozenset(self.names))

    def _check_floors(self, floors):
        """``floors`` as ``((name, filter_fraction, column_fraction), ...)`` in layer
        order; for irregular spaces the middle entry is the weight fraction and the
        last is 0. Accepts that tuple or ``{name: {"filter_fraction": .., "column_fraction":
        ..}}`` (``{"fraction": ..}`` for irregular and filter spaces)."""
        if isinstance(floors, dict):
            floors = [(n, *self._floor_pair(n, f)) for n, f in floors.items()]
        table = {}
        for entry in floors:
            name, first, second = entry
            self.layer(name)
            first = _real(f"PolicySpace floor of layer {name!r}", "filter_fraction",
                          first, 0.0, 1.0)
            second = _real(f"PolicySpace floor of layer {name!r}", "column_fraction",
                           second, 0.0, 1.0)
            if self.scheme_set != "filter+column" and second != 0.0:
                raise ValueError(f"layer {name!r}: floor column_fraction={second} with "
                                 f"scheme_set={self.scheme_set!r}; only 'filter+column' prunes "
                                 "columns. Search this round with 'filter+column'.")
            total = 1.0 - (1.0 - first) * (1.0 - second)
            if total > self.max_fraction + 1e-12:
                raise ValueError(f"layer {name!r}: its floor (fraction {total:.6g} already "
                                 f"lost in the previous round) exceeds max_fraction="
                                 f"{self.max_fraction}; accepted: a max_fraction >= {total:.6g}.")
            if total > 0.0:
                table[name] = (name, first, second)
        return tuple(table[n] for n in self.names if n in table)

    def _floor_pair(self, name, floor):
        if not isinstance(floor, dict):
            raise TypeError(f"floor of layer {name!r} must be a dict, got {floor!r}.")
        if "fraction" in floor and "filter_fraction" not in floor:
            return floor["fraction"], 0.0
        return floor.get("filter_fraction", 0.0), floor.get("column_fraction", 0.0)

    @classmethod
    def from_model(cls, model, scheme_set="filter+column", max_fraction=0.99,
                   include_dense=False, previous=None):
        """The space of ``model``'s prunable CONV layers (and Dense with ``include_dense``).

        Prunable = producers of channel groups that ``graph.analyze`` may prune
        (not those feeding the model's outputs).

        ``previous``: the previous progressive round's ``PruningPolicy`` (e.g.
        ``PruningPolicy.load`` of its saved JSON). Each layer's floor is what that
        policy removed (``PruningPolicy.effective``), so this round only prunes more.
        Mixing irregular with structured rounds, or a filter-only round after a
        column-pruning one, raises ValueError naming the layer.
        """
        from tfautocompress import cost, graph, masks as masks_lib

        report = {row.name: row for row in cost.count(model).layers}
        channel_graph = graph.analyze(model)
        names = []
        for name in channel_graph.prunable_layers:
            kind = schemes_lib.kernel_kind(model.get_layer(name))
            if kind != "dense" or include_dense:
                names.append(name)
        reads = {name: [] for name in names}
        coupled = {}
        for group in channel_graph.groups:
            if not set(group.producers) <= set(names):
                continue  # a producer outside the space keeps these channels alive
            if len(group.producers) > 1:
                coupled.update({p: group.producers for p in group.producers})
            for consumer, rows in group.consumers:
                if consumer in reads:
                    reads[consumer].append((group.producers, group.channels, rows.shape[0]))
        specs = []
        for name in names:
            layer = model.get_layer(name)
            shape = tuple(masks_lib.kernel_of(layer).shape)
            kind = schemes_lib.kernel_kind(layer)
            columns, filters = schemes_lib.gemm_view(np.zeros(shape, np.int8), kind).shape
            out = report[name].output_shape
            positions = int(np.prod(out[:-1])) if len(out) > 1 else 1
            specs.append(LayerSpec(name, kind, int(filters), int(columns), positions,
                                   int(shape[-2]), tuple(reads[name]),
                                   coupled.get(name, ())))
        scope = [row for row in report.values() if row.conv or row.name in reads]
        fixed_params = sum(r.params for r in scope) - sum(s.params for s in specs)
        fixed_macs = sum(r.macs for r in scope) - sum(s.params * s.positions for s in specs)
        space = cls(tuple(specs), scheme_set, max_fraction, int(fixed_params), int(fixed_macs))
        return space if previous is None else space.next_round(previous)

    def next_round(self, previous):
        """This space with floors at what ``previous`` (the previous round's
        ``PruningPolicy``) removed; model-free ``from_model(..., previous=)``."""
        floors = self._floors_from(previous, self.scheme_set, self.names)
        return dataclasses.replace(self, floors=floors)

    @staticmethod
    def _floors_from(previous, scheme_set, names):
        if not isinstance(previous, PruningPolicy):
            raise TypeError("previous must be the previous round's PruningPolicy (e.g. "
                            f"PruningPolicy.load(path)), got {type(previous).__name__}.")
        old_set = previous.space.scheme_set
        floors = []
        for name in previous.space.names:
            first, second = previous.effective(name)
            if 1.0 - (1.0 - first) * (1.0 - second) <= 0.0:
                continue
            if name not in names:
                raise ValueError(f"layer {name!r} lost weights in the previous round but is "
                                 f"not prunable in this space; its layers are: "
                                 f"{', '.join(names)}.")
            if (old_set == "irregular") != (scheme_set == "irregular"):
                raise ValueError(f"layer {name!r}: the previous round was {old_set!r} and "
                                 f"this one is {scheme_set!r}; irregular and structured "
                                 "rounds do not chain. Use the same kind of scheme_set.")
            floors.append((name, first, second))
        return tuple(floors)

    @property
    def names(self):
        return tuple(spec.name for spec in self.layers)

    def layer(self, name):
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise ValueError(f"unknown layer {name!r}; the policy's layers are: "
                         f"{', '.join(self.names)}.")

    def floor(self, name):
        """``(filter_fraction, column_fraction)`` layer ``name`` already lost in the
        previous round (``(fraction, 0.0)`` for irregular spaces); zeros if none."""
        if name not in self._name_set:
            self.layer(name)  # raises, naming the layers
        return self._floor_map.get(name, (0.0, 0.0))

    def floor_fraction(self, name):
        """Total prune fraction of layer ``name``'s kernel already lost (its floor)."""
        first, second = self.floor(name)
        return 1.0 - (1.0 - first) * (1.0 - second)

    def floor_actions(self):
        """``{name: LayerAction}`` at the floors (approximately; schemes clamp exactly)."""
        return {name: _action_from_split(self.scheme_set, first, second)
                for name, first, second in self.floors}

    def effective(self, name, action=None):
        """``(filter_fraction, column_fraction)`` that ``action`` (None: the floor)
        prunes in layer ``name``: each at least the floor's; irregular spaces
        give ``(fraction, 0.0)``."""
        first, second = self.floor(name)
        if action is None:
            return first, second
        if self.scheme_set != "filter+column":
            return max(action.fraction, first), 0.0
        own_first, own_second = action.split()
        return max(own_first, first), max(own_second, second)

    def remaining_weights(self):
        """``{name: kernel entries left after the floors}`` (dense when no floors):
        what the guided heuristic orders layers by."""
        return self._layer_kept({}, "params")

    def dense_cost(self, objective="params"):
        """Params or MACs of the scope in the dense model."""
        if check_objective(objective) == "params":
            return self.fixed_params + sum(s.params for s in self.layers)
        return self.fixed_macs + sum(s.params * s.positions for s in self.layers)

    def remaining_cost(self, actions, objective="params"):
        """Analytic params or MACs left by ``{name: LayerAction}`` (missing = dense).

        A layer keeps its scheme's count times the share of its input rows whose
        channels survive their producers' filter pruning (coupled producers drop
        the filters of the largest fraction, as ``masks.magnitude_masks`` does).
        """
        check_objective(objective)
        total = self.fixed_params if objective == "params" else self.fixed_macs
        return total + sum(self._layer_kept(actions, objective).values())

    def _layer_kept(self, actions, objective):
        """``{name: kept params or MACs}``; missing actions prune only the floors."""
        result = {}
        for spec in self.layers:
            action = actions.get(spec.name)
            dead_rows = sum(rows * (channels - self._kept_channels(producers, channels, actions))
                            for producers, channels, rows in spec.reads)
            alive_in = 1.0 - dead_rows / spec.in_size
            first, second = self.effective(spec.name, action)
            if self.scheme_set == "irregular":
                kept = spec.kept(LayerAction(first), self.scheme_set, alive_in)
            else:
                group = self._group_fraction(spec.coupled, actions)
                kept = spec.kept(LayerAction(), self.scheme_set, alive_in,
                                 first if group is None else group, second)
            result[spec.name] = kept if objective == "params" else kept * spec.positions
        return result

    def _group_fraction(self, producers, actions):
        """Filter fraction a channel group loses: 0 if any coupled producer keeps
        all its filters, else the largest of its producers' filter fractions."""
        if self.scheme_set == "irregular" or not producers:
            return None if not producers else 0.0
        fractions = [self.effective(p, actions.get(p))[0] for p in producers]
        if len(fractions) > 1 and min(fractions) <= 0.0:
            return 0.0  # an unpruned producer keeps every channel alive
        return max(fractions)

    def _kept_channels(self, producers, channels, actions):
        fraction = self._group_fraction(producers, actions)
        return channels - schemes_lib.prune_count(fraction, channels)

    def compression_ratio(self, actions, objective="params"):
        """Analytic dense / remaining (N x) of ``{name: LayerAction}``."""
        return self.dense_cost(objective) / max(self.remaining_cost(actions, objective), 1)

    def get_config(self):
        layers = [dict(dataclasses.asdict(s), reads=[[list(p), c, r] for p, c, r in s.reads],
                       coupled=list(s.coupled)) for s in self.layers]
        config = {"layers": layers,
                  "scheme_set": self.scheme_set, "max_fraction": self.max_fraction,
                  "fixed_params": self.fixed_params, "fixed_macs": self.fixed_macs}
        if self.floors:
            config["floors"] = {
                name: ({"fraction": first} if self.scheme_set == "irregular" else
                       {"filter_fraction": first, "column_fraction": second})
                for name, first, second in self.floors}
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class PruningPolicy:
    """``{layer: LayerAction}`` over a ``PolicySpace``; layers left out keep everything."""

    def __init__(self, space, actions):
        if not isinstance(space, PolicySpace):
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

    def exact_compression_ratio(self, model, objective="params"):
        """Dense / remaining (N x) over the scope, counted by ``cost.count`` on
        ``model`` with this policy's magnitude masks."""
        from tfautocompress import cost, masks

        check_objective(objective)
        attr = "params" if objective == "params" else "macs"
        dense = cost.count(model)
        pruned = cost.count(model, masks.magnitude_masks(model, self))
        scope = {r.name for r in dense.layers if r.conv} | set(self.space.names)

        def total(report):
            return sum(getattr(r, attr) for r in report.layers if r.name in scope)

        return total(dense) / max(total(pruned), 1)

    # --- keras-tuner values: plain scalars under fixed names
    @staticmethod
    def value_names(space):
        """Names of the scalar values that encode a policy over ``space``."""
        names = [f"fraction/{n}" for n in space.names]
        if space.scheme_set == "filter+column":
            names += [f"filter_share/{n}" for n in space.names]
        return names

    def to_values(self):
        values = {}
        for name in self.space.names:
            action = self.action(name)
            values[f"fraction/{name}"] = float(action.fraction)
            if self.space.scheme_set == "filter+column":
                values[f"filter_share/{name}"] = float(action.filter_share)
        return values

    @classmethod
    def from_values(cls, space, values):
        missing = [n for n in cls.value_names(space) if n not in values]
        if missing:
            raise ValueError(f"values lack {missing}; a policy over this space needs "
                             f"{cls.value_names(space)}.")
        split = space.scheme_set == "filter+column"
        return cls(space, {n: LayerAction(values[f"fraction/{n}"],
                                          values[f"filter_share/{n}"] if split else 1.0)
                           for n in space.names})

    # --- JSON
    def to_json(self):
        return {"format": _FORMAT, "space": self.space.get_config(),
                "actions": {n: dataclasses.asdict(a) for n, a in self.actions.items()}}

    @classmethod
    def from_json(cls, obj):
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError(f"not a PruningPolicy JSON object (expected format "
                             f"{_FORMAT!r}): {str(obj)[:200]}")
        space = PolicySpace.from_config(obj["space"])
        return cls(space, {n: LayerAction(**a) for n, a in obj["actions"].items()})

    def save(self, path):
        """Write the policy as JSON, atomically."""
        artifacts.write_json(path, self.to_json())

    @classmethod
    def load(cls, path):
        return cls.from_json(artifacts.read_json(path))


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
        own = dict(zip(("filter_fraction", "column_fraction"), action.split()))
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
