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
    """Every image is one of scikit-learn's digits / 16, resized bilinearly, under its
    own label."""
    from sklearn.datasets import load_digits

    splits = data.load("digits", image_size=16, channels=1)
    assert splits.input_shape == (16, 16, 1)
    x, y = (np.concatenate(a) for a in zip(*(_arrays(getattr(splits, s))
                                            for s in ("train", "val", "test"))))
    digits = load_digits()
    reference = tf.image.resize(digits.images[..., None] / 16.0, (16, 16)).numpy()
    flat, ref = x.reshape(len(x), -1), reference.reshape(len(reference), -1)
    distance = (flat ** 2).sum(1)[:, None] + (ref ** 2).sum(1)[None] - 2 * flat @ ref.T
    nearest = distance.argmin(axis=1)
    np.testing.assert_allclose(x, reference[nearest], atol=1e-6)
    assert sorted(nearest.tolist()) == list(range(1797))  # each digit once
    np.testing.assert_array_equal(y, digits.target[nearest])
    assert x.min() == 0.0 and x.max() <= 1.0


def _crops_of(image, pad=4):
    """``image`` and its mirror image, zero-padded by ``pad`` and cropped back to size
    at every offset: what a flip and a padded random crop can make of it."""
    h, w = image.shape[:2]
    for flipped in (image, image[:, ::-1]):
        padded = np.pad(flipped, ((pad, pad), (pad, pad), (0, 0)))
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                yield padded[dy:dy + h, dx:dx + w]


def test_tfds_path_with_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        splits = data.load("cifar10", batch_size=4, augment=True, seed=0)
        plain = data.load("cifar10", batch_size=4, augment=False, seed=0)
        x, y = next(iter(splits.train))
        next(iter(plain.train))  # each read reshuffles: read both as often
        (xa, ya), (xp, yp) = _arrays(splits.train), _arrays(plain.train)
    assert splits.input_shape == (32, 32, 3) and splits.num_classes == 10
    assert x.shape == (4, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    # The plain images are the uint8 pixels / 255; labels class indices.
    assert 0 <= xp.min() and xp.max() <= 1 and np.array_equal(np.round(xp * 255), xp * 255)
    assert ya.dtype == np.int32 and set(ya) <= set(range(10))
    # augment=True: the same images in the same order under the same labels, each
    # flipped and / or shifted, and not all left as they were.
    np.testing.assert_array_equal(ya, yp)
    for augmented, image in zip(xa, xp):
        assert any(np.array_equal(augmented, crop) for crop in _crops_of(image))
    assert sum(not np.array_equal(a, p) for a, p in zip(xa, xp)) >= 6


def test_tfds_grayscale_resized_to_rgb():
    with tfds.testing.mock_data(num_examples=8):
        splits = data.load("mnist", batch_size=4, image_size=32, channels=3)
        x3, y3 = _arrays(splits.test)
        x28, y28 = _arrays(data.load("mnist", batch_size=4).test)
    assert splits.input_shape == (32, 32, 3)
    assert x3.shape == (8, 32, 32, 3) and x28.shape == (8, 28, 28, 1)
    np.testing.assert_array_equal(y3, y28)
    resized = tf.image.resize(x28, (32, 32)).numpy()[..., 0]
    for channel in range(3):  # grey to RGB: three copies of the resized grey image
        np.testing.assert_allclose(x3[..., channel], resized, atol=1e-6)


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
    # Each image is one of the files / 255 (a training image flipped and / or shifted:
    # a folder trains augmented by default), under its folder's index (cat 0, dog 1).
    written = [(label, i, np.asarray(Image.open(tmp_path / cls / f"{i}.png")) / 255.0)
               for label, cls in enumerate(("cat", "dog")) for i in range(10)]
    crops = [np.stack(list(_crops_of(pixels))) for _, _, pixels in written]
    seen = []
    for split in ("train", "val", "test"):
        for image, label in zip(*_arrays(getattr(splits, split))):
            matches = [(label_, i) for (label_, i, pixels), candidates in zip(written, crops)
                       if np.abs((candidates if split == "train" else pixels[None]) - image)
                       .max(axis=(1, 2, 3)).min() < 1e-6]
            assert len(matches) == 1 and matches[0][0] == label
            seen.append(matches[0])
    assert sorted(seen) == [(label, i) for label in (0, 1) for i in range(10)]


def _write_folder(root, sizes, per_class=6):
    """class_a/, class_b/: random RGB PNGs, image i of size sizes[i % len(sizes)]."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("class_a", "class_b"):
        (root / cls).mkdir()
        for i in range(per_class):
            size = sizes[i % len(sizes)]
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")


def test_image_folder_of_any_size_is_resized_as_keras_reads_it(tmp_path):
    from tfautocompress._keras import keras

    _write_folder(tmp_path, sizes=(6, 11))
    with pytest.raises(ValueError, match=r"different shapes.*give image_size"):
        data.load(str(tmp_path))
    splits = data.load(str(tmp_path), image_size=8, batch_size=4)
    assert splits.input_shape == (8, 8, 3) and sum(splits.sizes.values()) == 12
    ours, labels = _arrays(splits.test)
    theirs = keras.utils.image_dataset_from_directory(str(tmp_path), image_size=(8, 8),
                                                      shuffle=False)
    x_keras, y_keras = _arrays(theirs)
    for image, label in zip(ours, labels):  # each test image is one of Keras' / 255
        distance = np.abs(x_keras / 255.0 - image).reshape(len(x_keras), -1).max(axis=1)
        assert distance.min() < 1e-5 and y_keras[distance.argmin()] == label


def test_pixel_max_scales_images_to_0_255(tmp_path):
    unit, _ = _arrays(data.load("digits", batch_size=512).test)
    raw, _ = _arrays(data.load("digits", batch_size=512, pixel_max=255).test)
    np.testing.assert_allclose(raw, unit * 255, rtol=1e-6)
    assert raw.max() > 250
    with pytest.raises(ValueError, match=r"pixel_max=3; accepted: 1 .* or 255"):
        data.load("digits", pixel_max=3)


def _model_starting_with(*layers, shape=(12, 12, 1)):
    from tfautocompress._keras import keras

    x = inputs = keras.Input(shape)
    for layer in layers:
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(x))
    return keras.Model(inputs, x)


def test_pixel_max_of_a_model_that_rescales_its_own_input():
    from tfautocompress._keras import keras

    layers = keras.layers
    assert data.pixel_max_of(_model_starting_with(layers.Rescaling(1 / 255))) == 255
    assert data.pixel_max_of(_model_starting_with(layers.Rescaling(1 / 127.5, -1))) == 255
    assert data.pixel_max_of(_model_starting_with()) == 1
    assert data.pixel_max_of(_model_starting_with(layers.Rescaling(2.0, -1))) == 1  # [0, 1] in
    late = _model_starting_with(layers.Conv2D(2, 1), layers.Rescaling(1 / 255))
    assert data.pixel_max_of(late) == 1  # not on the input
    mobilenet = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                    minimalistic=True, alpha=0.25)
    assert data.pixel_max_of(mobilenet) == 255
    import keras as keras3

    model3 = keras3.Sequential([keras3.Input((8, 8, 3)), keras3.layers.Rescaling(1 / 255),
                                keras3.layers.Conv2D(2, 3)])
    assert data.pixel_max_of(model3) == 255  # converted at the door


def test_load_for_model_takes_size_channels_and_pixels_from_the_model(tmp_path):
    from tfautocompress._keras import keras

    _write_folder(tmp_path, sizes=(6, 11))
    model = _model_starting_with(keras.layers.Rescaling(1 / 255), shape=(9, 7, 1))
    splits = data.load_for_model(str(tmp_path), model, batch_size=4)
    x, _ = _arrays(splits.train)
    assert splits.input_shape == (9, 7, 1) and x.shape[1:] == (9, 7, 1)
    assert 128 < x.max() <= 255
    splits = data.load_for_model(str(tmp_path), model, batch_size=4, pixel_max=1)
    assert _arrays(splits.train)[0].max() <= 1


def test_missing_image_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"image folder '.*/nope' does not exist"):
        data.load(str(tmp_path / "nope"))


def test_unknown_source_lists_what_is_accepted():
    with pytest.raises(ValueError, match=r"unknown data set 'nope'.*digits.*cifar10.*npz"):
        data.load("nope")


# --- MNIST / Fashion-MNIST from the standard IDX files -------------------------------

def _write_idx(path, array, magic_dims, compress=True):
    import gzip
    import struct

    raw = struct.pack(f">I{array.ndim}I", 0x0800 + magic_dims, *array.shape)
    raw += array.astype(np.uint8).tobytes()
    if compress:
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def _write_idx_dataset(folder, n_train=200, n_test=50, seed=0, compress=True):
    """Tiny real-format IDX files: image pixels encode (label, index) so tests can
    check that images and labels stay paired."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels * 20  # pixel (0, 0) carries the label
        _write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, 3, compress)
        _write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, 1, compress)
        out[split] = (images, labels)
    return out


@pytest.fixture
def no_system_idx(monkeypatch, tmp_path):
    """Hide the Debian package and Keras' cache, so only data_dir is searched."""
    monkeypatch.setattr(data, "DEBIAN_DIRS", {"fashion_mnist": str(tmp_path / "debian")})
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


@pytest.mark.parametrize("name,compress", [("fashion_mnist", True), ("mnist", False)])
def test_idx_files_load_with_stratified_val(tmp_path, no_system_idx, name, compress):
    written = _write_idx_dataset(tmp_path / "idx", compress=compress)
    splits = data.load(name, data_dir=str(tmp_path / "idx"), batch_size=16, seed=0)
    assert splits.sizes == {"train": 170, "val": 30, "test": 50}  # val = 15 % of train
    assert splits.input_shape == (28, 28, 1) and splits.num_classes == 10
    parts = {s: _arrays(getattr(splits, s)) for s in ("train", "val", "test")}
    for split, (x, y) in parts.items():
        assert x.shape[1:] == (28, 28, 1) and len(x) == splits.sizes[split]
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == np.int32
        np.testing.assert_array_equal(np.round(x[:, 0, 0, 0] * 255 / 20), y)  # paired
    assert np.bincount(parts["val"][1]).tolist() == [3] * 10  # stratified
    # test = the official test files, in order; train + val = the training files.
    np.testing.assert_array_equal(parts["test"][1], written["t10k"][1])
    np.testing.assert_allclose(parts["test"][0][..., 0], written["t10k"][0] / 255.0,
                               atol=1e-6)
    assert sorted(np.concatenate([parts["train"][1], parts["val"][1]]).tolist()) == \
        sorted(written["train"][1].tolist())
    assert not data.augments_by_default(name)


def test_idx_val_split_is_fixed_by_seed(tmp_path, no_system_idx):
    _write_idx_dataset(tmp_path)
    a, b, c = (data.load("fashion_mnist", data_dir=str(tmp_path), seed=s) for s in (1, 1, 2))
    assert np.array_equal(_arrays(a.val)[0], _arrays(b.val)[0])
    assert not np.array_equal(_arrays(a.val)[0], _arrays(c.val)[0])


def test_train_size_is_a_stratified_seeded_subset(tmp_path, no_system_idx):
    _write_idx_dataset(tmp_path)
    whole = data.load("fashion_mnist", data_dir=str(tmp_path), seed=1)
    a, b, c = (data.load("fashion_mnist", data_dir=str(tmp_path), seed=s, train_size=50)
               for s in (1, 1, 2))
    assert a.sizes == {"train": 50, "val": 30, "test": 50}
    xa, ya = _arrays(a.train)
    assert np.bincount(ya).tolist() == [5] * 10  # stratified
    # a subset of the whole run's training images; validation and test untouched
    whole_x = {x.tobytes() for x in _arrays(whole.train)[0]}
    assert all(x.tobytes() in whole_x for x in xa)
    assert np.array_equal(_arrays(a.val)[0], _arrays(whole.val)[0])
    assert sorted(x.tobytes() for x in xa) == sorted(x.tobytes() for x in _arrays(b.train)[0])
    assert sorted(x.tobytes() for x in xa) != sorted(x.tobytes() for x in _arrays(c.train)[0])
    with pytest.raises(ValueError, match="train_size=5 must lie between"):
        data.load("fashion_mnist", data_dir=str(tmp_path), train_size=5)
    with pytest.raises(ValueError, match="train_size works on in-memory data sets"):
        data.load("cifar10", data_dir=str(tmp_path), train_size=50)


def test_idx_found_in_keras_cache(tmp_path, no_system_idx):
    _write_idx_dataset(tmp_path / "keras_home" / "datasets" / "fashion-mnist")
    assert data.load("fashion_mnist").sizes["test"] == 50


@pytest.mark.parametrize("damage,message", [
    (lambda raw: raw[:-7], r"corrupt: header says shape \(200, 28, 28\)"),
    (lambda raw: b"\x00\x00\x08\x01" + raw[4:], r"corrupt: magic number 0x00000801"),
    (lambda raw: raw[:3], r"corrupt: 3 bytes"),
])
def test_corrupt_idx_file_is_named(tmp_path, no_system_idx, damage, message):
    import gzip

    _write_idx_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    with pytest.raises(ValueError, match=rf"train-images-idx3-ubyte.gz.*{message}"):
        data.load("fashion_mnist", data_dir=str(tmp_path))


def test_truncated_gzip_is_named(tmp_path, no_system_idx):
    _write_idx_dataset(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz' is corrupt"):
        data.load("fashion_mnist", data_dir=str(tmp_path))


def test_prepared_tfds_data_dir_used_when_no_idx_files(tmp_path, no_system_idx,
                                                      monkeypatch):
    # mock_data serves any builder's as_dataset; say tmp_path/tfds is prepared.
    monkeypatch.setattr(data, "_tfds_prepared",
                        lambda name, data_dir: data_dir == str(tmp_path / "tfds"))
    with tfds.testing.mock_data(num_examples=8):
        from_tfds = data.load("mnist", data_dir=str(tmp_path / "tfds"), batch_size=4)
        _write_idx_dataset(tmp_path / "tfds")
        from_idx = data.load("mnist", data_dir=str(tmp_path / "tfds"), batch_size=4)
    assert from_tfds.sizes["test"] == 8 and from_tfds.input_shape == (28, 28, 1)
    assert from_idx.sizes["test"] == 50  # IDX files in data_dir come first


def test_missing_idx_data_set_names_places_and_apt_command(tmp_path, no_system_idx):
    with pytest.raises(ValueError) as err:
        data.load("fashion_mnist", data_dir=str(tmp_path / "mine"))
    message = str(err.value)
    for place in (tmp_path / "mine", tmp_path / "debian",
                  tmp_path / "keras_home" / "datasets" / "fashion-mnist"):
        assert str(place) in message
    assert "tensorflow-datasets data_dir" in message
    assert "apt-get install -y dataset-fashion-mnist" in message


def test_debian_package_fashion_mnist():
    folder = "/usr/share/datasets/fashion-mnist"
    import os

    if not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({folder} "
                    "absent): apt-get install -y dataset-fashion-mnist")
    import time

    start = time.perf_counter()
    splits = data.load("fashion_mnist", batch_size=1000)
    assert time.perf_counter() - start < 15
    assert splits.sizes == {"train": 51000, "val": 9000, "test": 10000}
    assert splits.input_shape == (28, 28, 1) and splits.num_classes == 10
    for split, per_class in (("val", 900), ("test", 1000)):
        labels = np.concatenate([y.numpy() for _, y in getattr(splits, split)])
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
    x, _ = next(iter(splits.test))
    assert x.dtype == tf.float32 and 0.0 <= float(tf.reduce_min(x)) < float(tf.reduce_max(x)) <= 1.0


# --- checks at the door: one line naming the file, the split and the first offender ---

def _npz_file(tmp_path, name="d.npz", **override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 255, (100, 8, 8), dtype=np.uint8),
              "y_train": np.arange(100) % 10,
              "x_test": rng.integers(0, 255, (20, 8, 8), dtype=np.uint8),
              "y_test": np.arange(20) % 10}
    arrays.update(override)
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _with(array, index, value):
    array = array.copy()
    array[index] = value
    return array


Y = np.arange(100) % 10
X_FLOAT = np.random.default_rng(1).uniform(size=(100, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("override, num_classes, message", [
    ({"y_train": _with(Y, 4, -3)}, None,
     r"'.*d\.npz', y_train: label -3 at index 4 is negative; labels are class indices"),
    ({"y_test": _with(np.arange(20) % 10, 7, 10)}, 10,
     r"'.*d\.npz', y_test: label 10 at index 7 is outside \[0, 10\): the model has 10 classes"),
    ({"y_train": _with(Y.astype(np.float32), 2, 2.5)}, None,
     r"y_train: label 2.5 at index 2 is not an integer class index"),
    ({"y_train": np.eye(10)[Y]}, None, r"y_train: labels of shape \(100, 10\).*one-hot"),
    ({"x_train": _with(X_FLOAT, (6, 1, 1), np.nan)}, None,
     r"'.*d\.npz', x_train: image 6 holds NaN or infinite pixels"),
    ({"x_test": np.full((20, 8, 8), np.inf, np.float32)}, None, r"x_test: image 0 holds NaN"),
    ({"x_test": np.zeros((20, 9, 9), np.uint8)}, None,
     r"x_test images have shape \(9, 9, 1\), x_train's \(8, 8, 1\); every split needs one"),
    ({"x_train": np.zeros((100, 64), np.uint8)}, None,
     r"'.*d\.npz', x_train: images must have shape \(n, h, w\[, c\]\), got \(100, 64\)"),
    ({"x_test": np.zeros((20, 2, 8, 8, 1), np.float32)}, None,
     r"x_test: images must have shape \(n, h, w\[, c\]\), got \(20, 2, 8, 8, 1\)"),
    ({"x_train": np.full((100, 8, 8), "a")}, None, r"x_train: images of dtype <U1; give uint8"),
    ({"x_train": np.array([np.zeros((8, 8)), np.zeros((9, 9))], dtype=object)}, None,
     r"'.*d\.npz' holds arrays of Python objects"),
    ({"y_train": np.arange(99) % 10}, None,
     r"'.*d\.npz': x_train holds 100 images and y_train 99 labels"),
    ({"y_train": _with(Y, 13, 10)}, None,
     r"'.*d\.npz', y_train: class 10 has 1 example\(s\) \(the first at index 13\) left for "
     r"the stratified validation split"),
])
def test_npz_bad_data_is_one_line_naming_file_split_and_index(tmp_path, override,
                                                                num_classes, message):
    path = _npz_file(tmp_path, **override)
    with pytest.raises(ValueError, match=message) as caught:
        data.load(path, num_classes=num_classes)
    assert "\n" not in str(caught.value)


def test_labels_below_num_classes_and_integral_floats_pass(tmp_path):
    path = _npz_file(tmp_path, y_train=Y.astype(np.float64), y_test=(np.arange(20) % 10)[:, None])
    splits = data.load(path, num_classes=12)
    assert splits.num_classes == 12 and splits.sizes["test"] == 20


def test_too_few_examples_for_the_validation_split(tmp_path):
    path = _npz_file(tmp_path, x_train=np.zeros((12, 8, 8), np.uint8), y_train=np.arange(12) % 6)
    with pytest.raises(ValueError, match=r"12 examples of 6 classes give the stratified "
                                         r"validation split \(0.15 of them\) 2"):
        data.load(path)


def test_image_folder_problems_name_the_file(tmp_path):
    from PIL import Image

    for cls, sizes in (("cat", [6, 6, 6]), ("dog", [6, 6, 7]), ("owl", [])):
        (tmp_path / cls).mkdir()
        for i, size in enumerate(sizes):
            Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(tmp_path / cls / f"{i}.png")
    with pytest.raises(ValueError, match=r"class folder 'owl' holds no"):
        data.load(str(tmp_path))
    (tmp_path / "owl").rmdir()
    with pytest.raises(ValueError, match=r"image 5 \('.*dog/2.png'\) is 7x7x3, image 0 "
                                         r"\('.*cat/0.png'\) 6x6x3: different shapes; give "
                                         r"image_size"):
        data.load(str(tmp_path))
    (tmp_path / "dog" / "2.png").unlink()
    (tmp_path / "dog" / "1.png").unlink()
    with pytest.raises(ValueError, match=r"image folder '.*': class 1 has 1 example\(s\) "
                                         r"\(the first at index 3\) left for the stratified "
                                         r"test split"):
        data.load(str(tmp_path))


def test_idx_labels_out_of_range_name_file_and_index(tmp_path, no_system_idx):
    _write_idx_dataset(tmp_path)
    labels = np.arange(50) % 10
    labels[17] = 12
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 1)
    with pytest.raises(ValueError, match=r"IDX file '.*t10k-labels-idx1-ubyte.gz': label 12 "
                                         r"at index 17 is outside \[0, 10\)"):
        data.load("mnist", data_dir=str(tmp_path))


def test_tfds_model_with_fewer_classes_is_stopped():
    with tfds.testing.mock_data(num_examples=12):
        with pytest.raises(ValueError, match=r"'cifar10' has 10 classes.*model has 5"):
            data.load("cifar10", num_classes=5)


def test_idx_files_that_disagree_are_named(tmp_path, no_system_idx):
    _write_idx_dataset(tmp_path)
    labels = np.arange(199) % 10  # one label short of the 200 training images
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, 1)
    with pytest.raises(ValueError, match=r"IDX files '.*train-images-idx3-ubyte.gz' and "
                                         r"'.*train-labels-idx1-ubyte.gz' disagree: 200 "
                                         r"images but 199 labels"):
        data.load("mnist", data_dir=str(tmp_path))
    _write_idx_dataset(tmp_path)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((50, 27, 27)), 3)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz' holds images of shape "
                                         r"\(27, 27\), '.*train-images-idx3-ubyte.gz' "
                                         r"\(28, 28\); the train and test files must be"):
        data.load("mnist", data_dir=str(tmp_path))
    _write_idx_dataset(tmp_path)
    labels = np.arange(200) % 10
    labels[3] = 10  # one past the last digit
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, 1)
    with pytest.raises(ValueError, match=r"IDX file '.*train-labels-idx1-ubyte.gz': label 10 "
                                         r"at index 3 is outside \[0, 10\)"):
        data.load("mnist", data_dir=str(tmp_path))


def test_image_folder_of_one_class_or_an_unreadable_image(tmp_path):
    from PIL import Image

    (tmp_path / "cat").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "cat" / f"{i}.png")
    with pytest.raises(ValueError, match=r"must hold one sub-folder per class \(at least two\)"
                                         r".*found classes \['cat'\] and 3 images"):
        data.load(str(tmp_path))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "0.png").write_bytes(b"not a PNG")
    with pytest.raises(ValueError, match=r"image 3 \('.*dog/0.png'\) cannot be read .*; "
                                         r"replace or remove it"):
        data.load(str(tmp_path))


def test_channels_other_than_1_or_3_are_refused_in_one_line():
    with pytest.raises(ValueError) as caught:
        data.load("digits", channels=2)
    assert str(caught.value).startswith("channels=2; accepted: 1, 3 or None")
    assert "\n" not in str(caught.value)
