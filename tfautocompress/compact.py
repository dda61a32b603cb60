"""Physical surgery: a smaller dense model computing what the masked model computes.

``compact(model, masks)`` closes the masks (``graph.close_masks``) and rebuilds
the model as an ordinary functional tf_keras model — same layer names and
configs, fewer ``filters``/``units`` — without the dead filters, their biases
and BatchNorm entries, and the consumers' input channels that read them. Kept
weights are copied with the masks applied, so zeros that do not empty a whole
channel stay as zeros. ``apply_masks(model, masks)`` is the reference it matches:
a copy of the same shape with kernels multiplied by the closed masks and every
per-channel weight of a dead channel (bias, BN γ/β/mean/variance, depthwise
kernel) zeroed, so that a dead channel is exactly zero wherever it goes.

In inference mode ``compact(m, masks)(x) == apply_masks(m, masks)(x)`` up to
float rounding; ``graph.analyze(m).kept_channels(masks)`` tells what each
layer keeps. Both take a Keras 3 model too and then return a Keras 3 model (the
surgery runs on its tf_keras conversion; ``keras3.to_keras3`` brings it back).

``columns`` says what happens to a compact Conv2D whose kernel still holds
all-zero rows (column pruning that does not empty a whole channel): ``"keep"``
keeps them as zeros in a ``Conv2D``; ``"lower"`` replaces every such layer by a
``lowering.ColumnSparseConv2D`` of the same name that multiplies only the kept
rows (its default form; ``"rows"`` or ``"slices"`` choose one); ``"auto"``
lowers a layer only where ``measure`` (``tflite_tools.latency.LayerLatency``:
host TFLite latency, cached per layer shape and kept-row pattern) finds it faster. Compacting a model with lowered
layers again keeps the channels they read (their rows index them) and can still
remove their filters.
"""
import numpy as np
import tensorflow as tf

from tfautocompress import graph as graph_lib, lowering, masked_layer_norm
from tfautocompress._keras import as_tf_keras, is_keras3, keras

__all__ = ["COLUMNS", "compact", "compact_lowered", "apply_masks", "flatten", "with_masked_norms"]

COLUMNS = ("keep", "lower", "auto") + lowering.FORMS


def compact(model, masks, return_masks=False, columns="keep", measure=None):
    """A new functional model without the channels that ``masks`` kill (see module doc).

    ``masks``: layer name → kernel-shaped 0/1 array (any structure; closed here).
    A group whose channels all die keeps one (zero) channel, since a layer needs one.
    With ``return_masks`` returns ``(compact_model, compact_masks)``: the closed
    masks cut to the compact shapes, which still mark the zeros kept inside
    (``cost.count(compact_model, compact_masks)`` counts as ``cost.count(model, masks)``).
    ``columns``: one of ``COLUMNS``; ``"auto"`` needs ``measure`` (module doc).
    """
    new_model, new_masks, _ = compact_lowered(model, masks, columns, measure)
    return (new_model, new_masks) if return_masks else new_model


def compact_lowered(model, masks, columns="keep", measure=None, verbose=0):
    """``(compact_model, compact_masks, lowering)`` of ``compact``; ``lowering`` is
    ``{"decisions": {layer: lowering.Decision}, "seconds": float}`` for every
    column-sparse Conv2D (empty with ``columns="keep"``), ``seconds`` the time the
    decisions took (``verbose``: a progress bar while ``"auto"`` measures)."""
    if columns not in COLUMNS:
        raise ValueError(f"columns={columns!r} is not a column mode; accepted: "
                         f"{', '.join(map(repr, COLUMNS))}.")
    surgery = _Surgery(model, masks, shrink=True)
    new_model, new_masks = surgery.run(), surgery.compact_masks()
    decisions, seconds = {}, 0.0
    if columns != "keep":
        candidates = [(layer, rows) for layer in graph_lib.leaf_layers(new_model)
                      if (rows := lowering.lowerable(layer, new_masks.get(layer.name)))
                      is not None]
        decisions, seconds = lowering.decide(candidates, columns, measure, verbose=verbose)
        lowered = {layer.name: (rows, decisions[layer.name].form)
                   for layer, rows in candidates if decisions[layer.name].form != "keep"}
        if lowered:
            surgery = _Surgery(model, masks, shrink=True, lowered=lowered)
            new_model, new_masks = surgery.run(), surgery.compact_masks()
    return new_model, new_masks, {"decisions": decisions, "seconds": seconds}


def apply_masks(model, masks):
    """A masked copy of ``model``: kernels × closed masks, dead channels zeroed.

    The original is unchanged; the copy has the same layers, names and shapes, so
    it can be trained, evaluated or counted like the original.
    """
    return _Surgery(model, masks, shrink=False).run()


def flatten(model):
    """``model`` as one functional model without nested models (a copy with the same
    layer names, configs and weights; ``model`` itself when nothing is nested): what
    the steps that find layers by name at the top level (ADMM, the wrappers) need."""
    if not any(graph_lib.is_graph_model(layer) for layer in model.layers):
        return model
    return _Surgery(model, {}, shrink=False, flat=True).run()


def with_masked_norms(model):
    """``model``, or a copy (same names and weights) whose LayerNormalizations on
    prunable channels are ``MaskedLayerNormalization``s (masks of ones): a model on
    which assigning channel masks in place computes what ``apply_masks`` computes
    (the search's fast evaluation)."""
    graph = graph_lib.analyze(model)
    if not any(isinstance(graph.layers[name], keras.layers.LayerNormalization)
               for group in graph.groups for name in group.channelwise):
        return model
    return _Surgery(model, {}, shrink=False, masked_norms=True).run()


class _Surgery:
    def __init__(self, model, masks, shrink, lowered=None, flat=False, masked_norms=False):
        self.flat, self.masked_norms = flat, masked_norms
        self.keras3 = is_keras3(model)
        self.model = model = as_tf_keras(model)
        self.lowered = lowered or {}  # layer name -> (kept rows, lowered form)
        self.graph = graph_lib.analyze(model)
        self.closed, self.alive = self.graph.close(masks)
        self.keep = self.graph.keep(self.alive) if shrink else np.ones_like(self.alive)
        self.shrink = shrink
        self.new_layers = {}  # id(old layer) -> new layer or model

    def run(self):
        """The new model, in the library of the model given (tf_keras or Keras 3)."""
        model = self.model
        inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype,
                              name=t._keras_history.layer.name)  # noqa: SLF001
                  for t in model.inputs]
        new_model = self._rebuild(model, inputs)
        if not self.keras3:
            return new_model
        from tfautocompress import keras3

        return keras3.to_keras3(new_model)

    def _rebuild(self, model, inputs):
        outputs = graph_lib.walk(model, inputs, self._visit)
        return keras.Model(tf.nest.pack_sequence_as(model.input, inputs),
                           tf.nest.pack_sequence_as(model.output, outputs),
                           name=model.name)

    def _visit(self, node, value_of):
        layer = node.layer
        if self.flat and graph_lib.is_graph_model(layer):
            return graph_lib.walk(layer, [value_of(t) for t in node.keras_inputs], self._visit)
        new = self.new_layers.get(id(layer))
        first = new is None
        if first:
            if graph_lib.is_graph_model(layer):
                inputs = [keras.Input(batch_shape=value_of(t).shape, dtype=t.dtype,
                                      name=t_in._keras_history.layer.name)  # noqa: SLF001
                          for t, t_in in zip(node.keras_inputs, layer.inputs)]
                new = self._rebuild(layer, inputs)
            elif layer.name in self.lowered:
                new = lowering.ColumnSparseConv2D.from_conv(self._config(layer),
                                                            *self.lowered[layer.name])
            elif self._norm_mask(layer) is not None:
                new = masked_layer_norm.masked_copy(layer)
            else:
                new = type(layer).from_config(self._config(layer))
            self.new_layers[id(layer)] = new
        args, kwargs = tf.nest.map_structure(value_of, (node.call_args, node.call_kwargs))
        outputs = new(*args, **kwargs)
        if first and not graph_lib.is_graph_model(layer):
            weights = self._weights(layer)
            if layer.name in self.lowered:
                weights = new.conv_weights(weights)
            if self._norm_mask(layer) is not None:
                weights = masked_layer_norm.masked_weights(layer, weights, self._norm_mask(layer))
            new.set_weights(weights)
        return tf.nest.flatten(outputs)

    def _norm_mask(self, layer):
        """The channel mask of a LayerNormalization that must normalise over its live
        channels only (a ``MaskedLayerNormalization``): dead channels it keeps, as a
        masked copy does, or as the compact model does where an empty group keeps
        one; None where it is a plain LayerNormalization."""
        if not isinstance(layer, keras.layers.LayerNormalization):
            return None
        index = self.graph.in_index.get(layer.name)
        if index is None or layer.name not in self.closed:
            return None  # not on a prunable group: copied as it is
        mask = self.alive[index][self.keep[index]].astype(np.float32)
        plain = type(layer) is keras.layers.LayerNormalization
        return None if mask.all() and (plain or self.shrink) and not self.masked_norms else mask

    def _config(self, layer):
        config = layer.get_config()
        name, graph = layer.name, self.graph
        if not self.shrink or name not in graph.ops:
            return config
        index = graph.out_index.get(name, graph.in_index[name])
        return graph.ops[name].prune_config(config, int(self.keep[index].sum()))

    def _weights(self, layer):
        """The layer's weights, masked and (when shrinking) without the dead channels."""
        name = layer.name
        op = self.graph.ops.get(name)
        if op is None:
            return layer.get_weights()
        attrs = {a for a, *_ in op.in_weights + op.out_weights}
        values = {a: getattr(layer, a).numpy() for a in attrs
                  if getattr(layer, a, None) is not None}
        if name in self.closed and op.kernel is not None:
            values[op.kernel] = values[op.kernel] * self.closed[name]
        values = {a: self._cut(layer, op, a, v) for a, v in values.items()}
        by_variable = {id(getattr(layer, a)): a for a in values}
        return [values[by_variable[id(v)]] if id(v) in by_variable else v.numpy()
                for v in layer.weights]

    def _cut(self, layer, op, attr, array):
        """Zero ``array`` (weight ``attr`` of ``layer``) on dead channels, then drop
        the channels not kept (when shrinking), on its input and output axes."""
        graph = self.graph
        sides = [(graph.in_index, axis, op.repeat(layer, a))
                 for a, axis, _ in op.in_weights if a == attr]
        sides += [(graph.out_index, axis, 1) for a, axis in op.out_weights if a == attr]
        for index_of, axis, times in sides:
            if layer.name not in index_of:
                continue
            index = index_of[layer.name]
            shape = [1] * array.ndim
            shape[axis] = -1
            array = array * self.alive[index].repeat(times).reshape(shape).astype(array.dtype)
            if self.shrink:
                array = np.compress(self.keep[index].repeat(times), array, axis=axis)
        return array

    def compact_masks(self):
        """The closed masks cut like the weights they mask."""
        graph, cut = self.graph, {}
        for name, mask in self.closed.items():
            layer, op = graph.layers[name], graph.ops.get(name)
            if op is None:
                cut[name] = mask
            elif op.channel_mask:
                cut[name] = np.compress(self.keep[graph.in_index[name]], mask, axis=-1)
            else:
                cut[name] = self._cut(layer, op, op.kernel, mask)
            if name in self.lowered:
                rows = self.lowered[name][0]
                cut[name] = cut[name].reshape(-1, cut[name].shape[-1])[rows]
        return cut
