"""Channel-dependency graph: which kernels' output channels must be pruned together.

AutoCompress §2: filter pruning and channel pruning are correlated — removing
filter ``c`` of a layer removes channel ``c`` of its output, so every layer that
reads that channel loses it too. ``analyze(model)`` follows channels through a
tf_keras model and returns a ``ChannelGraph``:

- a *group* is a set of channels that live and die together: the output channels
  of one kernel layer (its *producer*), or of several producers summed by a
  residual ``Add``/``Subtract``/``Maximum``/``Minimum``/``Average`` (or a TF op
  ``a + b``) or multiplied (``Multiply``, ``x * gate``).
  ``BatchNormalization`` and ``LayerNormalization`` after it are masked with it,
  depthwise and grouped convolutions pass it on (a grouped conv makes its channels
  die in whole groups: the group's *block*), and the *consumers* (kernel layers)
  read it at offsets set by ``Concatenate`` or, after ``Flatten``, at its ``H·W``
  flattened positions;
- a *shifted* layout is one whose dead channels are a non-zero constant (after a
  sigmoid gate, ``x + 3`` of a hard-swish): a product with unshifted features
  settles it (squeeze-and-excitation), any other reader keeps its channels whole;
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
import functools
import hashlib
import math

import numpy as np
import tensorflow as tf

from tfautocompress._keras import as_tf_keras, internal_layers as keras_apps, keras
from tfautocompress.masked_layer_norm import MaskedLayerNormalization

__all__ = ["analyze", "close_masks", "register", "ChannelGraph", "ClosedMasks", "PrunableGroup",
           "KeptChannels", "LayerOp"]

layers = keras.layers


# ----------------------------------------------------------------- groups ---
class _Group:
    """A union-find node: ``size`` channels; the root of a set holds ``fixed`` and
    ``block`` (channels live and die in aligned blocks of that many: a grouped conv's
    groups)."""

    __slots__ = ("size", "parent", "fixed", "block")

    def __init__(self, size, fixed):
        self.size, self.parent, self.fixed, self.block = size, self, fixed, 1

    def root(self):
        node = self
        while node.parent is not node:
            node.parent = node.parent.parent
            node = node.parent
        return node


# A layout says where a tensor's channels (its last axis) come from: a tuple of
# groups, each contributing all of its channels in order.


class _Shifted(tuple):
    """A layout whose dead channels hold a constant that is not zero: a gate
    (``sigmoid(0) = 0.5``), ``x + 3`` of a hard-swish. Only a product with a layout
    whose dead channels are zero makes them zero again (squeeze-and-excitation
    ``x * gate``); any other reader keeps its channels whole."""


def _shifted(layout, shift=True):
    return _Shifted(layout) if shift else tuple(layout)


# --------------------------------------------------------------- layer ops ---
class LayerOp:
    """How one layer type carries channels (analysis) and loses them (compaction).

    ``propagate(layer, node, inputs, builder)`` gets the input layouts of one call
    and returns the output layouts (one per flattened output), recording what the
    layer reads (``builder.read``) or produces (``builder.produce``).
    ``kernel`` names the weight a pruning mask applies to; ``in_weights`` are
    ``(attribute, axis, repeated)`` sliced by the kept input channels (``repeated``:
    each channel spans ``depth_multiplier`` entries); ``out_weights`` are
    ``(attribute, axis)`` sliced by the kept output channels; ``config_key`` is the
    config entry that holds the number of channels. ``channel_mask``: the layer gets
    a mask over its channels in ``close_masks`` (``mask_of``), so that a dead channel
    is zero after it (BatchNormalization's γ/β) or is counted as removed (a grouped
    conv's filters). ``shifted_inputs``: the op reads ``_Shifted`` layouts as they
    are; for any other op the builder keeps their channels whole first.
    """

    kernel = None
    in_weights = ()
    out_weights = ()
    config_key = None
    channel_mask = False
    shifted_inputs = False

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

    def mask_of(self, layer, alive):
        """The closed mask of a ``channel_mask`` layer whose channels are ``alive``."""
        return alive.astype(np.float32)


class Passthrough(LayerOp):
    """Elementwise or spatial layers: output channel ``c`` is input channel ``c``.

    With ``zero_check`` the layer is run on zeros: one that does not map 0 to 0 (a
    sigmoid, ``Rescaling`` with an offset) turns its dead channels into a constant
    (a ``_Shifted`` layout). ``constants``: attributes that must be scalars (a
    per-channel constant could not lose channels); otherwise the layer is a barrier.
    """

    shifted_inputs = True

    def __init__(self, zero_check=False, constants=()):
        self.zero_check, self.constants = zero_check, tuple(constants)

    def propagate(self, layer, node, inputs, builder):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return builder.unsupported(layer, node, inputs, "data_format='channels_first'")
        for name in self.constants:
            if np.ndim(getattr(layer, name, 0)) != 0:
                return builder.unsupported(layer, node, inputs, f"a per-channel {name}")
        shift = isinstance(inputs[0], _Shifted) or (self.zero_check
                                                    and not _maps_zero_to_zero(layer, node))
        return [_shifted(inputs[0], shift)]


class Producer(LayerOp):
    """A kernel layer (Conv, Dense): reads its input channels, makes a new group.

    Its activation decides whether a dead channel is zero (ReLU) or a constant (a
    sigmoid gate: ``_Shifted``). A Conv2D with ``groups > 1`` is a ``GroupedConv``."""

    def __init__(self, config_key, kernel="kernel", in_weights=(("kernel", -2, False),),
                 out_weights=(("kernel", -1), ("bias", 0))):
        self.config_key, self.kernel = config_key, kernel
        self.in_weights, self.out_weights = in_weights, out_weights

    def propagate(self, layer, node, inputs, builder):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return builder.unsupported(layer, node, inputs, "data_format='channels_first'")
        if getattr(layer, "groups", 1) != 1:
            return _GROUPED.propagate(layer, node, inputs, builder)
        builder.read(layer, self, inputs[0])
        group = builder.produce(layer, getattr(layer, self.kernel).shape[-1])
        return [_shifted((group,), not _keeps_zero(layer.activation))]


class Channelwise(LayerOp):
    """Per-channel weights (BatchNorm, LayerNorm, depthwise conv, PReLU, LayerScale):
    the group passes through."""

    def __init__(self, in_weights, kernel=None, channel_mask=False, config_key=None):
        self.in_weights, self.kernel, self.channel_mask = in_weights, kernel, channel_mask
        self.config_key = config_key

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
        if isinstance(layer, (layers.BatchNormalization, layers.LayerNormalization)):
            rank = node.keras_inputs[0].shape.rank
            axis = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
            if axis not in ([rank - 1], [-1]):
                return f"axis={layer.axis} (only the last axis is supported)"
        if getattr(layer, "depth_multiplier", 1) != 1:
            return f"depth_multiplier={layer.depth_multiplier} (only 1 is supported)"
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return "data_format='channels_first'"
        return None


class GroupedConv(Channelwise):
    """A Conv2D with ``groups > 1`` and as many filters as input channels (RegNet's
    3×3, ConvNeXt's depthwise conv): filter ``c`` reads only its group's inputs and
    takes input channel ``c``'s place, so the channels pass through. A group's
    channels live and die together (a block of ``channels / groups``), so the
    compact layer is again a grouped conv, with whole groups removed."""

    def __init__(self):
        super().__init__((("kernel", -1, False), ("bias", 0, False)), channel_mask=True)

    def propagate(self, layer, node, inputs, builder):
        channels = node.keras_inputs[0].shape[-1]
        if layer.filters != channels or layer.data_format != "channels_last":
            return builder.unsupported(
                layer, node, inputs, f"groups={layer.groups} with {layer.filters} filters "
                f"for {channels} input channels (as many filters as input channels, "
                "channels_last, are supported)")
        builder.block(inputs[0], channels // layer.groups)
        builder.read(layer, self, inputs[0])
        return [_shifted(inputs[0], not _keeps_zero(layer.activation))]

    def prune_config(self, config, kept_out):
        block = config["filters"] // config["groups"]
        config.update(filters=int(kept_out), groups=int(kept_out) // block)
        return config

    def mask_of(self, layer, alive):
        return np.broadcast_to(alive.astype(np.float32), tuple(layer.kernel.shape)).copy()


class Merge(LayerOp):
    """Elementwise merges (Add, Subtract, ...): the inputs' channels are coupled."""

    def propagate(self, layer, node, inputs, builder):
        for other in inputs[1:]:
            builder.unify(inputs[0], other)
        return [tuple(inputs[0])]


class Product(Merge):
    """Multiply: coupled like a merge. Where a factor's dead channels are zero, the
    product's are too, so features times a gate (squeeze-and-excitation) settle the
    gate's ``_Shifted`` channels: the gate's filters go with the features'."""

    shifted_inputs = True

    def propagate(self, layer, node, inputs, builder):
        super().propagate(layer, node, inputs, builder)
        return [_shifted(inputs[0], all(isinstance(i, _Shifted) for i in inputs))]


class OpLambda(LayerOp):
    """A TensorFlow op in a functional model (``TFOpLambda``): ``x + 3.0`` and
    ``x * (1 / 6)`` (hard-swish), ``x * gate``, ``a + b``. An elementwise op of one
    tensor and scalars passes channels through (run on zeros, as ``Passthrough``);
    of two tensors it merges (``multiply`` as a ``Product``); any other op is a
    barrier."""

    shifted_inputs = True
    UNARY = frozenset({
        "__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
        "math.divide", "math.negative", "math.maximum", "math.minimum", "math.square",
        "math.abs", "math.sigmoid", "math.tanh", "nn.relu", "nn.relu6", "nn.silu",
        "nn.swish", "nn.gelu", "nn.elu", "nn.selu", "nn.leaky_relu", "nn.softplus",
        "clip_by_value"})
    MERGES = frozenset({"__operators__.add", "math.add", "math.subtract", "math.maximum",
                        "math.minimum"})

    def propagate(self, layer, node, inputs, builder):
        symbol = getattr(layer, "symbol", None)
        tensors = {id(t) for t in node.keras_inputs}
        constants = [v for v in tf.nest.flatten((node.call_args, node.call_kwargs))
                     if id(v) not in tensors and not isinstance(v, str)]
        scalars = all(np.ndim(v) == 0 for v in constants)
        if len(inputs) == 1 and symbol in self.UNARY and scalars:
            return _CHECKED.propagate(layer, node, inputs, builder)
        if len(inputs) == 2 and symbol == "math.multiply" and scalars:
            return _PRODUCT.propagate(layer, node, inputs, builder)
        if len(inputs) == 2 and symbol in self.MERGES and scalars:
            return _MERGE.propagate(layer, node, [builder.settle(i) for i in inputs], builder)
        return builder.barrier(layer, node, inputs)


class Concat(LayerOp):
    """Concatenate: on the channel axis the layouts are joined, else they are coupled."""

    def propagate(self, layer, node, inputs, builder):
        rank = node.keras_inputs[0].shape.rank
        if layer.axis in (-1, rank - 1):
            return [tuple(group for layout in inputs for group in layout)]
        return _MERGE.propagate(layer, node, inputs, builder)


class Flatten(LayerOp):
    """Flatten (channels last): channel ``c`` becomes units ``p·C + c`` for each position ``p``."""

    def propagate(self, layer, node, inputs, builder):
        shape = node.keras_inputs[0].shape
        if layer.data_format == "channels_first":
            return builder.unsupported(layer, node, inputs, "data_format='channels_first'")
        if any(dim is None for dim in shape[1:-1]):
            return builder.unsupported(layer, node, inputs, f"input shape {shape}")
        positions = int(np.prod(shape[1:-1], dtype=np.int64))
        return [tuple(inputs[0]) * positions]


class Reshape(LayerOp):
    """Reshape keeping the last axis: channel ``c`` stays channel ``c``; else a barrier."""

    shifted_inputs = True

    def propagate(self, layer, node, inputs, builder):
        before, after = node.keras_inputs[0].shape[-1], node.outputs.shape[-1]
        if before is None or before != after:
            return builder.barrier(layer, node, inputs, counted=False)
        builder.read(layer, self, inputs[0])
        return [inputs[0]]

    def prune_config(self, config, kept_out):
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (int(kept_out),)
        return config


def _keeps_zero(function):
    """True if an activation maps 0 to 0, so that a dead channel stays dead."""
    try:
        return float(tf.reduce_max(tf.abs(function(tf.zeros((1, 2)))))) == 0.0
    except Exception:  # noqa: BLE001 - an activation we cannot evaluate is not trusted
        return False


def _maps_zero_to_zero(layer, node):
    """True if ``layer``, called as in ``node`` with zeros for its input tensors,
    returns zeros (so that a dead channel stays dead)."""
    tensors = {id(t) for t in node.keras_inputs}

    def zeros(value):
        if id(value) not in tensors:
            return value
        return tf.zeros([dim or 1 for dim in value.shape], value.dtype)

    try:
        args, kwargs = tf.nest.map_structure(zeros, (node.call_args, node.call_kwargs))
        kwargs = {k: v for k, v in kwargs.items() if k != "name"}
        outputs = tf.nest.flatten(layer.call(*args, **kwargs))
        return all(float(tf.reduce_max(tf.abs(o))) == 0.0 for o in outputs)
    except Exception:  # noqa: BLE001 - a layer we cannot evaluate is not trusted
        return False


_BN_WEIGHTS = tuple((name, 0, False) for name in ("gamma", "beta", "moving_mean",
                                                   "moving_variance"))
_LN_WEIGHTS = (("gamma", 0, False), ("beta", 0, False))
_DEPTHWISE = Channelwise((("depthwise_kernel", -2, False), ("bias", 0, False)),
                         kernel="depthwise_kernel")
_SEPARABLE = Producer("filters", kernel="pointwise_kernel",
                      in_weights=(("depthwise_kernel", -2, False),
                                  ("pointwise_kernel", -2, True)),
                      out_weights=(("pointwise_kernel", -1), ("bias", 0)))
_GROUPED = GroupedConv()
_MERGE, _PRODUCT, _CHECKED = Merge(), Product(), Passthrough(zero_check=True)

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
    layers.LayerNormalization: Channelwise(_LN_WEIGHTS, channel_mask=True),
    MaskedLayerNormalization: Channelwise(_LN_WEIGHTS + (("channel_mask", 0, False),),
                                          channel_mask=True),
    layers.PReLU: Channelwise((("alpha", -1, False),)),
    keras_apps.LayerScale: Channelwise((("gamma", 0, False),), config_key="projection_dim"),
    layers.Add: _MERGE, layers.Subtract: _MERGE, layers.Multiply: _PRODUCT,
    layers.Maximum: _MERGE, layers.Minimum: _MERGE, layers.Average: _MERGE,
    keras_apps.CustomScaleLayer: _MERGE,
    layers.Concatenate: Concat(),
    layers.Flatten: Flatten(),
    layers.Reshape: Reshape(),
    keras_apps.TFOpLambda: OpLambda(),
    layers.Rescaling: Passthrough(zero_check=True, constants=("scale", "offset")),
}
for _cls in (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.ThresholdedReLU,
             layers.Activation):
    _REGISTRY[_cls] = _CHECKED
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
             layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D,
             keras_apps.StochasticDepth):
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
        if not op.shifted_inputs:
            inputs = [self.settle(layout) for layout in inputs]
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
                    self._set_block(x, y.block)
        else:
            self.fix(a)
            self.fix(b)

    def block(self, layout, block):
        """Channels of ``layout`` live and die in aligned blocks of ``block``."""
        if all(group.size % block == 0 for group in layout):
            for group in layout:
                self._set_block(group.root(), block)
        else:
            self.fix(layout)

    @staticmethod
    def _set_block(root, block):
        root.block = math.lcm(root.block, block)
        if root.size % root.block:
            root.fixed = True

    def fix(self, layout):
        for group in layout:
            group.root().fixed = True

    def settle(self, layout):
        """A plain layout for a reader of a ``_Shifted`` one: its channels are kept."""
        if isinstance(layout, _Shifted):
            self.fix(layout)
        return tuple(layout)

    def barrier(self, layer, node, inputs, counted=True):
        """Keep every input channel; the outputs are new channels that are kept whole.
        ``barriers`` lists the layers that keep channels that were prunable."""
        if counted and any(not g.root().fixed for layout in inputs for g in layout):
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
    residual merges and gates); ``channels``: how many; ``channelwise``: layers
    without a prunable kernel sliced with them (BatchNormalization and
    LayerNormalization, masked with them; grouped convs; LayerScale);
    ``consumers``: ``(layer name, rows)`` for each kernel layer reading them, where
    channel ``c`` is the layer's input channels ``rows[:, c]`` (several rows after
    Flatten; offsets after Concatenate). Depthwise layers are consumers whose output
    channels stay in the group. ``block``: channels live and die in aligned blocks
    of this many (a grouped conv's groups), so producers drop whole blocks.
    """

    producers: tuple
    channels: int
    channelwise: tuple
    consumers: tuple
    block: int = 1


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
        self._blocks = [(start[id(r)], r.size, r.block) for r in roots
                        if r.block > 1 and not r.fixed]
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
            channelwise, consumers = [], []
            for name, idx in self.in_index.items():
                rows = np.flatnonzero((idx >= lo) & (idx < lo + root.size))
                if not rows.size:
                    continue
                if self.ops[name].kernel is not None:
                    consumers.append((name, rows.reshape(-1, root.size)))
                elif self.ops[name].in_weights:
                    channelwise.append(name)
            groups.append(PrunableGroup(producers, root.size, tuple(channelwise),
                                        tuple(consumers), root.block))
        return groups

    # --- masks
    def _kernel_shape(self, name):
        op = self.ops.get(name) or op_for(self.layers[name])
        return tuple(getattr(self.layers[name], op.kernel).shape)

    def _check(self, masks):
        for name, mask in masks.items():
            layer = self.layers.get(name)
            op = (self.ops.get(name) or op_for(layer)) if layer is not None else None
            if op is None or (op.kernel is None and not op.channel_mask):
                raise ValueError(
                    f"mask for {name!r}: the model has no kernel layer of that name; "
                    "masks are accepted for Conv, Dense, DepthwiseConv and "
                    "SeparableConv layers (and BatchNormalization, LayerNormalization "
                    "and grouped convs, recomputed).")
            expected = (self._kernel_shape(name) if op.kernel is not None else
                        op.mask_of(layer, np.ones(self._channels_read(layer), bool)).shape)
            if tuple(np.shape(mask)) != expected:
                raise ValueError(f"mask for {name!r} has shape {np.shape(mask)}, "
                                 f"expected the kernel shape {expected}.")

    def _channels_read(self, layer):
        if layer.name in self.in_index:
            return self.in_index[layer.name].size
        return int(layer.get_input_shape_at(0)[-1])

    def rows_reading(self, name, channels):
        """Which rows (axis -2) of ``name``'s kernel read a channel set in ``channels``
        (a global channel vector: ``close``'s alive one, or ``keep``'s)."""
        op = self.ops[name]
        return channels[self.in_index[name]].repeat(op.repeat(self.layers[name], op.kernel))

    def _alive(self, masks):
        alive = self._fixed.copy()
        for name, idx in self.out_index.items():
            mask = masks.get(name)
            if mask is None:
                alive[idx] = True
            else:
                alive[idx] |= np.any(mask.reshape(-1, mask.shape[-1]) != 0, axis=0)
        return self._whole_blocks(alive)

    def _whole_blocks(self, channels):
        """``channels`` (bool per global channel) with every block that has one set
        set whole: a grouped conv cannot lose part of a group."""
        for start, size, block in self._blocks:
            part = channels[start:start + size].reshape(-1, block)
            channels[start:start + size] = part.any(axis=1).repeat(block)
        return channels

    @functools.cached_property
    def signature(self):
        """A digest of the structure: layers, their ops and kernel shapes, and how
        channels flow; two models of the same structure have the same signature."""
        digest = hashlib.sha256(self._fixed.tobytes())
        for name in sorted(self.layers):
            op = self.ops.get(name)
            kernel = self._kernel_shape(name) if op is not None and op.kernel else ()
            digest.update(f"{name}/{type(op).__name__}/{kernel}".encode())
            for table in (self.in_index, self.out_index):
                digest.update(table[name].tobytes() if name in table else b"-")
        return digest.hexdigest()

    def close(self, masks):
        """Closed masks (see ``close_masks``; ``ClosedMasks``) and the global
        alive-channel vector. Masks this graph's structure closed already are
        returned as they are: masks are closed once, where they are made."""
        if isinstance(masks, ClosedMasks) and masks.signature == self.signature:
            return masks, masks.alive.copy()
        closed, alive = self._close(masks)
        return ClosedMasks(closed, alive, self.signature), alive.copy()

    def _close(self, masks):
        self._check(masks)
        closed = {n: np.asarray(m, dtype=np.float32).copy() for n, m in masks.items()
                  if self.ops.get(n) is None or self.ops[n].kernel is not None}
        alive = self._alive(closed)
        for _ in range(alive.size + 1):  # each pass kills a channel or stops
            for name, idx in self.in_index.items():
                kernel = self.ops[name].kernel
                if kernel is None or alive[idx].all():
                    continue
                rows = self.rows_reading(name, alive).astype(np.float32)
                mask = closed.get(name)
                if mask is None:
                    mask = np.ones(self._kernel_shape(name), dtype=np.float32)
                closed[name] = mask * rows[:, None]
            new_alive = self._alive(closed)
            if np.array_equal(new_alive, alive):
                break
            alive = new_alive
        for name, idx in self.in_index.items():
            op = self.ops[name]
            if op.channel_mask and not self._fixed[idx].all():
                closed[name] = op.mask_of(self.layers[name], alive[idx])
        return closed, alive

    def keep(self, alive):
        """Channels the compact model keeps: the alive ones, and one of each empty group
        (a layer needs at least one channel; that one carries zeros)."""
        keep = alive.copy()
        if self._starts.size:
            empty = self._prunable & ~np.logical_or.reduceat(alive, self._starts)
            keep[self._starts[empty]] = True
        return self._whole_blocks(keep)

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


class ClosedMasks(dict):
    """Masks ``ChannelGraph.close`` made: consistent over the channel graph of the
    structure ``signature``, with its alive-channel vector ``alive``. Closing them
    again on a model of that structure costs nothing. Read-only: change a copy
    (``dict(masks)``), which is closed anew."""

    def __init__(self, masks, alive, signature):
        super().__init__(masks)
        self.alive, self.signature = alive, signature

    def _read_only(self, *args, **kwargs):
        raise TypeError("closed masks are read-only: change a copy (dict(masks)); "
                        "it is closed again where it is used.")

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = clear = setdefault = _read_only

    def __reduce__(self):  # pickled and copied as the plain dict it holds
        return dict, (dict(self),)


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
