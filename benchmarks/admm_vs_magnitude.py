"""ADMM vs one-shot magnitude pruning at the same policy and training budget.

Both start from the digits baseline (trained here with the lead's trainer
defaults if ``--baseline`` is missing). ADMM: ``--admm_epochs`` of ADMM, hard
prune, ``--retrain_epochs`` of masked retraining. Magnitude: the same scheme's
projection of the baseline weights at once, then ``admm_epochs + retrain_epochs``
of masked retraining. Test accuracy of each, exact structured sparsity checked,
and the ADMM primal residual per epoch.

    python benchmarks/admm_vs_magnitude.py [--output result.json]
"""
import os
import time

from absl import app, flags

from tfautocompress import artifacts, data
from tfautocompress._keras import keras
from tfautocompress.admm_cli import DEFAULT_MODEL, kernels, structured_sparsity, uniform_policy
from tfautocompress.baseline import accuracy, compile_for_training, train_baseline
from tfautocompress.callbacks import masked_retraining
from tfautocompress.callbacks.admm import kernel_variable
from tfautocompress.callbacks.progressive import Recipe, partial_prune
from tfautocompress.schemes import kernel_kind

flags.DEFINE_string("baseline", DEFAULT_MODEL, "Baseline .keras (trained here if missing).")
flags.DEFINE_integer("baseline_epochs", 20, "Epochs if the baseline must be trained.")
flags.DEFINE_float("filter_fraction", 0.75, "Uniform share of filters removed.")
flags.DEFINE_float("column_fraction", 0.5, "Uniform share of columns removed.")
flags.DEFINE_integer("admm_epochs", 10, "ADMM epochs.")
flags.DEFINE_integer("retrain_epochs", 10, "Masked retraining epochs after ADMM.")
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
flags.DEFINE_float("rho", 3e-2, "Initial rho.")
flags.DEFINE_float("rho_factor", 1.5, "Multi-rho factor per update.")
flags.DEFINE_float("rho_max", 1.0, "Cap on rho.")
flags.DEFINE_string("update_every", "epoch", "Steps between Z/U updates, or 'epoch'.")
flags.DEFINE_integer("seed", 0, "Seed (data split and training).")
flags.DEFINE_string("output", None, "Write the RESULT figures here as JSON.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not os.path.exists(FLAGS.baseline):
        train_baseline("digits_vgg", "digits", epochs=FLAGS.baseline_epochs,
                       seed=FLAGS.seed, output_dir=os.path.dirname(FLAGS.baseline), verbose=0)
    splits = data.load("digits", batch_size=32, seed=FLAGS.seed)
    baseline = keras.models.load_model(FLAGS.baseline)
    baseline_acc = accuracy(baseline, splits.test)
    policy = uniform_policy(baseline, FLAGS.filter_fraction, FLAGS.column_fraction)
    compile_fn = lambda m: compile_for_training(m, FLAGS.lr)  # noqa: E731
    every = FLAGS.update_every if FLAGS.update_every == "epoch" else int(FLAGS.update_every)

    keras.utils.set_random_seed(FLAGS.seed)
    start = time.perf_counter()
    recipe = Recipe(splits.train, splits.val, compile_fn, FLAGS.admm_epochs,
                    FLAGS.retrain_epochs, dict(rho=FLAGS.rho, rho_factor=FLAGS.rho_factor,
                                               rho_max=FLAGS.rho_max, update_every=every))
    admm = partial_prune(baseline, policy, recipe)
    admm_s = time.perf_counter() - start
    admm_acc = accuracy(admm.model, splits.test)

    keras.utils.set_random_seed(FLAGS.seed)
    start = time.perf_counter()
    magnitude_masks = {n: s.mask(kernel_variable(baseline.get_layer(n)).numpy(),
                                 kernel_kind(baseline.get_layer(n))) for n, s in policy.items()}
    magnitude, _ = masked_retraining.retrain(
        baseline, magnitude_masks, splits.train, epochs=FLAGS.admm_epochs + FLAGS.retrain_epochs,
        compile_fn=compile_fn)
    magnitude_s = time.perf_counter() - start
    magnitude_acc = accuracy(magnitude, splits.test)

    requested = {n: (s.filter_fraction, s.column_fraction) for n, s in policy.items()}
    mask_sparsity = structured_sparsity({n: admm.masks[n] for n in policy}, baseline)
    kernel_sparsity = structured_sparsity(kernels(admm.model, policy), baseline)
    exact = all(
        round(mask_sparsity[n]["filter"] * k.shape[-1]) == round(f * k.shape[-1])
        and kernel_sparsity[n]["filter"] == mask_sparsity[n]["filter"]
        and kernel_sparsity[n]["column"] >= mask_sparsity[n]["column"]
        for n, (f, _), k in ((n, requested[n], admm.masks[n]) for n in policy))
    residual = [float(v) for v in admm.history["admm"]["admm_res"]]

    print(f"{'layer':<16}{'filters':>10}{'columns(mask)':>15}{'columns(kernel)':>17}")
    for n in policy:
        print(f"{n:<16}{mask_sparsity[n]['filter']:>10.3f}{mask_sparsity[n]['column']:>15.3f}"
              f"{kernel_sparsity[n]['column']:>17.3f}")
    print("ADMM primal residual per epoch:", " ".join(f"{r:.3f}" for r in residual))
    print(f"{'method':<12}{'test acc':>10}{'epochs':>8}{'wall s':>8}")
    total = FLAGS.admm_epochs + FLAGS.retrain_epochs
    print(f"{'baseline':<12}{baseline_acc:>10.4f}{FLAGS.baseline_epochs:>8}")
    print(f"{'admm':<12}{admm_acc:>10.4f}{total:>8}{admm_s:>8.1f}")
    print(f"{'magnitude':<12}{magnitude_acc:>10.4f}{total:>8}{magnitude_s:>8.1f}")
    result = {
        "admm_acc": round(admm_acc, 4), "magnitude_acc": round(magnitude_acc, 4),
        "baseline_acc": round(baseline_acc, 4),
        "admm_drop": round(baseline_acc - admm_acc, 4),
        "sparsity_exact": int(exact),
        "residual_falls": int(residual[-1] < residual[0]),
        "residual_first": round(residual[0], 4), "residual_last": round(residual[-1], 4),
        "epochs": total,
    }
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    if FLAGS.output:
        artifacts.write_json(FLAGS.output, result)


if __name__ == "__main__":
    app.run(main)
