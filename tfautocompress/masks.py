"""Masks from a policy by magnitude (AutoCompress §3.1 step (ii), one-shot pruning).

``magnitude_masks(model, policy)`` applies each layer's scheme to its current
kernel: the groups (filters, columns, weights) of smallest L2 norm go. Producers
coupled by a residual merge (one ``graph`` group) must drop the same filters, or
no channel dies: they rank filters by the sum of their filter norms and all drop
the ``round(f * n)`` smallest, ``f`` the largest filter fraction among them;
a ``Combined`` scheme then picks each layer's columns given those filters.

Progressive rounds: on a model pruned by a previous round, the removed groups
are exact zeros and have the smallest norms, so a policy that prunes at least as
many groups (``PolicySpace`` floors) removes them again. Two ties are settled so
that this holds exactly: coupled producers first drop filters that are zero in
any of them; and the input rows of channels that are already dead (every
producer's filter zero and the rows zero) are left out of a ``Combined`` layer's
column ranking, so its column budget goes to its own previous zero columns
first, never to rows that are dead anyway. Those dead rows are 0 in the mask.
"""
import numpy as np

from tfautocompress import artifacts, graph as graph_lib
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


def _filter_fraction(scheme):
    if isinstance(scheme, schemes_lib.Filter):
        return scheme.fraction
    if isinstance(scheme, schemes_lib.Combined):
        return scheme.filter_fraction
    return None


def uniform_schemes(model, scheme):
    """``{layer: scheme}`` for every CONV layer of ``model`` whose filters may be
    pruned (``graph.analyze(model).prunable_layers``): a uniform policy."""
    result = {name: scheme for name in graph_lib.analyze(model).prunable_layers
              if schemes_lib.kernel_kind(model.get_layer(name)) == "conv"}
    if not result:
        raise ValueError(f"model {model.name!r} has no prunable CONV layer for a "
                         "uniform policy.")
    return result


def magnitude_masks(model, policy_or_schemes, *, graph=None, kernels=None):
    """``{layer name: 0/1 float32 kernel-shaped mask}`` for every layer the policy prunes.

    ``graph``: ``graph.analyze(model)``, reused across calls; ``kernels``:
    ``{name: array}`` to use instead of the layers' current kernels (e.g. a cached
    dense copy). Raises ValueError for a layer the model does not have.
    """
    schemes = schemes_lib.as_schemes(policy_or_schemes)
    layers, kinds, arrays = {}, {}, {}
    known = {layer.name: layer for layer in model.layers}
    for name in schemes:
        if name not in known:
            raise ValueError(f"the policy names layer {name!r}, which model "
                             f"{model.name!r} does not have; its layers are: "
                             f"{', '.join(known)}.")
        layers[name] = known[name]
        kinds[name] = schemes_lib.kernel_kind(known[name])
        arrays[name] = (np.asarray(kernels[name]) if kernels and name in kernels
                        else schemes_lib.kernel_of(known[name]).numpy())
    graph = graph if graph is not None else graph_lib.analyze(model)
    dead = _dead_rows(graph, schemes, known, kinds, arrays, kernels)
    masks = {}
    for group in graph.groups:
        members = [p for p in group.producers
                   if p in schemes and _filter_fraction(schemes[p]) is not None]
        if len(members) > 1:
            masks.update(_coupled(members, schemes, kinds, arrays, dead))
    for name, scheme in schemes.items():
        if name in masks:
            continue
        if name in dead and isinstance(scheme, schemes_lib.Combined):
            masks[name] = _combined_alive(scheme, arrays[name], kinds[name], dead[name])
        else:
            masks[name] = scheme.mask(arrays[name], kinds[name])
    return masks


def _dead_rows(graph, schemes, known, kinds, arrays, kernels):
    """``{name: bool per kernel row (axis -2)}`` for the Conv2D/Dense layers with a
    ``Combined`` scheme that read channels already dead: every producer's filter
    is zero and so are the layer's rows for that channel."""
    wanted = {n for n, s in schemes.items() if isinstance(s, schemes_lib.Combined)
              and kinds[n] != "depthwise" and getattr(known[n], "pointwise_kernel", None) is None}
    if not wanted:
        return {}
    zero_filters = {}

    def filter_is_zero(name):
        if name not in zero_filters:
            kernel = arrays.get(name)
            if kernel is None:
                kernel = (np.asarray(kernels[name]) if kernels and name in kernels
                          else schemes_lib.kernel_of(known[name]).numpy())
            kind = schemes_lib.kernel_kind(known[name])
            zero_filters[name] = ~np.any(schemes_lib.gemm_view(kernel, kind) != 0, axis=0)
        return zero_filters[name]

    dead = {}
    for group in graph.groups:
        consumers = [(n, rows) for n, rows in group.consumers if n in wanted]
        if not consumers:
            continue
        channel_dead = np.ones(group.channels, bool)
        for producer in group.producers:
            zero = filter_is_zero(producer)
            if zero.size != group.channels:
                channel_dead[:] = False
                break
            channel_dead &= zero
        if not channel_dead.any():
            continue
        for name, rows in consumers:
            kernel = arrays[name]
            flags = dead.setdefault(name, np.zeros(kernel.shape[-2], bool))
            if rows.max() >= flags.size:
                continue
            row_zero = ~np.any(np.moveaxis(kernel, -2, 0).reshape(flags.size, -1) != 0, axis=1)
            picked = rows[:, channel_dead].reshape(-1)
            flags[picked] |= row_zero[picked]
    return {n: f for n, f in dead.items() if f.any()}


def _row_columns(dead, shape, kind):
    """Dead flags per GEMM column (row of ``gemm_view``) from flags per input row."""
    if kind == "dense":
        return dead
    return np.broadcast_to(dead, shape[:-1]).reshape(-1)


def _combined_alive(scheme, kernel, kind, dead):
    """``scheme.mask`` with the dead input rows left out of the column ranking
    (the same number of columns pruned among the live ones) and zero in the mask."""
    dead_columns = _row_columns(dead, kernel.shape, kind)
    view = schemes_lib.gemm_view(kernel, kind)
    alive = np.flatnonzero(~dead_columns)
    mask = np.zeros(view.shape, np.float32)
    if alive.size:
        n_prune = min(schemes_lib.prune_count(scheme.column_fraction, view.shape[0]),
                      alive.size - 1)
        sub = schemes_lib.Combined(scheme.filter_fraction, n_prune / alive.size)
        mask[alive] = sub.mask(view[alive], "dense")
    return mask.reshape(kernel.shape)


def _coupled(members, schemes, kinds, arrays, dead):
    """Masks of coupled producers that drop the same filters (first those that are
    zero in any of them: a previous round's)."""
    energy = {n: np.square(schemes_lib.gemm_view(arrays[n], kinds[n]).astype(np.float64))
              for n in members}
    norms = sum(np.sqrt(e.sum(axis=0)) for e in energy.values())
    zero = np.any([e.sum(axis=0) == 0 for e in energy.values()], axis=0)
    norms = np.where(zero, -1.0, norms)
    fraction = max(_filter_fraction(schemes[n]) for n in members)
    filters = _keep_largest(norms, schemes_lib.prune_count(fraction, norms.size))
    masks = {}
    for name in members:
        scheme = schemes[name]
        columns = np.ones(energy[name].shape[0], np.float32)
        if isinstance(scheme, schemes_lib.Combined):
            count = schemes_lib.prune_count(scheme.column_fraction, columns.size)
            ranking = energy[name] @ filters
            if name in dead:
                dead_columns = _row_columns(dead[name], arrays[name].shape, kinds[name])
                count = min(count, int(np.count_nonzero(~dead_columns)) - 1)
                ranking = np.where(dead_columns, np.inf, ranking)
                columns = _keep_largest(ranking, max(count, 0))
                columns[dead_columns] = 0.0
            else:
                columns = _keep_largest(ranking, count)
        masks[name] = np.outer(columns, filters).astype(np.float32).reshape(
            arrays[name].shape)
    return masks


def _keep_largest(norms, n_prune):
    keep = np.ones(norms.shape, np.float32)
    keep[np.argsort(norms, kind="stable")[:n_prune]] = 0.0
    return keep
