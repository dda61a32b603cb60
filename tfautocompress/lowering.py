"""Column-sparse convolutions lowered to TFLite builtins that skip the pruned columns.

A Conv2D is a GEMM over im2col rows, one row per kernel entry ``(i, j, c)``:
``out = patches[:, kept rows] · W[kept rows, :]``. Column pruning zeroes whole
rows, but a compact ``Conv2D`` still multiplies them. ``ColumnSparseConv2D``
computes the same outputs from the kept rows only, in one of two ``FORMS``:

* ``"rows"`` — the padded input transposed to ``(H, C, W)`` rows, so that a kept
  row ``(i, j, c)`` reads, for output row ``ho``, one contiguous image row
  ``x[ho·s + i·d, c, :]``; per kernel column ``j`` with kept rows one ``GATHER`` of
  those image rows (one ``memcpy`` of a whole row per index, instead of one per
  element as a channel gather in NHWC does) and one strided slice of the columns
  ``j`` reads, one ``CONCATENATION``, a ``TRANSPOSE`` back to NHWC and one 1×1
  ``CONV_2D`` on the kept rows (the kernel's rows permuted to match);
* ``"slices"`` — rows grouped by kernel position: per position with kept rows a
  strided slice of the padded input, a ``GATHER`` of its kept channels (none when
  it keeps every channel; a position without kept rows vanishes), one
  ``CONCATENATION`` and one 1×1 ``CONV_2D``. Every op is a 4-D op with constant
  1-D indices, which TFLite's GPU delegate takes.

Which is fastest depends on the layer (``rows`` wins at large feature maps,
where a channel gather would copy element by element; ``slices`` at small ones,
where image rows are short), and at a small layer neither may beat the dense
conv (XNNPACK's dense conv reads its input in place, and GATHER runs outside
XNNPACK). ``decide`` therefore takes a ``measure(layer, rows) -> Decision``:
``tflite_tools.latency.LayerLatency`` times the layer alone in host TFLite in the
kept form and both lowered forms and picks the fastest (``decide`` reports the
seconds the decisions took).

Lowered: plain ``Conv2D`` layers (``groups=1``, channels_last, any kernel size,
strides, dilation, ``"valid"``/``"same"`` padding) with static spatial input
dims. ``compact.compact(model, masks, columns=...)`` applies this.
"""
import dataclasses
import time

import numpy as np
import tensorflow as tf

from tfautocompress import graph as graph_lib
from tfautocompress._keras import keras

__all__ = ["FORMS", "KEEP", "DEFAULT_FORM", "ColumnSparseConv2D", "kept_rows", "lowerable",
           "Decision", "decide", "probe"]

FORMS = ("rows", "slices")
DEFAULT_FORM = "rows"  # what columns="lower" uses: the fastest on host CPUs in most layers
KEEP = "keep"


@keras.utils.register_keras_serializable(package="tfautocompress")
class ColumnSparseConv2D(keras.layers.Layer):
    """A Conv2D that stores and multiplies only its kept im2col rows (module doc).

    ``rows``: sorted flat indices of the kept kernel rows, row ``(i, j, c)`` being
    ``(i * kernel_w + j) * in_channels + c``. Weights: ``kernel`` of shape
    ``(len(rows), filters)`` (the conv kernel's kept rows, ``kernel.reshape(-1,
    filters)[rows]``) and ``bias`` ``(filters,)``. The other arguments are Conv2D's
    (initializers, regularizers and constraints are not carried over: the layer is
    made from a trained Conv2D by ``compact``, for inference or fine-tuning).
    """

    def __init__(self, filters, kernel_size, rows, strides=(1, 1), padding="valid",
                 dilation_rate=(1, 1), activation=None, use_bias=True, form="rows",
                 **kwargs):
        super().__init__(**kwargs)
        if form not in FORMS:
            raise ValueError(f"ColumnSparseConv2D {self.name!r}: form={form!r}; accepted: "
                             f"{', '.join(FORMS)}.")
        if padding not in ("valid", "same"):
            raise ValueError(f"ColumnSparseConv2D {self.name!r}: padding={padding!r}; "
                             "accepted: 'valid', 'same'.")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size)
        self.strides = _pair(strides)
        self.dilation_rate = _pair(dilation_rate)
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.form = form
        self.rows = [int(r) for r in rows]
        if not self.rows or np.any(np.diff(self.rows) <= 0) or self.rows[0] < 0:
            raise ValueError(f"ColumnSparseConv2D {self.name!r}: rows must be a non-empty, "
                             "strictly increasing list of kernel row indices.")

    def build(self, input_shape):
        _, height, width, channels = (None if d is None else int(d)
                                      for d in tf.TensorShape(input_shape))
        if height is None or width is None or channels is None:
            raise ValueError(f"ColumnSparseConv2D {self.name!r} needs static height, width "
                             f"and channels; got input shape {tuple(input_shape)}.")
        kh, kw = self.kernel_size
        if self.rows[-1] >= kh * kw * channels:
            raise ValueError(f"ColumnSparseConv2D {self.name!r}: row {self.rows[-1]} is out "
                             f"of range for a {kh}x{kw}x{channels} kernel.")
        self._geometry = _Geometry(height, width, channels, self.kernel_size, self.strides,
                                   self.dilation_rate, self.padding)
        self.kernel = self.add_weight("kernel", (len(self.rows), self.filters),
                                      initializer="glorot_uniform")
        self.bias = (self.add_weight("bias", (self.filters,), initializer="zeros")
                     if self.use_bias else None)
        super().build(input_shape)

    def call(self, inputs):
        g = self._geometry
        x = inputs
        if any(g.pads):
            top, bottom, left, right = g.pads
            x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
        kernel = self.kernel
        if self.form == "rows":
            patches = self._rows(x)
            kernel = tf.gather(kernel, self._geometry.by_column_order(self.rows))
        else:
            patches = self._slices(x)
        out = tf.nn.conv2d(patches, tf.reshape(kernel, (1, 1) + tuple(self.kernel.shape)),
                           1, "VALID")
        if self.use_bias:
            out = tf.nn.bias_add(out, self.bias)
        return self.activation(out)

    def _rows(self, x):
        g = self._geometry
        image_rows = tf.reshape(tf.transpose(x, (0, 1, 3, 2)),
                                (-1, g.padded_h * g.channels, g.padded_w))
        parts = []
        for j, indices, count in g.by_column(self.rows):
            part = g.columns(tf.gather(image_rows, indices, axis=1), j)
            parts.append(tf.reshape(part, (-1, g.out_h, count, g.out_w)))
        patches = parts[0] if len(parts) == 1 else tf.concat(parts, axis=2)
        return tf.transpose(patches, (0, 1, 3, 2))

    def _slices(self, x):
        g = self._geometry
        parts = []
        for (i, j), channels in g.by_position(self.rows):
            part = g.window(x, i, j)
            if len(channels) < g.channels:
                part = tf.gather(part, channels, axis=3)
            parts.append(part)
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=3)

    def compute_output_shape(self, input_shape):
        batch = tf.TensorShape(input_shape)[0]
        g = self._geometry
        return tf.TensorShape([batch, g.out_h, g.out_w, self.filters])

    def get_config(self):
        return dict(super().get_config(), filters=self.filters,
                    kernel_size=list(self.kernel_size), strides=list(self.strides),
                    padding=self.padding, dilation_rate=list(self.dilation_rate),
                    activation=keras.activations.serialize(self.activation),
                    use_bias=self.use_bias, form=self.form, rows=list(self.rows))

    @classmethod
    def from_conv(cls, conv_config, rows, form):
        """The lowered layer of a Conv2D with config ``conv_config`` (same name)."""
        return cls(conv_config["filters"], conv_config["kernel_size"], rows,
                   strides=conv_config["strides"], padding=conv_config["padding"],
                   dilation_rate=conv_config["dilation_rate"],
                   activation=conv_config["activation"], use_bias=conv_config["use_bias"],
                   form=form, name=conv_config["name"], trainable=conv_config["trainable"],
                   dtype=conv_config.get("dtype"))

    def conv_weights(self, weights):
        """This layer's weights from the Conv2D's ``[kernel, (bias)]``."""
        kernel, *rest = weights
        return [kernel.reshape(-1, kernel.shape[-1])[self.rows], *rest]


class _LoweredOp(graph_lib.Producer):
    """The channel analysis of a ``ColumnSparseConv2D``: its rows index (position,
    channel) pairs, so the channels it reads are kept whole; its filters are
    prunable like a Conv2D's."""

    def __init__(self):
        super().__init__("filters", in_weights=())

    def propagate(self, layer, node, inputs, builder):
        builder.fix(inputs[0])
        return super().propagate(layer, node, inputs, builder)


graph_lib.register(ColumnSparseConv2D, _LoweredOp())


def _pair(value):
    return (int(value),) * 2 if np.isscalar(value) else tuple(int(v) for v in value)


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Where each kernel row reads the input: padding and output size as TF's conv."""

    height: int
    width: int
    channels: int
    kernel_size: tuple
    strides: tuple
    dilation: tuple
    padding: str
    out_h: int = dataclasses.field(init=False)
    out_w: int = dataclasses.field(init=False)
    pads: tuple = dataclasses.field(init=False)  # top, bottom, left, right

    def __post_init__(self):
        outs, pads = [], []
        for size, k, s, d in zip((self.height, self.width), self.kernel_size, self.strides,
                                 self.dilation):
            span = (k - 1) * d + 1
            if self.padding == "same":
                out = -(-size // s)
                total = max((out - 1) * s + span - size, 0)
                pads += [total // 2, total - total // 2]
            else:
                out = (size - span) // s + 1
                pads += [0, 0]
            outs.append(out)
        for name, value in (("out_h", outs[0]), ("out_w", outs[1]), ("pads", tuple(pads))):
            object.__setattr__(self, name, value)  # a frozen dataclass's derived fields

    @property
    def padded_h(self):
        return self.height + self.pads[0] + self.pads[1]

    @property
    def padded_w(self):
        return self.width + self.pads[2] + self.pads[3]

    def position(self, rows):
        """``(i, j, c)`` of each flat kernel row."""
        rows = np.asarray(rows)
        c = rows % self.channels
        ij = rows // self.channels
        return ij // self.kernel_size[1], ij % self.kernel_size[1], c

    def by_column_order(self, rows):
        """The order ``by_column`` puts the kept rows in: by kernel column, stable."""
        return np.argsort(self.position(rows)[1], kind="stable").astype(np.int32)

    def by_column(self, rows):
        """``[(j, indices, n)]`` per kernel column ``j`` with ``n`` kept rows: indices
        into the ``(padded_h * channels)`` image rows of a transposed padded example,
        ordered (output row, kept row)."""
        i, j, c = self.position(rows)
        (sh, _), (dh, _) = self.strides, self.dilation
        ho = np.arange(self.out_h)[:, None] * sh
        groups = []
        for column in sorted(set(j.tolist())):
            sel = j == column
            indices = (ho + (i[sel] * dh)[None]) * self.channels + c[sel][None]
            groups.append((column, indices.reshape(-1).astype(np.int32), int(sel.sum())))
        return groups

    def columns(self, image_rows, j):
        """The image-row entries kernel column ``j`` reads at every output column."""
        sw, left = self.strides[1], j * self.dilation[1]
        if sw == 1 and left == 0 and self.out_w == self.padded_w:
            return image_rows
        return image_rows[:, :, left:left + (self.out_w - 1) * sw + 1:sw]

    def by_position(self, rows):
        """``[((i, j), channels)]`` of the positions with kept rows, in row order."""
        i, j, c = self.position(rows)
        groups = {}
        for key, channel in zip(zip(i.tolist(), j.tolist()), c.tolist()):
            groups.setdefault(key, []).append(channel)
        return [(key, np.asarray(v, np.int32)) for key, v in groups.items()]

    def window(self, x, i, j):
        """The padded input seen by kernel position ``(i, j)`` at every output."""
        (sh, sw), (dh, dw) = self.strides, self.dilation
        top, left = i * dh, j * dw
        if (sh, sw) == (1, 1) and (top, left) == (0, 0) and (
                self.out_h, self.out_w) == (self.padded_h, self.padded_w):
            return x
        return x[:, top:top + (self.out_h - 1) * sh + 1:sh,
                 left:left + (self.out_w - 1) * sw + 1:sw, :]


def kept_rows(mask):
    """Flat indices of the rows of a conv kernel mask ``(kh, kw, cin, cout)`` that
    keep any weight."""
    mask = np.asarray(mask)
    return np.flatnonzero(mask.reshape(-1, mask.shape[-1]).any(axis=1))


def lowerable(layer, mask):
    """The kept rows when ``layer`` (a compact model's layer with its compact
    ``mask``) is a column-sparse Conv2D that ``ColumnSparseConv2D`` computes (one
    input shape, static spatial dims); None otherwise."""
    if type(layer) is not keras.layers.Conv2D or mask is None:  # noqa: E721 - exact type
        return None
    try:
        shape = tuple(layer.input_shape)
    except AttributeError:  # a layer called on inputs of several shapes
        return None
    if (layer.groups != 1 or layer.data_format != "channels_last" or len(shape) != 4
            or None in shape[1:]):
        return None
    rows = kept_rows(mask)
    total = int(np.prod(np.shape(mask)[:-1]))
    return rows if 0 < rows.size < total else None


# ------------------------------------------------------------- choosing ---
@dataclasses.dataclass(frozen=True)
class Decision:
    """The form chosen for one layer and the host latency (ms) of each form measured."""

    form: str  # "keep" or one of FORMS
    latency_ms: dict  # form -> median ms; empty when the form was set, not measured

    def to_json(self):
        return {"form": self.form, "latency_ms": dict(self.latency_ms)}


def decide(layers_rows, columns, measure=None, verbose=0):
    """``({name: Decision}, seconds)`` for ``[(layer, rows)]``: ``columns="auto"``
    asks ``measure(layer, rows) -> Decision`` (a progress bar with ``verbose``),
    ``"lower"`` takes ``DEFAULT_FORM``, a form name that form; ``seconds`` is the
    time the decisions took."""
    if columns not in ("auto", "lower") + FORMS:
        raise ValueError(f"columns={columns!r}; accepted: 'auto', 'lower', "
                         f"{', '.join(map(repr, FORMS))}.")
    if columns != "auto":
        form = DEFAULT_FORM if columns == "lower" else columns
        return {layer.name: Decision(form, {}) for layer, _ in layers_rows}, 0.0
    if measure is None:
        raise ValueError("columns='auto' picks each column-sparse layer's form by its "
                         "measured latency: pass measure=tfautocompress.tflite_tools.latency"
                         ".LayerLatency(), or choose columns='keep', 'lower' or a form.")
    start = time.perf_counter()
    progress = keras.utils.Progbar(len(layers_rows), verbose=verbose,
                                   unit_name="column-sparse layer") if verbose else None
    decisions = {}
    for layer, rows in layers_rows:
        decisions[layer.name] = measure(layer, rows)
        if progress:
            progress.add(1)
    return decisions, time.perf_counter() - start


def probe(model, names, measure):
    """``{name: Decision}`` for the layers among ``names`` (``model``'s, built) whose
    pruned columns a lowered form can skip, each measured (``measure(layer, rows)``,
    as ``decide`` asks it) as a compressed layer looks: half its filters, keeping every
    other kernel row. A search that lets only the layers whose decision is lowered
    prune columns (``PolicySpace.from_model(skip_columns=...)``) counts no column that
    the exported model multiplies as a zero. A lowered form's gathers cost what the
    input costs, whatever the filters, so a layer whose dense conv runs faster there
    (a large feature map with few channels) prunes filters only."""
    layers = {layer.name: layer for layer in graph_lib.leaf_layers(model)}
    decisions = {}
    for name in names:
        layer = layers[name]
        if type(layer) is not keras.layers.Conv2D:  # noqa: E721 - what lowerable takes
            continue
        config = dict(layer.get_config(), filters=max(1, layer.filters // 2))
        half = keras.layers.Conv2D.from_config(config)
        half(keras.Input(batch_shape=(1,) + tuple(layer.input_shape)[1:]))
        mask = np.ones(half.kernel.shape, np.float32)
        mask.reshape(-1, mask.shape[-1])[1::2] = 0.0
        rows = lowerable(half, mask)
        if rows is not None:
            decisions[name] = measure(half, rows)
    return decisions
