"""Data sets: train / validation / test splits as batched ``tf.data.Dataset``s.

``load(source, ...)`` is the one entry point. ``source`` is

* ``"digits"`` — scikit-learn's real handwritten digits (1,797 8x8 images, offline),
  resized to ``image_size`` (default 32x32x3), stratified split fixed by ``seed``;
* ``"fashion_mnist"`` or ``"mnist"`` — read offline from the four standard IDX
  files (``train-images-idx3-ubyte.gz``, ... gzipped or not), looked for in
  ``data_dir``, then (if ``data_dir`` is a prepared tensorflow-datasets folder)
  tensorflow-datasets, then the Debian package's folder
  (``apt-get install -y dataset-fashion-mnist``), then Keras' cache
  (``~/.keras/datasets/fashion-mnist``); 60,000 training images (validation
  carved from them, stratified), the official 10,000 as test;
* a tensorflow-datasets image-classification name (``cifar10``, ``mnist``,
  ``fashion_mnist``, ``imagenette``, ``imagenet2012``, ...), read from ``data_dir``;
* a path to an ``.npz`` file holding ``x_train, y_train, x_test, y_test``
  (optionally ``x_val, y_val``);
* a path to an image folder with one sub-folder per class (classes in sorted order,
  as ``keras.utils.image_dataset_from_directory`` numbers them); images of any
  sizes, each resized to ``image_size`` as that function does.

Images come out as float32 in [0, 1] (in [0, ``pixel_max``] when given: 255 for a
model that rescales its own input; ``load_for_model`` picks it and the size from
the model); labels as int32 class indices. The
validation split is always disjoint from the test split; searches and
accuracy bounds use validation, reports use test.

Every source is checked at the door, before anything trains: labels are integral
class indices in ``[0, num_classes)``, images are finite and of one shape in every
split, and every class has enough examples for the stratified splits. A failure is
one ``ValueError`` line naming the file (or folder, or data set), the split and the
first offending index. (tensorflow-datasets data sets are checked by their declared
features: ``ClassLabel`` labels and integer images cannot break these rules.)
"""
import contextlib
import dataclasses
import gzip
import os
import struct
import weakref
import zipfile

import numpy as np
import tensorflow as tf

from tfautocompress._keras import as_tf_keras, keras

TFDS_NAMES = ("cifar10", "cifar100", "mnist", "fashion_mnist", "imagenette",
              "imagenet2012")
# Training examples a batch when ``Splits.with_train_targets`` computes their targets.
_TARGETS_BATCH = 256
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Centred grey digits and garments: a mirror image or a shifted crop is not a
# training example of the same class, so these train without augmentation.
_NOT_AUGMENTED = ("digits", "mnist", "fashion_mnist")
# The four standard IDX files of MNIST and Fashion-MNIST (each gzipped or not).
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_NAMES = {"fashion_mnist": "fashion-mnist", "mnist": "mnist"}
# Where Debian packages put the IDX files (no Debian package ships MNIST itself).
DEBIAN_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
_APT_COMMAND = "apt-get install -y dataset-fashion-mnist"


@dataclasses.dataclass
class Splits:
    """Batched train (shuffled, optionally augmented) / validation / test data sets."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    input_shape: tuple
    num_classes: int
    sizes: dict  # {"train": n, "val": n, "test": n}
    name: str
    # seed -> a freshly shuffled train set (see ``reshuffled``); None for hand-made Splits.
    train_order: object = dataclasses.field(default=None, repr=False, compare=False)

    def reshuffled(self, seed):
        """These splits with the train set reshuffled from ``seed``, afresh.

        A tf.data shuffle advances with every pass over the data set, so the order of
        an epoch depends on how often the data set was read before: on the history of
        the process. A step that trains on ``reshuffled(step_seed)`` reads the same
        batches in the same order whether the run was resumed or not. Splits whose
        train set was replaced by hand (``dataclasses.replace``) stay as they are.
        """
        if self.train_order is None or self.train_order.seed_of(self.train) is None:
            return self
        return dataclasses.replace(self, train=self.train_order(seed))

    def take(self, batches):
        """At most ``batches`` batches of each split (and of every reshuffled train set)."""
        order = self.train_order
        seed = None if order is None else order.seed_of(self.train)
        limited = None if seed is None else order.replace(batches=batches)
        return dataclasses.replace(
            self, train_order=limited,
            train=self.train.take(batches) if limited is None else limited(seed),
            **{k: getattr(self, k).take(batches) for k in ("val", "test")})

    def with_train_targets(self, targets):
        """These splits with each training example's label ``y`` replaced by
        ``targets(x, y)`` (a function of a batch, e.g. the label with a teacher's
        outputs: ``distillation.teacher_targets``), computed once over the training
        examples and held in memory beside them, so that no training step computes it.

        These splits themselves where a stored example is not what a step trains on:
        augmented training batches, or a train set replaced by hand.
        """
        order = self.train_order
        seed = None if order is None else order.seed_of(self.train)
        if seed is None or order.augment:
            return self
        parts = [targets(x, y) for x, y in order.examples.batch(_TARGETS_BATCH)]
        stacked = tf.nest.map_structure(
            lambda *batches: np.concatenate([np.asarray(b) for b in batches]), *parts)
        examples = tf.data.Dataset.zip((order.examples.map(lambda x, y: x),
                                        tf.data.Dataset.from_tensor_slices(stacked)))
        paired = order.replace(examples=examples)
        return dataclasses.replace(self, train=paired(seed), train_order=paired)


class _TrainOrder:
    """``seed -> train data set``: the prepared training examples shuffled from
    ``seed``, batched, augmented if asked and cut to ``batches``; knows which data
    sets it made, from which seed."""

    def __init__(self, examples, size, batch_size, augment, batches=None):
        self.examples, self.size, self.batch_size = examples, size, batch_size
        self.augment, self.batches = augment, batches
        self._made = weakref.WeakKeyDictionary()

    def replace(self, **changes):
        """A new order over these settings with ``changes`` (``batches`` only lowers)."""
        if self.batches is not None and changes.get("batches") is not None:
            changes["batches"] = min(self.batches, changes["batches"])
        settings = dict(examples=self.examples, size=self.size, batch_size=self.batch_size,
                        augment=self.augment, batches=self.batches)
        return _TrainOrder(**{**settings, **changes})

    def __call__(self, seed):
        # Both seeds explicit: the order does not depend on the global seed either.
        with _global_seed(seed):
            ds = self.examples.shuffle(min(self.size, 10000), seed=seed,
                                       reshuffle_each_iteration=True).batch(self.batch_size)
            if self.augment:
                ds = ds.map(_augment_batch(seed), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.prefetch(tf.data.AUTOTUNE)
        if self.batches is not None:
            ds = ds.take(self.batches)
        self._made[ds] = seed
        return ds

    def seed_of(self, ds):
        return self._made.get(ds)


def num_batches(dataset):
    """The number of batches of ``dataset`` (a batched ``tf.data.Dataset``), None when
    it is not known (infinite or unknown cardinality)."""
    n = int(dataset.cardinality())
    return n if n > 0 else None


def _unknown_source(source):
    return ValueError(
        f"unknown data set {source!r}. Accepted: 'digits' (offline), a "
        f"tensorflow-datasets name ({', '.join(TFDS_NAMES)}, ...) with "
        "--data_dir holding its prepared files, a path to an .npz file with "
        "x_train/y_train/x_test/y_test, or a folder with one sub-folder of "
        "images per class.")


def _check_load_settings(pixel_max, num_classes, val_fraction, test_fraction, channels):
    if channels not in (None, 1, 3):
        raise ValueError(f"channels={channels!r}; accepted: 1, 3 or None (the data "
                         "set's own).")
    if pixel_max not in (1, 255):
        raise ValueError(f"pixel_max={pixel_max!r}; accepted: 1 (images in [0, 1]) or 255 "
                         "(in [0, 255], for a model that rescales its own input).")
    if num_classes is not None and int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2.")
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must "
            "both lie strictly between 0 and 1.")


def load(source="digits", *, batch_size=32, image_size=None, channels=None,
         val_fraction=0.15, test_fraction=0.2, augment=None, seed=0,
         data_dir=None, train_size=None, pixel_max=1.0, num_classes=None):
    """Load ``source`` (see the module docstring) as :class:`Splits`.

    ``image_size`` (an int or (h, w)) resizes; ``channels`` (1 or 3) converts;
    ``val_fraction`` is carved out of the training data (and ``test_fraction``
    too, for sources that ship no test split); ``augment`` adds random flips
    and 4-pixel-padded random crops to training batches (the CIFAR recipe);
    None (default): the data set's own rule (``augments_by_default``).
    ``train_size`` keeps that many training images, a stratified subset drawn with
    ``seed`` (validation and test stay whole); in-memory sources only (digits, the
    IDX files, .npz files, image folders). ``pixel_max``: images come out in
    [0, ``pixel_max``] (1 or 255). ``num_classes`` (e.g. the model's number of
    outputs): the labels must lie below it; default: the data set's own.
    """
    _check_load_settings(pixel_max, num_classes, val_fraction, test_fraction, channels)
    if augment is None:
        augment = augments_by_default(source)
    common = dict(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    if source == "digits":
        arrays = _digits(**common)
        image_size = 32 if image_size is None else image_size
        channels = 3 if channels is None else channels
    elif str(source).endswith(".npz"):
        arrays = _npz(source, num_classes=num_classes, **common)
    elif os.path.isdir(str(source)):
        arrays = _image_folder(source, image_size=image_size, **common)
    elif os.sep in str(source) or (os.altsep and os.altsep in str(source)):
        raise ValueError(f"image folder {source!r} does not exist; give a folder with one "
                         "sub-folder of images per class.")
    elif source in _IDX_NAMES:
        arrays = _idx_or_tfds(source, data_dir, val_fraction, seed)
        if not isinstance(arrays, dict):  # found as a tensorflow-datasets data set
            _no_subset(source, train_size)
            return _tfds(source, batch_size=batch_size, image_size=image_size,
                         channels=channels, augment=augment, data_dir=arrays.data_dir,
                         pixel_max=pixel_max, num_classes=num_classes, **common)
    elif source in TFDS_NAMES or _is_tfds_name(source):
        _no_subset(source, train_size)
        return _tfds(source, batch_size=batch_size, image_size=image_size,
                     channels=channels, augment=augment, data_dir=data_dir,
                     pixel_max=pixel_max, num_classes=num_classes, **common)
    else:
        raise _unknown_source(source)
    found = (10 if source in _IDX_NAMES
             else int(max(y.max() for _, y in arrays.values())) + 1)
    if num_classes is not None:
        for split, (_, y) in arrays.items():
            _check_labels(y, f"data set {str(source)!r}, split {split}", num_classes)
    num_classes = found if num_classes is None else int(num_classes)
    if train_size is not None:
        arrays["train"] = _subset(*arrays["train"], train_size, num_classes, seed)
    datasets = {split: tf.data.Dataset.from_tensor_slices(xy)
                for split, xy in arrays.items()}
    return _finish(datasets, {k: len(v[1]) for k, v in arrays.items()}, num_classes,
                   str(source), batch_size, image_size, channels, augment, seed, pixel_max)


def load_for_model(source, model, *, pixel_max=None, **kwargs):
    """``load(source, ...)`` shaped for ``model``: images resized to its input size,
    converted to its channels, in [0, ``pixel_max``]; ``pixel_max=None`` picks
    ``pixel_max_of(model)``. ``kwargs`` go to ``load``."""
    shape = tuple(model.input_shape)
    if len(shape) != 4:
        raise ValueError(f"model {model.name!r} takes inputs of shape {shape}; accepted: "
                         "one image input (batch, height, width, channels).")
    size = tuple(shape[1:3])
    return load(source, image_size=None if None in size else size, channels=shape[-1],
                pixel_max=pixel_max_of(model) if pixel_max is None else pixel_max, **kwargs)


def pixel_max_of(model):
    """255 when ``model`` rescales raw pixels itself: the first layer on its input is a
    ``Rescaling`` that maps 255 to at most 2 (``1/255``, ``1/127.5`` with offset -1:
    how ``keras.applications``' MobileNetV3, EfficientNet(V2), RegNet, ConvNeXt and
    ResNetRS begin, and how a model trained on ``image_dataset_from_directory``'s
    [0, 255] images usually does); else 1."""
    model = as_tf_keras(model)
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Rescaling) or len(layer.inbound_nodes) != 1:
            continue
        if any(fed is t for fed in tf.nest.flatten(layer.input) for t in model.inputs):
            return 255 if 0 < float(np.max(np.abs(layer.scale))) * 255 <= 2 else 1
    return 1


def augments_by_default(source):
    """Whether ``source`` trains with flips and crops unless told otherwise: every
    data set but the centred grey ones (digits, MNIST, Fashion-MNIST)."""
    return source not in _NOT_AUGMENTED


def _split(x, y, val_fraction, test_fraction, seed, has_test=False, where="data"):
    """Stratified, seeded split of (x, y) into train/val(/test) index sets; ``where``
    names the source (and split) in errors."""
    from sklearn.model_selection import train_test_split

    fractions = ([] if has_test else [("test", test_fraction)]) + [("validation", val_fraction)]
    _check_stratifiable(y, fractions, where)
    arrays = {}
    try:
        if not has_test:
            x, x_test, y, y_test = train_test_split(
                x, y, test_size=test_fraction, stratify=y, random_state=seed)
            arrays["test"] = (x_test, y_test)
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=val_fraction, stratify=y, random_state=seed + 1)
    except ValueError as err:  # a limit the check above does not foresee
        raise ValueError(f"{where}: the stratified splits fail: {' '.join(str(err).split())}"
                         ) from err
    arrays["train"] = (x_train, y_train)
    arrays["val"] = (x_val, y_val)
    return arrays


def _check_stratifiable(y, fractions, where):
    """Every class of ``y`` keeps at least 2 examples for each stratified split in
    ``fractions`` ([(name, fraction)], in order), and each split gets at least one
    example per class (scikit-learn's conditions)."""
    classes, first, counts = np.unique(y, return_index=True, return_counts=True)
    n = len(y)
    for name, fraction in fractions:
        n_out = int(np.ceil(fraction * n))
        if counts.min() < 2:
            k = int(np.argmin(counts))
            raise ValueError(
                f"{where}: class {classes[k]} has {counts[k]} example(s) (the first at index "
                f"{first[k]}) left for the stratified {name} split, which needs at least 2 "
                f"per class (3 where a test split is carved first): add examples of class "
                f"{classes[k]} or remove them.")
        if n_out < len(classes) or n - n_out < len(classes):
            raise ValueError(
                f"{where}: {n} examples of {len(classes)} classes give the stratified "
                f"{name} split ({fraction:g} of them) {n_out} and the rest {n - n_out}; "
                "each needs at least one example per class: add examples.")
        # What the next split sees at worst: each class loses its share, rounded up.
        counts = counts - np.floor(counts * n_out / n).astype(int) - 1
        n -= n_out


def _check_labels(y, where, num_classes=None):
    """``y`` as int32 class indices: 1-D (or (n, 1)), integral, in [0, num_classes)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = " (one-hot? np.argmax(y, axis=1) gives the indices)" if y.ndim == 2 else ""
        raise ValueError(f"{where}: labels of shape {y.shape}; give one class index per "
                         f"image, shape (n,){hint}.")
    if y.dtype.kind not in "iuf":
        raise ValueError(f"{where}: labels of dtype {y.dtype}; give integer class indices.")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise ValueError(f"{where}: label {y[bad[0]]:g} at index {bad[0]} is not an "
                             "integer class index; give integer labels 0, 1, 2, ...")
    negative = np.flatnonzero(y < 0)
    if negative.size:
        i = negative[0]
        raise ValueError(f"{where}: label {y[i]:g} at index {i} is negative; labels are "
                         "class indices 0, 1, 2, ... (remap them, e.g. np.unique(y, "
                         "return_inverse=True)[1]).")
    limit = np.iinfo(np.int32).max if num_classes is None else int(num_classes)
    above = np.flatnonzero(y >= limit)
    if above.size:
        i = above[0]
        raise ValueError(f"{where}: label {y[i]:g} at index {i} is outside [0, {limit})"
                         + (f": the model has {limit} classes" if num_classes else "")
                         + "; labels are class indices 0, 1, 2, ...")
    return y.astype(np.int32)


def _check_images(x, where):
    """``x`` as (n, h, w, c) images: numeric, and finite where float."""
    x = np.asarray(x)
    if x.dtype == object:
        raise ValueError(f"{where}: an array of Python objects (images of different "
                         "shapes?); give one numeric array of shape (n, h, w[, c]).")
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{where}: images of dtype {x.dtype}; give uint8 or float pixels.")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{where}: images must have shape (n, h, w[, c]), got {x.shape}.")
    if x.dtype.kind == "f" and len(x):
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{where}: image {i} holds NaN or infinite pixels; give "
                             "finite pixel values (e.g. np.nan_to_num, or drop the image).")
    return x


def _check_same_shape(images, where):
    """``images``: {name: (n, h, w, c) array}; all of one image shape."""
    (first, x0), *rest = images.items()
    for name, x in rest:
        if x.shape[1:] != x0.shape[1:]:
            raise ValueError(f"{where}: {name} images have shape {x.shape[1:]}, {first}'s "
                             f"{x0.shape[1:]}; every split needs one image shape.")


def _subset(x, y, size, num_classes, seed):
    """A stratified subset of ``size`` of the images ``x`` (labels ``y``), drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    if not num_classes <= size <= len(y):
        raise ValueError(f"train_size={size} must lie between the number of classes "
                         f"({num_classes}) and the training images ({len(y)}).")
    if size == len(y):
        return x, y
    try:
        x, _, y, _ = train_test_split(x, y, train_size=size, stratify=y,
                                      random_state=seed + 2)
    except ValueError as err:
        raise ValueError(f"train_size={size}: the stratified subset of the training images "
                         f"fails: {' '.join(str(err).split())}") from err
    return x, y


def _no_subset(source, train_size):
    if train_size is not None:
        raise ValueError(f"train_size works on in-memory data sets; {source!r} is read by "
                         "tensorflow-datasets: leave train_size unset or pass its IDX "
                         "files or an .npz file.")


def _digits(val_fraction, test_fraction, seed):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype(np.float32)  # 8x8x1 in [0, 1]
    return _split(x, digits.target.astype(np.int32), val_fraction, test_fraction, seed,
                  where="digits")


def _npz(path, val_fraction, test_fraction, seed, num_classes=None):
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} does not exist; give the path of an "
                         ".npz file with x_train, y_train, x_test, y_test.")
    try:
        with np.load(path) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise ValueError(
                    f"data file {path!r} lacks {sorted(missing)}; it holds "
                    f"{sorted(f.files)}. Save it with np.savez(path, x_train=..., "
                    "y_train=..., x_test=..., y_test=...[, x_val=..., y_val=...]).")
            arrays = {k: f[k] for k in f.files}
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"data file {path!r} is not a readable .npz file ({err}); save it "
                         "with np.savez.") from err
    except ValueError as err:
        if "pickle" not in str(err):
            raise
        raise ValueError(f"data file {path!r} holds arrays of Python objects (images of "
                         "different shapes?); save numeric arrays of shape (n, h, w[, c]) "
                         "and (n,).") from err
    splits = ("train", "test", *(["val"] if "x_val" in arrays else []))
    out = {}
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays.get(f"y_{split}")
        if x.ndim == 0 or len(x) == 0 or y is None or y.ndim == 0 or len(y) != len(x):
            raise ValueError(f"data file {path!r}: x_{split} holds {len(x) if x.ndim else 0} "
                             f"images and y_{split} {'no' if y is None else y.size} labels; "
                             "each split needs at least one image and one label per image.")
        out[split] = (_as_images(_check_images(x, f"data file {path!r}, x_{split}")),
                      _check_labels(y, f"data file {path!r}, y_{split}", num_classes))
    _check_same_shape({f"x_{split}": out[split][0] for split in splits}, f"data file {path!r}")
    if "val" not in out:
        out.update(_split(*out.pop("train"), val_fraction, test_fraction, seed,
                          has_test=True, where=f"data file {path!r}, y_train"))
    return out


def _as_images(x):
    """uint8 [0, 255] or float images, (n, h, w) or (n, h, w, c) -> float32 [0, 1] NHWC."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (n, h, w[, c]), got {x.shape}.")
    if x.dtype == np.uint8:
        return (x / 255.0).astype(np.float32)
    return x.astype(np.float32)


def _image_folder(path, val_fraction, test_fraction, seed, image_size=None):
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    files, labels = [], []
    for label, cls in enumerate(classes):
        names = sorted(n for n in os.listdir(os.path.join(path, cls))
                       if n.lower().endswith(_IMAGE_SUFFIXES))
        files += [os.path.join(path, cls, n) for n in names]
        labels += [label] * len(names)
    if len(classes) < 2 or not files:
        raise ValueError(
            f"image folder {path!r} must hold one sub-folder per class (at least two) "
            f"with {'/'.join(_IMAGE_SUFFIXES)} images; found classes {classes} and "
            f"{len(files)} images.")
    empty = [cls for label, cls in enumerate(classes) if label not in labels]
    if empty:
        raise ValueError(f"image folder {path!r}: class folder {empty[0]!r} holds no "
                         f"{'/'.join(_IMAGE_SUFFIXES)} images; add some or remove it.")
    size = None if image_size is None else (
        (image_size, image_size) if isinstance(image_size, int) else tuple(image_size))
    images = []
    for i, f in enumerate(files):
        try:
            image = keras.utils.img_to_array(keras.utils.load_img(f))
        except (OSError, ValueError) as err:
            raise ValueError(f"image folder {path!r}: image {i} ({f!r}) cannot be read "
                             f"({err}); replace or remove it.") from err
        if size is not None:  # bilinear, as image_dataset_from_directory resizes
            image = tf.image.resize(image, size).numpy()
        images.append(image)
        if image.shape != images[0].shape:
            raise ValueError(f"image folder {path!r}: image {i} ({f!r}) is "
                             f"{'x'.join(map(str, image.shape))}, image 0 ({files[0]!r}) "
                             f"{'x'.join(map(str, images[0].shape))}: different shapes; give "
                             "image_size (the command-line scripts take the model's input "
                             "size) or resize the images to one size first.")
    x = (np.stack(images) / 255.0).astype(np.float32)
    return _split(x, np.asarray(labels, np.int32), val_fraction, test_fraction, seed,
                  where=f"image folder {path!r}")


def _keras_cache_dir():
    return os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")),
                        "datasets")


def _idx_places(name, data_dir):
    """The folders searched for ``name``'s IDX files, in order, tagged with whether a
    prepared tensorflow-datasets data set in ``data_dir`` comes right after them."""
    places = []
    if data_dir is not None:
        places += [data_dir, os.path.join(data_dir, name),
                   os.path.join(data_dir, _IDX_NAMES[name])]
    tfds_after = len(places)
    if name in DEBIAN_DIRS:
        places.append(DEBIAN_DIRS[name])
    places.append(os.path.join(_keras_cache_dir(), _IDX_NAMES[name]))
    return places, tfds_after


def _idx_file(folder, stem):
    for candidate in (os.path.join(folder, stem + ".gz"), os.path.join(folder, stem)):
        if os.path.isfile(candidate):
            return candidate
    return None


def _idx_files_in(folder):
    """{"train": (images, labels), "test": (...)} paths when all four are in ``folder``."""
    files = {split: tuple(_idx_file(folder, stem) for stem in stems)
             for split, stems in IDX_FILES.items()}
    return files if all(all(paths) for paths in files.values()) else None


@dataclasses.dataclass
class _TfdsFound:
    data_dir: str


def _idx_or_tfds(name, data_dir, val_fraction, seed):
    """Train/val/test arrays from the first folder holding the four IDX files, or
    a :class:`_TfdsFound` where a prepared tensorflow-datasets data set comes first."""
    places, tfds_after = _idx_places(name, data_dir)
    searched = []
    for i, folder in enumerate(places):
        if i == tfds_after and data_dir is not None:
            searched.append(f"tensorflow-datasets data_dir {data_dir}")
            if _tfds_prepared(name, data_dir):
                return _TfdsFound(data_dir)
        searched.append(folder)
        files = _idx_files_in(folder)
        if files is not None:
            return _idx_arrays(files, val_fraction, seed)
    if data_dir is None:  # the tensorflow-datasets default folder (or its mock data)
        searched.append("tensorflow-datasets default data_dir")
        try:
            import tensorflow_datasets as tfds

            tfds.builder(name).as_dataset(split="train")
            return _TfdsFound(None)
        except Exception:  # noqa: BLE001 - not prepared there: report every place
            pass
    stems = ", ".join(stem + "[.gz]" for stems in IDX_FILES.values() for stem in stems)
    raise ValueError(
        f"data set {name!r} not found; searched: {'; '.join(searched)}. Put its four "
        f"IDX files ({stems}) in one of these folders or pass data_dir=FOLDER holding "
        f"them; Fashion-MNIST installs offline on Debian/Ubuntu with `{_APT_COMMAND}`.")


def _tfds_prepared(name, data_dir):
    try:
        import tensorflow_datasets as tfds

        return bool(tfds.builder(name, data_dir=data_dir).is_prepared())
    except Exception:  # noqa: BLE001 - any failure means "not a prepared data set here"
        return False


def _idx_arrays(files, val_fraction, seed):
    x_train, y_train = _read_idx_pair(*files["train"])
    x_test, y_test = _read_idx_pair(*files["test"])
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"IDX file {files['test'][0]!r} holds images of shape "
                         f"{x_test.shape[1:]}, {files['train'][0]!r} {x_train.shape[1:]}; "
                         "the train and test files must be of one data set.")
    arrays = _split(x_train, y_train, val_fraction, None, seed, has_test=True,
                    where=f"IDX file {files['train'][1]!r} (train)")
    arrays["test"] = (x_test, y_test)
    # float32 arithmetic throughout: no float64 copy of 60,000 images.
    return {split: (x[..., None].astype(np.float32) / np.float32(255), y)
            for split, (x, y) in arrays.items()}


def _read_idx_pair(images_path, labels_path):
    images = _read_idx(images_path, ndim=3)
    labels = _read_idx(labels_path, ndim=1).astype(np.int32)
    if len(images) != len(labels):
        raise ValueError(f"IDX files {images_path!r} and {labels_path!r} disagree: "
                         f"{len(images)} images but {len(labels)} labels.")
    return images, _check_labels(labels, f"IDX file {labels_path!r}", num_classes=10)


def _read_idx(path, ndim):
    """An IDX file of unsigned bytes (magic 0x0000080N, N = ``ndim``) as a uint8 array."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"IDX file {path!r} is corrupt: {err}.") from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path!r} is corrupt: {len(raw)} bytes, shorter "
                         f"than its {header}-byte header.")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != 0x0800 + ndim:
        raise ValueError(f"IDX file {path!r} is corrupt: magic number {magic:#010x}, "
                         f"expected {0x0800 + ndim:#010x} (unsigned bytes, {ndim} "
                         "dimensions).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(f"IDX file {path!r} is corrupt: header says shape {shape} "
                         f"({expected} bytes) but it holds {len(raw) - header}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _is_tfds_name(name):
    import tensorflow_datasets as tfds

    return isinstance(name, str) and name in tfds.list_builders(with_community_datasets=False)


def _tfds(name, batch_size, image_size, channels, augment, data_dir, val_fraction,
          test_fraction, seed, pixel_max=1.0, num_classes=None):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"tensorflow-datasets {name!r} is not an image-classification "
                         "data set (it needs 'image' and 'label' features).")
    declared = getattr(features["label"], "num_classes", None)
    if declared is None or not tf.as_dtype(features["image"].dtype).is_integer:
        raise ValueError(f"tensorflow-datasets {name!r}: the labels are not a ClassLabel "
                         "or the images not integer pixels; give an image-classification "
                         "data set (or its arrays as an .npz file, which is checked).")
    if num_classes is not None and declared > int(num_classes):
        raise ValueError(f"tensorflow-datasets {name!r} has {declared} classes, outside "
                         f"[0, {num_classes}): the model has {num_classes} classes.")
    if image_size is None and None in features["image"].shape:
        raise ValueError(f"tensorflow-datasets {name!r} has images of varying size; "
                         "pass image_size (e.g. --image_size=224).")
    # Validation is carved from the end of train; the test split is the data
    # set's own test split (its validation split where it has no test split).
    train_pct = int(round(100 * (1 - val_fraction)))
    test_split = "validation" if name in ("imagenette", "imagenet2012") else "test"
    splits = {"train": f"train[:{train_pct}%]", "val": f"train[{train_pct}%:]",
              "test": test_split}
    try:
        datasets = {k: builder.as_dataset(split=s, as_supervised=True,
                                          shuffle_files=(k == "train"),
                                          read_config=tfds.ReadConfig(shuffle_seed=seed))
                    for k, s in splits.items()}
    except (AssertionError, ValueError, FileNotFoundError) as err:
        raise ValueError(
            f"tensorflow-datasets {name!r} is not prepared in data_dir={data_dir!r} "
            f"({err}). Prepare it where the network is reachable "
            f"(tfds.builder({name!r}).download_and_prepare()) and pass that "
            "--data_dir.") from err
    datasets = {k: ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0,
                                        tf.cast(y, tf.int32)))
                for k, ds in datasets.items()}
    sizes = {k: _num_examples(builder.info, s, datasets[k]) for k, s in splits.items()}
    empty = [k for k, n in sizes.items() if not n]
    if empty:
        raise ValueError(f"tensorflow-datasets {name!r}, split {empty[0]} "
                         f"({splits[empty[0]]}): no examples; prepare the data set again.")
    return _finish(datasets, sizes, int(num_classes or declared), name,
                   batch_size, image_size, channels, augment, seed, pixel_max)


def _num_examples(info, split, dataset):
    try:
        return info.splits[split].num_examples
    except (KeyError, ValueError):  # split metadata absent (e.g. tfds mock data)
        return int(dataset.reduce(0, lambda n, _: n + 1))


def _finish(datasets, sizes, num_classes, name, batch_size, image_size, channels,
            augment, seed, pixel_max=1.0):
    """Resize/convert channels/scale to [0, pixel_max], shuffle + augment train, batch
    and prefetch."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)

    def prepare(x, y):
        if image_size is not None:
            x = tf.image.resize(x, image_size)
        if channels == 3 and x.shape[-1] == 1:
            x = tf.image.grayscale_to_rgb(x)
        elif channels == 1 and x.shape[-1] == 3:
            x = tf.image.rgb_to_grayscale(x)
        if pixel_max != 1:
            x = x * float(pixel_max)
        return x, y

    cached = {split: ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).cache()
              for split, ds in datasets.items()}

    order = _TrainOrder(cached["train"], sizes["train"], batch_size, augment)
    out = {split: ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
           for split, ds in cached.items() if split != "train"}
    train = order(seed)
    input_shape = tuple(int(d) for d in train.element_spec[0].shape[1:])
    return Splits(train, out["val"], out["test"], input_shape, int(num_classes),
                  {k: int(v) for k, v in sizes.items()}, name, order)


@contextlib.contextmanager
def _global_seed(seed):
    """Set TensorFlow's global seed for the ops made inside, then restore it."""
    from tensorflow.python.eager import context

    previous = context.global_seed()
    tf.random.set_seed(seed)
    try:
        yield
    finally:
        context.set_global_seed(previous)


def _augment_batch(seed):
    flip = keras.layers.RandomFlip("horizontal", seed=seed)
    crop_pad = 4

    def augment(x, y):
        h, w = x.shape[1], x.shape[2]
        x = flip(x, training=True)
        x = tf.image.pad_to_bounding_box(x, crop_pad, crop_pad, h + 2 * crop_pad,
                                         w + 2 * crop_pad)
        x = tf.image.random_crop(x, tf.stack([tf.shape(x)[0], h, w, x.shape[3]]),
                                 seed=seed)
        return x, y

    return augment
