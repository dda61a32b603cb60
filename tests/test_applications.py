"""The phone CNNs of ``tf_keras.applications`` are in reach: most CONV params can be
pruned, the ceiling is far above 10x, the budget counts what the projection keeps
and the compact model computes what the masked one does. (Every CNN of the
applications, with TFLite and a 1-round run: ``benchmarks/zoo_coverage.py``.)"""
import numpy as np
import pytest

from tfautocompress import compact, cost, graph, masks as masks_lib, space as space_lib
from tfautocompress._keras import keras
from tfautocompress.policy import LayerAction, PruningPolicy

MODELS = ("EfficientNetB0", "MobileNetV3Small", "RegNetY002", "RegNetX002", "ConvNeXtTiny")


def _build(name):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                              classes=10, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in graph.leaf_layers(model):  # BN statistics that make dead channels matter
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                               for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("name", MODELS)
def test_the_model_is_in_reach_and_compacts_exactly(name):
    model = _build(name)
    space = space_lib.PolicySpace.from_model(model, max_fraction=0.95)
    assert graph.analyze(model).barriers == ()
    ceiling = PruningPolicy(space, {n: LayerAction(0.95, 0.5) for n in space.names})
    masks = masks_lib.magnitude_masks(model, ceiling)
    dense = {r.name: r.params for r in cost.count(model).layers if r.conv}
    kept = {r.name: r.params for r in cost.count(model, masks).layers if r.conv}
    reach = sum(p for n, p in dense.items() if kept[n] < p) / sum(dense.values())
    counted = sum(dense.values()) / sum(kept.values())
    assert reach >= 0.9 and counted >= 30.0, (reach, counted)
    assert ceiling.compression_ratio() == pytest.approx(counted, rel=1e-9)

    rng = np.random.default_rng(1)
    policy = PruningPolicy(space, {n: LayerAction(float(rng.uniform(0.3, 0.9)),
                                                  float(rng.uniform(0.3, 1.0)))
                                   for n in space.names})
    masks = masks_lib.magnitude_masks(model, policy)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    want = compact.apply_masks(model, masks)(x, training=False).numpy()
    small = compact.compact(model, masks)
    got = small(x, training=False).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert small.count_params() < 0.6 * model.count_params()
