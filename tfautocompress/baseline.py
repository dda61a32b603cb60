"""Baseline training: the dense model that AutoCompress starts from."""
import os
import time

from tfautocompress import artifacts, data, distribute, zoo
from tfautocompress._keras import check_model, keras
from tfautocompress.evaluate import accuracy, fit_validation


def compile_for_training(model, lr, decay_steps=None):
    """Adam + sparse categorical cross-entropy (the paper's §4 recipe).

    With ``decay_steps`` the learning rate follows a cosine decay to zero.
    """
    if decay_steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train_baseline(model="digits_vgg", dataset="digits", epochs=20, batch_size=32,
                   lr=1e-3, seed=0, output_dir=None, data_dir=None, verbose=1, splits=None,
                   distribution="none", train_size=None, validation_freq=1):
    """Train ``model`` (a zoo name or a tf_keras model) on ``dataset``.

    ``distribution``: ``"none"``, ``"mirrored"`` or ``"multi_worker"``
    (``distribute``: ``batch_size`` is the global batch and ``lr`` its rate; the
    model's BatchNormalization layers are then synchronized across replicas).

    ``splits``: a ``data.Splits`` to train on instead of loading ``dataset`` (its
    iterators then carry on for later training on the same data); ``train_size``:
    a stratified subset of the training images (``data.load``);
    ``validation_freq``: ``evaluate.fit_validation``'s (the returned metrics are
    measured after training either way). Returns
    ``(model, metrics)``; with ``output_dir`` it also writes ``<name>.keras`` and
    ``<name>.json`` there (atomically).
    """
    strategy = distribute.strategy(distribution)
    distribute.check_batch_size(batch_size, strategy)
    if splits is None:
        keras.utils.set_random_seed(seed)
        splits = data.load(dataset, batch_size=batch_size, seed=seed, data_dir=data_dir,
                           train_size=train_size)
    keras.utils.set_random_seed(seed)
    with distribute.scope(strategy):
        if isinstance(model, str):
            model = zoo.build(model, input_shape=splits.input_shape,
                              num_classes=splits.num_classes)
        model = distribute.with_batch_norm(check_model(model), synchronized=strategy is not None)
        compile_for_training(model, lr, decay_steps=epochs * data.num_batches(splits.train))
    start = time.perf_counter()
    model.fit(splits.train, epochs=epochs, verbose=verbose,
              **fit_validation(splits.val, validation_freq))
    wall_s = time.perf_counter() - start
    metrics = {
        "model": model.name, "dataset": splits.name, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "seed": seed,
        "val_accuracy": accuracy(model, splits.val),
        "test_accuracy": accuracy(model, splits.test),
        "train_wall_s": wall_s, "sizes": splits.sizes,
    }
    if output_dir:
        output_dir = distribute.output_dir(output_dir, strategy)
        artifacts.save_model(model, os.path.join(output_dir, f"{model.name}.keras"))
        artifacts.write_json(os.path.join(output_dir, f"{model.name}.json"), metrics)
    return model, metrics
