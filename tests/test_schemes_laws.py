"""Schemes on the kernels the other tests do not give them (Conv1D/Conv3D ranks,
depthwise shares, many groups), each mask checked against a NumPy reference."""
import numpy as np
import pytest

from tfautocompress import schemes
from tfautocompress.schemes import Column, Combined, Filter, Irregular, Scheme


def _smallest(norms, n):
    """Indices of the ``n`` smallest norms (distinct norms: no ties to break)."""
    return set(np.argsort(norms)[:n].tolist())


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 2, 4, 5)])
@pytest.mark.parametrize("kind", [None, "conv", "depthwise"])
def test_conv1d_and_conv3d_kernels_keep_their_shape_and_lose_their_weakest_groups(shape, kind):
    rng = np.random.default_rng(0)
    kernel = rng.permutation(np.arange(1, np.prod(shape) + 1)).reshape(shape).astype(np.float32)
    mask = Filter(0.4).mask(kernel, kind)
    assert mask.shape == shape and mask.dtype == np.float32
    if kind == "depthwise":  # a filter is one (cin, mult) pair, over the spatial axes
        norms = np.sqrt(np.square(kernel.astype(np.float64)).sum(axis=tuple(range(len(shape) - 2))))
        per_filter = mask.reshape(-1, norms.size).max(axis=0)
        flat = norms.ravel()
    else:  # a filter is an output channel, over every other axis
        flat = np.sqrt(np.square(kernel.astype(np.float64)).reshape(-1, shape[-1]).sum(axis=0))
        per_filter = mask.reshape(-1, shape[-1]).max(axis=0)
    pruned = set(np.flatnonzero(per_filter == 0).tolist())
    assert pruned == _smallest(flat, round(0.4 * flat.size))
    # every weight of a kept filter is kept: the mask is whole groups
    assert set(np.unique(mask.reshape(-1, flat.size).min(axis=0) - per_filter).tolist()) == {0.0}


def test_a_kernel_of_no_known_rank_names_what_is_accepted():
    with pytest.raises(ValueError, match=r"shape \(6,\): expected a 2-D \(dense\) or 4-D "
                       r"\(conv\) kernel, or pass kind= one of \("):
        Filter(0.5).mask(np.ones(6, np.float32))


def test_zero_group_shares_of_a_depthwise_kernel_use_its_own_view():
    kernel = np.ones((1, 2, 3, 1), np.float32)  # 2 positions (columns) x 3 channels (filters)
    kernel[:, :, 0, :] = 0                      # channel 0: a zero filter
    # depthwise view (2, 3): 1 of 3 filters and 0 of 2 columns are zero; read as a conv
    # kernel it would be (6, 1): no zero filter, 2 of 6 zero columns
    assert schemes.zero_group_shares(kernel, "depthwise") == {"filter": 1 / 3, "column": 0.0}


def test_a_fraction_of_the_wrong_type_names_its_type():
    with pytest.raises(TypeError, match=r"got '0\.5' \(str\)"):
        Filter("0.5")


@pytest.mark.parametrize("n_prune", [1, 2, 7, 31, 62, 63])
def test_many_groups_lose_exactly_the_weakest(n_prune):
    rng = np.random.default_rng(n_prune)
    kernel = rng.permutation(np.arange(1.0, 65.0)).reshape(1, 64).astype(np.float32)
    mask = Filter(n_prune / 64).mask(kernel)
    assert set(np.flatnonzero(mask[0] == 0).tolist()) == _smallest(kernel[0], n_prune)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("scheme", [Filter(0.5), Irregular(0.5), Column(0.5), Combined(0.5, 0.5)])
def test_the_projection_keeps_the_kernels_dtype_and_masks_are_float32(scheme, dtype):
    kernel = np.arange(1, 25, dtype=dtype).reshape(4, 6)
    projected = scheme.project(kernel)
    assert projected.dtype == dtype
    mask = scheme.mask(kernel)
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(projected, np.where(mask != 0, kernel, 0))


def test_configs_that_are_not_dicts_or_have_no_fields():
    with pytest.raises(ValueError, match="class_name must be one of"):
        Scheme.from_config("Filter")
    assert Scheme.from_config({"class_name": "Filter"}) == Filter(0.0)
    assert Scheme.from_config({"class_name": "Combined"}) == Combined(0.0, 0.0)


def test_register_takes_dataclass_schemes_only_and_one_class_per_name():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class NotAScheme:
        fraction: float = 0.0

    class NotADataclass(Scheme):
        pass

    @dataclasses.dataclass(frozen=True)
    class Filter(Scheme):  # another class under a registered name
        fraction: float = 0.0

    accepted = r"must be a dataclass subclass of tfautocompress\.schemes\.Scheme\.$"
    for bad in (NotAScheme, NotADataclass, schemes.Filter(0.5)):
        with pytest.raises(TypeError, match=rf"schemes\.register: .* {accepted}"):
            schemes.register(bad)
    with pytest.raises(ValueError, match=r"a scheme named 'Filter' is already registered; give "
                                         r"the class another name\.$"):
        schemes.register(Filter)
    assert schemes.register(schemes.Filter) is schemes.Filter  # the registered class itself


def test_as_schemes_names_what_is_not_a_policy_or_not_a_scheme():
    with pytest.raises(TypeError, match=r"expected a PruningPolicy \(or an object with "
                                        r"\.schemes\(\)\) or a mapping \{layer name: Scheme\}, got "
                                        r"int\.$"):
        schemes.as_schemes(42)
    with pytest.raises(TypeError, match=r"layer 'a': 0\.5 is a float, not a Scheme; accepted: "
                                        r"tfautocompress\.schemes Filter, Column, Channel, "
                                        r"Combined, Irregular or a registered one "
                                        r"\(schemes\.register\)\.$"):
        schemes.as_schemes({"a": 0.5})
    assert schemes.as_schemes({1: Filter(0.5)}) == {"1": Filter(0.5)}
