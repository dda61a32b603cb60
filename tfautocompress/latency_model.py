"""Latency as a cost next to params and MACs (``objective="latency"``).

A compact layer's latency on a device is predicted from the two numbers that
filter and channel pruning change: the filters it keeps ``f`` and the input
channels (units, for Dense) it still reads ``c``. A GEMM layer costs a fixed
overhead, writing its outputs (``∝ f``), reading its inputs (``∝ c``) and its
multiply-adds (``∝ f·c``), so one layer's latency is modelled as

    ms(f, c) = a + b·f + d·c + e·f·c        (``LayerLatencyModel``)

fitted by least squares in relative error to single-layer timings on a grid of ``(f, c)``
(``GRID``: an eighth, half and all of each, as deep pruning keeps an eighth of
a layer and less; a quarter as well predicts no better), measured where the model will run
(``tflite_tools.latency.measure_latency_model``: host LiteRT or a phone). The
coefficients are clipped at zero, so the prediction never grows when a layer
loses filters or input channels.

A model's latency is the sum of its prunable layers' predictions, plus what the
rest of the model spends on their feature maps (pooling, activations: ``volume_ms``
per kept filter and output position), plus ``fixed_ms`` (the layers outside the
space, the interpreter's per-invoke cost): the two fitted to the whole model timed
at all, half and a quarter of every layer's filters.

Filters are computed in blocks: XNNPACK's GEMM micro-kernels produce a tile of
output channels at a time, and the tile widens with the layer (on one AVX-512 host
16 up to 32 filters and 32 beyond; on another 8, with an odd cost from 9 to 15), so
a layer keeping 17 filters runs as long as one keeping 32, and one keeping 40 as
long as one keeping 64. ``filter_costs`` holds what
``k = 1..P`` filters cost on the device, in filters (``P`` for ``P``), timed once
per device on a probe conv (``tflite_tools.latency``); a layer's filters count as
``effective_filters(f)`` (whole periods of ``P``, then the remainder's cost) in the
fit and the prediction.

A pruned layer therefore keeps, for free, every filter up to the most that
cost no more than the filters its policy keeps (``spared``): keeping 32 of 32
filters instead of 20 costs no time here, and neither does 16 instead of 15.
The search space applies this to every policy of a latency target
(``space.PolicySpace.effective``), so the budget, the projection and the masks
agree on it.

Column pruning is not counted: a column-sparse layer kept as a dense
convolution multiplies its pruned columns too, so only whole filters and whole
input channels save time under this objective.
"""
import dataclasses

import numpy as np

__all__ = ["GRID", "grid_counts", "effective_filters", "LayerLatencyModel", "LatencyModel"]

# Filter counts within this share of one another's cost run as fast (timing noise).
_SAME_COST = 1.03

# Shares of a layer's filters and of its input channels timed to fit its model.
GRID = (0.125, 0.5, 1.0)


def grid_counts(size):
    """The distinct kept counts (at least 1) of ``size`` at the ``GRID`` shares."""
    return sorted({max(1, int(round(share * size))) for share in GRID})


@dataclasses.dataclass(frozen=True)
class LayerLatencyModel:
    """``ms(f, c) = a + b·f + d·c + e·f·c`` (module doc); ``error``: the fit's
    largest relative error over the points it was fitted to; ``positions``: the
    layer's output positions (what its filters' feature maps hold)."""

    a: float
    b: float
    d: float
    e: float
    error: float = 0.0
    positions: int = 1

    @classmethod
    def fit(cls, points):
        """The model of ``points``: ``[(filters, channels, ms), ...]``, at least 2 (a
        grid with one channel count, as a first layer reading an image's channels
        has, fits ``a + b·f`` at that count: the least-norm solution)."""
        points = np.asarray(points, np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
            raise ValueError(f"LayerLatencyModel.fit needs at least 2 (filters, channels, ms) "
                             f"points, got {points.tolist()!r}.")
        f, c, ms = points.T
        design = np.stack([np.ones_like(f), f, c, f * c], axis=1)
        # relative errors: a layer's small counts (a few us) weigh as much as its dense one
        weights = 1.0 / np.maximum(ms, 1e-12)
        scaled, target = design * weights[:, None], ms * weights
        coefficients = np.linalg.lstsq(scaled, target, rcond=None)[0]
        if np.any(coefficients < 0):  # refit without the terms that came out negative
            keep = coefficients > 0
            coefficients = np.zeros(4)
            if keep.any():
                coefficients[keep] = np.clip(
                    np.linalg.lstsq(scaled[:, keep], target, rcond=None)[0], 0.0, None)
        fitted = design @ coefficients
        error = float(np.max(np.abs(fitted - ms) / np.maximum(ms, 1e-12)))
        return cls(*(float(x) for x in coefficients), error=error)

    def located(self, positions):
        """This model for a layer with ``positions`` output positions."""
        return dataclasses.replace(self, positions=int(positions))

    def __call__(self, filters, channels):
        return self.a + self.b * filters + self.d * channels + self.e * filters * channels


def effective_filters(filters, costs):
    """``filters`` as the device computes them: ``costs[k - 1]`` is what ``k`` filters
    cost (``costs[-1] == len(costs)``), repeating every ``len(costs)`` filters; no
    ``costs``: ``filters`` itself."""
    if not costs:
        return filters
    period = len(costs)
    whole, rest = divmod(int(round(filters)), period)
    return whole * period + (costs[rest - 1] if rest else 0.0)


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """A model's latency in ms: ``fixed_ms`` plus each layer's ``LayerLatencyModel``
    (``layers``: name → model) at its kept filters (``effective_filters`` by
    ``filter_costs``) and input channels; ``device``: where the timings were taken."""

    layers: dict
    fixed_ms: float
    device: str = ""
    filter_costs: tuple = ()
    volume_ms: float = 0.0

    def __post_init__(self):
        layers = {name: (m if isinstance(m, LayerLatencyModel) else LayerLatencyModel(**m))
                  for name, m in dict(self.layers).items()}
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "fixed_ms", float(self.fixed_ms))
        object.__setattr__(self, "volume_ms", float(self.volume_ms))
        object.__setattr__(self, "filter_costs", tuple(float(c) for c in self.filter_costs))

    def layer(self, name):
        """Layer ``name``'s model; ValueError naming the layers timed when absent."""
        if name not in self.layers:
            raise ValueError(f"the latency model has no timings for layer {name!r}; it has "
                             f"{', '.join(self.layers) or 'none'}. Measure it for this model "
                             "(tflite_tools.latency.measure_latency_model).")
        return self.layers[name]

    def layer_ms(self, name, filters, channels):
        """Predicted ms of layer ``name`` keeping ``filters`` and ``channels``."""
        return self.layer(name)(effective_filters(filters, self.filter_costs), channels)

    def spared(self, kept, most, step=1):
        """The most filters from ``kept`` up to ``most`` (in steps of ``step``) that cost no
        more than ``kept`` (within timing noise, ``_SAME_COST``): what a pruned layer
        keeps for free, as its GEMM computes whole tiles anyway."""
        limit = effective_filters(kept, self.filter_costs) * _SAME_COST
        best = kept
        for count in range(kept + step, most + 1, step):
            if effective_filters(count, self.filter_costs) <= limit:
                best = count
        return best

    def share_ms(self, name, filters, channels):
        """Layer ``name``'s share of the model's time: the layer itself, and what the
        rest of the model spends on its feature maps (pooling, activations, ...):
        ``volume_ms`` per output entry (filter × position)."""
        return (self.layer_ms(name, filters, channels)
                + self.volume_ms * filters * self.layer(name).positions)

    def predict(self, kept):
        """Predicted ms of the model whose layers keep ``{name: (filters, channels)}``
        (every layer of the model)."""
        return self.fixed_ms + sum(self.share_ms(n, f, c) for n, (f, c) in kept.items())

    def predict_report(self, report):
        """Predicted ms of the model that ``report`` (``cost.count``) counts, from its
        layers' live filters and inputs (``LayerCost.filters``, ``.inputs``)."""
        kept = {row.name: (row.filters, row.inputs) for row in report.layers
                if row.name in self.layers}
        missing = [name for name in self.layers if name not in kept]
        if missing:
            raise ValueError(f"the latency model times layers {', '.join(missing)}, which the "
                             "counted model does not have; count the model it was measured on "
                             "(or its masked or compact form, which keeps the layer names).")
        return self.predict(kept)

    def get_config(self):
        return {"layers": {n: dataclasses.asdict(m) for n, m in self.layers.items()},
                "fixed_ms": self.fixed_ms, "device": self.device,
                "filter_costs": list(self.filter_costs), "volume_ms": self.volume_ms}

    @classmethod
    def from_config(cls, config):
        try:
            return cls(**config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"not a latency model ({err}); expected a dict of layers, "
                             "fixed_ms, device and filter_costs, as latency_model.json holds."
                             ) from None
