"""Channel-dependency graph: which kernels' output channels must be pruned together.

AutoCompress §2: filter pruning and channel pruning are correlated — removing
filter ``c`` of a layer removes channel ``c`` of its output, so every layer that
reads that channel loses it too. ``analyze(model)`` follows channels through a
tf_keras model and returns a ``ChannelGraph``:

- a *group* is a set of channels that live and die together: the output channels
  of one kernel layer (its *producer*), or of several producers summed by a
  residual ``Add``/``Subtract``/``Multiply``/``Maximum``/``Minimum``/``Average``.
  ``BatchNormalization`` after it is masked with it, depthwise convolutions pass
  it on, and the *consumers* (kernel layers) read it at offsets set by
  ``Concatenate`` or, after ``Flatten``, at its ``H·W`` flattened positions;
- a *barrier* is a layer the analysis does not understand (or a configuration it
  does not support): the groups it reads are kept whole, so pruning goes around it
  (or ``strict=True`` raises). Groups that reach the model's outputs are kept whole.

How a layer type moves channels is a ``LayerOp`` in a registry (Torch-Pruning's
per-layer pruning functions); ``register(layer_class, op)`` adds a type.
``close_masks(model, masks)`` turns any kernel masks into a consistent set: a
channel is dead iff its filter is all-zero in every producer of its group, and
then it is zero everywhere it goes. ``ChannelGraph.kept_channels`` says what the
compact model (``compact.compact``) keeps of every layer — what a cost model needs
to count a masked model as its compact version.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tfautocompress._keras import as_tf_keras, keras

__all__ = ["analyze", "close_masks", "register", "ChannelGraph", "PrunableGroup",
           "KeptChannels", "LayerOp"]

layers = keras.layers


# ----------------------------------------------------------------- groups ---
class _Group:
    """A union-find node: ``size`` channels; the root of a set holds ``fixed``."""

    __slots__ = ("size", "parent", "fixed")

    def __init__(self, size, fixed):
        self.size, self.parent, self.fixed = size, self, fixed

    def root(self):
        node = self
        while node.parent is not node:
            node.parent = node.parent.parent
            node = node.parent
        return node


# A layout says where a tensor's channels (its last axis) come from: a tuple of
# groups, each contributing all of its channels in order.


# --------------------------------------------------------------- layer ops ---
class LayerOp:
    """How one layer type carries channels (analysis) and loses them (compaction).

    ``propagate(layer, node, inputs, builder)`` gets the input layouts of one call
    and returns the output layouts (one per flattened output), recording what the
    layer reads (``builder.read``) or produces (``builder.produce``).
    ``kernel`` names the weight a mask applies to; ``in_weights`` are
    ``(attribute, axis, repeated)`` sliced by the kept input channels (``repeated``:
    each channel spans ``depth_multiplier`` entries); ``out_weights`` are
    ``(attribute, axis)`` sliced by the kept output channels; ``config_key`` is the
    config entry that holds the number of output channels.
    """

    kernel = None
    in_weights = ()
    out_weights = ()
    config_key = None
    channel_mask = False  # gets a 1-D mask of its channels in close_masks

    def propagate(self, layer, node, inputs, builder):
        raise NotImplementedError

    def repeat(self, layer, attribute):
        """How many entries of ``attribute``'s input axis one input channel spans."""
        repeated = any(a == attribute and r for a, _, r in self.in_weights)
        return getattr(layer, "depth_multiplier", 1) if repeated else 1

    def prune_config(self, config, kept_out):
        """The config of the compact layer, given its number of kept output channels."""
        if self.config_key is not None:
            config[self.config_key] = int(kept_out)
        return config


class Passthrough(LayerOp):
    """Elementwise or spatial layers: output channel ``c`` is input channel ``c``.

    With ``zero_check`` the layer must map 0 to 0 (a dead channel stays zero),
    e.g. ReLU but not a sigmoid; otherwise it is a barrier.
    """

    def __init__(self, zero_check=False):
        self.zero_check = zero_check

    def propagate(self, layer, node, inputs, builder):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return builder.unsupported(layer, node, inputs, "data_format='channels_first'")
        if self.zero_check and not _keeps_zero(layer.call):
            return builder.barrier(layer, node, inputs, counted=False)
        return [inputs[0]]


class Producer(LayerOp):
    """A kernel layer (Conv, Dense): reads its input channels, makes a new group."""

    def __init__(self, config_key, kernel="kernel", in_weights=(("kernel", -2, False),),
                 out_weights=(("kernel", -1), ("bias", 0))):
        self.config_key, self.kernel = config_key, kernel
        self.in_weights, self.out_weights = in_weights, out_weights

    def propagate(self, layer, node, inputs, builder):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return builder.unsupported(layer, node, inputs, "data_format='channels_first'")
        if getattr(layer, "groups", 1) != 1:
            return builder.unsupported(layer, node, inputs, f"groups={layer.groups}")
        builder.read(layer, self, inputs[0])
        group = builder.produce(layer, getattr(layer, self.kernel).shape[-1])
        if not _keeps_zero(layer.activation):
            builder.fix((group,))
        return [(group,)]


class Channelwise(LayerOp):
    """Per-channel weights (BatchNorm, depthwise conv, PReLU): the group passes through."""

    def __init__(self, in_weights, kernel=None, channel_mask=False):
        self.in_weights, self.kernel, self.channel_mask = in_weights, kernel, channel_mask

    def propagate(self, layer, node, inputs, builder):
        reason = self._unsupported(layer, node)
        if reason:
            return builder.unsupported(layer, node, inputs, reason)
        if isinstance(layer, layers.PReLU) and layer.alpha.shape[-1] == 1:
            return [inputs[0]]  # alpha shared across channels: nothing to slice
        builder.read(layer, self, inputs[0])
        return [inputs[0]]

    @staticmethod
    def _unsupported(layer, node):
        if isinstance(layer, layers.BatchNormalization):
            rank = node.keras_inputs[0].shape.rank
            if list(layer.axis) not in ([rank - 1], [-1]):
                return f"axis={layer.axis} (only the last axis is supported)"
        if getattr(layer, "depth_multiplier", 1) != 1:
            return f"depth_multiplier={layer.depth_multiplier} (only 1 is supported)"
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return "data_format='channels_first'"
        return None


class Merge(LayerOp):
    """Elementwise merges (Add, Multiply, ...): the inputs' channels are coupled."""

    def propagate(self, layer, node, inputs, builder):
        for other in inputs[1:]:
            builder.unify(inputs[0], other)
        return [inputs[0]]


class Concat(LayerOp):
    """Concatenate: on the channel axis the layouts are joined, else they are coupled."""

    def propagate(self, layer, node, inputs, builder):
        rank = node.keras_inputs[0].shape.rank
        if layer.axis in (-1, rank - 1):
            return [tuple(group for layout in inputs for group in layout)]
        return Merge().propagate(layer, node, inputs, builder)


class Flatten(LayerOp):
    """Flatten (channels last): channel ``c`` becomes units ``p·C + c`` for each position ``p``."""

    def propagate(self, layer, node, inputs, builder):
        shape = node.keras_inputs[0].shape
        if layer.data_format == "channels_first":
            return builder.unsupported(layer, node, inputs, "data_format='channels_first'")
        if any(dim is None for dim in shape[1:-1]):
            return builder.unsupported(layer, node, inputs, f"input shape {shape}")
        positions = int(np.prod(shape[1:-1], dtype=np.int64))
        return [inputs[0] * positions]


class Reshape(LayerOp):
    """Reshape keeping the last axis: channel ``c`` stays channel ``c``; else a barrier."""

    def propagate(self, layer, node, inputs, builder):
        before, after = node.keras_inputs[0].shape[-1], node.outputs.shape[-1]
        if before is None or before != after:
            return builder.barrier(layer, node, inputs, counted=False)
        builder.read(layer, self, inputs[0])
        return [inputs[0]]

    def repeat(self, layer, attribute):
        """How many entries of ``attribute``'s input axis one input channel spans."""
        repeated = any(a == attribute and r for a, _, r in self.in_weights)
        return getattr(layer, "depth_multiplier", 1) if repeated else 1

    def prune_config(self, config, kept_out):
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (int(kept_out),)
        return config


def _keeps_zero(function):
    """True if an activation maps 0 to 0, so that a dead channel stays dead."""
    try:
        return float(tf.reduce_max(tf.abs(function(tf.zeros((1, 2)))))) == 0.0
    except Exception:  # noqa: BLE001 - an activation we cannot evaluate is not trusted
        return False


_BN_WEIGHTS = tuple((name, 0, False) for name in ("gamma", "beta", "moving_mean",
                                                   "moving_variance"))
_DEPTHWISE = Channelwise((("depthwise_kernel", -2, False), ("bias", 0, False)),
                         kernel="depthwise_kernel")
_SEPARABLE = Producer("filters", kernel="pointwise_kernel",
                      in_weights=(("depthwise_kernel", -2, False),
                                  ("pointwise_kernel", -2, True)),
                      out_weights=(("pointwise_kernel", -1), ("bias", 0)))

_CACHE = "_tfautocompress_channel_graph"
_REGISTRY_VERSION = [0]
_REGISTRY = {
    layers.Dense: Producer("units"),
    layers.Conv1D: Producer("filters"),
    layers.Conv2D: Producer("filters"),
    layers.Conv3D: Producer("filters"),
    layers.SeparableConv1D: _SEPARABLE,
    layers.SeparableConv2D: _SEPARABLE,
    layers.DepthwiseConv1D: _DEPTHWISE,
    layers.DepthwiseConv2D: _DEPTHWISE,
    layers.BatchNormalization: Channelwise(_BN_WEIGHTS, channel_mask=True),
    layers.PReLU: Channelwise((("alpha", -1, False),)),
    layers.Add: Merge(), layers.Subtract: Merge(), layers.Multiply: Merge(),
    layers.Maximum: Merge(), layers.Minimum: Merge(), layers.Average: Merge(),
    layers.Concatenate: Concat(),
    layers.Flatten: Flatten(),
    layers.Reshape: Reshape(),
}
for _cls in (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.ThresholdedReLU,
             layers.Activation):
    _REGISTRY[_cls] = Passthrough(zero_check=True)
for _cls in (layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D,
             layers.SpatialDropout3D, layers.GaussianDropout, layers.GaussianNoise,
             layers.AlphaDropout, layers.ActivityRegularization,
             layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
             layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
             layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
             layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D,
             layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D,
             layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D,
             layers.Cropping1D, layers.Cropping2D, layers.Cropping3D,
             layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D):
    _REGISTRY[_cls] = Passthrough()


def register(layer_class, op):
    """Teach the analysis (and compaction) a layer type: ``op`` is a ``LayerOp``.

    Matching is by exact class, so a subclass of a known layer is a barrier until
    it is registered. Returns the op that was registered before, or None.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, layers.Layer)):
        raise TypeError(f"register: layer_class must be a tf_keras Layer subclass, "
                        f"got {layer_class!r}")
    if not isinstance(op, LayerOp):
        raise TypeError(f"register: op for {layer_class.__name__} must be a LayerOp, "
                        f"got {type(op).__name__}")
    previous = _REGISTRY.get(layer_class)
    _REGISTRY[layer_class] = op
    _REGISTRY_VERSION[0] += 1  # analyses made before no longer hold
    return previous


def op_for(layer):
    """The registered ``LayerOp`` of a layer, or None (then it is a barrier)."""
    return _REGISTRY.get(type(layer))


# ------------------------------------------------------------------- walk ---
def is_graph_model(layer):
    """True for a functional/Sequential model used as a layer (followed inside)."""
    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def leaf_layers(model):
    """``model``'s layers, nested models followed inside (each nested model's own
    layers instead of the model)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def walk(model, inputs, visit, node_inputs=lambda node: node.keras_inputs):
    """Run ``visit(node, value_of) -> flat outputs`` over a functional model's calls.

    ``inputs`` are the values of ``model.inputs``; ``value_of(keras_tensor)`` gives
    the value already computed for a tensor (anything else is returned as is).
    Returns the values of ``model.outputs``. This mirrors how tf_keras runs its
    own graph (nodes by decreasing depth). ``node_inputs(node)``: the node's input
    tensors (a Keras 3 node names them ``input_tensors``; ``keras3`` walks those).
    """
    values = {id(t): v for t, v in zip(model.inputs, inputs)}
    nodes_by_depth = model._nodes_by_depth  # noqa: SLF001 - the layer graph itself
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.is_input or any(id(t) not in values for t in node_inputs(node)):
                continue
            outputs = visit(node, lambda t: values.get(id(t), t))
            for tensor, value in zip(tf.nest.flatten(node.outputs), outputs):
                values[id(tensor)] = value
    return [values[id(t)] for t in model.outputs]


class _Builder:
    """Collects groups and per-layer records while walking the model."""

    def __init__(self, strict):
        self.strict = strict
        self.layers = {}     # name -> layer
        self.ops = {}        # name -> LayerOp, for layers that read a layout
        self.reads = {}      # name -> layout the layer reads
        self.produces = {}   # name -> group it produces
        self.barriers = []
        self.all_groups = []

    def walk(self, model, inputs):
        for tensor in model.inputs:
            self._register(tensor._keras_history.layer)  # noqa: SLF001
        return walk(model, inputs, self._visit)

    def _visit(self, node, value_of):
        layer = node.layer
        inputs = [value_of(t) for t in node.keras_inputs]
        if is_graph_model(layer):
            return self.walk(layer, inputs)
        self._register(layer)
        op = op_for(layer)
        if op is None:
            if self.strict:
                raise ValueError(
                    f"layer {layer.name!r} of type {type(layer).__name__} is not "
                    "supported by the channel analysis (strict=True). Supported: "
                    f"{', '.join(sorted({c.__name__ for c in _REGISTRY}))} and nested "
                    "functional models; add a type with tfautocompress.graph.register, "
                    "or use strict=False to keep the channels it reads (a barrier).")
            return self.barrier(layer, node, inputs)
        return op.propagate(layer, node, inputs, self)

    def _register(self, layer):
        known = self.layers.setdefault(layer.name, layer)
        if known is not layer:
            raise ValueError(
                f"two layers are named {layer.name!r} (one in a nested model); masks "
                "are keyed by layer name, so names must be unique in the whole model.")

    # --- what ops call
    def new_group(self, size, fixed):
        group = _Group(int(size), fixed)
        self.all_groups.append(group)
        return group

    def produce(self, layer, channels):
        """The group of ``layer``'s output channels (the same one on every call)."""
        if layer.name not in self.produces:
            self.produces[layer.name] = self.new_group(channels, fixed=False)
        return self.produces[layer.name]

    def read(self, layer, op, layout):
        """Record that ``layer`` reads ``layout`` (a shared layer reads one layout)."""
        self.ops[layer.name] = op
        if layer.name in self.reads:
            self.unify(self.reads[layer.name], layout)
        else:
            self.reads[layer.name] = layout

    def unify(self, a, b):
        """Couple two layouts channel by channel; if they do not align, keep both whole."""
        if len(a) == len(b) and all(x.size == y.size for x, y in zip(a, b)):
            for x, y in zip(a, b):
                x, y = x.root(), y.root()
                if x is not y:
                    y.parent = x
                    x.fixed = x.fixed or y.fixed
        else:
            self.fix(a)
            self.fix(b)

    def fix(self, layout):
        for group in layout:
            group.root().fixed = True

    def barrier(self, layer, node, inputs, counted=True):
        """Keep every input channel; the outputs are new channels that are kept whole."""
        if counted:
            self.barriers.append(layer.name)
        for layout in inputs:
            self.fix(layout)
        return [(self.new_group(_channels(t), fixed=True),)
                for t in tf.nest.flatten(node.outputs)]

    def unsupported(self, layer, node, inputs, reason):
        if self.strict:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has {reason}, which the "
                "channel analysis does not support (strict=True); use strict=False to "
                "keep the channels it reads (a barrier).")
        return self.barrier(layer, node, inputs)


def _channels(tensor):
    shape = tensor.shape
    return int(shape[-1]) if shape.rank and shape[-1] is not None else 0


# ----------------------------------------------------------------- result ---
@dataclasses.dataclass(frozen=True)
class PrunableGroup:
    """Channels that are pruned together.

    ``producers``: kernel layers whose output channels these are (coupled by
    residual merges); ``channels``: how many; ``bns``: BatchNormalization layers
    masked with them; ``consumers``: ``(layer name, rows)`` for each kernel layer
    reading them, where channel ``c`` is the layer's input channels ``rows[:, c]``
    (several rows after Flatten; offsets after Concatenate). Depthwise layers are
    consumers whose output channels stay in the group.
    """

    producers: tuple
    channels: int
    bns: tuple
    consumers: tuple


@dataclasses.dataclass(frozen=True)
class KeptChannels:
    """What the compact model keeps of a layer: boolean masks over its input
    channels (the last axis of the tensor it reads) and its output channels; None
    where the layer has no such weights."""

    inputs: np.ndarray | None
    outputs: np.ndarray | None


class ChannelGraph:
    """The result of ``analyze``: groups, barriers and per-layer channel indices.

    Channels of the whole model are numbered globally (group after group); each
    layer that reads a layout has ``in_index[name]`` (global channel of each of
    its input channels) and each producer ``out_index[name]``.
    """

    def __init__(self, model, builder):
        self.model = model
        self.layers = builder.layers
        self.ops = builder.ops
        self.barriers = tuple(dict.fromkeys(builder.barriers))
        roots = list({id(g.root()): g.root() for g in builder.all_groups}.values())
        sizes = np.array([r.size for r in roots], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        start = {id(r): int(o) for r, o in zip(roots, offsets)}
        self._fixed = np.repeat([r.fixed for r in roots], sizes).astype(bool)

        def index(layout):
            parts = [start[id(g.root())] + np.arange(g.size) for g in layout]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        self.in_index = {name: index(layout) for name, layout in builder.reads.items()}
        self.out_index = {name: index((g,)) for name, g in builder.produces.items()}
        nonempty = sizes > 0
        self._starts = offsets[:-1][nonempty]
        self._prunable = ~np.array([r.fixed for r in roots], dtype=bool)[nonempty]
        self.groups = self._make_groups(roots, start)
        self.prunable_layers = tuple(p for g in self.groups for p in g.producers)

    def _make_groups(self, roots, start):
        groups = []
        for root in roots:
            if root.fixed or root.size == 0:
                continue
            lo = start[id(root)]
            producers = tuple(n for n, idx in self.out_index.items() if idx[0] == lo)
            if not producers:
                continue
            bns, consumers = [], []
            for name, idx in self.in_index.items():
                rows = np.flatnonzero((idx >= lo) & (idx < lo + root.size))
                if not rows.size:
                    continue
                if self.ops[name].channel_mask:
                    bns.append(name)
                if self.ops[name].kernel is not None:
                    consumers.append((name, rows.reshape(-1, root.size)))
            groups.append(PrunableGroup(producers, root.size, tuple(bns), tuple(consumers)))
        return groups

    # --- masks
    def _kernel_shape(self, name):
        op = self.ops.get(name) or op_for(self.layers[name])
        return tuple(getattr(self.layers[name], op.kernel).shape)

    def _check(self, masks):
        for name, mask in masks.items():
            layer = self.layers.get(name)
            op = op_for(layer) if layer is not None else None
            if op is None or (op.kernel is None and not op.channel_mask):
                raise ValueError(
                    f"mask for {name!r}: the model has no kernel layer of that name; "
                    "masks are accepted for Conv, Dense, DepthwiseConv and "
                    "SeparableConv layers (and BatchNormalization, recomputed).")
            expected = (self._kernel_shape(name) if op.kernel is not None
                        else tuple(getattr(layer, "moving_mean").shape))
            if tuple(np.shape(mask)) != expected:
                raise ValueError(f"mask for {name!r} has shape {np.shape(mask)}, "
                                 f"expected the kernel shape {expected}.")

    def _rows_alive(self, name, alive):
        """Which rows (axis -2) of ``name``'s kernel read a live channel."""
        op = self.ops[name]
        return alive[self.in_index[name]].repeat(op.repeat(self.layers[name], op.kernel))

    def _alive(self, masks):
        alive = self._fixed.copy()
        for name, idx in self.out_index.items():
            mask = masks.get(name)
            if mask is None:
                alive[idx] = True
            else:
                alive[idx] |= np.any(mask.reshape(-1, mask.shape[-1]) != 0, axis=0)
        return alive

    def close(self, masks):
        """Closed masks (see ``close_masks``) and the global alive-channel vector."""
        self._check(masks)
        closed = {n: np.asarray(m, dtype=np.float32).copy() for n, m in masks.items()
                  if self.ops.get(n) is None or self.ops[n].kernel is not None}
        alive = self._alive(closed)
        for _ in range(alive.size + 1):  # each pass kills a channel or stops
            for name, idx in self.in_index.items():
                kernel = self.ops[name].kernel
                if kernel is None or alive[idx].all():
                    continue
                rows = self._rows_alive(name, alive).astype(np.float32)
                mask = closed.get(name)
                if mask is None:
                    mask = np.ones(self._kernel_shape(name), dtype=np.float32)
                closed[name] = mask * rows[:, None]
            new_alive = self._alive(closed)
            if np.array_equal(new_alive, alive):
                break
            alive = new_alive
        for name, idx in self.in_index.items():
            if self.ops[name].channel_mask and not self._fixed[idx].all():
                closed[name] = alive[idx].astype(np.float32)
        return closed, alive

    def keep(self, alive):
        """Channels the compact model keeps: the alive ones, and one of each empty group
        (a layer needs at least one channel; that one carries zeros)."""
        keep = alive.copy()
        if self._starts.size:
            empty = self._prunable & ~np.logical_or.reduceat(alive, self._starts)
            keep[self._starts[empty]] = True
        return keep

    def kept_channels(self, masks):
        """``{layer name: KeptChannels}`` for every layer with channel-indexed
        weights or config, as ``compact.compact(model, masks)`` would keep them.

        ``masks`` need not be closed. A layer with ``inputs`` kept ``k`` of ``n``
        has its input-channel axis of every channel weight shrunk to ``k`` (times
        ``depth_multiplier`` for a SeparableConv pointwise kernel); likewise
        ``outputs`` for the filters (and biases).
        """
        _, alive = self.close(masks)
        keep = self.keep(alive)
        names = set(self.in_index) | set(self.out_index)
        return {n: KeptChannels(
                    keep[self.in_index[n]] if n in self.in_index else None,
                    keep[self.out_index[n]] if n in self.out_index else None)
                for n in names}


def analyze(model, strict=False):
    """Analyse a tf_keras Sequential/functional model into a ``ChannelGraph``.

    ``strict=False``: a layer type not in the registry (or an unsupported
    configuration, e.g. ``channels_first``) is a barrier — the channels it reads
    are kept. ``strict=True``: such a layer raises ValueError instead.

    The analysis is made once per model and kept on it (a model's structure does
    not change; a new layer in a Sequential model or a ``register`` call makes a
    new one), so every consumer may call ``analyze`` instead of passing it along.
    A Keras 3 model is analysed as its tf_keras conversion (same layer names).
    """
    model = as_tf_keras(model)
    key = (bool(strict), _REGISTRY_VERSION[0], tuple(id(layer) for layer in model.layers))
    cached = getattr(model, _CACHE, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    builder = _Builder(strict)
    inputs = [(builder.new_group(_channels(t), fixed=True),) for t in model.inputs]
    outputs = builder.walk(model, inputs)
    for layout in outputs:
        builder.fix(layout)
    graph = ChannelGraph(model, builder)
    object.__setattr__(model, _CACHE, (key, graph))  # not a Keras-tracked attribute
    return graph


def close_masks(model, masks):
    """Make kernel masks consistent with the channel graph (pure; inputs unchanged).

    ``masks``: layer name → kernel-shaped 0/1 array (any structure). Returns a new
    dict where a channel is dead iff its filter is all-zero in every producer of
    its group; the rows of every kernel that reads a dead channel are zeroed
    (through Concatenate offsets, Flatten positions and depthwise layers), repeated
    until nothing changes; and each BatchNormalization of a prunable group gets a
    1-D mask over its channels (BN entries in ``masks`` are recomputed).
    ``model`` may be a model or a ``ChannelGraph`` from ``analyze``.
    """
    graph = model if isinstance(model, ChannelGraph) else analyze(model)
    return graph.close(masks)[0]
