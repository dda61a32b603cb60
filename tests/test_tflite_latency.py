"""The latency model measured in host TFLite: every layer kind it times, its fit
against its own timings, the cache that makes it reproducible, and clear errors."""
import json

import pytest

from tfautocompress import artifacts, latency_model
from tfautocompress._keras import keras
from tfautocompress.tflite_tools import latency

FAST = latency.HostTimer(runs=5, rounds=1)


def small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(24, 3, strides=2, name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu", name="fc")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x))


def test_each_layer_is_fitted_to_its_grid_and_the_rest_to_the_whole_model(tmp_path):
    model = small_model()
    cache = tmp_path / "latency.json"
    measured = latency.measure_latency_model(model, ["conv_a", "conv_b", "fc"], FAST, cache)
    costs = measured.filter_costs  # 1..128 filters of the probe, in filters
    assert len(costs) == 128 and costs[-1] == pytest.approx(128.0) and min(costs) > 0
    # beyond 32 the probe keeps multiples of 8: 33..40 filters cost what 40 cost
    assert len(set(costs[32:40])) == 1 and len(set(costs[31:40])) == 2
    geometry = {"conv_a": (16, 3), "conv_b": (24, 16), "fc": (32, 24)}
    for name, (filters, channels) in geometry.items():
        layer = model.get_layer(name)
        grid = [(layer, f, c) for f in latency_model.grid_counts(filters)
                for c in latency_model.grid_counts(channels)]
        timings = latency._timed_points(grid, FAST, cache)  # noqa: SLF001 - cached: no timing
        fit = measured.layers[name]
        for (_, f, c), ms in zip(grid, timings):
            predicted = measured.layer_ms(name, f, c)
            assert abs(predicted - ms) <= fit.error * ms + 1e-9, (name, f, c)
    # the rest of the model (the whole less its layers alone, timed together at all,
    # half and a quarter of the filters) fitted by least squares: residuals sum to zero
    assert {n: m.positions for n, m in measured.layers.items()} == {
        "conv_a": 64, "conv_b": 9, "fc": 1}
    (rests,) = [v for k, v in artifacts.read_json(cache).items() if json.loads(k)[0] == "rest"]
    volumes = [16 * 64 + 24 * 9 + 32, 8 * 64 + 12 * 9 + 16, 4 * 64 + 6 * 9 + 8]
    assert [v for v, _ in rests] == volumes and measured.volume_ms >= 0
    residuals = [rest - measured.fixed_ms - measured.volume_ms * v for v, rest in rests]
    assert sum(residuals) == pytest.approx(0.0, abs=1e-9)
    assert measured.predict(geometry) == pytest.approx(
        measured.fixed_ms + sum(measured.share_ms(n, *g) for n, g in geometry.items()))

    latency.LatencyCache._memory.clear()  # a new process: only the file remembers  # noqa: SLF001
    again = latency.measure_latency_model(model, ["conv_a", "conv_b", "fc"], FAST, cache)
    assert again == measured  # read back, not timed again: the same run gives the same model


def test_a_layer_it_cannot_time_is_named():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.DepthwiseConv2D(3, name="dw")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="pw")(x))
    with pytest.raises(ValueError, match="layer 'dw' \\(DepthwiseConv2D\\): objective 'latency' "
                                         "times Conv2D \\(groups=1\\) and Dense"):
        latency.measure_latency_model(model, ["pw", "dw"], FAST)
