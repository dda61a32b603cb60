"""THE projection: the analytic budget counts exactly what masks.magnitude_masks keeps,
for magnitude masks and after ADMM + hard prune, and residual groups lose exactly
the policy's share of channels."""
import numpy as np
import pytest

from tfautocompress import cost, graph, masks as masks_lib, policy as policy_lib
from tfautocompress import space as space_lib
from tfautocompress._keras import keras
from tfautocompress.callbacks.admm import ADMM

MODELS = ("digits_vgg", "resnet18_cifar", "resnet56_cifar", "mobilenetv2_cifar")


def _random_policy(space, seed, high=0.9):
    rng = np.random.default_rng(seed)
    split = space.scheme_set == "filter+column"
    return policy_lib.PruningPolicy(space, {
        n: policy_lib.LayerAction(float(rng.uniform(0.0, high)),
                                  float(rng.uniform()) if split else 1.0)
        for n in space.names})


def _counted_ratio(model, masks, space, objective):
    """Dense / kept over the space's scope, counted by cost.count on the closed masks."""
    attr = "params" if objective == "params" else "macs"
    dense, pruned = cost.count(model), cost.count(model, graph.close_masks(model, masks))
    scope = {r.name for r in dense.layers if r.conv} | set(space.names)

    def total(report):
        return sum(getattr(r, attr) for r in report.layers if r.name in scope)

    return total(dense) / total(pruned)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scheme_set", space_lib.SCHEME_SETS)
def test_the_budget_counts_what_the_projection_keeps(zoo_model, name, scheme_set):
    model = zoo_model(name)
    space = space_lib.PolicySpace.from_model(model, scheme_set, 0.95)
    for seed in range(3):
        policy = _random_policy(space, seed)
        masks = masks_lib.magnitude_masks(model, policy)
        for objective in cost.COUNTED:
            counted = _counted_ratio(model, masks, space, objective)
            assert policy.compression_ratio(objective) == pytest.approx(counted, rel=0.01), \
                (seed, objective)


def _admm_masks(model, policy, seed=0):
    keras.utils.set_random_seed(seed)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.compile(keras.optimizers.SGD(1e-3), "sparse_categorical_crossentropy")
    x = np.random.default_rng(seed).uniform(size=(8,) + model.input_shape[1:]).astype(np.float32)
    y = np.zeros(8, np.int32)
    admm = ADMM(policy, update_every=1)
    copy.fit(x, y, batch_size=4, epochs=1, callbacks=[admm], verbose=0)
    return copy, admm.hard_prune()


@pytest.mark.parametrize("name", MODELS)
def test_after_admm_and_hard_prune_the_budget_still_holds(zoo_model, name):
    model = zoo_model(name)
    space = space_lib.PolicySpace.from_model(model, "filter+column", 0.95)
    policy = _random_policy(space, 7)
    pruned, masks = _admm_masks(model, policy)
    for objective in cost.COUNTED:
        counted = _counted_ratio(pruned, masks, space, objective)
        assert policy.compression_ratio(objective) == pytest.approx(counted, rel=0.01)


def test_residual_groups_lose_exactly_the_policys_share_after_admm(zoo_model):
    model = zoo_model("resnet56_cifar")
    space = space_lib.PolicySpace.from_model(model, "filter", 0.95)
    policy = policy_lib.PruningPolicy(space, {n: policy_lib.LayerAction(0.5)
                                              for n in space.names})
    pruned, masks = _admm_masks(model, policy)
    closed = graph.close_masks(pruned, masks)
    coupled = [g for g in graph.analyze(pruned).groups if len(g.producers) > 1]
    assert len(coupled) == 3  # one per stage
    for group in coupled:
        alive = np.zeros(group.channels, bool)
        for producer in group.producers:
            alive |= closed[producer].reshape(-1, group.channels).any(axis=0)
        assert int((~alive).sum()) == round(0.5 * group.channels), group.producers


def test_a_nested_model_goes_through_the_space_and_the_projection():
    inner_in = keras.Input((8, 8, 8))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="inner_a")(inner_in)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="inner_b")(x)
    block = keras.Model(inner_in, x, name="block")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = block(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="head_conv")(x)
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    space = space_lib.PolicySpace.from_model(model, "filter+column", 0.95)
    assert {"inner_a", "inner_b", "stem"} <= set(space.names)
    policy = _random_policy(space, 3)
    masks = masks_lib.magnitude_masks(model, policy)
    assert set(masks) == set(policy.schemes())
    counted = _counted_ratio(model, masks, space, "params")
    assert policy.compression_ratio() == pytest.approx(counted, rel=0.01)


def test_conv1d_layers_go_through_the_space_the_projection_and_admm():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 3))
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv1D(12, 3, padding="same", activation="relu", name="c2")(x)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    space = space_lib.PolicySpace.from_model(model, "filter+column", 0.95)
    assert set(space.names) == {"c1", "c2"}
    policy = policy_lib.PruningPolicy(space, {"c1": policy_lib.LayerAction(0.5, 0.5),
                                              "c2": policy_lib.LayerAction(0.6, 0.4)})
    masks = masks_lib.magnitude_masks(model, policy)
    assert masks["c2"].shape == (3, 8, 12)
    counted = _counted_ratio(model, masks, space, "params")
    assert policy.compression_ratio() == pytest.approx(counted, rel=0.01)
    pruned, admm_masks = _admm_masks(model, policy)
    assert _counted_ratio(pruned, admm_masks, space, "params") == pytest.approx(counted, rel=0.01)
