"""Purification and unused-weights removal (AutoCompress §3.4, Phase II).

ADMM leaves many small, non-zero filters and columns. ``threshold_masks`` removes,
per layer, every filter (column) whose L2 norm is below ``filter_scale`` (``column_scale``)
times the *median norm of the layer's live filters (columns)*: a scale relative to
the layer's own weights, so one range of scales fits every layer.

``remove_unused`` then drops weights nothing uses, in both directions, to a fixed
point: a dead filter kills its channel in every consumer (``graph.close_masks``), and
a channel that no consumer reads any more (all its columns pruned) kills the
producers' filter (and BatchNorm entries). Depthwise/separable consumers are taken
to read every channel (conservative).

The per-layer scales are searched in ``search/thresholds.py``; this module is the
math only.
"""
import math

import numpy as np

from tfautocompress import graph as graph_lib, layer_kinds, schemes as schemes_lib

__all__ = ["threshold_masks", "remove_unused", "purify"]


def _split_norms(kernel, kind):
    n_filters = schemes_lib.gemm_view(kernel, kind).shape[1]
    norms = schemes_lib.Combined().group_norms(kernel, kind)
    return norms[:n_filters], norms[n_filters:]


def _keep_above(norms, scale):
    """1/0 over groups: norm >= scale * median of the live (non-zero) norms."""
    live = norms[norms > 0]
    if not live.size or scale <= 0:
        return (norms > 0).astype(np.float32) if live.size else np.ones_like(norms, np.float32)
    keep = norms >= scale * float(np.median(live))
    keep[np.argmax(norms)] = True  # a layer keeps at least one group
    return keep.astype(np.float32)


def threshold_masks(model, scales, masks=None):
    """Masks removing every group below its layer's threshold.

    ``scales``: ``{layer: (filter_scale, column_scale)}``, each >= 0; a group goes when
    its L2 norm < scale x median live norm of its kind in that layer. ``masks``: the
    masks so far (their zeros stay); layers not in ``scales`` keep their mask.
    """
    result = {name: np.asarray(m, np.float32) for name, m in (masks or {}).items()}
    for name, pair in scales.items():
        filter_scale, column_scale = (float(s) for s in pair)
        finite = math.isfinite(filter_scale) and math.isfinite(column_scale)
        if min(filter_scale, column_scale) < 0 or not finite:  # each finite, not their sum
            raise ValueError(f"layer {name!r}: threshold scales {pair!r} must be finite "
                             "and >= 0 (0 removes nothing).")
        layer = graph_lib.analyze(model).layers[name]
        kind = layer_kinds.prunable_layout(layer).kind
        kernel = layer_kinds.kernel_of(layer).numpy()
        prior = result.get(name, np.ones(kernel.shape, np.float32))
        filters, columns = _split_norms(kernel * prior, kind)
        gemm = np.outer(_keep_above(columns, column_scale), _keep_above(filters, filter_scale))
        result[name] = prior * gemm.reshape(kernel.shape).astype(np.float32)
    return result


def _channels_read(layer, mask):
    """Bool per input channel of a consumer: does its mask read it? None: all
    (no mask, or a depthwise/separable layer, taken to read everything)."""
    if mask is None or hasattr(layer, "depthwise_kernel"):
        return None
    return np.any(mask != 0, axis=tuple(a for a in range(mask.ndim) if a != mask.ndim - 2))


def remove_unused(model, masks):
    """Closed masks (``graph.ClosedMasks``) with no unused weights (see module doc);
    inputs unchanged.

    ``model``: a tf_keras model or its ``graph.analyze`` result.
    """
    channel_graph = model if isinstance(model, graph_lib.ChannelGraph) else graph_lib.analyze(model)
    result = channel_graph.close(masks)[0]
    total = sum(group.channels for group in channel_graph.groups)
    for _ in range(total + 1):  # every pass kills a channel or stops
        closed, changed = dict(result), False
        for group in channel_graph.groups:
            read = np.zeros(group.channels, bool)
            for consumer, rows in group.consumers:
                by_row = _channels_read(channel_graph.layers[consumer], closed.get(consumer))
                read |= True if by_row is None else by_row[rows].any(axis=0)
            if not group.consumers or read.all():
                continue
            for producer in group.producers:
                mask = closed.get(producer)
                if mask is None:
                    layer = channel_graph.layers[producer]
                    mask = np.ones(layer_kinds.kernel_of(layer).shape, np.float32)
                if np.any(mask[..., ~read]):
                    mask = mask.copy()
                    mask[..., ~read] = 0.0
                    closed[producer], changed = mask, True
        if not changed:
            break
        result = channel_graph.close(closed)[0]
    return result


def purify(model, masks, scales, channel_graph=None):
    """``remove_unused(threshold_masks(...))``: Phase II's masks for ``scales``."""
    return remove_unused(channel_graph or model, threshold_masks(model, scales, masks))
