"""The regression checker's rules: exact facts, and a timing verdict that needs significance, a
minimum effect, and the slowdown in every replicate (fresh pair of processes)."""
import random

from harness.evidence import facts
from harness.evidence.regress import judge


def _ratios(centre, spread=0.03, n=5, seed=0):
    rng = random.Random(seed)
    return [centre * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def _replicates(*centres, spread=0.03):
    return [_ratios(centre, spread, seed=i) for i, centre in enumerate(centres)]


def test_equal_timings_are_unchanged():
    assert judge(_replicates(1.0, 1.0), 0.10)["verdict"] == "unchanged"


def test_a_clear_slowdown_is_slower_and_a_speedup_faster():
    assert judge(_replicates(1.3, 1.3), 0.10)["verdict"] == "slower"
    assert judge(_replicates(0.7, 0.7), 0.10)["verdict"] == "faster"


def test_a_significant_but_small_slowdown_is_below_the_minimum_effect():
    result = judge(_replicates(1.04, 1.04, spread=0.01), 0.10)
    assert result["ci_low"] > 1 and result["verdict"] == "unchanged"


def test_noise_that_straddles_one_is_not_a_regression():
    assert judge([[0.8, 1.3, 0.9, 1.25], [0.85, 1.2, 0.95, 1.15]], 0.10)["verdict"] == "unchanged"


def test_a_slowdown_in_one_pair_of_processes_only_is_not_a_regression():
    # One pair 30% apart for its whole life (a placement artefact), the next pair equal: the pooled
    # median can clear the bar, the replicate rule does not.
    result = judge(_replicates(1.3, 1.3, 1.0), 0.10)
    assert result["ci_low"] > 1 and result["ratio"] > 1.1
    assert result["verdict"] == "unchanged"
    assert judge(_replicates(1.3, 1.3, 1.2), 0.10)["verdict"] == "slower"


def test_fact_differences_name_the_metric_and_both_values():
    before = {"unet3d": {"macs": 10, "params_total": 5}}
    after = {"unet3d": {"macs": 12, "params_total": 5}}
    assert facts.differences(before, after) == [{"model": "unet3d", "metric": "macs", "before": 10, "after": 12}]
    assert facts.differences(before, before) == []
