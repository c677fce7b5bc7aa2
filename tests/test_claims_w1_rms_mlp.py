"""W1 (replicate/claims/w1_rms_mlp.py) on synthetic results: both sides of each threshold, and too
few seeds; the RMS_t onset (``frames.onset_crossing``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from claims_synthetic import N, SPIKES_10 as SPIKES, inject_at, premise_starts, runs_frame, spiky_loss
from conftest import tidy

from replicate.claims import CLAIMS, _load_modules
from replicate.claims.frames import onset_crossing as _onset_crossing
from replicate.claims.w1_rms_mlp import w1

_load_modules()


def test_the_judge_is_registered_with_its_experiment():
    assert CLAIMS["W1"].experiment == "w1_rms_mlp" and CLAIMS["W1"].judge is w1


def _w1_runs(kind: str, seeds=(0, 1, 2), few: int | None = None):
    """kind: 'lead' (layer0 crosses RMS_t = 1 three steps before each rise, layer1 two), 'lag' (both
    cross one step after the rise starts), 'deep_first' (layer1 three steps before, layer0 two).
    11 loss spikes per seed (the premise: >= 10), 9 in the seed ``few``."""
    series, seed_of = {}, {}
    for seed in seeds:
        rms = {"layer0": np.full(N, 0.05), "layer1": np.full(N, 0.05)}
        starts = premise_starts(seed, few)
        for t in starts:
            first, second = ("layer1", "layer0") if kind == "deep_first" else ("layer0", "layer1")
            a, b = (t + 1, t + 1) if kind == "lag" else (t - 3, t - 2)
            rms[first][a:t + 4] = 3.0
            rms[second][b:t + 4] = 2.0
        rid = f"w1-{seed}"
        series[rid] = {"loss": spiky_loss(seed, starts), **{f"rms_g2_over_v/{k}": v for k, v in rms.items()}}
        seed_of[rid] = seed
    return tidy(series, seed_of), runs_frame(series, seed_of)


def test_w1_replicates_when_the_shallow_layer_leads_the_rise_by_1_to_8_steps():
    j = w1(*_w1_runs("lead"))
    assert j.verdict == "replicated" and j.value == 1.0 and j.seeds == [0, 1, 2]
    assert "layer0 33" in j.detail and "median 3 steps" in j.detail


def test_w1_not_replicated_when_rms_follows_the_rise_or_a_deeper_layer_leads():
    lag = w1(*_w1_runs("lag"))
    assert lag.verdict == "not replicated" and lag.value == 0.0
    deep = w1(*_w1_runs("deep_first"))
    assert deep.value == 1.0 and deep.verdict == "not replicated"


def test_w1_premise_ten_spikes_per_seed_injected_batches_not_counted():
    j = w1(*_w1_runs("lead"))
    assert j.premise_held and "R3 spike episodes per seed (0/1/2): 11/11/11" in j.premise
    j = w1(*_w1_runs("lead", few=1))
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: replicated" in j.detail and "11/9/11" in j.premise
    j = w1(*_w1_runs("lag", few=0))
    assert j.verdict == "out of regime" and "by its threshold: not replicated" in j.detail
    metrics, runs = _w1_runs("lead")
    j = w1(metrics, inject_at(runs, {2: [SPIKES[4], SPIKES[7]]}))
    assert j.verdict == "out of regime" and "11/11/9" in j.premise and "injected batches not counted" in j.premise
    assert w1(metrics, inject_at(runs, {2: [SPIKES[4]]})).verdict == "replicated"  # 10 left: held


def test_w1_inconclusive_with_too_few_seeds():
    assert w1(*_w1_runs("lead", seeds=(0, 1))).verdict == "inconclusive"


def test_rms_onset_is_the_last_upward_crossing_in_the_window():
    x = pd.Series([0.1, 2, 0.1, 0.2, 3, 4, 0.1], index=np.arange(10, 17))
    assert _onset_crossing(x, 9, 16, 1.0) == 14
    assert _onset_crossing(x, 12, 13, 1.0) is None
    assert _onset_crossing(x, 10, 12, 1.0) == 11
