"""ADMM vs one-shot magnitude pruning at the same policy and training budget, over seeds.

All start from the digits baseline (trained here with the trainer's defaults if
``--baseline`` is missing; the data split is always the baseline's, ``--data_seed``,
so that its test images were never trained on). Per training seed (``--seeds``):

* ADMM: ``--admm_epochs`` of ADMM (constant lr; rho raised to ``--final_rho`` for
  the last epoch), hard prune, BN recalibration, ``--retrain_epochs`` of masked
  retraining (cosine-decayed lr);
* magnitude, two readings of "the same retraining budget": the scheme's own mask
  of the baseline weights (per layer, as ADMM's hard prune; ``--magnitude``
  picks the readings), the same BN recalibration, then masked
  retraining (same cosine schedule) for ``retrain_epochs`` (``magnitude_same``:
  as many retraining epochs as ADMM's retraining phase) or for
  ``admm_epochs + retrain_epochs`` (``magnitude_total``: ADMM's total epochs).

Prints test accuracy per seed and mean ± std (and min..max) per method, checks the
exact structured sparsity of the ADMM result, and asserts that the ADMM primal
residual falls (last epoch vs first) for every seed.

    python benchmarks/admm_vs_magnitude.py [--seeds 0,1,2] [--output result.json]
"""
import os

import numpy as np
from absl import app, flags

import _common
from tfautocompress import data, keras
from tfautocompress.app.admm_cli import DEFAULT_MODEL, kernels, structured_sparsity
from tfautocompress.baseline import compile_for_training, train_baseline
from tfautocompress.callbacks import admm as admm_lib
from tfautocompress.callbacks import masked_retraining
from tfautocompress.app.progressive import (BN_RECALIBRATION_BATCHES, FINAL_RHO, Recipe,
                                                  partial_prune)
from tfautocompress.evaluate import accuracy
from tfautocompress.masks import magnitude_masks, uniform_schemes
from tfautocompress.schemes import Combined

flags.DEFINE_string("baseline", DEFAULT_MODEL, "Baseline .keras (trained here if missing).")
flags.DEFINE_integer("baseline_epochs", 20, "Epochs if the baseline must be trained.")
flags.DEFINE_float("filter_fraction", 0.75, "Uniform share of filters removed.")
flags.DEFINE_float("column_fraction", 0.5, "Uniform share of columns removed.")
flags.DEFINE_integer("admm_epochs", 10, "ADMM epochs.")
flags.DEFINE_integer("retrain_epochs", 10, "Masked retraining epochs after ADMM.")
flags.DEFINE_float("lr", 1e-3, "Adam learning rate (constant in ADMM, cosine-decayed "
                   "from it in retraining with --retrain_decay).")
flags.DEFINE_bool("retrain_decay", True, "Cosine-decay the lr to 0 over each retraining.")
flags.DEFINE_integer("bn_recalibration_batches", BN_RECALIBRATION_BATCHES,
                     "Training batches re-estimating BN statistics after the hard prune "
                     "(both methods; 0: none).")
flags.DEFINE_float("rho", admm_lib.RHO, "Initial rho.")
flags.DEFINE_float("rho_factor", admm_lib.RHO_FACTOR, "Multi-rho factor per update.")
flags.DEFINE_float("rho_max", admm_lib.RHO_MAX, "Cap on rho.")
flags.DEFINE_float("final_rho", FINAL_RHO, "Rho of the last ADMM epoch (rho ramp; 0: off).")
flags.DEFINE_string("update_every", admm_lib.UPDATE_EVERY, "Steps between Z/U updates, or 'epoch'.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds (ADMM and magnitude per seed).")
flags.DEFINE_list("magnitude", ["same", "total"], "Magnitude readings to run (none: ADMM only).")
flags.DEFINE_integer("data_seed", 0, "Data split seed (the baseline's).")
_common.define_output_flag()
FLAGS = flags.FLAGS


def _methods():
    return ["admm"] + [f"magnitude_{r}" for r in ("same", "total") if r in FLAGS.magnitude]


def _compile_fns(batches):
    constant = lambda m: compile_for_training(m, FLAGS.lr)  # noqa: E731

    def decayed(epochs):
        if not FLAGS.retrain_decay:
            return constant
        return lambda m: compile_for_training(m, FLAGS.lr, decay_steps=epochs * batches)
    return constant, decayed


def _exact(policy, masks, model, baseline):
    mask_sparsity = structured_sparsity({n: masks[n] for n in policy}, baseline)
    kernel_sparsity = structured_sparsity(kernels(model, policy), baseline)
    exact = all(
        round(mask_sparsity[n]["filter"] * masks[n].shape[-1])
        == round(s.filter_fraction * masks[n].shape[-1])
        and kernel_sparsity[n]["filter"] == mask_sparsity[n]["filter"]
        and kernel_sparsity[n]["column"] >= mask_sparsity[n]["column"]
        for n, s in policy.items())
    return exact, mask_sparsity, kernel_sparsity


def run_seed(seed, baseline, policy, splits):
    """Test accuracies ``{method: acc}``, wall seconds, the ADMM result and residuals."""
    batches = int(splits.train.cardinality())
    constant, decayed = _compile_fns(batches)
    every = FLAGS.update_every if FLAGS.update_every == "epoch" else int(FLAGS.update_every)
    acc, wall = {}, {}

    keras.utils.set_random_seed(seed)
    with _common.Stopwatch() as watch:
        recipe = Recipe(splits.train, splits.val, constant, FLAGS.admm_epochs,
                        FLAGS.retrain_epochs,
                        dict(rho=FLAGS.rho, rho_factor=FLAGS.rho_factor, rho_max=FLAGS.rho_max,
                             update_every=every, final_rho=FLAGS.final_rho or None),
                        retrain_compile_fn=decayed(FLAGS.retrain_epochs),
                        bn_recalibration_batches=FLAGS.bn_recalibration_batches)
        admm = partial_prune(baseline, policy, recipe)
    wall["admm"] = watch.seconds
    acc["admm"] = accuracy(admm.model, splits.test)

    magnitude = magnitude_masks(baseline, policy)
    total = FLAGS.admm_epochs + FLAGS.retrain_epochs
    for method, epochs in (("magnitude_same", FLAGS.retrain_epochs), ("magnitude_total", total)):
        if method not in _methods():
            continue
        keras.utils.set_random_seed(seed)
        with _common.Stopwatch() as watch:
            model, _ = masked_retraining.retrain(
                baseline, magnitude, splits.train, epochs=epochs, compile_fn=decayed(epochs),
                bn_recalibration_batches=FLAGS.bn_recalibration_batches)
        wall[method] = watch.seconds
        acc[method] = accuracy(model, splits.test)
    residual = [float(v) for v in admm.history["admm"]["admm_res"]]
    return acc, wall, admm, residual


def main(argv):
    del argv
    if not os.path.exists(FLAGS.baseline):
        train_baseline("digits_vgg", "digits", epochs=FLAGS.baseline_epochs,
                       seed=FLAGS.data_seed, output_dir=os.path.dirname(FLAGS.baseline),
                       verbose=0)
    splits = data.load("digits", batch_size=32, seed=FLAGS.data_seed)
    baseline = keras.models.load_model(FLAGS.baseline)
    baseline_acc = accuracy(baseline, splits.test)
    policy = uniform_schemes(baseline, Combined(FLAGS.filter_fraction, FLAGS.column_fraction))
    seeds = [int(s) for s in FLAGS.seeds]
    total = FLAGS.admm_epochs + FLAGS.retrain_epochs
    epochs = {"admm": total, "magnitude_same": FLAGS.retrain_epochs, "magnitude_total": total}

    methods = _methods()
    per_seed, residuals, exact = {m: [] for m in methods}, [], True
    for seed in seeds:
        acc, wall, admm, residual = run_seed(seed, baseline, policy, splits)
        ok, mask_sparsity, kernel_sparsity = _exact(policy, admm.masks, admm.model, baseline)
        exact &= ok
        residuals.append(residual)
        for m in methods:
            per_seed[m].append(acc[m])
        print(f"seed {seed}: " + " ".join(f"{m}={acc[m]:.4f} ({wall[m]:.0f} s)" for m in methods)
              + f" sparsity_exact={int(ok)}", flush=True)
        print("  ADMM primal residual per epoch:", " ".join(f"{r:.3f}" for r in residual),
              flush=True)

    print(f"{'layer':<16}{'filters':>10}{'columns(mask)':>15}{'columns(kernel)':>17}")
    for n in policy:  # the last seed's ADMM result
        print(f"{n:<16}{mask_sparsity[n]['filter']:>10.3f}{mask_sparsity[n]['column']:>15.3f}"
              f"{kernel_sparsity[n]['column']:>17.3f}")
    print(f"{'method':<17}{'epochs':>7}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds)
          + f"{'mean':>9}{'std':>8}{'min..max':>16}")
    print(f"{'baseline':<17}{FLAGS.baseline_epochs:>7}" + f"{baseline_acc:>9.4f}" * len(seeds))
    stats = {}
    for m in methods:
        values = np.asarray(per_seed[m])
        stats[m] = (float(values.mean()), float(values.std()), float(values.min()),
                    float(values.max()))
        print(f"{m:<17}{epochs[m]:>7}" + "".join(f"{v:>9.4f}" for v in values)
              + f"{stats[m][0]:>9.4f}{stats[m][1]:>8.4f}{stats[m][2]:>8.4f}..{stats[m][3]:.4f}")
    falls = all(r[-1] < r[0] for r in residuals)
    magnitude = [m for m in ("magnitude_total", "magnitude_same") if m in stats]
    result = {
        "admm_acc": round(stats["admm"][0], 4),
        **({"magnitude_acc": round(stats[magnitude[0]][0], 4)} if magnitude else {}),
        "baseline_acc": round(baseline_acc, 4),
        **{f"{m}_acc": round(stats[m][0], 4) for m in methods[1:]},
        **{f"{m}_std": round(stats[m][1], 4) for m in methods},
        "admm_drop": round(baseline_acc - stats["admm"][0], 4),
        "admm_drop_max": round(baseline_acc - stats["admm"][2], 4),
        "sparsity_exact": int(exact),
        "residual_falls": int(falls),
        "residual_first": round(float(np.mean([r[0] for r in residuals])), 4),
        "residual_last": round(float(np.mean([r[-1] for r in residuals])), 4),
        "epochs": total, "seeds": len(seeds),
    }
    _common.finish(result, FLAGS.output, extra=dict(
        per_seed={m: [round(v, 4) for v in per_seed[m]] for m in methods},
        seed_list=seeds, residuals=residuals))
    assert falls, f"ADMM primal residual did not fall (first vs last): {residuals}"
    assert exact, "ADMM result does not have exactly the requested structured sparsity."


if __name__ == "__main__":
    app.run(main)
