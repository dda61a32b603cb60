"""Compress your own trained model on your own folder of images.

You built a CNN with tf_keras or Keras 3 (e.g. ``keras.applications.MobileNetV3Small``
or ``EfficientNetB0`` with ``weights=None, classes=N``), trained it on a folder of
images (e.g. ``keras.utils.image_dataset_from_directory("photos/")``) and saved it with
``model.save("my_model.keras")``. Then

    python examples/your_model.py --model my_model.keras --dataset photos/

runs the whole AutoCompress job of ``tfautocompress-compress`` on it (this script is
that command with the two flags required and its own ``--output_dir``; every other
flag of it applies: ``--target_ratio``, ``--max_accuracy_drop``, ``--rounds``, ...;
``--help`` lists them). Rerunning the same command resumes where it stopped.

What it reads (``tfautocompress.data.load_for_model``):

* ``--dataset``: a folder with one sub-folder of images (png, jpg, bmp, gif) per
  class; class k is the k-th sub-folder in sorted order, as
  ``image_dataset_from_directory`` numbers them. Images of any size are resized
  (bilinear, as that function does) to the model's input size and converted to its
  channels. The folder is split, stratified and fixed by ``--seed``: 20 % test (the
  report's figures), 15 % of the rest validation (the search and the accuracy bound
  ``--max_accuracy_drop``), the rest for ADMM and retraining. If the model was trained
  on this same folder, its validation and test images are not unseen: the bound then
  holds the compressed model to what the dense one learnt, not to new images.
* pixels: in [0, 255] when the model rescales its own input (a ``Rescaling`` layer
  first, as MobileNetV3, EfficientNet, EfficientNetV2, RegNet and ConvNeXt begin),
  else in [0, 1]; ``--pixel_max`` says otherwise.

What it writes, in ``--output_dir`` (default ``runs/your_model``): ``report.md`` (per
round: CONV params and MACs ratios, validation and test accuracy, kept fraction per
layer), ``final/compact.keras`` (the smaller model; a Keras 3 model when yours was
saved by Keras 3: load it with the Keras you use), and ``final/*.tflite`` (fp32,
fp16 for the GPU delegate) with their latency on this machine.
"""
from absl import flags

from tfautocompress.app import compress_cli
from tfautocompress.app.cli import run_app

FLAGS = flags.FLAGS
REQUIRED = {"model": "your trained model, a .keras file",
            "dataset": "your folder of images, one sub-folder per class"}


def run(argv):
    """``tfautocompress-compress``'s job once ``--model`` and ``--dataset`` are given."""
    for name, what in REQUIRED.items():
        if FLAGS[name].value is None:  # one error line (run_app), as for any bad input
            raise ValueError(f"--{name} is required: {what}.")
    compress_cli.run(argv)


def main():
    compress_cli.define_flags(model=None, dataset=None, output_dir="runs/your_model")
    run_app(run)


if __name__ == "__main__":
    main()
