import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfautocompress import data


def _arrays(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_digits_split_sizes_shapes_and_disjointness():
    splits = data.load("digits", batch_size=64, seed=3)
    assert splits.sizes == {"train": 1221, "val": 216, "test": 360}  # 1797 images
    assert splits.input_shape == (32, 32, 3) and splits.num_classes == 10
    parts = {name: _arrays(getattr(splits, name)) for name in ("train", "val", "test")}
    for name, (x, y) in parts.items():
        assert len(x) == splits.sizes[name]
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == np.int32 and set(np.unique(y)) == set(range(10))  # stratified
    # The 1,797 source images are all distinct, so the splits share no image.
    keys = {n: {x.tobytes() for x in parts[n][0]} for n in parts}
    assert sum(len(k) for k in keys.values()) == 1797
    assert not keys["val"] & keys["test"]
    assert not keys["train"] & (keys["val"] | keys["test"])


def test_digits_split_is_fixed_by_seed():
    a, b = data.load("digits", seed=1), data.load("digits", seed=1)
    c = data.load("digits", seed=2)
    xa, _ = _arrays(a.test)
    assert np.array_equal(xa, _arrays(b.test)[0])
    assert not np.array_equal(xa, _arrays(c.test)[0])


def test_digits_size_and_channels_configurable():
    splits = data.load("digits", image_size=16, channels=1)
    assert splits.input_shape == (16, 16, 1)


def test_tfds_path_with_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        splits = data.load("cifar10", batch_size=4, augment=True, seed=0)
        x, y = next(iter(splits.train))
    assert splits.input_shape == (32, 32, 3) and splits.num_classes == 10
    assert x.shape == (4, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert float(tf.reduce_max(x)) <= 1.0


def test_tfds_grayscale_resized_to_rgb():
    with tfds.testing.mock_data(num_examples=8):
        splits = data.load("mnist", batch_size=4, image_size=32, channels=3)
    assert splits.input_shape == (32, 32, 3)


def test_tfds_unprepared_says_how_to_prepare(tmp_path):
    with pytest.raises(ValueError, match=r"not prepared.*download_and_prepare"):
        data.load("cifar10", data_dir=str(tmp_path))


def test_npz_with_and_without_validation(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(4), 10)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    splits = data.load(str(path), batch_size=8, val_fraction=0.25)
    assert splits.sizes == {"train": 30, "val": 10, "test": 8}
    assert splits.input_shape == (8, 8, 1) and splits.num_classes == 4
    np.savez(path, x_train=x, y_train=y, x_test=x[:8], y_test=y[:8], x_val=x[:4],
             y_val=y[:4])
    assert data.load(str(path)).sizes == {"train": 40, "val": 4, "test": 8}


def test_npz_missing_arrays_named(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"lacks \['x_test', 'y_test', 'y_train'\]"):
        data.load(str(path))


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png")
    splits = data.load(str(tmp_path), batch_size=4, val_fraction=0.25, test_fraction=0.2)
    assert splits.num_classes == 2 and splits.input_shape == (6, 6, 3)
    assert sum(splits.sizes.values()) == 20


def test_unknown_source_lists_what_is_accepted():
    with pytest.raises(ValueError, match=r"unknown data set 'nope'.*digits.*cifar10.*npz"):
        data.load("nope")
