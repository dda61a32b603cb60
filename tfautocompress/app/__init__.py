"""The application layer: the one place that imports across the layers.

The AutoCompress job (``pipeline``: Phase I rounds, Phase II, compaction; its
``progressive`` rounds and ``report``), the console scripts (``cli``,
``compress_cli``, ``admm_cli``, ``export_cli``), the keras-tuner search worker's
loop (``search_worker``) and the comparison baselines (``baselines``). The core
(``tfautocompress/*.py``), ``callbacks``, ``search`` and ``tflite_tools`` never
import it (README, "How it is built").
"""
