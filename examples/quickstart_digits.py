"""Quickstart: the ``tfautocompress-compress`` job through the Python API.

Trains (or loads) the digits baseline, runs AutoCompress (Phase I rounds, Phase II
purification, compaction, TFLite export) and prints the figures. Rerunning
resumes from ``runs/quickstart``.

    python examples/quickstart_digits.py
"""
import os

from tfautocompress import data, keras
from tfautocompress.baseline import train_baseline
from tfautocompress.app.pipeline import AutoCompress, Config

BASELINE = "runs/baseline/digits_vgg.keras"


def main():
    if os.path.exists(BASELINE):
        model = keras.models.load_model(BASELINE)
    else:
        model, _ = train_baseline("digits_vgg", "digits", epochs=20,
                                  output_dir=os.path.dirname(BASELINE))
    splits = data.load("digits", batch_size=32, seed=0)
    config = Config(objective="params", max_accuracy_drop=1.0, max_rounds=4, export_tflite=True)
    report = AutoCompress(model, splits, "runs/quickstart", config).run()
    for step in ("baseline", "final"):
        r = report[step]
        print(f"{step:>8}: test {100 * r['test_accuracy']:.2f} %, CONV params "
              f"{r['conv_params_ratio']:.1f}x, CONV MACs {r['conv_macs_ratio']:.1f}x")
    print("details: runs/quickstart/report.md")


if __name__ == "__main__":
    main()
