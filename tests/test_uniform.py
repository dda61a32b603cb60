"""Manual baselines: uniform and deeper-more schedules reach their targets (model-free)."""
import pytest

from tfautocompress import policy as P, space as space_lib
from tfautocompress.search import uniform
from tfautocompress.search.oracle import InfeasibleTargetError


def _space(scheme_set="filter"):
    specs = (space_lib.LayerSpec("c1", "conv2d", 16, 27, 1024),
             space_lib.LayerSpec("c2", "conv2d", 32, 144, 256, 16, ((("c1",), 16, 1),)),
             space_lib.LayerSpec("c3", "conv2d", 64, 288, 64, 32, ((("c2",), 32, 1),)))
    return space_lib.PolicySpace(specs, scheme_set=scheme_set, fixed_params=100, fixed_macs=1000)


@pytest.mark.parametrize("scheme_set", ["filter", "filter+column"])
@pytest.mark.parametrize("objective", ["params", "macs"])
@pytest.mark.parametrize("target", [1.5, 3.0, 6.0])
def test_uniform_meets_target_with_one_fraction(scheme_set, objective, target):
    policy = uniform.uniform_policy(_space(scheme_set), target, objective)
    fractions = {a.fraction for a in policy.actions.values()}
    assert len(fractions) == 1
    assert policy.compression_ratio(objective) >= target
    # the smallest such fraction: 2 % less misses the target
    less = {n: P.LayerAction(a.fraction * 0.98, a.filter_share) for n, a in policy.actions.items()}
    assert policy.space.compression_ratio(less, objective) < target


@pytest.mark.parametrize("share", [None, 0.3, 1.0])
def test_uniform_combined_has_one_split_in_every_layer(share):
    policy = uniform.uniform_policy(_space("filter+column"), 4.0, "params", filter_share=share)
    assert {a.filter_share for a in policy.actions.values()} == {0.5 if share is None else share}
    assert len({a.fraction for a in policy.actions.values()}) == 1
    assert set(policy.actions) == set(policy.space.names)
    assert policy.compression_ratio("params") >= 4.0
    if share != 1.0:  # the policy prunes columns too
        assert all(s.get_config()["config"]["column_fraction"] > 0
                   for s in policy.schemes().values())


@pytest.mark.parametrize("objective", ["params", "macs"])
def test_deeper_prunes_deeper_layers_more_and_meets_target(objective):
    policy = uniform.deeper_policy(_space(), 3.0, objective)
    fractions = [policy.actions[n].fraction for n in policy.space.names]
    assert fractions == sorted(fractions) and fractions[0] < fractions[-1]
    assert fractions[0] == pytest.approx(0.5 * fractions[-1])
    assert policy.compression_ratio(objective) >= 3.0


def test_errors_name_what_is_accepted():
    with pytest.raises(InfeasibleTargetError, match="out of reach"):
        uniform.uniform_policy(_space(), 1e6, "params")
    with pytest.raises(ValueError, match="weights must hold 3"):
        uniform.scaled_policy(_space(), [1.0], 2.0)
    with pytest.raises(ValueError, match="shallow_weight"):
        uniform.deeper_policy(_space(), 2.0, shallow_weight=2.0)


def test_smallest_meeting_is_bounded_and_monotone():
    assert uniform.smallest_meeting(lambda x: x >= 0.3, 0.0, 1.0) == pytest.approx(0.3)
    assert uniform.smallest_meeting(lambda x: x >= 2.0, 0.0, 1.0) is None
    assert uniform.smallest_meeting(lambda x: True, 0.25, 1.0) == 0.25
