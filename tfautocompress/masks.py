"""Masks from a policy by magnitude (AutoCompress §3.1 step (ii), one-shot pruning).

``magnitude_masks(model, policy)`` applies each layer's scheme to its current
kernel: the groups (filters, columns, weights) of smallest L2 norm go. Producers
coupled by a residual merge (one ``graph`` group) must drop the same filters, or
no channel dies: they rank filters by the sum of their filter norms and all drop
the ``round(f * n)`` smallest, ``f`` the largest filter fraction among them;
a ``Combined`` scheme then picks each layer's columns given those filters.
"""
import numpy as np

from tfautocompress import graph as graph_lib
from tfautocompress import schemes as schemes_lib

__all__ = ["magnitude_masks", "kernel_of"]


def kernel_of(layer):
    """The prunable kernel variable of a Conv2D/SeparableConv2D/DepthwiseConv2D/Dense."""
    if schemes_lib.kernel_kind(layer) == "depthwise":
        return layer.depthwise_kernel
    kernel = getattr(layer, "pointwise_kernel", None)
    return layer.kernel if kernel is None else kernel


def _schemes(policy_or_schemes):
    mapping = (policy_or_schemes.schemes() if hasattr(policy_or_schemes, "schemes")
               else policy_or_schemes)
    if not hasattr(mapping, "items"):
        raise TypeError("expected a PruningPolicy (or an object with .schemes()) or a "
                        f"mapping {{layer name: Scheme}}, got {type(mapping).__name__}.")
    for name, scheme in mapping.items():
        if not isinstance(scheme, schemes_lib.Scheme):
            raise TypeError(f"layer {name!r}: {scheme!r} is not a Scheme; accepted: "
                            "tfautocompress.schemes Filter, Column, Channel, Combined, "
                            "Irregular.")
    return dict(mapping)


def _filter_fraction(scheme):
    if isinstance(scheme, schemes_lib.Filter):
        return scheme.fraction
    if isinstance(scheme, schemes_lib.Combined):
        return scheme.filter_fraction
    return None


def magnitude_masks(model, policy_or_schemes, *, graph=None, kernels=None):
    """``{layer name: 0/1 float32 kernel-shaped mask}`` for every layer the policy prunes.

    ``graph``: ``graph.analyze(model)``, reused across calls; ``kernels``:
    ``{name: array}`` to use instead of the layers' current kernels (e.g. a cached
    dense copy). Raises ValueError for a layer the model does not have.
    """
    schemes = _schemes(policy_or_schemes)
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
                        else kernel_of(known[name]).numpy())
    graph = graph if graph is not None else graph_lib.analyze(model)
    masks = {}
    for group in graph.groups:
        members = [p for p in group.producers
                   if p in schemes and _filter_fraction(schemes[p]) is not None]
        if len(members) > 1:
            masks.update(_coupled(members, schemes, kinds, arrays))
    for name, scheme in schemes.items():
        if name not in masks:
            masks[name] = scheme.mask(arrays[name], kinds[name])
    return masks


def _coupled(members, schemes, kinds, arrays):
    """Masks of coupled producers that drop the same filters."""
    energy = {n: np.square(schemes_lib.gemm_view(arrays[n], kinds[n]).astype(np.float64))
              for n in members}
    norms = sum(np.sqrt(e.sum(axis=0)) for e in energy.values())
    fraction = max(_filter_fraction(schemes[n]) for n in members)
    filters = _keep_largest(norms, schemes_lib.prune_count(fraction, norms.size))
    masks = {}
    for name in members:
        scheme = schemes[name]
        columns = np.ones(energy[name].shape[0], np.float32)
        if isinstance(scheme, schemes_lib.Combined):
            count = schemes_lib.prune_count(scheme.column_fraction, columns.size)
            columns = _keep_largest(energy[name] @ filters, count)
        masks[name] = np.outer(columns, filters).astype(np.float32).reshape(
            arrays[name].shape)
    return masks


def _keep_largest(norms, n_prune):
    keep = np.ones(norms.shape, np.float32)
    keep[np.argsort(norms, kind="stable")[:n_prune]] = 0.0
    return keep
