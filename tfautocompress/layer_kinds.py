"""Which layers hold a kernel, and how it is laid out: the one layer-kind table.

Everything that asks "is this layer prunable, which weight is its kernel, is it a
CONV layer of the tables, which kernel axes are its output channels (filters)"
reads ``layout_of(layer)`` (schemes' kinds, cost, wrappers, masks, space, the
searches). Channel flow between layers is ``graph``'s table, not this one.

A ``KernelLayout``:

* ``kind``: the scheme layout of the kernel (``schemes.KINDS``: ``"conv"``,
  ``"depthwise"``, ``"dense"``), or None for a kernel that is counted but not
  pruned by a scheme (transposed convolutions, the lowered
  ``lowering.ColumnSparseConv2D``);
* ``kernel_attr``: the weight whose output channels are the layer's filters
  (a separable layer's ``pointwise_kernel``);
* ``filter_axes``: the kernel axes (negative, so any rank) that index the
  output channels, flattened in that order: ``(-1,)`` for Conv/Dense
  ``(..., cin, cout)``, ``(-2, -1)`` for depthwise ``(..., cin, mult)``,
  ``(-2,)`` for transposed ``(..., cout, cin)``;
* ``conv``: a CONV layer of the AutoCompress tables (the 2-D convolutions;
  ``cost`` also counts Dense layers applied to feature maps);
* ``depthwise_attr``: a separable layer's depthwise half (its input channels).

Lookup follows the class's MRO, so a subclass of a known layer gets its parent's
layout unless the table names it.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from tfautocompress import lowering
from tfautocompress._keras import keras

__all__ = ["KernelLayout", "layout_of", "prunable_layout", "kernel_of", "alive_filters",
           "accepted"]


@dataclasses.dataclass(frozen=True)
class KernelLayout:
    """How one layer class holds its kernel (module doc)."""

    kind: str | None
    kernel_attr: str = "kernel"
    filter_axes: tuple = (-1,)
    conv: bool = False
    depthwise_attr: str | None = None

    @property
    def prunable(self):
        """A scheme can prune this kernel (it has a ``kind``)."""
        return self.kind is not None

    @property
    def transposed(self):
        """A transposed convolution: its kernel runs once per input position."""
        return self.filter_axes == (-2,)

    @property
    def live_columns(self):
        """The projection chooses this kernel's columns among its live rows; False for
        depthwise and separable layers, which rank all their columns (and for kernels
        no scheme prunes)."""
        return self.kind in ("conv", "dense") and self.depthwise_attr is None


_CONV = KernelLayout("conv")
_DEPTHWISE = KernelLayout("depthwise", "depthwise_kernel", (-2, -1))
_SEPARABLE = KernelLayout("conv", "pointwise_kernel", depthwise_attr="depthwise_kernel")
_TRANSPOSED = KernelLayout(None, filter_axes=(-2,))


def _in_tables(layout):
    return dataclasses.replace(layout, conv=True)


_L = keras.layers
_TABLE = {
    _L.Dense: KernelLayout("dense"),
    _L.Conv1D: _CONV, _L.Conv2D: _in_tables(_CONV), _L.Conv3D: _CONV,
    _L.SeparableConv1D: _SEPARABLE, _L.SeparableConv2D: _in_tables(_SEPARABLE),
    _L.DepthwiseConv1D: _DEPTHWISE, _L.DepthwiseConv2D: _in_tables(_DEPTHWISE),
    _L.Conv1DTranspose: _TRANSPOSED, _L.Conv2DTranspose: _in_tables(_TRANSPOSED),
    _L.Conv3DTranspose: _TRANSPOSED,
    lowering.ColumnSparseConv2D: KernelLayout(None, conv=True),  # kernel: the kept rows
}


def layout_of(layer):
    """The ``KernelLayout`` of ``layer``'s class (its nearest registered ancestor), or
    None for a layer without a kernel (BatchNormalization, activations, ...)."""
    for cls in type(layer).__mro__:
        layout = _TABLE.get(cls)
        if layout is not None:
            return layout
    return None


def accepted(*others):
    """The layer classes a scheme prunes (then ``others``), as words for error messages."""
    names = [cls.__name__ for cls, layout in _TABLE.items() if layout.prunable] + list(others)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def prunable_layout(layer):
    """``layout_of(layer)`` for a layer a scheme can prune; TypeError naming the layer
    and the accepted classes otherwise."""
    layout = layout_of(layer)
    if layout is None or not layout.prunable:
        raise TypeError(f"layer {getattr(layer, 'name', layer)!r} is a {type(layer).__name__}; "
                        f"prunable kernels belong to {accepted()} layers.")
    return layout


def kernel_of(layer):
    """The kernel variable of ``layer`` (its layout's ``kernel_attr``); TypeError naming
    the layer for a layer without one."""
    layout = layout_of(layer)
    if layout is None:
        raise TypeError(f"layer {getattr(layer, 'name', layer)!r} is a {type(layer).__name__}, "
                        f"which has no kernel; accepted: {accepted()} layers.")
    return getattr(layer, layout.kernel_attr)


def alive_filters(mask, layout):
    """Per output channel of a kernel-shaped ``mask`` (or kernel) laid out as ``layout``:
    does its filter keep any entry? A NumPy bool vector; for a TF tensor or variable
    (the wrapper's mask, in graph mode) a float 0/1 vector."""
    ndim = len(mask.shape)
    others = tuple(a for a in range(ndim) if a - ndim not in layout.filter_axes)
    if isinstance(mask, (tf.Tensor, tf.Variable)):
        nonzero = tf.cast(tf.not_equal(mask, 0), mask.dtype)
        return tf.reshape(tf.reduce_max(nonzero, axis=others), [-1])
    return np.any(np.asarray(mask) != 0, axis=others).reshape(-1)

