"""Test-wide settings: quiet TensorFlow, deterministic seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    from tfautocompress._keras import keras

    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def zoo_model():
    """Build each zoo model (default shape) once per test session; tests must not mutate it."""
    import functools

    from tfautocompress import zoo

    return functools.lru_cache(maxsize=None)(zoo.build)
