"""absl entry points of the console scripts (pyproject.toml's [project.scripts])."""
import contextlib
import functools
import json
import os
import sys
import tempfile

from absl import app, flags

from tfautocompress.app import config

DEFAULT_BASELINE_DIR = "runs/baseline"


def baseline_folder(baseline_dir, dataset="digits", seed=0, train_size=None):
    """Where the zoo baseline of ``dataset`` (seed, training subset) is kept:
    ``baseline_dir`` for the default digits at seed 0, else a sub-folder per data
    set (``fashion_mnist/``), training subset (``train_<n>/``) and seed
    (``seed_<k>/``): the data split follows the seed, so another seed's baseline
    has seen this seed's validation and test images."""
    parts = [baseline_dir]
    if dataset != "digits":
        parts.append("".join(c if c.isalnum() or c in "-_" else "_"
                             for c in os.path.basename(os.path.normpath(str(dataset)))))
    if train_size:
        parts.append(f"train_{train_size}")
    if seed:
        parts.append(f"seed_{seed}")
    return os.path.join(*parts)


def define_train_size_flag():
    """``--train_size``: train on a stratified, seeded subset of the training images."""
    flags.DEFINE_integer("train_size", None, "Train on this many training images (a "
                         "stratified subset drawn with --seed); all if unset. Validation "
                         "and test stay whole.", lower_bound=1)


# What a user's input can raise: a bad value, a wrong type, a missing or unreadable
# file (our own checks raise ValueError/TypeError naming the flag, layer or file).
USER_ERRORS = (ValueError, TypeError, OSError)


def run_app(main):
    """``absl.app.run(main)`` for a console script.

    - ``--help`` lists our flags (console scripts and examples run under a wrapper
      module, and absl shows only the flags of ``sys.argv[0]``'s module, so ours
      are declared key flags of it first);
    - TensorFlow's and LiteRT's C++ log lines (start-up probes and notices, the
      converter's warnings) are off: ``TF_CPP_MIN_LOG_LEVEL=3`` is set before
      TensorFlow loads, unless ``--verbosity``/``-v`` is given or the variable is set;
    - TensorFlow runs its ops deterministically: the same command and seed give
      the same result; absl logs warnings and errors only (``--verbosity`` to change);
    - a user error (``USER_ERRORS``) prints one line ``<script>: error: ...`` on
      stderr and exits with status 1; ``--traceback`` shows the traceback instead;
    - ``--help`` exits with status 0.
    """
    if "traceback" not in flags.FLAGS:
        flags.DEFINE_boolean("traceback", False, "On an error, show the Python traceback "
                             "instead of the one-line message.")
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        if module.startswith("tfautocompress"):
            for flag in module_flags:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    quiet_native_logs(sys.argv)
    try:
        app.run(functools.partial(_guarded, main))
    except SystemExit as done:  # absl ends --help with status 1; help asked for is a success
        if done.code == 1 and _HELP.intersection(arg.split("=")[0] for arg in sys.argv[1:]):
            sys.exit(0)
        raise


_HELP = {"--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}
_VERBOSITY = {"--verbosity", "-verbosity", "--v", "-v"}


def quiet_native_logs(argv):
    """``TF_CPP_MIN_LOG_LEVEL=3`` (TensorFlow and LiteRT read it once, when they load)
    unless ``argv`` asks for ``--verbosity``/``-v`` or the variable is set already.
    For console scripts (``run_app``); the library itself never sets it."""
    if not _VERBOSITY.intersection(arg.split("=")[0] for arg in argv[1:]):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _guarded(main, argv):
    from absl import logging

    quiet = not flags.FLAGS["verbosity"].present
    with _start_up_lines_muted(quiet):
        import tensorflow as tf

        if quiet:
            try:
                from tfautocompress.tflite_tools import litert

                litert.say_start_up_notice()
            except Exception:  # noqa: BLE001 -- only a notice: the command may not need LiteRT
                pass
    if quiet:  # TensorFlow's INFO lines (checkpoints...)
        logging.set_verbosity(logging.WARNING)
    tf.config.experimental.enable_op_determinism()
    try:
        return main(argv)
    except USER_ERRORS as err:
        if flags.FLAGS.traceback:
            raise
        print(f"{os.path.basename(sys.argv[0])}: error: {one_line(err)}", file=sys.stderr)
        sys.exit(1)


def check_output_dir(flag, path):
    """``--flag=path`` names a folder this process can write (made if missing): not
    an existing file, not under a file, and in a writable place. One ``ValueError``
    line naming the flag otherwise."""
    if path is None:
        return
    given = os.fspath(path)
    if os.path.exists(given) and not os.path.isdir(given):
        raise ValueError(f"{flag}={given!r} is an existing file, not a folder; give a folder "
                         "path (it is made if missing) or move the file away.")
    _check_writable_place(flag, given)


def check_output_file(flag, path):
    """``--flag=path`` names a file this process can write (its folder made if missing)."""
    if path is None:
        return
    given = os.fspath(path)
    if os.path.isdir(given):
        raise ValueError(f"{flag}={given!r} is a folder; give a file path.")
    _check_writable_place(flag, given)


def _check_writable_place(flag, given):
    place = os.path.dirname(os.path.abspath(given)) if not os.path.isdir(given) else given
    while not os.path.exists(place):
        place = os.path.dirname(place)
    if not os.path.isdir(place):
        raise ValueError(f"{flag}={given!r}: {place!r} is a file, so nothing can be made "
                         "under it; give another path.")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={given!r}: the folder {place!r} is not writable by this "
                         "user; give a path you can write to.")


def model_classes(model):
    """The number of classes ``model`` scores (its one output's last dimension, > 1),
    or None: what ``data.load(num_classes=...)`` checks the labels against."""
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1:
        return None
    shape = tuple(outputs[0].shape)
    return int(shape[-1]) if len(shape) == 2 and shape[-1] and shape[-1] > 1 else None


@contextlib.contextmanager
def _start_up_lines_muted(quiet):
    """The process's stderr (file descriptor 2) set aside while TensorFlow and LiteRT
    start: their native libraries print start-up lines (CUDA probes, absl's "before
    InitializeLog", LiteRT's XNNPACK notice) that no log level turns off. Replayed if
    starting fails."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def one_line(err):
    """``err``'s message on one line (a file error with its file name)."""
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return text or type(err).__name__


def train_main():
    """``tfautocompress-train``: train and save a dense baseline."""
    flags.DEFINE_string("model", "digits_vgg", "Zoo model name (see tfautocompress.zoo).")
    flags.DEFINE_string("dataset", "digits",
                        "'digits', a tensorflow-datasets name, an .npz file or an "
                        "image folder.")
    flags.DEFINE_string("data_dir", None, "Folder of the data set's files (a "
                        "tensorflow-datasets data_dir, or MNIST/Fashion-MNIST IDX files).")
    flags.DEFINE_integer("epochs", 20, "Training epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
    flags.DEFINE_float("lr", 1e-3, "Adam learning rate.", lower_bound=0.0)
    flags.DEFINE_integer("seed", 0, "Random seed (data split, initialisation, order).")
    flags.DEFINE_string("output_dir", None,
                        "Where <model>.keras and <model>.json are written; default: where "
                        "tfautocompress-compress looks for this data set's and seed's "
                        f"baseline ({DEFAULT_BASELINE_DIR}[/<dataset>][/train_<n>]"
                        "[/seed_<k>]).")
    define_train_size_flag()
    config.define_flags(("validation_freq", "distribution"))
    run_app(_train)


def _train(argv):
    del argv
    from tfautocompress.baseline import train_baseline

    f = flags.FLAGS
    output_dir = f.output_dir or baseline_folder(DEFAULT_BASELINE_DIR, f.dataset, f.seed,
                                                 f.train_size)
    check_output_dir("--output_dir", output_dir)
    _, metrics = train_baseline(f.model, f.dataset, epochs=f.epochs,
                                batch_size=f.batch_size, lr=f.lr, seed=f.seed,
                                output_dir=output_dir, data_dir=f.data_dir, verbose=2,
                                distribution=f.distribution, train_size=f.train_size,
                                validation_freq=f.validation_freq)
    print(json.dumps(metrics, indent=2))
