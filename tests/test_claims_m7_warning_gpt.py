"""M7 (replicate/claims/m7_warning_gpt.py) on synthetic results: both sides of each threshold, too
few seeds; its spike labels and bimodality onset; and a tiny end-to-end run of the experiment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from claims_synthetic import SPIKES_10, inject_at, premise_starts
from conftest import tidy

from replicate import train
from replicate.claims import CLAIMS, _load_modules, evaluate
from replicate.claims.m7_warning_gpt import bimodality_onset, m7, spike_labels

_load_modules()


def test_the_judge_is_registered_with_its_experiment():
    assert CLAIMS["M7"].judge is m7 and CLAIMS["M7"].experiment == "m7_warning_gpt"


def test_spike_labels_mark_the_k_steps_before_a_rise_and_exclude_the_spike():
    ep = pd.DataFrame({"rise_start": [10], "end": [12]})
    label, usable = spike_labels(np.arange(20), ep, k=3)
    assert list(np.flatnonzero(label)) == [7, 8, 9]
    assert list(np.flatnonzero(~usable)) == [10, 11, 12]


def test_bimodality_onset_finds_the_half_way_crossing_and_none_for_a_flat_score():
    x = pd.Series(np.full(60, 0.01))
    x.iloc[37:43] = 0.3
    assert bimodality_onset(x, rise_start=40, peak=40, k=5) == 37  # a lead of 3
    assert bimodality_onset(pd.Series(np.full(60, 0.01)), rise_start=40, peak=40, k=5) is None


N = 1200


SPIKES = SPIKES_10  # 11 isolated spikes (the premise: >= 10 per seed): the loss jumps 30x for 3 steps at each


def _m7_runs(kind: str, seeds=(0, 1, 2), few: int | None = None):
    """kind 'lead': the embedding's fraction |r| > 0.9 rises 4 steps before each loss rise and
    stays up through the spike; 'after': it rises one step after the rise starts; 'same': a small bump
    in the 5 steps before, its half-way rise at the rise's own step; 'none': flat. ``few``: that
    seed spikes 9 times only (one short of the premise)."""
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        loss = 1e-3 * np.exp(0.02 * rng.standard_normal(N))
        bim = 0.01 + 0.002 * rng.random(N)
        gnorm = 1.0 + 0.1 * rng.random(N)
        for t in premise_starts(seed, few):
            loss[t:t + 3] *= 30.0
            gnorm[t:t + 3] *= 10.0
            if kind == "lead":
                bim[t - 4:t + 3] = 0.3
            elif kind == "after":
                bim[t + 1:t + 6] = 0.3
            elif kind == "same":  # a small bump before the rise (enough for the AUROC), the jump with it
                bim[t - 5:t] = 0.05
                bim[t:t + 3] = 0.3
        rid = f"m7-{seed}"
        series[rid] = {"loss": loss, "grad_norm": gnorm, "r_frac_sign/embedding": bim}
        seed_of[rid] = seed
        rows.append({"run_id": rid, "seed": seed, "status": "done"})
    return tidy(series, seed_of), pd.DataFrame(rows)


def test_m7_replicates_when_bimodality_rises_before_each_spike():
    j = m7(*_m7_runs("lead"))
    assert j.verdict == "replicated", j.detail
    assert j.value == pytest.approx(0.9, abs=0.03)  # 4 of the K = 5 positive steps score above every negative
    assert "33 spikes: lead 33" in j.detail and "median per seed: 0: 4.0" in j.detail
    assert j.premise_held and "R3 spike episodes per seed (0/1/2): 11/11/11" in j.premise
    assert "gradient-norm baseline AUROC" in j.detail


def test_m7_not_replicated_when_bimodality_only_follows_the_loss_rise_or_is_flat():
    after = m7(*_m7_runs("after"))
    assert after.verdict == "not replicated" and abs(after.value - 0.5) < 0.1, after.detail
    assert "lead 0, same step 0, after 33" in after.detail
    same = m7(*_m7_runs("same"))  # the score separates the steps before spikes, but its rise does not lead
    assert same.verdict == "not replicated" and same.value > 0.95, same.detail
    assert "AUROC >= 0.7: yes" in same.detail and "lead 0, same step 33, after 0" in same.detail
    flat = m7(*_m7_runs("none"))
    assert flat.verdict == "not replicated" and abs(flat.value - 0.5) < 0.1, flat.detail


def test_m7_premise_ten_spikes_per_seed_injected_batches_not_counted():
    """Held in every seed: the verdict stands (both sides); one seed with 9 spikes, or 2 of a seed's 11
    on injected batches: out of regime, the threshold's verdict in the detail; 1 injected leaves 10."""
    assert m7(*_m7_runs("lead")).premise_held
    j = m7(*_m7_runs("lead", few=1))
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: replicated" in j.detail and "11/9/11" in j.premise
    j = m7(*_m7_runs("after", few=2))
    assert j.verdict == "out of regime" and "by its threshold: not replicated" in j.detail
    metrics, runs = _m7_runs("lead")
    j = m7(metrics, inject_at(runs, {0: [SPIKES[0], SPIKES[5]]}))
    assert j.verdict == "out of regime" and "9/11/11" in j.premise and "injected batches not counted" in j.premise
    j = m7(metrics, inject_at(runs, {0: [SPIKES[0]], 2: [SPIKES[3] + 1]}))  # the second: not an episode's start
    assert j.verdict == "replicated" and "10/11/11" in j.premise


def test_m7_under_every_definition():
    from replicate.claims.registry import judge
    by = judge(CLAIMS["M7"], *_m7_runs("lead"))
    assert set(by) == {"R3", "R10", "R100", "Z6"} and all(d in by[d].premise for d in by)
    assert by["R3"].verdict == by["R10"].verdict == "replicated"  # 30x jumps: episodes under R3 and R10
    # none is 100x: no episode, no AUROC (inconclusive, no seed judged), the premise not held
    assert by["R100"].premise_held is False and "0/0/0" in by["R100"].premise


def test_m7_inconclusive_with_too_few_seeds():
    assert m7(*_m7_runs("lead", seeds=(0, 1))).verdict == "inconclusive"


def test_m7_end_to_end_on_a_tiny_run(cfg_factory, tmp_path):
    root = tmp_path / "r"
    cfg = cfg_factory("experiment=m7_warning_gpt", "seed=0", "train.steps=30", "threads=1", results_dir=root)
    assert train.run(cfg)["status"] == "done"
    (v,) = evaluate(root, ids=["M7"])
    assert v.verdict == "inconclusive", v.detail  # one seed and no spike in 30 steps: nothing to judge
