"""tfautocompress: AutoCompress structured pruning for tf_keras models."""
from tfautocompress._keras import check_model

__all__ = ["check_model"]
