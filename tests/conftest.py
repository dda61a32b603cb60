"""Test-wide settings: quiet TensorFlow, deterministic seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _latency_cache(tmp_path_factory):
    """The lowering's latency measurements go to a folder of the session's, never to the
    user's ``~/.cache`` (console scripts run by the tests inherit it), so a run measures
    what CI measures."""
    old = os.environ.get("TFAUTOCOMPRESS_CACHE_DIR")
    os.environ["TFAUTOCOMPRESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("latency_cache"))
    yield
    if old is None:
        del os.environ["TFAUTOCOMPRESS_CACHE_DIR"]
    else:
        os.environ["TFAUTOCOMPRESS_CACHE_DIR"] = old


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


def litert_outputs(path, x):
    """A float .tflite's output on ``x``, run by LiteRT's interpreter itself (the
    reference the export and benchmark tests hold the project's runs against)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (detail,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])
