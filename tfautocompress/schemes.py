"""Pruning schemes as Euclidean projections (AutoCompress Fig. 1, ADMM's Z-update).

A scheme partitions a kernel into *groups* (single weights, filters, channels or
columns) and keeps the groups of largest L2 norm. Zeroing the groups of smallest
norm is the Euclidean projection onto "at most k nonzero groups": the distance
to the projection is the energy of the dropped groups, which this choice
minimises.

Kernel layouts (``kind``; ``layer_kinds`` says which layer has which):

* ``"conv"``: Conv2D (and SeparableConv2D's pointwise) kernel ``(kh, kw, cin, cout)``.
  Filter = output channel, channel = input channel (all kh*kw of it),
  column = one ``(kh, kw, cin)`` position across all filters.
* ``"depthwise"``: DepthwiseConv2D kernel ``(kh, kw, cin, mult)``. Each of the
  ``cin * mult`` output channels is both a filter and a channel; a column is one
  ``(kh, kw)`` position across all of them.
* ``"dense"``: Dense kernel ``(in, out)``. Filter = output unit, channel = column =
  input unit.

Counts: a scheme with prune fraction ``f`` zeroes exactly ``round(f * n_groups)``
groups (Python's ``round``), clamped to ``n_groups - 1`` so that a layer always
keeps at least one group. Ties between equal norms are broken by index: the
lower index is pruned first.
"""
import dataclasses
import numbers

import numpy as np


__all__ = [
    "KINDS",
    "gemm_view",
    "zero_group_shares",
    "prune_count",
    "Scheme",
    "Irregular",
    "Filter",
    "Channel",
    "Column",
    "Combined",
    "as_schemes",
    "register",
]

KINDS = ("conv", "depthwise", "dense")
_NDIM = {"conv": 4, "depthwise": 4, "dense": 2}
# Kernel axes that index one group (the other axes are summed over in its norm).
_GROUP_AXES = {
    "filter": {"conv": (3,), "depthwise": (2, 3), "dense": (1,)},
    "channel": {"conv": (2,), "depthwise": (2, 3), "dense": (0,)},
    "column": {"conv": (0, 1, 2), "depthwise": (0, 1), "dense": (0,)},
    "irregular": {"conv": (0, 1, 2, 3), "depthwise": (0, 1, 2, 3), "dense": (0, 1)},
}
_COMBINED_MAX_ROUNDS = 16


def _as_kernel(kernel, kind):
    """``(kernel, kind)`` checked; a Conv1D/Conv3D-rank conv or depthwise kernel comes
    back as the 4-D view ``(positions, 1, cin, cout)`` (callers reshape masks back)."""
    kernel = np.asarray(kernel)
    if kind in (None, "conv", "depthwise") and kernel.ndim in (3, 5):
        kernel = kernel.reshape((-1, 1) + kernel.shape[-2:])
    if kind is None:
        kind = {2: "dense", 4: "conv"}.get(kernel.ndim)
        if kind is None:
            raise ValueError(
                f"cannot infer the kernel kind from shape {kernel.shape}: "
                "expected a 2-D (dense) or 4-D (conv) kernel, or pass kind= one of "
                f"{KINDS}."
            )
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}.")
    if kernel.ndim != _NDIM[kind]:
        raise ValueError(
            f"a {kind!r} kernel must be {_NDIM[kind]}-D, got shape {kernel.shape}."
        )
    return kernel, kind


def gemm_view(kernel, kind=None):
    """The kernel as the GEMM weight matrix: rows = columns (filter-shape
    positions), cols = filters. A reshape, so masks map back with ``.reshape``."""
    kernel, kind = _as_kernel(kernel, kind)
    if kind == "depthwise":
        return kernel.reshape(kernel.shape[0] * kernel.shape[1], -1)
    return kernel.reshape(-1, kernel.shape[-1])


def zero_group_shares(kernel, kind=None):
    """``{"filter": share, "column": share}`` of the all-zero filters and columns of
    ``kernel`` (a kernel or a mask) in the GEMM view."""
    nonzero = gemm_view(kernel, kind) != 0
    return {"filter": float(np.mean(~nonzero.any(axis=0))),
            "column": float(np.mean(~nonzero.any(axis=1)))}


def prune_count(fraction, n_groups):
    """How many of ``n_groups`` a prune fraction removes: ``round(fraction *
    n_groups)``, at most ``n_groups - 1`` (a layer keeps one group)."""
    return min(int(round(fraction * n_groups)), n_groups - 1)


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number in [0, 1), got {value!r} "
            f"({type(value).__name__})."
        )
    value = float(value)
    if not (0.0 <= value < 1.0):  # also rejects NaN
        raise ValueError(
            f"{name} must be in [0, 1) (the share of groups removed), got {value!r}."
        )
    return value


def _keep_largest(norms, n_prune, dtype=np.float32):
    """0/1 mask over a 1-D array of norms keeping all but the ``n_prune``
    smallest (stable: among equal norms the lower index goes first)."""
    keep = np.ones(norms.shape, dtype)
    if n_prune == 0:
        return keep
    cut = np.partition(norms, n_prune - 1)[n_prune - 1]  # largest pruned norm
    below = norms < cut
    keep[below] = 0.0
    keep[np.flatnonzero(norms == cut)[: n_prune - np.count_nonzero(below)]] = 0.0
    return keep


class Scheme:
    """Base of the pruning schemes: frozen, hashable value objects."""

    def group_norms(self, kernel, kind=None):
        """L2 norm of each group this scheme prunes, as a 1-D array."""
        raise NotImplementedError

    def mask(self, kernel, kind=None):
        """0/1 float32 mask of the kernel's shape for the projection."""
        raise NotImplementedError

    def project(self, kernel, kind=None):
        """Euclidean projection of ``kernel`` onto this scheme's set."""
        kernel = np.asarray(kernel)
        return kernel * self.mask(kernel, kind).astype(kernel.dtype)

    def get_config(self):
        """JSON-clean dict with the class name; inverse of :meth:`from_config`."""
        return {"class_name": type(self).__name__, "config": dataclasses.asdict(self)}

    @staticmethod
    def from_config(config):
        """Rebuild a scheme from :meth:`get_config`'s dict."""
        name = config.get("class_name") if isinstance(config, dict) else None
        if name not in _REGISTRY:
            raise ValueError(
                f"unknown scheme config {config!r}: class_name must be one of "
                f"{sorted(_REGISTRY)}."
            )
        return _REGISTRY[name](**config.get("config", {}))


@dataclasses.dataclass(frozen=True)
class _GroupScheme(Scheme):
    """A scheme whose groups are indexed by a fixed set of kernel axes."""

    fraction: float = 0.0
    _group = None

    def __post_init__(self):
        name = f"{type(self).__name__}.fraction"
        object.__setattr__(self, "fraction", _check_fraction(name, self.fraction))

    def _norms(self, kernel, kind):
        kernel, kind = _as_kernel(kernel, kind)
        axes = _GROUP_AXES[self._group][kind]
        reduce = tuple(a for a in range(kernel.ndim) if a not in axes)
        squares = np.square(kernel.astype(np.float64))
        return kernel, np.sqrt(squares.sum(axis=reduce, keepdims=True))

    def group_norms(self, kernel, kind=None):
        return self._norms(kernel, kind)[1].ravel()

    def mask(self, kernel, kind=None):
        shape = np.shape(kernel)
        kernel, norms = self._norms(kernel, kind)
        keep = _keep_largest(norms.ravel(), prune_count(self.fraction, norms.size))
        return np.broadcast_to(keep.reshape(norms.shape), kernel.shape).copy().reshape(shape)


@dataclasses.dataclass(frozen=True)
class Irregular(_GroupScheme):
    """Non-structured pruning: a group is a single weight."""

    _group = "irregular"


@dataclasses.dataclass(frozen=True)
class Filter(_GroupScheme):
    """Filter pruning: a group is an output channel (GEMM column of filters)."""

    _group = "filter"


@dataclasses.dataclass(frozen=True)
class Channel(_GroupScheme):
    """Channel pruning: a group is an input channel, all kh*kw of it."""

    _group = "channel"


@dataclasses.dataclass(frozen=True)
class Column(_GroupScheme):
    """Filter-shape (column) pruning: a group is one (kh, kw, cin) position
    across all filters; for Dense an input unit."""

    _group = "column"


@dataclasses.dataclass(frozen=True)
class Combined(Scheme):
    """Filter pruning and column pruning together (AutoCompress's combination).

    The projection onto {<= n_f nonzero filters} and {<= n_c nonzero columns}
    maximises the energy kept in an (kept columns x kept filters) submatrix, a
    densest-submatrix problem. It is solved by bounded alternating maximisation:
    starting from filter-then-column and from column-then-filter, alternately
    take the best columns given the filters and the best filters given the
    columns (each step exact) until the kept energy stops rising, and keep the
    better start. The result is never worse than either sequential order and a
    local optimum of the pair, not always the global one.
    """

    filter_fraction: float = 0.0
    column_fraction: float = 0.0

    def __post_init__(self):
        for name in ("filter_fraction", "column_fraction"):
            value = _check_fraction(f"Combined.{name}", getattr(self, name))
            object.__setattr__(self, name, value)

    def group_norms(self, kernel, kind=None):
        """Norms of the filters followed by the norms of the columns."""
        energy = np.square(gemm_view(kernel, kind).astype(np.float64))
        return np.sqrt(np.concatenate([energy.sum(axis=0), energy.sum(axis=1)]))

    def mask(self, kernel, kind=None):
        shape = np.shape(kernel)
        kernel, kind = _as_kernel(kernel, kind)
        energy = np.square(gemm_view(kernel, kind).astype(np.float64))
        n_cols, n_filters = energy.shape
        prune_f = prune_count(self.filter_fraction, n_filters)
        prune_c = prune_count(self.column_fraction, n_cols)

        def ascend(cols):
            """Alternate best filters | columns and best columns | filters from
            ``cols`` while the kept energy rises (monotone, at most a cap of rounds)."""
            best = (-1.0, cols, None)
            for _ in range(_COMBINED_MAX_ROUNDS):
                filters = _keep_largest(cols @ energy, prune_f, np.float64)
                per_col = energy @ filters
                cols = _keep_largest(per_col, prune_c, np.float64)
                value = per_col @ cols
                if not value > best[0]:
                    break
                best = (value, cols, filters)
            return best

        # From all columns, round one is filter-then-column; from the best
        # columns of the whole kernel, it is column-then-filter.
        all_cols = np.ones(n_cols)
        best_cols = _keep_largest(energy.sum(axis=1), prune_c, np.float64)
        best = max(ascend(all_cols), ascend(best_cols), key=lambda result: result[0])
        _, cols, filters = best
        return np.outer(cols, filters).astype(np.float32).reshape(shape)


def as_schemes(policy):
    """``{layer name: Scheme}`` from a ``PruningPolicy`` (or anything with a
    ``.schemes()`` method) or from such a mapping; TypeError naming the entry
    that is not a ``Scheme``."""
    mapping = policy.schemes() if hasattr(policy, "schemes") else policy
    if not hasattr(mapping, "items"):
        raise TypeError("expected a PruningPolicy (or an object with .schemes()) or a "
                        f"mapping {{layer name: Scheme}}, got {type(policy).__name__}.")
    result = {}
    for name, scheme in mapping.items():
        if not isinstance(scheme, Scheme):
            raise TypeError(f"layer {name!r}: {scheme!r} is a {type(scheme).__name__}, not a "
                            "Scheme; accepted: "
                            "tfautocompress.schemes Filter, Column, Channel, Combined, "
                            "Irregular or a registered one (schemes.register).")
        result[str(name)] = scheme
    return result


def register(scheme_class):
    """Make a user's ``Scheme`` subclass known to ``Scheme.from_config`` (policy
    files, wrappers' configs) under its class name; returns the class, so it can be
    used as a decorator. The class must be a frozen dataclass (as ``get_config``
    serializes its fields) whose ``mask(kernel, kind)`` returns a 0/1 mask."""
    if not (isinstance(scheme_class, type) and issubclass(scheme_class, Scheme)
            and dataclasses.is_dataclass(scheme_class)):
        raise TypeError(f"schemes.register: {scheme_class!r} must be a dataclass subclass "
                        "of tfautocompress.schemes.Scheme.")
    known = _REGISTRY.get(scheme_class.__name__)
    if known is not None and known is not scheme_class:
        raise ValueError(f"schemes.register: a scheme named {scheme_class.__name__!r} is "
                         "already registered; give the class another name.")
    _REGISTRY[scheme_class.__name__] = scheme_class
    return scheme_class


_REGISTRY = {cls.__name__: cls for cls in (Irregular, Filter, Channel, Column, Combined)}
