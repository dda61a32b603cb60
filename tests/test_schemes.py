"""Pruning schemes: projections checked against brute force on tiny kernels."""
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tfautocompress import schemes
from tfautocompress._keras import keras
from tfautocompress.schemes import Channel, Column, Combined, Filter, Irregular, Scheme

SHAPES = {"conv": (2, 2, 3, 4), "depthwise": (2, 2, 3, 2), "dense": (5, 4)}
# Number of groups of each single-group scheme per kind (shape above).
N_GROUPS = {
    "conv": {Irregular: 48, Filter: 4, Channel: 3, Column: 12},
    "depthwise": {Irregular: 24, Filter: 6, Channel: 6, Column: 4},
    "dense": {Irregular: 20, Filter: 4, Channel: 5, Column: 5},
}
SINGLE = (Irregular, Filter, Channel, Column)
fractions = st.floats(0.0, 0.99)


def kernels(kind):
    return hnp.arrays(
        np.float32, SHAPES[kind],
        elements=st.floats(-4, 4, width=32, allow_nan=False, allow_subnormal=False),
    )


def group_labels(scheme_cls, kind):
    """Group index of every weight, built independently from the scheme code."""
    shape = SHAPES[kind]
    idx = np.indices(shape)
    if scheme_cls is Irregular:
        return np.arange(np.prod(shape)).reshape(shape)
    if kind == "dense":
        return idx[1] if scheme_cls is Filter else idx[0]
    kh, kw, cin, last = shape
    if kind == "depthwise":
        if scheme_cls is Column:
            return idx[0] * kw + idx[1]
        return idx[2] * last + idx[3]
    return {
        Filter: idx[3],
        Channel: idx[2],
        Column: (idx[0] * kw + idx[1]) * cin + idx[2],
    }[scheme_cls]


def zero_groups(mask, labels):
    n = labels.max() + 1
    kept = np.bincount(labels.ravel(), weights=mask.ravel(), minlength=n)
    return int(np.sum(kept == 0))


@pytest.mark.parametrize("kind", schemes.KINDS)
@pytest.mark.parametrize("scheme_cls", SINGLE)
@settings(max_examples=15, deadline=None)
@given(data=st.data(), fraction=fractions)
def test_single_scheme_projection_laws(kind, scheme_cls, data, fraction):
    w = data.draw(kernels(kind))
    scheme = scheme_cls(fraction)
    mask = scheme.mask(w, kind)
    assert mask.shape == w.shape and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    labels = group_labels(scheme_cls, kind)
    n = N_GROUPS[kind][scheme_cls]
    assert labels.max() + 1 == n
    # The mask is constant on each group, and exactly the requested count is zero.
    per_group = np.zeros(n)
    per_group[labels.ravel()] = mask.ravel()
    np.testing.assert_array_equal(per_group[labels], mask)
    assert zero_groups(mask, labels) == min(round(fraction * n), n - 1)
    # Idempotent.
    p = scheme.project(w, kind)
    np.testing.assert_array_equal(scheme.project(p, kind), p)
    # Group norms are the per-group L2 norms, in the GEMM/group index order.
    expected = np.sqrt(np.bincount(labels.ravel(), np.square(w.astype(np.float64)).ravel(), n))
    np.testing.assert_allclose(scheme.group_norms(w, kind), expected, rtol=1e-6)


@pytest.mark.parametrize("kind", schemes.KINDS)
@pytest.mark.parametrize("scheme_cls", (Filter, Channel, Column))
@settings(max_examples=10, deadline=None)
@given(data=st.data(), fraction=fractions)
def test_structured_projection_is_closest_point_by_brute_force(kind, scheme_cls, data, fraction):
    w = data.draw(kernels(kind)).astype(np.float64)
    labels = group_labels(scheme_cls, kind)
    n = labels.max() + 1
    n_prune = min(round(fraction * n), n - 1)
    best = min(
        np.sum(np.square(w) * np.isin(labels, dropped))
        for dropped in itertools.combinations(range(n), n_prune)
    )
    got = np.sum(np.square(w - scheme_cls(fraction).project(w, kind)))
    assert got <= best + 1e-9 * (1 + best)


@settings(max_examples=30, deadline=None)
@given(w=hnp.arrays(np.float64, (2, 3), elements=st.floats(-4, 4)), fraction=fractions)
def test_irregular_is_closest_point_by_brute_force(w, fraction):
    n_prune = min(round(fraction * 6), 5)
    best = min(
        np.sum(np.square(w.ravel()[list(dropped)]))
        for dropped in itertools.combinations(range(6), n_prune)
    )
    got = np.sum(np.square(w - Irregular(fraction).project(w)))
    assert got <= best + 1e-12


def test_ties_are_broken_by_index():
    w = np.ones((3, 4), np.float32)  # dense: 4 equal filters
    np.testing.assert_array_equal(Filter(0.5).mask(w)[0], [0, 0, 1, 1])
    w = np.array([[1, 2, 2, 2, 3, 0.5]], np.float32)  # prune 0.5, 1 and the first 2
    np.testing.assert_array_equal(Filter(0.5).mask(w)[0], [0, 0, 1, 1, 1, 0])


def test_at_least_one_group_is_kept():
    w = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    assert Filter(0.99).mask(w).sum(axis=0).tolist() == [0, 0, 0, 2]
    assert schemes.prune_count(0.99, 4) == 3 and schemes.prune_count(0.0, 4) == 0


def test_gemm_view_layouts():
    conv = np.arange(2 * 2 * 3 * 4).reshape(2, 2, 3, 4)
    g = schemes.gemm_view(conv, "conv")
    assert g.shape == (12, 4)
    np.testing.assert_array_equal(g[1 * 3 + 2], conv[0, 1, 2, :])  # row = (kh, kw, cin)
    dw = np.arange(2 * 2 * 3 * 2).reshape(2, 2, 3, 2)
    g = schemes.gemm_view(dw, "depthwise")
    assert g.shape == (4, 6)
    np.testing.assert_array_equal(g[:, 2 * 2 + 1], dw[:, :, 2, 1].ravel())
    assert schemes.gemm_view(np.zeros((5, 4))).shape == (5, 4)


# ---- Combined: alternating maximisation vs. brute force ---------------------

def kept_energy(w, mask):
    return float(np.sum(np.square(w * mask)))


def combined_brute_force(g, n_f, n_c):
    """Best kept energy over all (filters, columns) subsets of a GEMM matrix."""
    energy = np.square(g)
    rows, cols = energy.shape
    best = 0.0
    for f in itertools.combinations(range(cols), cols - n_f):
        col_energy = energy[:, list(f)].sum(axis=1)
        best = max(best, np.sort(col_energy)[n_c:].sum())  # best columns given f: exact
    return best


def sequential(w, kind, ff, cf, filter_first):
    first, second = (Filter(ff), Column(cf)) if filter_first else (Column(cf), Filter(ff))
    m1 = first.mask(w, kind)
    return m1 * second.mask(w * m1, kind)


def test_combined_against_brute_force_and_sequential_orders():
    rng = np.random.default_rng(0)
    equal, trials = 0, 200
    for t in range(trials):
        kind = ("conv", "dense", "depthwise")[t % 3]
        shape = {"conv": (1, 2, 3, 5), "dense": (6, 5), "depthwise": (2, 3, 2, 3)}[kind]
        # Heavy-tailed weights make the orders disagree more often.
        w = rng.standard_t(2, size=shape)
        ff, cf = rng.choice([0.2, 0.4, 0.6]), rng.choice([0.2, 0.4, 0.6])
        scheme = Combined(ff, cf)
        mask = scheme.mask(w, kind)
        g = schemes.gemm_view(w, kind)
        n_c, n_f = (schemes.prune_count(cf, g.shape[0]), schemes.prune_count(ff, g.shape[1]))
        gm = schemes.gemm_view(mask, kind)
        assert np.sum(gm.sum(axis=0) == 0) == n_f and np.sum(gm.sum(axis=1) == 0) == n_c
        got = kept_energy(w, mask)
        for filter_first in (True, False):
            assert got >= kept_energy(w, sequential(w, kind, ff, cf, filter_first)) - 1e-9
        best = combined_brute_force(g, n_f, n_c)
        assert got <= best + 1e-9
        equal += got >= best - 1e-9
    # Measured on this seed: 191/200 equal to brute force (the better of the two
    # sequential orders alone: 190/200); the alternation is a local optimum.
    assert equal >= 188, equal


@settings(max_examples=20, deadline=None)
@given(data=st.data(), ff=fractions, cf=fractions)
def test_combined_is_idempotent_and_structured(data, ff, cf):
    kind = data.draw(st.sampled_from(schemes.KINDS))
    w = data.draw(kernels(kind))
    scheme = Combined(ff, cf)
    p = scheme.project(w, kind)
    np.testing.assert_array_equal(scheme.project(p, kind), p)
    gm = schemes.gemm_view(scheme.mask(w, kind), kind)
    # A filter-and-column mask is the outer product of its kept sets.
    np.testing.assert_array_equal(gm, np.outer(gm.max(axis=1), gm.max(axis=0)))
    g = schemes.gemm_view(w, kind)
    norms = scheme.group_norms(w, kind)
    assert norms.shape == (g.shape[1] + g.shape[0],)


# ---- value objects, config, errors -------------------------------------------

ALL = [Irregular(0.3), Filter(0.5), Channel(0.25), Column(0.0), Combined(0.5, 0.25)]


@pytest.mark.parametrize("scheme", ALL, ids=repr)
def test_config_round_trip_through_json(scheme):
    config = json.loads(json.dumps(scheme.get_config()))
    assert config["class_name"] == type(scheme).__name__
    again = Scheme.from_config(config)
    assert again == scheme and type(again) is type(scheme) and hash(again) == hash(scheme)


def test_schemes_are_frozen_value_objects():
    assert Filter(np.float64(0.5)) == Filter(0.5)
    assert type(Filter(np.float32(0.5)).fraction) is float
    assert Filter(0.5) != Column(0.5)
    assert len({Filter(0.5), Filter(0.5), Combined(0.5, 0.5)}) == 2
    with pytest.raises(Exception):
        Filter(0.5).fraction = 0.1


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan")])
def test_bad_fraction_is_a_value_error_naming_the_value(bad):
    with pytest.raises(ValueError, match=r"Filter\.fraction must be in \[0, 1\).*" + repr(bad)[:3]):
        Filter(bad)
    with pytest.raises(ValueError, match=r"Combined\.column_fraction"):
        Combined(0.5, bad)


@pytest.mark.parametrize("bad", ["0.5", None, True])
def test_non_number_fraction_is_a_type_error(bad):
    with pytest.raises(TypeError, match=r"Column\.fraction must be a real number.*" + repr(bad)):
        Column(bad)


def test_bad_kernels_and_configs():
    with pytest.raises(ValueError, match=r"'depthwise' kernel must be 4-D, got shape \(3, 4\)"):
        Filter(0.5).mask(np.ones((3, 4)), "depthwise")
    with pytest.raises(ValueError, match="cannot infer the kernel kind from shape"):
        Filter(0.5).mask(np.ones((3,)))
    # A 3-D kernel is a Conv1D kernel (k, cin, cout): filters are its last axis.
    assert Filter(0.4).mask(np.arange(60.0).reshape(3, 4, 5)).reshape(-1, 5).any(axis=0).sum() == 3
    with pytest.raises(ValueError, match="kind 'conv1d' is not one of"):
        Filter(0.5).mask(np.ones((3, 4)), "conv1d")
    with pytest.raises(ValueError, match="class_name must be one of"):
        Scheme.from_config({"class_name": "Nope", "config": {}})


def test_kernel_kind_of_layers():  # the kind a scheme prunes, from layer_kinds
    from tfautocompress import layer_kinds

    layers, kind = keras.layers, lambda layer: layer_kinds.prunable_layout(layer).kind
    assert kind(layers.Conv2D(2, 3)) == "conv"
    assert kind(layers.SeparableConv2D(2, 3)) == "conv"
    assert kind(layers.DepthwiseConv2D(3)) == "depthwise"
    assert kind(layers.Dense(2)) == "dense"
    for layer in (layers.Conv2DTranspose(2, 3, name="up"), layers.BatchNormalization(name="bn")):
        with pytest.raises(TypeError, match=f"layer '{layer.name}' is a {type(layer).__name__}"):
            kind(layer)


def test_zero_group_shares_counts_all_zero_filters_and_columns():
    from tfautocompress.schemes import zero_group_shares

    kernel = np.ones((1, 1, 4, 5), np.float32)  # 4 columns x 5 filters
    kernel[..., 0] = 0          # one zero filter
    kernel[0, 0, 1, :] = 0      # one zero column
    assert zero_group_shares(kernel) == {"filter": 0.2, "column": 0.25}
