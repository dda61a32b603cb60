"""AutoCompress on CIFAR-10 VGG-16, the paper's setup (Liu et al., AAAI 2020, §4, Table 1).

    python examples/cifar10_vgg16.py --data_dir=/path/to/tensorflow_datasets

The paper's setting is ``compress_cli.PAPER_CIFAR10``; every flag of
``tfautocompress-compress`` applies (``--distribution=mirrored|multi_worker``,
keras-tuner search workers with ``--search_parallel``: README "Scaling out"),
and the run resumes from ``--output_dir``.

Expected (paper, Table 1): the dense VGG-16 reaches 93.7 %; full AutoCompress
keeps 93.21 % at 52.2x fewer CONV parameters and 8.8x fewer CONV FLOPs
(ADMM-based enhanced SA with filter pruning only: 93.22 % at 13.7x / 3.1x).
"""
from tfautocompress.app import compress_cli

if __name__ == "__main__":
    compress_cli.main(**compress_cli.PAPER_CIFAR10, model="vgg16_cifar",
                      output_dir="runs/cifar10_vgg16")
