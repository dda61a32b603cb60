"""masks: ties in a coupled group, the .npz files and the uniform policy's error, each
against a value worked out by hand."""
import itertools

import numpy as np
import pytest

from tfautocompress import masks as masks_lib
from tfautocompress._keras import keras
from tfautocompress.schemes import Column, Combined, Filter

L = keras.layers


def test_ties_in_a_coupled_group_drop_the_lower_channels_first():
    # a and b are summed (a residual): 40 coupled channels whose filter norms are
    # 3, 1, 2, 1, ... in both, so 20 channels tie at the smallest norm.
    inputs = keras.Input((4, 4, 2))
    x = L.Conv2D(40, 1, use_bias=False, name="a")(inputs)
    y = L.Conv2D(40, 1, use_bias=False, name="b")(x)
    z = L.Conv2D(3, 1, name="c")(L.Add()([x, y]))
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(z)))
    norms = np.tile([3.0, 1.0, 2.0, 1.0], 10).astype(np.float32)
    a = np.zeros((1, 1, 2, 40), np.float32)
    a[0, 0, 0] = norms
    model.get_layer("a").kernel.assign(a)
    model.get_layer("b").kernel.assign(np.broadcast_to(norms / np.sqrt(40), (1, 1, 40, 40)))
    masks = masks_lib.magnitude_masks(model, {"a": Filter(0.25), "b": Filter(0.25)})
    for name in ("a", "b"):
        dropped = np.flatnonzero(~masks[name].reshape(-1, 40).any(axis=0))
        np.testing.assert_array_equal(dropped, np.arange(1, 20, 2))  # 10 of the 20 ties


def test_masks_files_read_back_as_written_and_leave_nothing_else(tmp_path):
    masks = {"c1": np.arange(6, dtype=np.float32).reshape(2, 3) % 2,
             "c2": np.array([[True, False]])}
    masks_lib.save(tmp_path / "m.npz", masks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    back = masks_lib.load(tmp_path / "m.npz")
    assert back.keys() == masks.keys()
    for name, mask in masks.items():
        assert back[name].dtype == mask.dtype
        np.testing.assert_array_equal(back[name], mask)


def test_a_missing_or_foreign_masks_file_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"masks file .*nope\.npz does not exist; rerun the "
                                         r"step that writes it\."):
        masks_lib.load(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    np.savez(tmp_path / "objects.npz", m=np.array([None, 1], dtype=object))  # needs pickle
    for name in ("text.npz", "objects.npz"):
        with pytest.raises(ValueError, match=rf"masks file .*{name}: not a masks \.npz written "
                                             "by tfautocompress"):
            masks_lib.load(tmp_path / name)


def test_a_model_without_a_prunable_conv_has_no_uniform_policy():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Dense(4, name="hidden")(inputs)),
                        name="mlp")
    with pytest.raises(ValueError, match="model 'mlp' has no prunable CONV layer for a uniform "
                                         "policy"):
        masks_lib.uniform_schemes(model, Filter(0.5))


def _two_convs():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 3))
    x = L.Conv2D(6, 3, name="c2")(L.Conv2D(4, 1, name="c1")(inputs))
    return keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))


def test_column_pruning_chooses_among_the_rows_upstream_filter_pruning_leaves_alive():
    model = _two_convs()
    c1 = model.get_layer("c1").kernel.numpy().reshape(3, 4)
    dropped = np.argsort(np.linalg.norm(c1, axis=0))[:2]            # c1's 2 weakest filters
    rows = model.get_layer("c2").kernel.numpy().reshape(36, 6)      # (kh, kw, cin) x filters
    live = ~np.isin(np.arange(36) % 4, dropped)                     # 18 rows read live channels
    norms = np.where(live, np.linalg.norm(rows, axis=1), np.inf)
    kept = live.copy()
    kept[np.argsort(norms)[:9]] = False                             # half of the live rows go
    masks = masks_lib.magnitude_masks(model, {"c1": Filter(0.5), "c2": Column(0.5)})
    np.testing.assert_array_equal(masks["c2"].reshape(36, 6), np.outer(kept, np.ones(6)))


def test_rows_that_are_zero_already_stay_out_and_one_row_is_always_kept():
    model = _two_convs()
    kernel = model.get_layer("c2").kernel.numpy()
    zero = [0, 5, 10, 17, 22, 35]                     # a previous round's 6 zero rows
    kernel.reshape(36, 6)[zero] = 0.0
    model.get_layer("c2").kernel.assign(kernel)
    mask = masks_lib.magnitude_masks(model, {"c2": Column(0.1)})["c2"].reshape(36, 6)
    # round(0.1 x 36) = 4 < 6: the 6 zero rows go, and no other
    np.testing.assert_array_equal(np.flatnonzero(~mask.any(axis=1)), zero)
    model.get_layer("c2").kernel.assign(np.zeros_like(kernel))  # every row is zero
    mask = masks_lib.magnitude_masks(model, {"c2": Column(0.5)})["c2"].reshape(36, 6)
    assert mask.any(axis=1).sum() == 1


def _one_conv(kernel):
    """in -> c (1x1, no bias, the given (rows, filters) kernel) -> GAP -> out."""
    inputs = keras.Input((3, 3, kernel.shape[0]), name="in")
    x = L.Conv2D(kernel.shape[1], 1, use_bias=False, name="c")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))
    model.get_layer("c").kernel.assign(kernel.reshape(1, 1, *kernel.shape))
    return model


def test_combined_keeps_the_best_submatrix_not_the_strongest_filters():
    # filters 0 and 1 hold the most energy, spread over all rows; the best 2 x 2 block
    # is rows 0-1 of filters 2-3 (energy 36 against 20)
    energy = np.array([[5, 5, 9, 9], [5, 5, 9, 9], [5, 5, 0, 0], [5, 5, 0, 0]], np.float32)
    model = _one_conv(np.sqrt(energy))
    best = max(((r, f) for r in itertools.combinations(range(4), 2)
                for f in itertools.combinations(range(4), 2)),
               key=lambda rf: energy[np.ix_(rf[0], rf[1])].sum())
    want = np.zeros((4, 4), np.float32)
    want[np.ix_(best[0], best[1])] = 1
    mask = masks_lib.magnitude_masks(model, {"c": Combined(0.5, 0.5)})["c"]
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask.reshape(4, 4), want)
    # no filter pruning: the 2 rows of most energy
    mask = masks_lib.magnitude_masks(model, {"c": Combined(0.0, 0.5)})["c"]
    np.testing.assert_array_equal(mask.reshape(4, 4).any(axis=1), [1, 1, 0, 0])


def test_a_depthwise_layer_given_a_scheme_loses_its_weakest_channels():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 6))
    x = L.Conv2D(3, 1, name="c")(L.DepthwiseConv2D(3, name="dw")(inputs))
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))
    kernel = model.get_layer("dw").depthwise_kernel.numpy()          # (3, 3, 6, 1)
    weakest = np.argsort(np.linalg.norm(kernel.reshape(9, 6), axis=0))[:3]
    mask = masks_lib.magnitude_masks(model, {"dw": Filter(0.5)})["dw"]
    assert mask.dtype == np.float32 and mask.shape == kernel.shape
    np.testing.assert_array_equal(np.flatnonzero(~mask.reshape(9, 6).any(axis=0)), np.sort(weakest))


def test_a_later_coupled_group_drops_the_same_filters_after_one_left_whole():
    # group 1 (a1 + a2): a2 prunes nothing, so all of it stays; group 2 (b1 + b2):
    # both drop the 2 channels of smallest summed norm
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    x = L.Add()([L.Conv2D(4, 1, name="a1")(inputs), L.Conv2D(4, 1, name="a2")(inputs)])
    y = L.Add()([L.Conv2D(4, 1, name="b1")(x), L.Conv2D(4, 1, name="b2")(x)])
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y)))
    b1 = np.array([[4.0, 1.0, 3.0, 2.0]] * 4, np.float32)  # filter norms 8, 2, 6, 4
    b2 = np.array([[1.0, 4.0, 1.5, 3.0]] * 4, np.float32)  # filter norms 2, 8, 3, 6
    model.get_layer("b1").kernel.assign(b1.reshape(1, 1, 4, 4))
    model.get_layer("b2").kernel.assign(b2.reshape(1, 1, 4, 4))
    masks = masks_lib.magnitude_masks(model, {"a1": Filter(0.5), "b1": Filter(0.5),
                                              "b2": Filter(0.5)})
    assert masks["a1"].all()
    summed = np.linalg.norm(b1, axis=0) + np.linalg.norm(b2, axis=0)  # 10, 10, 9, 10
    for name in ("b1", "b2"):
        alive = masks[name].reshape(4, 4).any(axis=0)
        np.testing.assert_array_equal(np.flatnonzero(~alive), np.sort(np.argsort(summed,
                                                                                 kind="stable")[:2]))


def test_a_policy_for_a_layer_the_model_lacks_lists_the_layers():
    model = _one_conv(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"the policy names layer 'nope', which model .* does not "
                                         r"have; its layers are: in, c, "):
        masks_lib.magnitude_masks(model, {"nope": Filter(0.5)})
