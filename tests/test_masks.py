"""Magnitude masks: per-layer schemes, coupled residual producers, errors."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tfautocompress import graph, layer_kinds, masks as masks_lib, schemes
from tfautocompress._keras import keras


def _residual_model():
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(a)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        kernel = model.get_layer(name).kernel
        kernel.assign(rng.standard_normal(kernel.shape).astype(np.float32))
    return model


def _top(values, count):
    """Indices of the ``count`` largest ``values``."""
    return np.argsort(values)[len(values) - count:]


def assert_combined_block(gemm_kernel, gemm_mask, filters, columns):
    """NumPy reference of a ``Combined`` mask on a GEMM view (columns x filters):
    ``filters`` filters and ``columns`` columns kept, as one (columns x filters) block
    whose energy is at least that of both greedy orders (filters then columns,
    columns then filters)."""
    energy = np.square(np.asarray(gemm_kernel, np.float64))
    kept_filters, kept_columns = gemm_mask.any(axis=0), gemm_mask.any(axis=1)
    assert kept_filters.sum() == filters and kept_columns.sum() == columns
    np.testing.assert_array_equal(gemm_mask, np.outer(kept_columns, kept_filters))
    f1 = _top(energy.sum(axis=0), filters)
    c1 = _top(energy[:, f1].sum(axis=1), columns)
    c2 = _top(energy.sum(axis=1), columns)
    f2 = _top(energy[c2].sum(axis=0), filters)
    greedy = max(energy[np.ix_(c1, f1)].sum(), energy[np.ix_(c2, f2)].sum())
    assert (energy * gemm_mask).sum() >= greedy * (1 - 1e-12)
    return kept_filters


def test_single_layer_uses_its_scheme_on_the_current_kernel():
    model = _residual_model()
    layer = model.get_layer("c")
    layer.kernel.assign(layer.kernel.numpy() * np.arange(1, 5, dtype=np.float32))
    result = masks_lib.magnitude_masks(model, {"c": schemes.Combined(0.5, 0.25)})
    kernel = layer.kernel.numpy()
    assert result["c"].dtype == np.float32 and result["c"].shape == kernel.shape
    # On the GEMM view (72 columns x 4 filters): 2 filters and 72 - 18 columns kept.
    filters = assert_combined_block(kernel.reshape(72, 4), result["c"].reshape(72, 4), 2, 54)
    # The current kernel: filters scaled by 1..4, so the two largest are kept here.
    assert filters.tolist() == [False, False, True, True]


def test_coupled_producers_drop_the_same_filters_by_summed_norms():
    model = _residual_model()
    result = masks_lib.magnitude_masks(model, {"a": schemes.Filter(0.25),
                                               "b": schemes.Filter(0.5)})
    kept_a = result["a"].reshape(-1, 8).any(axis=0)
    kept_b = result["b"].reshape(-1, 8).any(axis=0)
    np.testing.assert_array_equal(kept_a, kept_b)
    assert kept_a.sum() == 4  # the larger fraction of the group
    norms = sum(np.linalg.norm(model.get_layer(n).kernel.numpy().reshape(-1, 8), axis=0)
                for n in ("a", "b"))
    assert set(np.flatnonzero(kept_a)) == set(np.argsort(norms)[4:])
    closed = graph.close_masks(model, result)
    assert not closed["c"][:, :, ~kept_a, :].any()  # the channels really die


def test_cached_kernels_replace_the_layer_weights():
    model = _residual_model()
    kernel = np.zeros(model.get_layer("c").kernel.shape, np.float32)
    kernel[..., 3] = 1.0
    result = masks_lib.magnitude_masks(model, {"c": schemes.Filter(0.75)},
                                       kernels={"c": kernel})
    assert result["c"].reshape(-1, 4).any(axis=0).tolist() == [False, False, False, True]


def test_errors_name_the_layer_and_what_is_accepted():
    model = _residual_model()
    with pytest.raises(ValueError, match=r"'nope'.*its layers are"):
        masks_lib.magnitude_masks(model, {"nope": schemes.Filter(0.5)})
    with pytest.raises(TypeError, match=r"'a'.*not a Scheme"):
        masks_lib.magnitude_masks(model, {"a": 0.5})


def _prune_in_place(model, masks):
    closed = graph.close_masks(model, masks)
    for name, mask in closed.items():
        kernel = layer_kinds.kernel_of(model.get_layer(name))
        kernel.assign(kernel.numpy() * mask)
    return closed


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_second_round_masks_keep_the_first_rounds_zeros(seed):
    from tfautocompress import policy as policy_lib, space as space_lib
    from tfautocompress.search import sa_oracle

    model = _residual_model()
    space = space_lib.PolicySpace.from_model(model, "filter+column")
    assert set(space.names) == {"a", "b", "c"}
    round1 = policy_lib.PruningPolicy(space, {"a": policy_lib.LayerAction(0.5, 0.6),
                                              "b": policy_lib.LayerAction(0.3, 0.5),
                                              "c": policy_lib.LayerAction(0.5, 0.4)})
    closed1 = _prune_in_place(model, masks_lib.magnitude_masks(model, round1))
    # Survivors far smaller than any dense weight: exact zeros must still go first.
    rng = np.random.default_rng(seed)
    for name in space.names:
        kernel = model.get_layer(name).kernel
        value = kernel.numpy()
        alive = np.flatnonzero(value.reshape(-1, value.shape[-1]).any(axis=0))
        value[..., alive[: len(alive) // 2]] *= 1e-30
        value[value.shape[0] // 2] *= 1e-40  # a column position, float32 subnormals
        kernel.assign(value)
    space2 = space_lib.PolicySpace.from_model(model, "filter+column", previous=round1)
    round2 = policy_lib.PruningPolicy(space2, {
        n: sa_oracle.from_increment(space2, n, rng.uniform(0.05, 0.4), rng.uniform())
        for n in space2.names})
    kernels = {n: layer_kinds.kernel_of(model.get_layer(n)).numpy() for n in space2.names}
    for cached in (None, kernels):
        masks2 = masks_lib.magnitude_masks(model, round2, kernels=cached)
        closed2 = graph.close_masks(model, masks2)
        for name in space.names:
            old_zero = closed1[name] == 0
            assert not masks2[name][old_zero].any(), name  # before closing, too
            assert not closed2[name][old_zero].any(), name
            kept1 = closed1[name].reshape(-1, closed1[name].shape[-1])
            kept2 = closed2[name].reshape(-1, closed2[name].shape[-1])
            assert set(np.flatnonzero(kept2.any(0))) <= set(np.flatnonzero(kept1.any(0)))
            assert set(np.flatnonzero(kept2.any(1))) <= set(np.flatnonzero(kept1.any(1)))


def test_coupled_producers_drop_a_members_previous_zero_filters_first():
    """"b" of a coupled pair has zero filters (as after a round that pruned it): in
    the next round they go first even though "a" keeps them large (summed norms
    alone would keep them)."""
    from tfautocompress import policy as policy_lib, space as space_lib

    model = _residual_model()
    space = space_lib.PolicySpace.from_model(model, "filter")
    zero_b = np.zeros(8, bool)
    zero_b[[1, 6]] = True
    kernel = model.get_layer("b").kernel
    kernel.assign(kernel.numpy() * np.where(zero_b, 0.0, 1.0).astype(np.float32))
    kernel = model.get_layer("a").kernel  # make "a" largest exactly on b's zero filters
    kernel.assign(kernel.numpy() * np.where(zero_b, 100.0, 0.01).astype(np.float32))
    round2 = policy_lib.PruningPolicy(space, {"a": policy_lib.LayerAction(0.25),
                                              "b": policy_lib.LayerAction(0.25)})
    masks2 = masks_lib.magnitude_masks(model, round2)
    for name in ("a", "b"):
        np.testing.assert_array_equal(masks2[name].reshape(-1, 8).any(axis=0), ~zero_b)


def test_a_coupled_group_with_an_unpruned_producer_keeps_its_filters():
    """Its channels stay alive through the unpruned producer, so the projection
    prunes no filter of the group (as the analytic budget counts)."""
    from tfautocompress import policy as policy_lib, space as space_lib

    model = _residual_model()
    space = space_lib.PolicySpace.from_model(model, "filter")
    policy = policy_lib.PruningPolicy(space, {"b": policy_lib.LayerAction(0.25)})
    masks = masks_lib.magnitude_masks(model, policy)
    assert masks["b"].all()
    assert policy.compression_ratio() == 1.0


def test_uniform_schemes_cover_prunable_conv_layers_only():
    from tfautocompress import graph, schemes, zoo
    from tfautocompress.masks import uniform_schemes

    model = zoo.build("digits_vgg")
    policy = uniform_schemes(model, schemes.Filter(0.5))
    convs = [n for n in graph.analyze(model).prunable_layers if n.endswith("_conv")]
    assert sorted(policy) == sorted(convs) and len(convs) == 6
    assert set(policy.values()) == {schemes.Filter(0.5)}
