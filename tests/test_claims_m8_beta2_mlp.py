"""M8 (replicate/claims/m8_beta2_mlp.py) on synthetic results on both sides of its threshold."""

from __future__ import annotations

import pandas as pd
from claims_synthetic import loss_frame as tidy, spiky

from replicate.claims.m8_beta2_mlp import m8


def _m8_runs(increasing: bool, seeds=(0, 1, 2)):
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        for i, b2 in enumerate((0.9, 0.95, 0.99, 0.999)):
            rid = f"{seed}-{b2}"
            every = [1000, 400, 200, 100][i] if increasing else [60, 80, 100, 150][i]
            series[rid], seed_of[rid] = spiky(every=every, seed=seed), seed
            rows.append({"run_id": rid, "seed": seed, "optimizer.b2": b2})
    return tidy(series, seed_of), pd.DataFrame(rows)


def test_m8_verdict_on_both_sides():
    yes = m8(*_m8_runs(increasing=True))
    assert yes.verdict == "replicated" and yes.value == 1.0 and yes.seeds == [0, 1, 2]
    assert m8(*_m8_runs(increasing=False)).verdict == "not replicated"
    assert m8(*_m8_runs(increasing=True, seeds=(0,))).verdict == "inconclusive"


def test_m8_premise():
    metrics, runs = _m8_runs(increasing=True)
    assert m8(metrics, runs).premise_held
    # seed 2's beta2 0.999 arm spikes only twice: out of regime, the threshold's verdict kept
    keep = ~((metrics["run_id"] == "2-0.999") & (metrics["step"] > 400))
    j = m8(metrics[keep], runs)
    assert j.verdict == "out of regime" and not j.premise_held and "replicated" in j.detail
