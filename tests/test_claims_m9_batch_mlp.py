"""M9 and Q1 (replicate/claims/m9_batch_mlp.py) on synthetic results: M9 on both sides of its
threshold, its premise (>= 10 episodes at the largest batch in every seed) both ways, its bootstrap
interval inside [-1, 1], too few seeds or batch sizes; Q1's full-batch answer with its exact Poisson
interval (never below 0), its premise (the minibatch arms >= 10 episodes per seed) both ways."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from claims_synthetic import counted_spikes, loss_frame, smooth
from conftest import tidy

from replicate import spikes
from replicate.claims import CLAIMS, _load_modules
from replicate.claims.m9_batch_mlp import m9, q1
from replicate.stats import rate_interval

_load_modules()


def test_the_judges_are_registered_with_their_experiment():
    assert CLAIMS["M9"].experiment == CLAIMS["Q1"].experiment == "m9_batch_mlp"
    assert CLAIMS["M9"].judge is m9 and CLAIMS["Q1"].judge is q1
    assert CLAIMS["M9"].spikes and CLAIMS["Q1"].spikes


BATCHES = (16, 32, 64, 128, None)  # None: the full batch, counted as data.n = 256


def _m9_runs(rising: bool, seeds=(0, 1, 2), batches=BATCHES, counts=None):
    """Episodes per batch size 10, 12, ... (rising) or the reverse; ``counts``: {seed: per batch}."""
    series, seed_of, batch_of = {}, {}, {}
    for seed in seeds:
        for i, b in enumerate(batches):
            k = i if rising else len(batches) - 1 - i
            n = counts[seed][k] if counts and seed in counts else 10 + 2 * k
            rid = f"m9-{seed}-{b}"
            series[rid] = {"loss": counted_spikes(seed, n)}
            seed_of[rid], batch_of[rid] = seed, b
    return tidy(series, seed_of), runs_frame(series, seed_of, batch_of)


def runs_frame(series, seed_of, batch_of):
    return pd.DataFrame([{"run_id": r, "seed": seed_of[r], "status": "done", "data.batch_size": batch_of[r],
                          "data.n": 256} for r in series])


def test_m9_on_both_sides_of_its_threshold():
    yes = m9(*_m9_runs(rising=True))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(1.0) and yes.seeds == [0, 1, 2]
    assert yes.premise_held and "R3 spike episodes at the largest batch (256): 18/18/18" in yes.premise
    no = m9(*_m9_runs(rising=False))
    assert no.verdict == "not replicated" and no.value == pytest.approx(-1.0) and no.premise_held


def test_m9_premise_one_seed_below_ten_at_the_largest_batch_is_out_of_regime():
    j = m9(*_m9_runs(rising=True, counts={1: [2, 4, 6, 8, 9]}))  # still rising in seed 1, 9 at the top
    assert j.verdict == "out of regime" and not j.premise_held
    assert "by its threshold: replicated" in j.detail and "18/9/18" in j.premise


def test_m9_under_each_definition_counts_that_definitions_episodes():
    for d in ("R10", "Z6"):
        j = m9(*_m9_runs(rising=True), definition=d)
        assert j.verdict == "replicated" and j.premise.startswith(f"{d} spike episodes")
    j = m9(*_m9_runs(rising=True), definition="R100")  # 30x spikes: none under R100, premise missed
    assert j.verdict == "out of regime" and "0/0/0" in j.premise


def test_m9_interval_is_a_bootstrap_over_seeds_inside_minus_one_one():
    counts = {0: [10, 12, 14, 16, 18], 1: [18, 16, 14, 12, 10], 2: [10, 12, 14, 16, 18]}  # rho 1, -1, 1
    j = m9(*_m9_runs(rising=True, counts=counts))
    assert -1.0 <= j.ci_low <= j.value <= j.ci_high <= 1.0
    assert j.value == pytest.approx(1 / 3) and j.ci_low == pytest.approx(-1.0) and j.ci_high == pytest.approx(1.0)
    assert j.verdict == "not replicated"
    one = m9(*_m9_runs(rising=True, seeds=(0,)))
    assert one.verdict == "inconclusive"
    assert all(math.isnan(x) or -1.0 <= x <= 1.0 for x in (one.ci_low, one.ci_high))


def test_m9_inconclusive_with_too_few_seeds_or_batch_sizes():
    assert m9(*_m9_runs(rising=True, seeds=(0, 1))).verdict == "inconclusive"
    assert m9(*_m9_runs(rising=True, batches=(16, 64, None))).verdict == "inconclusive"


# ------------------------------------------------------------------------------------------- Q1


def _q1_runs(full_spikes: int, mini_spikes: int = 12, seeds=(0, 1, 2), few: int | None = None):
    """Batches 16 and 64 with ``mini_spikes`` episodes each (seed ``few``: 4 each, 8 in all) and the
    full batch with ``full_spikes``, 3000 steps."""
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        for batch in (16, 64, None):
            rid = f"{seed}-{batch}"
            k = full_spikes if batch is None else (4 if seed == few else mini_spikes)
            series[rid] = counted_spikes(seed, k) if k else smooth(3000, seed=seed)
            seed_of[rid] = seed
            rows.append({"run_id": rid, "seed": seed, "data.batch_size": batch, "data.n": 256})
    return loss_frame(series, seed_of), pd.DataFrame(rows)


def test_q1_answers_with_the_full_batch_rate_pooled_with_an_exact_poisson_interval():
    a = q1(*_q1_runs(full_spikes=15))
    assert a.verdict == "answered" and a.detail.startswith("yes") and a.premise_held
    assert a.value == pytest.approx(5.0)  # 15 episodes in 3000 steps, every seed
    _, lo, hi = rate_interval([15, 15, 15], [3000, 3000, 3000])
    assert (a.ci_low, a.ci_high) == pytest.approx((lo, hi)) and 0 < a.ci_low < a.value < a.ci_high
    assert "R3 spike episodes in the minibatch arms (batch 16, 64), summed per seed: 24/24/24" in a.premise


def test_q1_full_batch_without_spikes_is_an_answer_with_an_interval_from_zero():
    a = q1(*_q1_runs(full_spikes=0))
    assert a.verdict == "answered" and a.detail.startswith("no spike") and a.premise_held
    assert a.value == 0.0 and a.ci_low == 0.0 and a.ci_high > 0


def test_q1_premise_one_seed_with_too_few_minibatch_episodes_is_out_of_regime():
    a = q1(*_q1_runs(full_spikes=15, few=2))
    assert a.verdict == "out of regime" and not a.premise_held
    assert "by its threshold: answered" in a.detail and "24/24/8" in a.premise


def test_q1_needs_three_seeds_and_one_seed_keeps_its_interval_in_range():
    assert q1(*_q1_runs(full_spikes=15, seeds=(0, 1))).verdict == "inconclusive"
    one = q1(*_q1_runs(full_spikes=0, seeds=(0,)))
    assert one.verdict == "inconclusive" and one.ci_low == 0.0 and one.ci_high > 0


def test_q1_by_definition():
    for d in spikes.DEFINITIONS:
        a = q1(*_q1_runs(full_spikes=15), definition=d)
        assert a.premise.startswith(f"{d} spike episodes") and a.ci_low >= 0
