"""The search space of one progressive round (AutoCompress §3.1, §3.5).

A ``PolicySpace`` holds what a policy needs to know about the model: each
prunable layer's GEMM shape (filters x columns) and output positions, the
channel groups it reads and the producers it is coupled with, the scheme set,
the cost of the CONV layers it does not prune and the *floors* of this round.
Costs are counted over the *scope*: every CONV layer plus the Dense layers in
the space, as the AutoCompress tables count "CONV params" / "CONV FLOPs". The
analytic estimate counts each layer's kept kernel entries exactly as the
scheme's rounding keeps them, and counts everything outside the kernels as
dense, so it never overstates the compression; ``cost.exact_compression_ratio``
checks it on the model through ``cost.count`` (which also removes the
consumers' input channels).

Progressive rounds (§3.5): ``PolicySpace.from_model(model, previous=policy)``
records what each layer already lost in the previous round as a *floor*, in the
scheme's own terms (``filter_fraction`` and ``column_fraction`` for structured
spaces, ``fraction`` for irregular ones). Every policy over the space prunes at
least its floors, checked on the filter and column fractions separately, so the
kept filters and columns can only shrink; the schemes use ``max(action, floor)``
per fraction, so rounding noise never drops a group the previous round removed.
A layer a policy leaves out keeps its floor. Costs and ratios stay against the
dense model; ``remaining_sizes()`` gives each layer's weights (or, with a latency
model, time) left after the floors, which orders the guided search.

Actions are ``policy.LayerAction`` values (anything with ``fraction``,
``filter_share`` and ``split()``); the space itself knows no policy type.
"""
import dataclasses
import numbers

import numpy as np

from tfautocompress import cost, graph as graph_lib, latency_model, layer_kinds
from tfautocompress import schemes as schemes_lib

__all__ = ["SCHEME_SETS", "check_real", "LayerSpec", "PolicySpace"]

SCHEME_SETS = ("filter", "filter+column", "irregular")


def check_real(owner, name, value, low, high):
    """``value`` as a float in ``[low, high]``; TypeError/ValueError naming ``owner``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number in [{low}, {high}], "
                        f"got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not low <= value <= high:  # also rejects NaN
        raise ValueError(f"{owner}: {name}={value!r} is outside the accepted range "
                         f"[{low}, {high}].")
    return value


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One prunable layer: kernel kind, GEMM shape, output positions and inputs.

    ``reads``: ``(producers, channels, rows)`` for each channel group in the
    space that this layer reads: ``rows`` entries of its kernel's input axis
    (``in_size`` long) per channel. When the producers drop filters, those rows die.
    ``coupled``: the producers of this layer's own channel group when a residual
    merge couples several (they drop the same filters). ``bias``: entries per
    filter outside the kernel that the scope counts (1 with a bias).
    ``channelwise``: params and MACs per output channel of the depthwise layers its
    channel group passes through (counted on the group's first producer).
    ``live_columns``:
    the projection chooses this layer's columns among its live rows (False for
    depthwise and separable layers, which rank all of them). ``block``: filters are
    dropped in aligned blocks of this many (its channels feed a grouped conv; all of
    them when a producer outside the space keeps its channels alive).
    ``skips_columns``: the exported layer skips its pruned columns (False: it would
    multiply them as zeros, so a column saves nothing and the layer prunes filters
    only: ``PolicySpace.split``).
    """

    name: str
    kind: str
    filters: int
    columns: int
    positions: int
    in_size: int = 1
    reads: tuple = ()
    coupled: tuple = ()
    bias: int = 0
    live_columns: bool = True
    channelwise: tuple = (0.0, 0.0)
    block: int = 1
    skips_columns: bool = True

    def __post_init__(self):
        reads = tuple((tuple(p), int(c), int(r)) for p, c, r in self.reads)
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "coupled", tuple(self.coupled))
        object.__setattr__(self, "channelwise", tuple(float(c) for c in self.channelwise))

    @property
    def params(self):
        """Kernel entries of the dense layer."""
        return self.filters * self.columns

    def dense(self, objective):
        """Params or MACs the dense layer adds to the scope (kernel, bias, and the
        depthwise layers on its channels)."""
        if objective == "params":
            return self.params + self.filters * (self.bias + self.channelwise[0])
        return self.filters * (self.columns * self.positions + self.channelwise[1])

    def kept(self, scheme_set, first, second=0.0, alive_in=1.0):
        """Kernel entries that ``masks.magnitude_masks`` keeps when ``first`` (the
        weight fraction for irregular spaces, else the filter fraction) and
        ``second`` (the column fraction, a share of the live columns) are removed
        with the schemes' exact rounding, the share ``alive_in`` of the input rows
        surviving upstream filter pruning."""
        if scheme_set == "irregular":
            return (self.params - schemes_lib.prune_count(first, self.params)) * alive_in
        kept_filters = self.kept_filters(first)
        if not self.live_columns:
            return (kept_filters * alive_in
                    * (self.columns - schemes_lib.prune_count(second, self.columns)))
        live = int(round(self.columns * alive_in))
        return kept_filters * (live - schemes_lib.prune_count(second, live)) if live else 0

    def kept_filters(self, first):
        """Filters left when the filter fraction ``first`` is removed (in blocks)."""
        return self.filters - self.block * schemes_lib.prune_count(first, self.filters // self.block)


@dataclasses.dataclass(frozen=True)
class PolicySpace:
    """The prunable layers of one model and the costs outside them."""

    layers: tuple
    scheme_set: str = "filter+column"
    max_fraction: float = 0.99
    fixed_params: int = 0
    fixed_macs: int = 0
    floors: tuple = ()
    latency: latency_model.LatencyModel = None  # what objective "latency" predicts with

    def __post_init__(self):
        layers = tuple(l if isinstance(l, LayerSpec) else LayerSpec(**l) for l in self.layers)
        object.__setattr__(self, "layers", layers)
        if isinstance(self.latency, dict):
            object.__setattr__(self, "latency", latency_model.LatencyModel.from_config(self.latency))
        if self.latency is not None:
            for name in self.names:
                self.latency.layer(name)  # raises, naming the layers it has
        if not layers:
            raise ValueError("PolicySpace needs at least one prunable layer, got none.")
        if self.scheme_set not in SCHEME_SETS:
            raise ValueError(f"scheme_set {self.scheme_set!r} is not one of {SCHEME_SETS}.")
        object.__setattr__(self, "max_fraction", check_real(
            "PolicySpace", "max_fraction", self.max_fraction, 0.0, 1.0))
        if self.max_fraction >= 1.0:
            raise ValueError("PolicySpace: max_fraction=1.0 would allow removing whole "
                             "layers; accepted: [0, 1).")
        object.__setattr__(self, "floors", self._check_floors(self.floors))
        object.__setattr__(self, "_floor_map", {n: (a, b) for n, a, b in self.floors})
        object.__setattr__(self, "_name_set", frozenset(self.names))
        object.__setattr__(self, "_blocks", {spec.name: spec.block for spec in layers})

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
            first = check_real(f"PolicySpace floor of layer {name!r}", "filter_fraction",
                          first, 0.0, 1.0)
            second = check_real(f"PolicySpace floor of layer {name!r}", "column_fraction",
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
                   include_dense=False, previous=None, latency=None, skip_columns=None):
        """The space of ``model``'s prunable CONV layers (and Dense with ``include_dense``).

        Prunable = producers of channel groups that ``graph.analyze`` may prune
        (not those feeding the model's outputs).

        ``previous``: the previous progressive round's ``PruningPolicy`` (e.g.
        ``PruningPolicy.load`` of its saved JSON). Each layer's floor is what that
        policy removed (``PruningPolicy.effective``), so this round only prunes more.
        Mixing irregular with structured rounds, or a filter-only round after a
        column-pruning one, raises ValueError naming the layer.

        ``latency``: a ``latency_model.LatencyModel`` of the dense model (timings of
        every layer of the space), for ``objective="latency"``.

        ``skip_columns``: the names of the layers whose exported form skips pruned
        columns (``lowering.probe``); the others prune filters only, so the budget
        counts what the exported model executes. None: every layer (``compact``'s
        ``columns="keep"`` then multiplies the zero columns the budget counted as saved).
        """
        report = {row.name: row for row in cost.count(model).layers}
        channel_graph = graph_lib.analyze(model)
        layers = channel_graph.layers
        names = [n for n in channel_graph.prunable_layers if include_dense or report[n].conv
                 or layer_kinds.prunable_layout(layers[n]).kind != "dense"]
        if not names:
            raise ValueError(
                f"model {model.name!r} has nothing to prune: no CONV layer"
                f"{' or Dense layer' if include_dense else ''} whose output channels can be "
                "removed (a layer feeding the model's output keeps its channels); give a "
                "model with at least one such layer.")
        reads, coupled, channelwise, blocks = _group_links(channel_graph, names, report)
        skipping = set(names if skip_columns is None else skip_columns)
        specs = [_layer_spec(layers[n], report[n], reads[n], coupled.get(n, ()),
                             channelwise.get(n, (0.0, 0.0)), blocks.get(n, 1), n in skipping)
                 for n in names]
        scope = [row for row in report.values() if row.conv or row.name in reads]
        fixed_params = sum(r.params for r in scope) - sum(s.dense("params") for s in specs)
        fixed_macs = sum(r.macs for r in scope) - sum(s.dense("macs") for s in specs)
        space = cls(tuple(specs), scheme_set, max_fraction, int(round(fixed_params)),
                    int(round(fixed_macs)), latency=latency)
        return space if previous is None else space.next_round(previous)

    def next_round(self, previous):
        """This space with floors at what ``previous`` (the previous round's
        ``PruningPolicy``) removed; model-free ``from_model(..., previous=)``."""
        floors = self._floors_from(previous, self.scheme_set, self.names)
        return dataclasses.replace(self, floors=floors)

    @staticmethod
    def _floors_from(previous, scheme_set, names):
        if not (hasattr(previous, "space") and hasattr(previous, "effective")):
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

    def effective(self, name, action=None):
        """``(filter_fraction, column_fraction)`` that ``action`` (None: the floor)
        prunes in layer ``name``: each at least the floor's; irregular spaces
        give ``(fraction, 0.0)``. With a latency model the filter fraction keeps the
        filters the device computes anyway (``_spared``)."""
        first, second = self.floor(name)
        if action is None:
            return first, second
        if self.scheme_set == "irregular":
            return max(action.fraction, first), 0.0
        if self.scheme_set == "filter":
            return self._spared(name, max(action.fraction, first), first), 0.0
        own_first, own_second = self.split(name, action)
        return self._spared(name, max(own_first, first), first), max(own_second, second)

    def split(self, name, action):
        """``(filter_fraction, column_fraction)`` of ``action`` alone (no floors) in a
        filter+column space: ``action.split()``, or all of its fraction as filters in a
        layer whose exported form would multiply pruned columns (``skips_columns``)."""
        if self.layer(name).skips_columns:
            return action.split()
        return action.fraction, 0.0

    def _spared(self, name, fraction, floor):
        """The filter fraction that keeps, with a latency model, the most filters that
        cost no more time than ``fraction`` keeps (``LatencyModel.spared``), never
        reviving what the ``floor`` removed; ``fraction`` itself otherwise."""
        if self.latency is None or fraction <= 0.0:
            return fraction
        spec = self.layer(name)
        blocks = spec.filters // spec.block
        kept = spec.block * (blocks - schemes_lib.prune_count(fraction, blocks))
        most = spec.block * (blocks - schemes_lib.prune_count(floor, blocks))
        spared = self.latency.spared(kept, most, spec.block)
        return fraction if spared == kept else 1.0 - spared / spec.filters

    def remaining_sizes(self):
        """``{name: size left after the floors}`` (dense when no floors): what the
        guided heuristic orders layers by. The size is a layer's kernel entries (the
        paper's "remaining weights"), or with a latency model its share of the model's
        predicted time: a latency target takes the most from the slowest layers."""
        return self._layer_kept({}, "params" if self.latency is None else "latency")

    def dense_cost(self, objective="params"):
        """Params or MACs of the scope in the dense model (latency: the whole model's ms)."""
        fixed = self._fixed(objective)
        if objective == "latency":
            return fixed + sum(self.latency.share_ms(s.name, s.filters, s.in_size)
                               for s in self.layers)
        return fixed + sum(s.dense(objective) for s in self.layers)

    def _fixed(self, objective):
        """The cost outside the space's kernels (ValueError for a latency objective
        without a latency model)."""
        if cost.check_objective(objective) == "latency":
            if self.latency is None:
                raise ValueError("objective 'latency' needs the model's latency model: "
                                 "PolicySpace.from_model(model, ..., latency=LatencyModel) "
                                 "(tflite_tools.latency.measure_latency_model measures one).")
            return self.latency.fixed_ms
        return self.fixed_params if objective == "params" else self.fixed_macs

    def remaining_cost(self, actions, objective="params"):
        """Analytic params or MACs left by ``{name: LayerAction}`` (missing = dense).

        A layer keeps its scheme's count times the share of its input rows whose
        channels survive their producers' filter pruning (coupled producers drop
        the filters of the largest fraction, as ``masks.magnitude_masks`` does).
        """
        return self._fixed(objective) + sum(self._layer_kept(actions, objective).values())

    def _layer_kept(self, actions, objective):
        """``{name: kept params, MACs or predicted ms}``; missing actions prune only the
        floors. Latency counts kept filters and live input channels only
        (``latency_model``: a layer keeps its pruned columns' multiplications)."""
        result = {}
        for spec in self.layers:
            action = actions.get(spec.name)
            dead_rows = sum(rows * (channels - self._kept_channels(producers, channels, actions))
                            for producers, channels, rows in spec.reads)
            alive_in = 1.0 - dead_rows / spec.in_size
            first, second = self.effective(spec.name, action)
            group = self._group_fraction(spec.coupled, actions)
            if group is not None and self.scheme_set != "irregular":
                first = group
            kept = spec.kept(self.scheme_set, first, second, alive_in)
            filters = spec.filters if self.scheme_set == "irregular" else spec.kept_filters(first)
            if objective == "params":
                result[spec.name] = kept + filters * (spec.bias + spec.channelwise[0])
            elif objective == "latency":
                result[spec.name] = self.latency.share_ms(spec.name, filters,
                                                          spec.in_size * alive_in)
            else:
                result[spec.name] = kept * spec.positions + filters * spec.channelwise[1]
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
        block = self._blocks[producers[0]]
        return channels - block * schemes_lib.prune_count(fraction, channels // block)

    def compression_ratio(self, actions, objective="params"):
        """Analytic dense / remaining (N x) of ``{name: LayerAction}``."""
        smallest = 1e-9 if objective == "latency" else 1  # ms, or a count
        return self.dense_cost(objective) / max(self.remaining_cost(actions, objective), smallest)

    def get_config(self):
        layers = [dict(dataclasses.asdict(s), reads=[[list(p), c, r] for p, c, r in s.reads],
                       coupled=list(s.coupled)) for s in self.layers]
        config = {"layers": layers,
                  "scheme_set": self.scheme_set, "max_fraction": self.max_fraction,
                  "fixed_params": self.fixed_params, "fixed_macs": self.fixed_macs}
        if self.latency is not None:
            config["latency"] = self.latency.get_config()
        if self.floors:
            config["floors"] = {
                name: ({"fraction": first} if self.scheme_set == "irregular" else
                       {"filter_fraction": first, "column_fraction": second})
                for name, first, second in self.floors}
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _group_links(channel_graph, names, report):
    """Per layer of the space: the groups it reads ``(producers, channels, rows)``,
    its coupled producers and block, and (on a group's first producer) the CONV
    params and MACs per channel outside the space's kernels that die with a channel:
    depthwise and grouped convs it passes through, a separable conv's depthwise
    part, and the input rows of CONV layers outside the space that read it."""
    reads = {name: [] for name in names}
    coupled, channelwise, blocks = {}, {}, {}
    for group in channel_graph.groups:
        if not set(group.producers) <= set(names):
            # a producer outside the space keeps these channels alive: the space's
            # producers of them drop no filter (all their filters are one block)
            blocks.update({p: group.channels for p in group.producers if p in names})
            continue
        if len(group.producers) > 1:
            coupled.update({p: group.producers for p in group.producers})
        blocks.update(dict.fromkeys(group.producers, group.block))
        per_channel = [0.0, 0.0]
        for consumer, rows in group.consumers:
            if consumer in reads:
                reads[consumer].append((group.producers, group.channels, rows.shape[0]))
            for k, value in enumerate(_dies_with_rows(channel_graph, consumer, names,
                                                      report[consumer])):
                per_channel[k] += value * rows.shape[0]
        for name in group.channelwise:
            row = report[name]
            if row.conv:  # a grouped conv: its filters are the group's channels
                per_channel[0] += row.params / group.channels
                per_channel[1] += row.macs / group.channels
        channelwise[group.producers[0]] = tuple(per_channel)
    return reads, coupled, channelwise, blocks


def _dies_with_rows(channel_graph, name, names, row):
    """CONV params and MACs of layer ``name`` per input channel that the space does
    not count in a kernel of its own: all of a depthwise layer (its bias too), the
    depthwise part of a separable layer in the space, the kernels of a CONV layer
    outside the space."""
    if not row.conv and name not in names:  # outside the scope (a layer in the space is in it)
        return 0.0, 0.0
    layer = channel_graph.layers[name]
    layout = layer_kinds.layout_of(layer)
    if layout.kind == "depthwise":
        channels = layer.depthwise_kernel.shape[-2]
        return row.params / channels, row.macs / channels
    if layout.depthwise_attr and name in names:
        depthwise = int(np.prod(layer.depthwise_kernel.shape))
        pointwise = int(np.prod(layer.pointwise_kernel.shape))
        channels = layer.depthwise_kernel.shape[-2]
        return depthwise / channels, row.macs * depthwise / (depthwise + pointwise) / channels
    if name in names:
        return 0.0, 0.0
    channels = getattr(layer, "depthwise_kernel", layer_kinds.kernel_of(layer)).shape[-2]
    bias = 0 if getattr(layer, "bias", None) is None else int(layer.bias.shape[0])
    return (row.params - bias) / channels, row.macs / channels


def _layer_spec(layer, row, reads, coupled, channelwise, block, skips_columns):
    layout = layer_kinds.prunable_layout(layer)
    shape, kind = tuple(layer_kinds.kernel_of(layer).shape), layout.kind
    columns, filters = schemes_lib.gemm_view(np.zeros(shape, np.int8), kind).shape
    positions = (int(np.prod(row.output_shape[:-1])) if len(row.output_shape) > 1 else 1) * row.calls
    bias = getattr(layer, "bias", None)
    return LayerSpec(row.name, kind, int(filters), int(columns), positions, int(shape[-2]),
                     tuple(reads), coupled, int(bias is not None and bias.shape[0] == filters),
                     layout.live_columns, tuple(float(c) for c in channelwise), int(block),
                     bool(skips_columns))
