"""``tfautocompress-compress``: the whole AutoCompress job (Phase I, Phase II, compaction).

With no flags it trains (or loads ``runs/baseline/digits_vgg.keras``) the digits
baseline and compresses it into ``runs/compress``; rerunning the same command
resumes after the last finished step. ``--max_accuracy_drop`` is in percentage
points of validation accuracy (1.0 = one point; the report shows test accuracy too).
``--model`` saved by Keras 3 is compressed as its tf_keras conversion and gives a
Keras 3 ``final/compact.keras``.
"""
import json
import os

from absl import flags

from tfautocompress.app import config
from tfautocompress.app.cli import (DEFAULT_BASELINE_DIR, baseline_folder, check_output_dir,
                                define_train_size_flag, model_classes, run_app)
from tfautocompress.search import workers

FLAGS = flags.FLAGS


def define_flags(**defaults):
    """Define the flags (once per process); ``defaults`` override their defaults."""
    if "objective" not in FLAGS:
        _define()
    for name, value in defaults.items():
        FLAGS.set_default(name, value)


def _define():
    flags.DEFINE_string("model", "digits_vgg", "A saved .keras file (tf_keras or Keras 3) or "
                        "a zoo model name; a zoo model is loaded from --baseline_dir or "
                        "trained there first.")
    flags.DEFINE_string("dataset", "digits", "Data set (see tfautocompress.data.load): "
                        "'digits', 'fashion_mnist', a tensorflow-datasets name, an .npz "
                        "file or a folder with one sub-folder of images per class (any "
                        "size: resized to the model's input).")
    flags.DEFINE_integer("pixel_max", None, "Images are fed to the model in "
                         "[0, pixel_max]; default: for a .keras file 255 when the model "
                         "rescales its own input (a Rescaling layer first, as "
                         "keras.applications' MobileNetV3 and EfficientNet begin), else 1; "
                         "1 for a zoo model (trained on [0, 1]).")
    flags.DEFINE_string("data_dir", None, "Folder of the data set's files (a "
                        "tensorflow-datasets data_dir, or MNIST/Fashion-MNIST IDX files).")
    define_train_size_flag()
    flags.DEFINE_string("baseline_dir", DEFAULT_BASELINE_DIR, "Where zoo baselines live "
                        "(per data set, training subset and seed: <dir>[/<dataset>]"
                        "[/train_<n>][/seed_<k>], as tfautocompress-train writes them).")
    flags.DEFINE_integer("baseline_epochs", 20, "Epochs to train a missing zoo baseline.",
                         lower_bound=1)
    flags.DEFINE_float("baseline_lr", 1e-3, "Adam learning rate of a missing zoo baseline's "
                       "training (--lr is the pruning phases').", lower_bound=0.0)
    flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
    flags.DEFINE_integer("steps_per_epoch", None, "Cap on training steps per epoch "
                         "(and on validation/test batches) of the pipeline.", lower_bound=1)
    flags.DEFINE_float("rho", None, "Initial ADMM rho (default: the ADMM callback's).")
    flags.DEFINE_string("output_dir", "runs/compress", "Where rounds, models and reports go.")
    flags.DEFINE_string("tensorboard_dir", None, "TensorBoard log folder.")
    config.define_flags()
    flags.DEFINE_float("worker_timeout", 3600.0, "A keras-tuner search worker's wait (s) for "
                       "the chief's next round oracle; above one round's ADMM + retraining "
                       "time.", lower_bound=0.0)
    flags.register_validator("target_ratio", lambda v: v is None or v > 1.0,
                             "--target_ratio must be > 1 (dense / kept).")
    flags.register_validator("pixel_max", lambda v: v in (None, 1, 255),
                             "--pixel_max must be 1 or 255.")
    flags.register_validator("round_ratio", lambda v: v > 1.0, "--round_ratio must be > 1.")
    flags.register_multi_flags_validator(
        ["milestones", "target_ratio"],
        lambda v: _config_accepts(milestones=v["milestones"],
                                  target_compression_ratio=v["target_ratio"]),
        "--milestones must be compression ratios > 1 and below --target_ratio, e.g. "
        "--milestones 10 --target_ratio 30.")


def _config_accepts(**settings):
    """Whether ``config.Config`` takes these settings (a flag validator's check is Config's)."""
    try:
        config.Config(**settings)
    except ValueError:
        return False
    return True


def load_model(spec, dataset, data_dir, baseline_dir, epochs, batch_size, lr, seed,
               distribution="none", train_size=None, validation_freq=1):
    """A .keras file, or a zoo baseline loaded from / trained into its folder under
    ``baseline_dir`` (``cli.baseline_folder``: per data set, training subset and
    seed; a search worker never trains one: it needs the chief's)."""
    from tfautocompress import artifacts, zoo
    from tfautocompress.baseline import train_baseline

    if spec.endswith(".keras"):
        return artifacts.load_model(spec)
    if spec not in zoo.MODELS:
        raise ValueError(f"--model {spec!r} is neither a .keras file nor a zoo model; "
                         f"the zoo has: {', '.join(sorted(zoo.MODELS))}.")
    baseline_dir = baseline_folder(baseline_dir, dataset, seed, train_size)
    path = os.path.join(baseline_dir, f"{spec}.keras")
    if os.path.exists(path):
        return artifacts.load_model(path, what="baseline")
    if workers.is_search_worker():
        raise ValueError(f"search worker: no baseline {path}; a worker evaluates the chief's "
                         "model: put --baseline_dir on a file system the chief writes (or "
                         "pass the chief's --model FILE.keras).")
    model, _ = train_baseline(spec, dataset, epochs=epochs, batch_size=batch_size, lr=lr,
                              seed=seed, output_dir=baseline_dir, data_dir=data_dir, verbose=2,
                              distribution=distribution, train_size=train_size,
                              validation_freq=validation_freq)
    return model


# The paper's CIFAR-10 setting (§4): Adam at lr 1e-3, ADMM rho_0 = 1e-4 with
# multi-rho, SA cooling eta = 0.7 and Boltzmann k = 1e-3 (the oracle's defaults),
# up to 8 progressive rounds of 200 epochs (ADMM + masked retraining), objective
# CONV weight parameters, combined filter + column pruning, top-1 as the search's
# score, no distillation. Short runs: add --steps_per_epoch, --rounds, ... A search
# worker waits up to a day between rounds (200 epochs of ADMM + retraining).
PAPER_CIFAR10 = dict(dataset="cifar10", baseline_epochs=200, batch_size=128, lr=1e-3,
                     baseline_lr=1e-3, distill_weight=0.0, admm_landing=0.0,
                     search_score="accuracy",
                     rho=1e-4, rounds=8, admm_epochs=100, retrain_epochs=100,
                     search_trials=45, max_accuracy_drop=0.5, objective="params",
                     schemes="filter+column", worker_timeout=86400.0)


def main(**defaults):
    """Console-script entry point; ``defaults`` override flag defaults (recipes)."""
    define_flags(**defaults)
    run_app(run)


def run(argv):
    """The job on parsed flags (``app.run`` target)."""
    del argv
    from tfautocompress import artifacts, data, distribute
    from tfautocompress.app.pipeline import AutoCompress
    from tfautocompress.app.search_worker import search_worker

    f = FLAGS
    check_output_dir("--output_dir", f.output_dir)
    check_output_dir("--tensorboard_dir", f.tensorboard_dir)
    strategy = distribute.strategy(f.distribution)  # first: before other TensorFlow work
    distribute.check_batch_size(f.batch_size, strategy)
    worker = workers.is_search_worker()
    if worker:  # the chief may be training the baseline first
        workers.wait_for_chief(f.worker_timeout)
    model = load_model(f.model, f.dataset, f.data_dir, f.baseline_dir, f.baseline_epochs,
                       f.batch_size, f.baseline_lr, f.seed, f.distribution, f.train_size,
                       f.validation_freq)
    # A zoo baseline was trained here on images in [0, 1]; a model file, as the model says.
    pixel_max = f.pixel_max or (None if f.model.endswith(".keras") else 1)
    try:
        splits = data.load_for_model(f.dataset, model, batch_size=f.batch_size, seed=f.seed,
                                     data_dir=f.data_dir, train_size=f.train_size,
                                     pixel_max=pixel_max, num_classes=model_classes(model))
    except ValueError as err:
        raise ValueError(f"--dataset: {err}") from err
    if f.steps_per_epoch:
        splits = splits.take(f.steps_per_epoch)
    settings = config.Config.from_flags(f, admm={} if f.rho is None else {"rho": f.rho})
    from_keras3 = f.model.endswith(".keras") and artifacts.saved_by_keras3(f.model)
    pipeline = AutoCompress(model, splits, distribute.output_dir(f.output_dir, strategy),
                            settings, tensorboard_dir=None if worker else f.tensorboard_dir,
                            keras3=from_keras3)
    if worker:
        search_worker(pipeline, f.worker_timeout)
        return
    report = pipeline.run()
    keys = ("val_accuracy", "test_accuracy", "conv_params_ratio", "conv_macs_ratio", "wall_s")
    print(json.dumps({step: {k: report[step][k] for k in keys}
                      for step in ("baseline", "final")}, indent=2))
    print(f"report: {os.path.join(f.output_dir, 'report.md')}")


if __name__ == "__main__":
    main()
