"""replicate.stats: the intervals (t, bootstrap, Wilson, exact Poisson), mean_interval, Spearman, AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from replicate.stats import (auroc, bootstrap_interval, mean_interval, poisson_interval, spearman, t_interval,
                             wilson_interval)


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
