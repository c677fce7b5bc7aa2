"""B2 (replicate/claims/b2_curvature_mlp.py) on synthetic results: both sides of each threshold,
and too few seeds; the g^2 << v stretch before a rise."""

from __future__ import annotations

import numpy as np
import pandas as pd
from claims_synthetic import N, SPIKES_10 as SPIKES, inject_at, premise_starts, runs_frame, spiky_loss
from conftest import tidy

from replicate.claims import CLAIMS, _load_modules
from replicate.claims.b2_curvature_mlp import b2

_load_modules()


def test_the_judge_is_registered_with_its_experiment():
    assert CLAIMS["B2"].experiment == "b2_curvature_mlp" and CLAIMS["B2"].judge is b2


def _b2_runs(kind: str, seeds=(0, 1, 2), every: int = 1, few: int | None = None):
    """kind: 'good' (lambda_grad > 2/eta at the 3 parameter steps before each rise, lambda_max always
    above), 'late' (lambda_grad over 2/eta only once the rise has started), 'same' (lambda_max = lambda_grad).
    11 spikes per seed (the premise: >= 10), 9 in the seed ``few``."""
    series, seed_of = {}, {}
    thr = 2 / 1e-3
    for seed in seeds:
        grad = np.full(N, 0.1 * thr)
        starts = premise_starts(seed, few)
        for t in starts:
            if kind == "late":  # logged at rs - 1 = the parameters of step rs: not before the rise
                grad[t - 1:t + 2] = 5 * thr
            else:  # logged steps rs-4 .. rs-2 = parameter steps rs-3 .. rs-1
                grad[t - 4:t - 1] = 5 * thr
        lmax = grad.copy() if kind == "same" else np.full(N, 19 * thr)
        probe = np.arange(N) % every == 0
        rid = f"b2-{seed}"
        series[rid] = {"loss": spiky_loss(seed, starts), "lambda_grad_Hhat": np.where(probe, grad, np.nan),
                       "lambda_max_Hhat": np.where(probe, lmax, np.nan),
                       "threshold_2_over_lr": np.where(probe, thr, np.nan),
                       "threshold_momentum": np.where(probe, 19 * thr, np.nan)}
        seed_of[rid] = seed
    return tidy(series, seed_of), runs_frame(series, seed_of)


def test_b2_replicates_when_lambda_grad_precedes_every_spike_and_beats_lambda_max():
    j = b2(*_b2_runs("good"))
    assert j.verdict == "replicated" and j.value == 1.0 and j.seeds == [0, 1, 2]
    assert "precision lambda_grad 1 vs lambda_max" in j.detail
    assert b2(*_b2_runs("good", every=2)).verdict == "replicated"  # a probe every 2 steps still sees it


def test_b2_not_replicated_when_lambda_grad_only_rises_with_the_loss_or_is_no_more_precise():
    late = b2(*_b2_runs("late"))
    assert late.verdict == "not replicated" and late.value == 0.0
    same = b2(*_b2_runs("same"))  # every spike preceded, but lambda_max is exactly as precise
    assert same.value == 1.0 and same.verdict == "not replicated"


def test_b2_premise_ten_spikes_per_seed_injected_batches_not_counted():
    j = b2(*_b2_runs("good"))
    assert j.premise_held and "R3 spike episodes per seed (0/1/2): 11/11/11" in j.premise
    j = b2(*_b2_runs("good", few=0))
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: replicated" in j.detail and "9/11/11" in j.premise
    j = b2(*_b2_runs("late", few=2))
    assert j.verdict == "out of regime" and "by its threshold: not replicated" in j.detail
    metrics, runs = _b2_runs("good")
    j = b2(metrics, inject_at(runs, {1: list(SPIKES[:2])}))
    assert j.verdict == "out of regime" and "11/9/11" in j.premise and "injected batches not counted" in j.premise
    assert b2(metrics, inject_at(runs, {1: [SPIKES[0]]})).verdict == "replicated"  # 10 left: held


def test_b2_inconclusive_with_too_few_seeds_or_no_curvature():
    assert b2(*_b2_runs("good", seeds=(0, 1))).verdict == "inconclusive"
    metrics, runs = _b2_runs("good")
    assert b2(metrics[metrics["metric"] == "loss"], runs).verdict == "inconclusive"


def test_decay_runs_measure_the_g2_below_v_stretch_before_each_rise():
    from replicate.claims.b2_curvature_mlp import decay_runs

    frac = np.zeros(N)
    frac[200:296] = 1.0  # 96 steps of g^2 << v, ending 4 steps before the rise at 300
    g = pd.DataFrame({"frac_v_decaying/layer1": 0.0, "frac_v_decaying/layer0": frac}, index=np.arange(N))
    ep = pd.DataFrame({"rise_start": [300, 310], "end": [302, 312]})
    assert decay_runs(g, ep) == [(True, 96.0), (False, 0.0)]  # the second rings 8 steps after the first
