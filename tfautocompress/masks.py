"""THE projection: masks from a policy by magnitude, model-level (AutoCompress
§3.1 step (ii), §3.3).

``magnitude_masks(model, policy)`` is the one Euclidean projection of a model's
kernels onto a policy's constraint set. The fast evaluation scores its masks, the
ADMM Z-step projects ``W + U`` with it and the hard prune projects ``W`` with it,
so the search never scores masks that ADMM cannot produce; the analytic budget of
``space.PolicySpace`` counts exactly what it keeps.

* Producers coupled by a residual merge (one ``graph`` group) drop the same
  filters, or no channel dies: they rank filters by the sum of their filter
  norms and all drop the ``round(f * n)`` smallest, ``f`` the largest filter
  fraction among them (none if a producer of the group prunes no filters, as
  its channels stay alive anyway). Filters that are zero in any of them go first
  (a previous round's).
* Layers are then projected in graph order. A channel is *dead* when every
  producer of its group drops its filter in this projection; the input rows a
  layer reads from dead channels are 0 in its mask, and its columns (GEMM rows:
  one ``(kh, kw, cin)`` position) are chosen among its *live* rows only: a
  column fraction ``c`` removes ``round(c * live)`` of them, so the column
  budget is never spent on rows that upstream filter pruning kills anyway.
  Depthwise and separable layers rank all their columns.

Progressive rounds: on a model pruned by a previous round, the removed groups
are exact zeros and have the smallest norms, so a policy that prunes at least as
many groups (``PolicySpace`` floors) removes them again.
"""
import numpy as np

from tfautocompress import artifacts, graph as graph_lib, layer_kinds
from tfautocompress import schemes as schemes_lib

__all__ = ["magnitude_masks", "uniform_schemes", "save", "load"]


def save(path, masks):
    """Write ``{layer: mask}`` as an ``.npz`` file, atomically."""
    with artifacts.atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{name: np.asarray(mask) for name, mask in masks.items()})


def load(path):
    """``{layer: mask}`` from ``save``'s ``.npz`` file; ValueError naming the file
    if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        raise ValueError(f"masks file {path} does not exist; rerun the step that "
                         "writes it.") from None
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"masks file {path}: not a masks .npz written by "
                         f"tfautocompress ({err}); rerun the step that wrote it.") from None


def uniform_schemes(model, scheme):
    """``{layer: scheme}`` for every CONV layer of ``model`` whose filters may be
    pruned (``graph.analyze(model).prunable_layers``): a uniform policy."""
    graph = graph_lib.analyze(model)
    result = {name: scheme for name in graph.prunable_layers
              if layer_kinds.prunable_layout(graph.layers[name]).kind == "conv"}
    if not result:
        raise ValueError(f"model {model.name!r} has no prunable CONV layer for a "
                         "uniform policy.")
    return result


def magnitude_masks(model, policy_or_schemes, *, graph=None, kernels=None):
    """``{layer name: 0/1 float32 kernel-shaped mask}`` for every layer the policy prunes.

    ``graph``: ``graph.analyze(model)`` (made from ``model`` when None; ``model``
    may then be None); ``kernels``: ``{name: array}`` to project instead of the
    layers' current kernels (a cached dense copy, or ADMM's ``W + U``). Raises
    ValueError for a layer the model does not have.
    """
    schemes = schemes_lib.as_schemes(policy_or_schemes)
    graph = graph if graph is not None else graph_lib.analyze(model)
    known = graph.layers
    for name in schemes:
        if name not in known:
            raise ValueError(f"the policy names layer {name!r}, which model "
                             f"{graph.model.name!r} does not have; its layers are: "
                             f"{', '.join(known)}.")
    kinds = {n: layer_kinds.prunable_layout(known[n]).kind for n in schemes}
    arrays = {n: (np.asarray(kernels[n]) if kernels and n in kernels
                  else layer_kinds.kernel_of(known[n]).numpy()) for n in schemes}
    filters = _coupled_filters(graph, schemes, kinds, arrays)
    masks = {}
    for name in (n for n in known if n in schemes):
        dead = _dead_rows(graph, name, schemes, masks, filters, kinds, arrays)
        masks[name] = _project(schemes[name], arrays[name], kinds[name], dead,
                               filters.get(name))
    return masks


def _filter_fraction(scheme):
    if isinstance(scheme, schemes_lib.Filter):
        return scheme.fraction
    if isinstance(scheme, schemes_lib.Combined):
        return scheme.filter_fraction
    return None


def _column_fraction(scheme):
    if isinstance(scheme, schemes_lib.Combined):
        return scheme.column_fraction
    return scheme.fraction if isinstance(scheme, schemes_lib.Column) else 0.0


def _coupled_filters(graph, schemes, kinds, arrays):
    """``{producer: 0/1 keep per filter}`` of the producers coupled by a merge or a
    gate, and of those whose channels die in blocks (a grouped conv's groups)."""
    filters = {}
    for group in graph.groups:
        if len(group.producers) < 2 and group.block == 1:
            continue
        fractions = [_filter_fraction(schemes[p]) if p in schemes else None
                     for p in group.producers]
        if any(not f for f in fractions):  # a producer keeps every channel alive
            filters.update({p: np.ones(group.channels, np.float32)
                            for p, f in zip(group.producers, fractions) if f is not None})
            continue
        energy = [np.square(schemes_lib.gemm_view(arrays[p], kinds[p]).astype(np.float64))
                  for p in group.producers]
        norms = sum(np.sqrt(e.sum(axis=0)) for e in energy).reshape(-1, group.block).sum(axis=1)
        zero = np.any([e.sum(axis=0) == 0 for e in energy], axis=0)
        zero = zero.reshape(-1, group.block).all(axis=1)
        keep = _keep_largest(np.where(zero, -1.0, norms),
                             schemes_lib.prune_count(max(fractions), norms.size))
        filters.update(dict.fromkeys(group.producers, keep.repeat(group.block)))
    return filters


def _dead_rows(graph, name, schemes, masks, filters, kinds, arrays):
    """Bool per kernel row (axis -2) of layer ``name``: does it read a channel that
    every producer drops in this projection? None for a layer that ranks all its
    columns (depthwise, separable)."""
    if not layer_kinds.layout_of(graph.layers[name]).live_columns:
        return None
    dead = np.zeros(arrays[name].shape[-2], bool)
    for group in graph.groups:
        rows = [r for consumer, r in group.consumers if consumer == name]
        if not rows or any(p not in schemes for p in group.producers):
            continue
        channel_dead = np.ones(group.channels, bool)
        for producer in group.producers:
            if producer in filters:
                alive = filters[producer] != 0
            elif producer in masks:
                alive = layer_kinds.alive_filters(masks[producer],
                                                  layer_kinds.layout_of(graph.layers[producer]))
            else:
                alive = np.ones(group.channels, bool)  # projected later: none dead yet
            channel_dead &= ~alive if alive.size == group.channels else False
        for r in rows:
            if r.max() < dead.size:
                dead[r[:, channel_dead].reshape(-1)] = True
    return dead


def _project(scheme, kernel, kind, dead, filters):
    """One layer's mask: ``scheme`` on its live rows, given coupled ``filters``."""
    view = schemes_lib.gemm_view(kernel, kind)
    live = np.ones(view.shape[0], bool)
    if dead is not None:
        rows = dead if kind == "dense" else np.broadcast_to(dead, kernel.shape[:-1]).reshape(-1)
        live = ~rows
    mask = np.zeros(view.shape, np.float32)
    if filters is not None:
        count = _column_count(scheme, view, live)
        columns = np.zeros(view.shape[0], np.float32)
        ranking = np.square(view[live].astype(np.float64)) @ filters
        columns[live] = _keep_largest(ranking, max(count, 0))
        return np.outer(columns, filters).astype(np.float32).reshape(kernel.shape)
    if dead is None or not isinstance(scheme, (schemes_lib.Combined, schemes_lib.Column,
                                                schemes_lib.Filter)):
        return scheme.mask(kernel, kind).astype(np.float32)  # ranks every column
    share = _column_count(scheme, view, live) / live.sum()
    sub = (schemes_lib.Combined(_filter_fraction(scheme) or 0.0, share)
           if not isinstance(scheme, schemes_lib.Column) else schemes_lib.Column(share))
    mask[live] = sub.mask(view[live], "dense")
    return mask.reshape(kernel.shape)


def _column_count(scheme, view, live):
    """Columns to remove among the live ones: ``round(c * live)``, and at least the
    live columns that are zero already (a previous round's: they never revive),
    at most ``live - 1``."""
    n_live = int(live.sum())
    zero = int(np.count_nonzero(~np.any(view[live] != 0, axis=1)))
    return min(max(schemes_lib.prune_count(_column_fraction(scheme), n_live), zero), n_live - 1)


def _keep_largest(norms, n_prune):
    keep = np.ones(norms.shape, np.float32)
    keep[np.argsort(norms, kind="stable")[:n_prune]] = 0.0
    return keep
