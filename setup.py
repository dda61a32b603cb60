"""tfautocompress: AutoCompress (Liu et al., AAAI 2020) structured pruning for tf_keras."""
from setuptools import setup

setup(
    name="tfautocompress",
    version="0.1.0",
    description=(
        "Automatic structured pruning (ADMM + enhanced simulated annealing) "
        "for tf_keras models, with compact TFLite export."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # One import package; the design card's top-level folders are its sub-packages.
    packages=[
        "tfautocompress",
        "tfautocompress.callbacks",
        "tfautocompress.search",
        "tfautocompress.tflite_tools",
    ],
    package_dir={
        "tfautocompress": "tfautocompress",
        "tfautocompress.callbacks": "callbacks",
        "tfautocompress.search": "search",
        "tfautocompress.tflite_tools": "tflite_tools",
    },
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "keras-tuner>=1.4,<1.5",
        "tensorflow-datasets>=4.9,<4.10",
        "numpy>=1.26",
        "absl-py>=1.2",  # TF-MOT 0.8 pins absl-py~=1.2
        "ai-edge-litert>=2.0",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
    ],
    extras_require={"dev": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100"]},
    entry_points={
        "console_scripts": [
            "tfautocompress-train=tfautocompress.cli:train_main",
            "tfautocompress-admm=tfautocompress.admm_cli:main",
            "tfautocompress-compress=tfautocompress.compress_cli:main",
            "tfautocompress-export=tfautocompress.tflite_tools.cli:export_main",
            "tfautocompress-android-benchmark=tfautocompress.tflite_tools.cli:android_main",
        ],
    },
)
