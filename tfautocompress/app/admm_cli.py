"""``tfautocompress-admm``: prune a saved ``.keras`` model by ADMM → hard prune →
masked retraining, then save the model, its masks (``.npz``) and metrics (JSON).

    tfautocompress-admm --model runs/baseline/digits_vgg.keras \\
        --filter_fraction 0.75 --column_fraction 0.5 --output_dir runs/admm

``--policy FILE.json`` (a policy file: a pipeline round's ``policy.json``, or one
written with ``policy.save_schemes``) replaces the uniform
``--filter_fraction/--column_fraction`` policy, which puts ``Combined(filter,
column)`` on every prunable Conv2D layer. A ``--model`` saved by Keras 3 is pruned
as its tf_keras conversion and the pruned model is saved as Keras 3.
"""
import json
import os

from absl import flags

from tfautocompress.app import config
from tfautocompress.app.cli import DEFAULT_BASELINE_DIR, check_output_dir, model_classes, run_app

FLAGS = flags.FLAGS
DEFAULT_MODEL = os.path.join(DEFAULT_BASELINE_DIR, "digits_vgg.keras")


def uniform_policy(model, filter_fraction, column_fraction):
    """``{name: Combined(filter_fraction, column_fraction)}`` for every prunable CONV layer."""
    from tfautocompress import masks as masks_lib, schemes

    return masks_lib.uniform_schemes(model, schemes.Combined(filter_fraction, column_fraction))


def structured_sparsity(arrays, model):
    """``{layer: {"filter": share, "column": share}}`` of all-zero filters and
    columns in ``arrays`` ({layer: kernel or mask}) of ``model``'s layers."""
    from tfautocompress import graph, layer_kinds, schemes

    layers = graph.analyze(model).layers
    return {name: schemes.zero_group_shares(array,
                                            layer_kinds.prunable_layout(layers[name]).kind)
            for name, array in arrays.items()}


def kernels(model, names):
    """``{name: kernel as NumPy}`` of ``model``'s layers ``names``."""
    from tfautocompress import graph, layer_kinds

    layers = graph.analyze(model).layers
    return {name: layer_kinds.kernel_of(layers[name]).numpy() for name in names}


def main():
    """Console-script entry point."""
    flags.DEFINE_string("model", DEFAULT_MODEL, "Saved .keras model (tf_keras or Keras 3) "
                        "to prune.")
    flags.DEFINE_string("dataset", "digits", "Data set (see tfautocompress.data.load).")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
    flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the data split and training.")
    flags.DEFINE_float("filter_fraction", 0.75, "Uniform share of filters removed.")
    flags.DEFINE_float("column_fraction", 0.5, "Uniform share of columns removed.")
    flags.DEFINE_string("policy", None, "Policy file (a round's policy.json or one written by "
                        "policy.save_schemes); overrides the uniform policy.")
    flags.DEFINE_integer("admm_epochs", 10, "Epochs of ADMM regularization.", lower_bound=1)
    flags.DEFINE_integer("retrain_epochs", 10, "Epochs of masked retraining.", lower_bound=0)
    flags.DEFINE_float("lr", 1e-3, "Adam learning rate (both phases).")
    flags.DEFINE_float("rho", None, "Initial ADMM rho (default: the ADMM callback's).")
    flags.DEFINE_float("rho_factor", None, "Multi-rho factor.")
    flags.DEFINE_float("rho_max", None, "Cap on rho.")
    flags.DEFINE_string("update_every", None, "Steps between Z/U updates, or 'epoch'.")
    flags.DEFINE_string("output_dir", "runs/admm", "Where the model, masks and metrics go.")
    flags.register_validator("update_every", lambda v: v is None or v == "epoch" or
                             (v.isdigit() and int(v) > 0),
                             "--update_every must be a positive number of steps or 'epoch'.")
    config.define_flags(("validation_freq", "distribution"))
    run_app(_run)


def _admm_kwargs():
    kwargs = {k: getattr(FLAGS, k) for k in ("rho", "rho_factor", "rho_max")
              if getattr(FLAGS, k) is not None}
    if FLAGS.update_every is not None:
        every = FLAGS.update_every
        kwargs["update_every"] = every if every == "epoch" else int(every)
    return kwargs


def _run(argv):
    del argv
    from tfautocompress import artifacts, data, distribute, masks as masks_lib
    from tfautocompress import policy as policy_lib
    from tfautocompress._keras import keras
    from tfautocompress.baseline import compile_for_training
    from tfautocompress.evaluate import accuracy
    from tfautocompress.app.progressive import Recipe, partial_prune

    check_output_dir("--output_dir", FLAGS.output_dir)
    strategy = distribute.strategy(FLAGS.distribution)
    distribute.check_batch_size(FLAGS.batch_size, strategy)
    keras.utils.set_random_seed(FLAGS.seed)
    model = distribute.with_batch_norm(artifacts.load_model(FLAGS.model),
                                       synchronized=strategy is not None)
    splits = data.load(FLAGS.dataset, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
                       data_dir=FLAGS.data_dir, num_classes=model_classes(model))
    policy = (policy_lib.load_schemes(FLAGS.policy) if FLAGS.policy else
              uniform_policy(model, FLAGS.filter_fraction, FLAGS.column_fraction))
    recipe = Recipe(splits.train, splits.val, lambda m: compile_for_training(m, FLAGS.lr),
                    admm_epochs=FLAGS.admm_epochs, retrain_epochs=FLAGS.retrain_epochs,
                    admm=_admm_kwargs(), verbose=2, validation_freq=FLAGS.validation_freq)
    with distribute.scope(strategy):
        result = partial_prune(model, policy, recipe)
    metrics = {
        "model": FLAGS.model, "dataset": splits.name,
        "policy": {name: s.get_config() for name, s in policy.items()},
        "admm_epochs": FLAGS.admm_epochs, "retrain_epochs": FLAGS.retrain_epochs,
        "baseline_test_accuracy": accuracy(model, splits.test),
        "test_accuracy": accuracy(result.model, splits.test),
        "val_accuracy": result.score,
        "mask_sparsity": structured_sparsity({n: result.masks[n] for n in policy}, model),
        "kernel_sparsity": structured_sparsity(kernels(result.model, policy), model),
        "admm_res": [float(v) for v in result.history["admm"].get("admm_res", [])],
    }
    name, out = result.model.name, distribute.output_dir(FLAGS.output_dir, strategy)
    artifacts.save_model(result.model, os.path.join(out, f"{name}.keras"),
                         keras3=artifacts.saved_by_keras3(FLAGS.model))
    # the policy's layers' masks (closed over the channel graph, as the model was pruned)
    masks_lib.save(os.path.join(out, f"{name}_masks.npz"), {n: result.masks[n] for n in policy})
    artifacts.write_json(os.path.join(out, f"{name}_admm.json"), metrics)
    print(json.dumps({k: metrics[k] for k in ("baseline_test_accuracy", "test_accuracy",
                                                "val_accuracy")}, indent=2))


if __name__ == "__main__":
    main()
