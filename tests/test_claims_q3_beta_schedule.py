"""Q3 (replicate/claims/q3_beta_schedule.py) on synthetic results: the numbers it answers with (spike
rates pooled over seeds, exact Poisson interval, never below 0), its premise (the constant beta2
0.999 arm >= 10 episodes in every seed) both ways, and too few seeds or arms -> inconclusive; and
one tiny end-to-end sweep of the experiment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from replicate.claims import CLAIMS, _load_modules, evaluate
from replicate.claims.q3_beta_schedule import arm_of, q3
from replicate.stats import rate_interval

from conftest import cli

_load_modules()
N = 2000
ARMS = {"b2=0.999": ([0.999], None, 20, 1e-2, 1e-6), "b2=0.95": ([0.95], None, 2, 1e-3, 4e-5),
        "scheduled": ([0.999], [0.999, 0.95], 6, 5e-3, 3e-5)}  # b2, schedule, spikes, early, final loss


def frames(seeds=(0, 1, 2), arms=ARMS, few: int | None = None):
    """``few``: that seed's constant beta2 0.999 arm has 9 spikes, one short of the premise."""
    tidy, runs = [], []
    for name, (b2, sched, n_spikes, early, final) in arms.items():
        for seed in seeds:
            rid = f"{name}-{seed}"
            loss = np.geomspace(early, final, N) * np.exp(0.01 * np.random.default_rng(seed).standard_normal(N))
            loss[:EARLY_END] = early
            k = 9 if (seed == few and name == "b2=0.999") else n_spikes
            for t in np.linspace(1000, 1400, k).astype(int):  # isolated 50x spikes, one step each
                loss[t] *= 50
            tidy.append(pd.DataFrame({"run_id": rid, "experiment": "q3_beta_schedule", "seed": seed,
                                      "status": "done", "step": np.arange(N), "metric": "loss", "value": loss}))
            runs.append({"run_id": rid, "seed": seed, "status": "done", "optimizer.b2": b2[0],
                         "mitigation.beta_schedule.b2": sched if sched is not None else np.nan})
    return pd.concat(tidy, ignore_index=True), pd.DataFrame(runs)


EARLY_END = 500


def test_q3_answers_with_the_scheduled_arm_rate_and_every_arm_beside_it():
    j = q3(*frames())
    assert j.verdict == "answered" and j.seeds == [0, 1, 2]
    assert j.value == pytest.approx(6 / N * 1000)  # 6 spikes in 2000 steps, every seed
    _, lo, hi = rate_interval([6, 6, 6], [N, N, N])  # pooled over seeds, exact Poisson
    assert (j.ci_low, j.ci_high) == pytest.approx((lo, hi)) and 0 < j.ci_low < j.value < j.ci_high
    d = j.detail
    assert "R3 episodes 3.0 vs 10.0 / 1.0" in d and "height > 10x 3.0 vs 10.0 / 1.0" in d
    assert j.premise_held and j.premise == ("R3 spike episodes in the constant beta2 0.999 arm: 20/20/20 "
                                            "(seeds [0, 1, 2]; premise: >= 10 per seed)")
    assert "early loss 5.00e-03 vs 1.00e-02 / 1.00e-03" in d  # the medians over steps 200-499
    assert "b2=0.999 (3 seeds)" in d and "> 100x 0.0" in d


def test_q3_premise_one_seed_below_ten_in_the_constant_0999_arm_is_out_of_regime():
    j = q3(*frames(few=1))
    assert j.verdict == "out of regime" and not j.premise_held
    assert "by its threshold: answered" in j.detail and "20/9/20" in j.premise


def test_q3_no_spike_in_every_seed_gives_an_interval_from_zero():
    arms = {**ARMS, "scheduled": (*ARMS["scheduled"][:2], 0, *ARMS["scheduled"][3:])}
    j = q3(*frames(arms=arms))
    assert j.verdict == "answered" and j.value == 0.0 and j.ci_low == 0.0 and j.ci_high > 0
    one = q3(*frames(seeds=(0,), arms=arms))
    assert one.verdict == "inconclusive" and one.ci_low == 0.0 and one.ci_high > 0


def test_q3_under_each_definition():
    j = q3(*frames(), definition="R10")
    assert j.verdict == "answered" and j.premise.startswith("R10 spike episodes") and j.ci_low >= 0
    # Z6: spikes 21 steps apart inflate the 128-step std, so most are not 6 sigma: premise missed
    j = q3(*frames(), definition="Z6")
    assert j.premise.startswith("Z6 spike episodes") and j.verdict == "out of regime" and j.ci_low >= 0
    j = q3(*frames(), definition="R100")  # 50x spikes: none under R100, the premise is missed
    assert j.verdict == "out of regime" and j.value == 0.0 and j.ci_low == 0.0


def test_q3_inconclusive_with_too_few_seeds_or_a_missing_arm():
    assert q3(*frames(seeds=(0, 1))).verdict == "inconclusive"
    two = {k: v for k, v in ARMS.items() if k != "b2=0.95"}
    assert q3(*frames(arms=two)).verdict == "inconclusive"


def test_arms_come_from_the_config():
    assert arm_of(pd.Series({"optimizer.b2": 0.95, "mitigation.beta_schedule.b2": np.nan})) == "b2=0.95"
    assert arm_of(pd.Series({"optimizer.b2": 0.999, "mitigation.beta_schedule.b2": [0.999, 0.95]})) == "scheduled"
    assert CLAIMS["Q3"].experiment == "q3_beta_schedule" and CLAIMS["Q3"].judge is q3 and CLAIMS["Q3"].spikes


def test_q3_end_to_end_tiny_sweep(tmp_path):
    """The experiment's own sweep (3 arms x 3 seeds), 100 steps: a valid answer from real runs."""
    out = cli("-m", "experiment=q3_beta_schedule", "train.steps=100", "threads=1", "progress=false",
              f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    (v,) = evaluate(tmp_path, ids=["Q3"])
    # 100 steps are too few for 10 episodes in the 0.999 arm: out of regime unless it spiked that much
    assert v.verdict in ("answered", "out of regime") and v.seeds == [0, 1, 2]
    assert v.value is not None and v.value >= 0 and v.ci_low >= 0 and "constant beta2 0.999 arm" in v.premise
    assert "scheduled (3 seeds)" in v.detail and "b2=0.95 (3 seeds)" in v.detail
