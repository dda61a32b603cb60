"""The one policy file format: written by the pipeline (PruningPolicy.save), read by
PruningPolicy.load and policy.load_schemes (what tfautocompress-admm --policy
uses); a user's registered Scheme round-trips through it and prunes inside fit."""
import dataclasses
import json

import numpy as np
import pytest

from tfautocompress import policy as policy_lib, schemes, space as space_lib
from tfautocompress._keras import keras
from tfautocompress.callbacks.admm import ADMM


@schemes.register
@dataclasses.dataclass(frozen=True)
class OddFilters(schemes.Scheme):
    """A user's scheme: remove every filter with an odd index."""

    def group_norms(self, kernel, kind=None):
        return np.linalg.norm(schemes.gemm_view(kernel, kind), axis=0)

    def mask(self, kernel, kind=None):
        keep = (np.arange(schemes.gemm_view(kernel, kind).shape[1]) % 2 == 0)
        return np.broadcast_to(keep, np.shape(kernel)).astype(np.float32)


SPACE = space_lib.PolicySpace(
    [space_lib.LayerSpec("a", "conv", 16, 27, 64), space_lib.LayerSpec("b", "conv", 32, 144, 16)],
    scheme_set="filter+column")


def test_a_pipeline_policy_file_reads_back_as_policy_and_as_schemes(tmp_path):
    policy = policy_lib.PruningPolicy(SPACE, {"a": policy_lib.LayerAction(0.5, 0.6)})
    path = tmp_path / "policy.json"
    policy.save(path)
    assert policy_lib.PruningPolicy.load(path) == policy
    assert policy_lib.load_schemes(path) == policy.schemes()


def test_a_custom_scheme_round_trips_and_prunes_inside_fit(tmp_path):
    path = tmp_path / "custom.json"
    policy_lib.save_schemes(path, {"conv": OddFilters(), "dense": schemes.Column(0.5)})
    assert json.loads(path.read_text())["schemes"]["conv"]["class_name"] == "OddFilters"
    loaded = policy_lib.load_schemes(path)
    assert loaded == {"conv": OddFilters(), "dense": schemes.Column(0.5)}
    with pytest.raises(ValueError, match="schemes only"):
        policy_lib.PruningPolicy.load(path)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(keras.layers.Flatten()(x)))
    model.compile(keras.optimizers.SGD(0.05), "mse")
    admm = ADMM(loaded)
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 4, 4, 2)), rng.standard_normal((16, 3)), epochs=2,
              callbacks=[admm], verbose=0)
    masks = admm.hard_prune()
    kernel = model.get_layer("conv").kernel.numpy()
    assert masks["conv"][..., 1::2].sum() == 0 and masks["conv"][..., ::2].all()
    assert not kernel[..., 1::2].any() and kernel[..., ::2].all()


def test_bad_policy_files_name_the_file(tmp_path):
    wrong = tmp_path / "old.json"
    wrong.write_text(json.dumps({"conv": schemes.Filter(0.5).get_config()}))
    with pytest.raises(ValueError, match="old.json is not a policy file"):
        policy_lib.load_schemes(wrong)
    with pytest.raises(ValueError, match="already registered"):
        schemes.register(dataclasses.dataclass(frozen=True)(
            type("OddFilters", (schemes.Scheme,), {})))
