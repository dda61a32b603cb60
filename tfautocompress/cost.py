"""Cost model: parameters and multiply-accumulates (MACs), per layer and in total.

``count(model, masks=None)`` counts a dense model, a model plus masks, or a
compacted model, so that a masked model and its compact model count the same:

* parameters are the learnable weights, as published tables count them:
  BatchNormalization's moving mean and variance are statistics, not
  parameters (they fold into the CONV before them at inference);
* without masks every parameter counts (the model as stored: dense or compact);
* with masks, a kernel counts the entries its closed mask keeps (a separable
  layer's depthwise part, those of the input channels compaction keeps), and a bias or
  a per-channel vector of BatchNormalization (gamma, beta, moving mean and
  variance) counts only the entries of live channels;
* MACs of a CONV/Dense layer = counted kernel entries x output positions;
  layers without kernels cost no MACs (BatchNormalization folds into the
  CONV before it at inference).

A compact model that keeps zero columns (column pruning that does not empty a
whole channel) counts the same as its masked model when given its own masks
(``compact.compact(model, masks, return_masks=True)`` returns them).

"CONV" means the layers the AutoCompress tables report (``layer_kinds``'
``conv``: Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and the
lowered ``lowering.ColumnSparseConv2D``, whose kernel holds only the kept rows),
and Dense layers applied to feature maps (pointwise convs, as in ConvNeXt).

Counted vs executed: ``count(compact_model, compact_masks)`` counts the MACs the
pruning keeps; ``count(compact_model)`` (no masks) counts what TFLite executes,
i.e. every entry of every stored kernel: the zeros of a kept column-sparse Conv2D
included, only the kept rows of a lowered one.
"""
import dataclasses

import numpy as np

from tfautocompress import graph as graph_lib, layer_kinds, masks as masks_lib
from tfautocompress._keras import as_tf_keras, keras

COUNTED = ("params", "macs")  # what ``count`` counts; latency is predicted (``latency_model``)
OBJECTIVES = COUNTED + ("latency",)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    name: str
    type: str
    params: int
    macs: int
    output_shape: tuple
    conv: bool
    calls: int = 1  # how often the model calls the layer (shared layers: more than once)
    # The kernel's live filters and the input channels (units, for Dense) its compact
    # layer keeps: the GEMM that ``latency_model`` times; 0 for layers without a
    # (filters-last) kernel.
    filters: int = 0
    inputs: int = 0


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Per-layer costs of one model; totals as properties."""

    layers: tuple

    @property
    def params(self):
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self):
        return sum(layer.macs for layer in self.layers)

    @property
    def conv_params(self):
        return sum(layer.params for layer in self.layers if layer.conv)

    @property
    def conv_macs(self):
        return sum(layer.macs for layer in self.layers if layer.conv)

    def ratios(self, pruned):
        """Pruning ratios (this / pruned, N x) of ``pruned``'s report against this one."""
        return {
            "params_ratio": _ratio(self.params, pruned.params),
            "macs_ratio": _ratio(self.macs, pruned.macs),
            "conv_params_ratio": _ratio(self.conv_params, pruned.conv_params),
            "conv_macs_ratio": _ratio(self.conv_macs, pruned.conv_macs),
        }

    def to_dict(self):
        return {
            "params": self.params, "macs": self.macs,
            "conv_params": self.conv_params, "conv_macs": self.conv_macs,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
        }

    def table(self):
        """A human-readable per-layer table with totals."""
        header = f"{'layer':<32} {'type':<22} {'output':<18} {'params':>12} {'MACs':>15}"
        lines = [header, "-" * len(header)]
        for layer in self.layers:
            if layer.params or layer.macs:
                shape = "x".join(str(d) for d in layer.output_shape)
                lines.append(f"{layer.name:<32} {layer.type:<22} {shape:<18} "
                             f"{layer.params:>12,} {layer.macs:>15,}")
        lines.append("-" * len(header))
        lines.append(f"{'CONV total':<74} {self.conv_params:>12,} {self.conv_macs:>15,}")
        lines.append(f"{'total':<74} {self.params:>12,} {self.macs:>15,}")
        return "\n".join(lines)


def check_objective(objective):
    """``objective`` if it is one of ``OBJECTIVES`` (what a compression ratio counts)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}.")
    return objective


def exact_compression_ratio(model, policy, objective="params"):
    """Dense / remaining (N x) of ``policy`` over its space's scope (every CONV layer
    and the space's layers), counted on ``model`` with the policy's magnitude masks
    (the exact count that ``space.PolicySpace``'s analytic estimate approximates)."""
    if check_objective(objective) not in COUNTED:
        raise ValueError(f"objective {objective!r} is predicted, not counted: use "
                         "PolicySpace.compression_ratio with the space's latency model.")
    dense = count(model)
    pruned = count(model, masks_lib.magnitude_masks(model, policy))
    scope = {r.name for r in dense.layers if r.conv} | set(policy.space.names)

    def total(report):
        return sum(getattr(r, objective) for r in report.layers if r.name in scope)

    return total(dense) / max(total(pruned), 1)


def _ratio(dense, pruned):
    return float(dense) / pruned if pruned else float("inf")


def count(model, masks=None):
    """Count params and MACs of ``model``; ``masks`` (layer name -> 0/1) prune it first.

    The masks are closed over the channel graph (``graph.close_masks``), so a
    pruned filter also removes its BatchNormalization entries and its
    consumers' input channels, as compaction would. A Keras 3 model is counted
    as its tf_keras conversion (the same layers and weights).
    """
    model = as_tf_keras(model)
    inputs = {}  # share of the input channels a separable layer's depthwise part keeps
    rows = {}  # kernel input rows the compact model keeps
    masks = masks or {}
    if masks:
        channel_graph = graph_lib.analyze(model)
        masks, alive = channel_graph.close(masks)
        keep = channel_graph.keep(alive)
        inputs = {name: float(keep[index].mean()) for name, index in channel_graph.in_index.items()
                  if getattr(layer_kinds.layout_of(channel_graph.layers[name]),
                             "depthwise_attr", None)}
        rows = {name: int(channel_graph.rows_reading(name, keep).sum())
                for name in channel_graph.in_index if channel_graph.ops[name].kernel is not None}
    calls = {}
    _count_calls(model, calls)
    return CostReport(tuple(_layer_cost(layer, masks.get(layer.name), calls.get(layer.name, 1),
                                        inputs.get(layer.name, 1.0), rows.get(layer.name))
                            for layer in graph_lib.leaf_layers(model)))


def _count_calls(model, calls):
    """``calls[name]`` += how often ``model``'s graph calls each leaf layer (a shared
    layer costs its MACs once per call; its parameters once)."""
    for nodes in model._nodes_by_depth.values():  # noqa: SLF001 - the layer graph itself
        for node in nodes:
            if node.is_input:
                continue
            if isinstance(node.layer, keras.Model):
                _count_calls(node.layer, calls)
            else:
                calls[node.layer.name] = calls.get(node.layer.name, 0) + 1


def _layer_cost(layer, mask, calls=1, kept_inputs=1.0, kept_rows=None):
    out_shape = _output_shape(layer)
    layout = layer_kinds.layout_of(layer)
    kernel = None if layout is None else getattr(layer, layout.kernel_attr)
    if kernel is None:
        params = sum(_live_count(w, mask) for w in _parameters(layer))
        return LayerCost(layer.name, type(layer).__name__, int(params), 0, out_shape,
                         False, calls)
    kept = np.ones(kernel.shape, bool) if mask is None else np.asarray(mask) != 0
    live = layer_kinds.alive_filters(kept, layout)
    depthwise = getattr(layer, layout.depthwise_attr) if layout.depthwise_attr else None
    params, macs = 0, 0
    positions = _output_positions(layer, layout, out_shape) * calls
    for weight in _parameters(layer):
        n = int(np.prod(weight.shape))
        if weight is kernel:
            n = int(np.count_nonzero(kept))
            macs += n * positions
        elif weight is depthwise:
            n = int(round(n * kept_inputs))  # the compact layer's input channels
            macs += n * positions
        elif weight.shape.rank == 1 and weight.shape[0] == live.size:  # bias
            n = int(live.sum())
        params += n
    # A Dense applied to feature maps is a 1×1 conv (ConvNeXt's pointwise layers).
    conv = layout.conv or (layout.kind == "dense" and len(out_shape) > 1)
    inputs = 0
    if layout.filter_axes == (-1,):  # (..., inputs, filters): conv, separable, dense
        # the input channels compaction keeps (a channel whose rows are all pruned here
        # stays while its producer lives), or without masks the kernel's own
        inputs = kept.shape[-2] if kept_rows is None else kept_rows
    return LayerCost(layer.name, type(layer).__name__, params, macs, out_shape, conv, calls,
                     int(live.sum()), inputs)


def _parameters(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return [w for w in (layer.gamma, layer.beta) if w is not None]
    return layer.weights


def _live_count(weight, channel_mask):
    """Entries of ``weight``; a per-channel vector counts only live channels."""
    if (channel_mask is not None and weight.shape.rank == 1
            and weight.shape[0] == np.size(channel_mask)):
        return int(np.count_nonzero(channel_mask))
    return int(np.prod(weight.shape))


def _output_shape(layer):
    try:
        shape = layer.output_shape
    except AttributeError:  # a shared layer called on inputs of several shapes
        shape = layer.get_output_shape_at(0)
    if isinstance(shape, list):  # a layer with several outputs: report the first
        shape = shape[0]
    return tuple(int(d) for d in shape[1:] if d is not None)


def _output_positions(layer, layout, out_shape):
    """How many times the kernel is applied per example."""
    if layout.transposed:
        in_shape = layer.input_shape
        return int(np.prod(in_shape[1:-1]))
    return int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
