"""AutoCompress on CIFAR-10 ResNet-18, the paper's setup (Liu et al., AAAI 2020, §4, Table 2).

    python examples/cifar10_resnet18.py --data_dir=/path/to/tensorflow_datasets

The paper's setting is ``compress_cli.PAPER_CIFAR10``; every flag of
``tfautocompress-compress`` applies (``--distribution=mirrored|multi_worker``,
keras-tuner search workers with ``--search_parallel``: README "Scaling out"),
and the run resumes from ``--output_dir``.

Expected (paper, Table 2): the dense ResNet-18 reaches 93.9 %; full AutoCompress
keeps 93.81 % at 54.2x fewer CONV parameters and 12.2x fewer CONV FLOPs (or 93.43 %
at 61.2x / 13.3x); ADMM-based enhanced SA with filter pruning only: 93.91 % at
8.0x / 4.7x.
"""
from tfautocompress.app import compress_cli

if __name__ == "__main__":
    compress_cli.main(**compress_cli.PAPER_CIFAR10, model="resnet18_cifar",
                      output_dir="runs/cifar10_resnet18")
