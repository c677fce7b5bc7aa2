"""B2, W1 (replicate/claims/precursors.py) and M9 (replicate/claims/batch.py) on synthetic results:
both sides of each threshold, and too few seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tidy

from replicate.claims import CLAIMS, _load_modules
from replicate.claims.batch import m9
from replicate.claims.precursors import _onset_crossing, b2, w1

_load_modules()
N = 1200
SPIKES = (300, 500, 700, 900, 1100)  # rise starts = 3x crossings: the loss jumps in one step


def base_loss(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1e-3 * np.exp(0.02 * rng.standard_normal(n))


def spiky_loss(seed: int, starts=SPIKES) -> np.ndarray:
    loss = base_loss(seed)
    for t in starts:
        loss[t:t + 3] *= 30.0
    return loss


def runs_frame(series, seeds, **cols) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": rid, "seed": seeds[rid], "status": "done", **{k: v[rid] for k, v in cols.items()}}
                         for rid in series])


# ------------------------------------------------------------------------------------------- B2
def _b2_runs(kind: str, seeds=(0, 1, 2), every: int = 1):
    """kind: 'good' (lambda_grad > 2/eta at the 3 parameter steps before each rise, lambda_max always
    above), 'late' (lambda_grad over 2/eta only once the rise has started), 'same' (lambda_max = lambda_grad)."""
    series, seed_of = {}, {}
    thr = 2 / 1e-3
    for seed in seeds:
        grad = np.full(N, 0.1 * thr)
        for t in SPIKES:
            if kind == "late":  # logged at rs - 1 = the parameters of step rs: not before the rise
                grad[t - 1:t + 2] = 5 * thr
            else:  # logged steps rs-4 .. rs-2 = parameter steps rs-3 .. rs-1
                grad[t - 4:t - 1] = 5 * thr
        lmax = grad.copy() if kind == "same" else np.full(N, 19 * thr)
        probe = np.arange(N) % every == 0
        rid = f"b2-{seed}"
        series[rid] = {"loss": spiky_loss(seed), "lambda_grad_Hhat": np.where(probe, grad, np.nan),
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


def test_b2_inconclusive_with_too_few_seeds_or_no_curvature():
    assert b2(*_b2_runs("good", seeds=(0, 1))).verdict == "inconclusive"
    metrics, runs = _b2_runs("good")
    assert b2(metrics[metrics["metric"] == "loss"], runs).verdict == "inconclusive"


# ------------------------------------------------------------------------------------------- W1
def _w1_runs(kind: str, seeds=(0, 1, 2)):
    """kind: 'lead' (layer0 crosses RMS_t = 1 three steps before each rise, layer1 two), 'lag' (both
    cross one step after the rise starts), 'deep_first' (layer1 three steps before, layer0 two)."""
    series, seed_of = {}, {}
    for seed in seeds:
        rms = {"layer0": np.full(N, 0.05), "layer1": np.full(N, 0.05)}
        for t in SPIKES:
            first, second = ("layer1", "layer0") if kind == "deep_first" else ("layer0", "layer1")
            a, b = (t + 1, t + 1) if kind == "lag" else (t - 3, t - 2)
            rms[first][a:t + 4] = 3.0
            rms[second][b:t + 4] = 2.0
        rid = f"w1-{seed}"
        series[rid] = {"loss": spiky_loss(seed), **{f"rms_g2_over_v/{k}": v for k, v in rms.items()}}
        seed_of[rid] = seed
    return tidy(series, seed_of), runs_frame(series, seed_of)


def test_w1_replicates_when_the_shallow_layer_leads_the_rise_by_1_to_8_steps():
    j = w1(*_w1_runs("lead"))
    assert j.verdict == "replicated" and j.value == 1.0 and j.seeds == [0, 1, 2]
    assert "layer0 15" in j.detail and "median 3 steps" in j.detail


def test_w1_not_replicated_when_rms_follows_the_rise_or_a_deeper_layer_leads():
    lag = w1(*_w1_runs("lag"))
    assert lag.verdict == "not replicated" and lag.value == 0.0
    deep = w1(*_w1_runs("deep_first"))
    assert deep.value == 1.0 and deep.verdict == "not replicated"


def test_w1_inconclusive_with_too_few_seeds():
    assert w1(*_w1_runs("lead", seeds=(0, 1))).verdict == "inconclusive"


def test_rms_onset_is_the_last_upward_crossing_in_the_window():
    x = pd.Series([0.1, 2, 0.1, 0.2, 3, 4, 0.1], index=np.arange(10, 17))
    assert _onset_crossing(x, 9, 16, 1.0) == 14
    assert _onset_crossing(x, 12, 13, 1.0) is None
    assert _onset_crossing(x, 10, 12, 1.0) == 11


# ------------------------------------------------------------------------------------------- M9
BATCHES = (16, 32, 64, 128, None)  # None: the full batch, counted as data.n = 256


def _m9_runs(rising: bool, seeds=(0, 1, 2), batches=BATCHES):
    series, seed_of, batch_of = {}, {}, {}
    for seed in seeds:
        for i, b in enumerate(batches):
            k = i if rising else len(batches) - 1 - i
            rid = f"m9-{seed}-{b}"
            series[rid] = {"loss": spiky_loss(seed, starts=tuple(range(150, N, (N - 150) // (k + 1)))[:k + 1])}
            seed_of[rid], batch_of[rid] = seed, b
    return tidy(series, seed_of), runs_frame(series, seed_of, **{"data.batch_size": batch_of,
                                                                 "data.n": {r: 256 for r in series}})


def test_m9_on_both_sides_of_its_threshold():
    yes = m9(*_m9_runs(rising=True))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(1.0) and yes.seeds == [0, 1, 2]
    no = m9(*_m9_runs(rising=False))
    assert no.verdict == "not replicated" and no.value == pytest.approx(-1.0)


def test_m9_inconclusive_with_too_few_seeds_or_batch_sizes():
    assert m9(*_m9_runs(rising=True, seeds=(0, 1))).verdict == "inconclusive"
    assert m9(*_m9_runs(rising=True, batches=(16, 64, None))).verdict == "inconclusive"


def test_the_three_claims_are_registered_with_their_experiments():
    assert {c: CLAIMS[c].experiment for c in ("B2", "W1", "M9")} == {
        "B2": "b2_curvature_mlp", "W1": "w1_rms_mlp", "M9": "m9_batch_mlp"}
    assert all(CLAIMS[c].judge is not None for c in ("B2", "W1", "M9"))


def test_decay_runs_measure_the_g2_below_v_stretch_before_each_rise():
    from replicate.claims.precursors import decay_runs

    frac = np.zeros(N)
    frac[200:296] = 1.0  # 96 steps of g^2 << v, ending 4 steps before the rise at 300
    g = pd.DataFrame({"frac_v_decaying/layer1": 0.0, "frac_v_decaying/layer0": frac}, index=np.arange(N))
    ep = pd.DataFrame({"rise_start": [300, 310], "end": [302, 312]})
    assert decay_runs(g, ep) == [(True, 96.0), (False, 0.0)]  # the second rings 8 steps after the first
