"""AutoCompress on CIFAR-10 with the paper's setup (Liu et al., AAAI 2020, §4, Tables 1-2).

    python examples/cifar10_paper.py --data_dir=/path/to/tensorflow_datasets      # VGG-16
    python examples/cifar10_paper.py --model=resnet18_cifar --output_dir=runs/cifar10_resnet18 \
        --data_dir=/path/to/tensorflow_datasets

The paper's setting is ``compress_cli.PAPER_CIFAR10``; every flag of
``tfautocompress-compress`` applies (``--distribution=mirrored|multi_worker``,
keras-tuner search workers with ``--search_parallel``: README "Scaling out"),
and the run resumes from ``--output_dir`` (one per model).

Expected (paper):
- Table 1, VGG-16: dense 93.7 %; full AutoCompress keeps 93.21 % at 52.2x fewer CONV
  parameters and 8.8x fewer CONV FLOPs (ADMM-based enhanced SA with filter pruning
  only: 93.22 % at 13.7x / 3.1x).
- Table 2, ResNet-18: dense 93.9 %; full AutoCompress keeps 93.81 % at 54.2x / 12.2x
  (or 93.43 % at 61.2x / 13.3x); filter pruning only: 93.91 % at 8.0x / 4.7x.
"""
from tfautocompress.app import compress_cli

if __name__ == "__main__":
    compress_cli.main(**compress_cli.PAPER_CIFAR10, model="vgg16_cifar",
                      output_dir="runs/cifar10_vgg16")
