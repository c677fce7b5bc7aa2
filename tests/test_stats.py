"""replicate.stats: the intervals (t, bootstrap, Wilson, exact Poisson, pooled rates), mean_interval, Spearman, AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from replicate.stats import (auroc, bootstrap_interval, count_of_rate, mean_interval, poisson_interval,
                             rate_interval, spearman, t_interval, wilson_interval)


def test_t_interval_known_value_and_too_few_values():
    lo, hi = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975; 2) = 4.3027
    assert (lo, hi) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), rel=1e-6)
    assert t_interval([1.0, None, float("nan"), 3.0]) == t_interval([1.0, 3.0])  # missing values left out
    assert all(math.isnan(x) for x in t_interval([1.0]))
    assert t_interval([1.0, 2.0, 3.0], conf=0.5)[1] < hi


def test_mean_interval_clips_to_bounds_and_takes_a_mapping():
    value, lo, hi = mean_interval({0: 0.0, 1: 0.1, 2: 0.05}, bounds=(0.0, 1.0))
    assert value == pytest.approx(0.05) and lo == 0.0 and hi == pytest.approx(t_interval([0, 0.1, 0.05])[1])
    assert mean_interval([0.0, 0.1, 0.05]) == (pytest.approx(0.05), *t_interval([0, 0.1, 0.05]))  # unbounded
    value, lo, hi = mean_interval([float("nan")])
    assert math.isnan(value) and math.isnan(lo) and math.isnan(hi)


def test_bootstrap_interval_is_seeded_and_inside_the_range():
    x = [0.0, 1.0, 1.0]
    assert bootstrap_interval(x) == bootstrap_interval(x)
    lo, hi = bootstrap_interval(x)
    assert 0.0 <= lo <= hi <= 1.0
    assert all(math.isnan(v) for v in bootstrap_interval([1.0]))


def test_wilson_interval_known_values():
    assert wilson_interval(3, 3) == pytest.approx((0.4385, 1.0), abs=1e-4)  # 3 of 3 cannot show >= 80%
    assert wilson_interval(1, 3) == pytest.approx((0.0615, 0.7923), abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_poisson_interval_known_values_and_never_below_zero():
    assert poisson_interval(0) == pytest.approx((0.0, 3.689), abs=1e-3)  # -ln(0.025)
    assert poisson_interval(0)[0] == 0.0
    assert poisson_interval(1) == pytest.approx((0.0253, 5.5716), abs=1e-4)
    assert poisson_interval(10) == pytest.approx((4.7954, 18.3904), abs=1e-4)
    assert poisson_interval(10, exposure=2.0) == pytest.approx((4.7954 / 2, 18.3904 / 2), abs=1e-4)  # a rate
    for k in range(0, 60):
        lo, hi = poisson_interval(k, exposure=3.5)
        assert 0.0 <= lo <= k / 3.5 <= hi
    assert poisson_interval(5, conf=0.99)[1] > poisson_interval(5)[1]
    assert all(math.isnan(v) for v in poisson_interval(3, exposure=0.0))


def test_poisson_interval_covers_at_its_level():
    """Exact (Garwood) intervals are conservative: coverage >= 95% at every mean."""
    for mu in (0.5, 2.0, 7.0, 20.0):
        ks = np.arange(0, 200)
        pmf = sps.poisson.pmf(ks, mu)
        covered = sum(p for k, p in zip(ks, pmf) if poisson_interval(int(k))[0] <= mu <= poisson_interval(int(k))[1])
        assert covered >= 0.95


def test_rate_interval_pools_counts_and_exposures():
    # 2 + 3 + 1 = 6 spikes in 3 x 1000 steps: 2 per 1k, the Garwood interval of 6 over 3 (thousand steps)
    rate, lo, hi = rate_interval([2, 3, 1], [1000, 1000, 1000])
    assert rate == pytest.approx(2.0)
    assert (lo, hi) == pytest.approx(tuple(x / 3 for x in poisson_interval(6)))
    assert (lo, hi) == pytest.approx((2.2019 / 3, 13.0594 / 3), abs=1e-4)
    # unequal exposures: the pooled rate, not the mean of the seeds' rates (a seed that ran 200 steps)
    rate, lo, hi = rate_interval([2, 1], [1000, 200], per=1000)
    assert rate == pytest.approx(3 / 1.2) and rate != pytest.approx((2 + 5) / 2)
    assert (lo, hi) == pytest.approx(tuple(x / 1.2 for x in poisson_interval(3)))
    assert rate_interval([2, 3], [100, 100], per=100)[0] == pytest.approx(2.5)  # another unit
    assert rate_interval([5], [1000], conf=0.99)[2] > rate_interval([5], [1000])[2]


def test_rate_interval_at_zero_counts_starts_at_zero_and_shrinks_with_exposure():
    rate, lo, hi = rate_interval([0, 0, 0], [1000, 1000, 1000])
    assert rate == 0.0 and lo == 0.0 and hi == pytest.approx(3.689 / 3, abs=1e-3)  # -ln(0.025) per 3k steps
    assert rate_interval([0], [10_000])[2] < hi  # more steps, a tighter bound


def test_rate_interval_with_one_seed_is_that_seeds_exact_interval():
    rate, lo, hi = rate_interval([7], [2000])
    assert rate == pytest.approx(3.5) and (lo, hi) == pytest.approx(tuple(x / 2 for x in poisson_interval(7)))
    assert 0 < lo < rate < hi  # one seed still has an interval (unlike one over seeds)


def test_rate_interval_with_a_run_of_zero_steps():
    # a run with no finite step adds nothing; all runs empty: no rate, no interval
    assert rate_interval([4, 0], [1000, 0]) == rate_interval([4], [1000])
    assert all(math.isnan(v) for v in rate_interval([0, 0], [0, 0]))
    assert all(math.isnan(v) for v in rate_interval([], []))
    with pytest.raises(ValueError, match="zero steps"):
        rate_interval([1], [0])


def test_rate_interval_with_all_equal_seeds_is_not_zero_width():
    """Equal rates over seeds give a t interval of width 0; the pooled count still has an interval."""
    assert mean_interval([1.0, 1.0, 1.0], bounds=(0, math.inf)) == (1.0, 1.0, 1.0)
    rate, lo, hi = rate_interval([1, 1, 1], [1000, 1000, 1000])
    assert rate == pytest.approx(1.0) and 0 < lo < 1.0 < hi
    assert (lo, hi) == pytest.approx((0.6187 / 3, 8.7673 / 3), abs=1e-4)


def test_rate_interval_refuses_what_is_not_a_count():
    for counts, steps in (([1.5], [1000]), ([-1], [1000]), ([float("nan")], [1000]), ([1], [float("inf")]),
                          ([1], [-5]), ([1, 2], [1000])):
        with pytest.raises(ValueError):
            rate_interval(counts, steps)


def test_rate_interval_is_inside_its_range_for_every_pooled_count():
    for k in range(0, 80):
        rate, lo, hi = rate_interval([k, 0, 0], [900, 1000, 1100])
        assert 0.0 <= lo <= rate <= hi < math.inf


def test_count_of_rate_recovers_the_integer_exactly():
    for n in (1, 7, 333, 999, 1000, 4096, 123457):
        for k in range(0, 60):
            assert count_of_rate(k * (1000 / n), n) == k  # as spikes.rates computes a rate
    assert count_of_rate(float("nan"), 0) == 0  # no steps: no spikes (spikes.rates gives NaN there)
    with pytest.raises(ValueError):
        count_of_rate(2.5, 1000)  # 0.0025 spikes: not a count
    with pytest.raises(ValueError):
        count_of_rate(float("nan"), 1000)


def test_bootstrap_of_three_seeds_is_their_min_to_max():
    """Why the leaderboard does not use it for the seeds' means: with 3 seeds the 95% percentile
    bootstrap is the seeds' range (each extreme is an atom of 1/27 > 2.5%)."""
    assert bootstrap_interval([0.2, 1.0, 7.0]) == pytest.approx((0.2, 7.0), rel=1e-12)


def test_spearman_is_zero_for_a_flat_series_and_nan_for_one_point():
    assert spearman([1, 2, 3, 4], [1, 3, 2, 5]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [2, 2, 2]) == 0.0
    assert math.isnan(spearman([1], [1]))


def test_auroc_is_the_mann_whitney_u_over_the_pairs():
    assert auroc([3, 4, 5, 0, 1], [1, 1, 1, 0, 0]) == 1.0
    assert auroc([0, 1, 5, 6], [1, 1, 0, 0]) == 0.0
    assert auroc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5  # ties count one half
    assert math.isnan(auroc([1, 2, 3], [0, 0, 0])) and math.isnan(auroc([], []))
    rng = np.random.default_rng(0)
    score, label = rng.normal(size=300).round(1), rng.random(300) < 0.3
    score[label] += 0.5
    u = sps.mannwhitneyu(score[label], score[~label]).statistic
    assert auroc(score, label) == pytest.approx(u / (label.sum() * (~label).sum()))
    assert auroc([np.nan, 2, 1], [0, 1, 0]) == 1.0  # a missing score is left out
