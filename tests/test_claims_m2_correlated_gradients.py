"""M2 (replicate/claims/m2_correlated_gradients.py) on synthetic results on both sides of its
thresholds and with too few seeds."""

from __future__ import annotations

import pytest
from claims_synthetic import frames

from replicate.claims.m2_correlated_gradients import m2

SEEDS = (0, 1, 2)


def _m2_runs(fracs, seeds=SEEDS):
    out = []
    for seed in seeds:
        for snr, frac in zip((0.3, 1, 3, 10), fracs):
            out.append((f"run{seed}-{snr}", seed, {"data.snr": snr},
                        {t: {"r_frac_sign/theta": frac + 0.001 * seed, "r_abs_mean/theta": 0.3 + 0.7 * frac}
                         for t in (0, 100, 200, 300)}))
    return frames(out)


def test_m2_on_both_sides_and_with_too_few_seeds():
    yes = m2(*_m2_runs([0.002, 0.3, 0.95, 1.0]))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(0.951)
    low = m2(*_m2_runs([0.002, 0.11, 0.76, 1.0]))  # rises, but below 0.9 at SNR 3
    assert low.verdict == "not replicated" and low.ci_high < 0.9
    assert m2(*_m2_runs([0.5, 0.3, 0.95, 1.0])).verdict == "not replicated"  # does not rise monotonically
    assert m2(*_m2_runs([0.002, 0.3, 0.95, 1.0], seeds=(0, 1))).verdict == "inconclusive"


def test_m2_interval_is_wilson_on_the_counts_pooled_over_seeds():
    from claims_synthetic import frames as make

    from replicate.stats import wilson_interval

    out = [(f"r{seed}-{snr}", seed, {"data.snr": snr, "data.n": 1000},
            {300: {"r_frac_sign/theta": f, "r_abs_mean/theta": 0.3 + 0.7 * f}})
           for seed, fs in zip(SEEDS, ([0.0, 0.1, 0.75, 1.0], [0.0, 0.1, 0.76, 1.0], [0.0, 0.1, 0.77, 1.0]))
           for snr, f in zip((0.3, 1, 3, 10), fs)]
    j = m2(*make(out))
    assert j.value == pytest.approx(0.76) and (j.ci_low, j.ci_high) == pytest.approx(wilson_interval(2280, 3000))
