"""T1 and T2 (replicate/claims/t1_slingshot.py): the Slingshot's judges on synthetic runs of the four
arms (fp32 Adam, fp64 Adam, Adam eps 1e-4, SGD) x 3 seeds, on both sides of every threshold and of
the premise, with too few seeds, and under every spike definition.

The synthetic fp32 run: the loss falls as exp(-t/20) to a 1e-7 floor (below 1e-5 from step 231),
with 1% noise, and jumps to 1 at SPIKE for 10 steps; head_norm grows 0.001 per step, 0.006 per step
over the last 500 steps before the spike (ratio 6); mean_row_norm is log-linear from step 1000;
zero_grad_frac rises to 0.95 at SPIKE - 2500 and falls to 0.3 at the spike (above 0.5 only well
before the last 500 steps). The other arms have the same loss without the spike."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from claims_synthetic import tidy_run

from replicate import spikes
from replicate.claims import CLAIMS, _load_modules
from replicate.claims.registry import judge
from replicate.claims.t1_slingshot import (_fraction, growth, log_linear, slingshot_runs, t1, t2,
                                           zero_grad_before)

_load_modules()
N, SPIKE = 3400, 3000
SEEDS = (0, 1, 2)
ARM_CONFIG = {  # as conf/arm/t1_slingshot sets them (labels not the arm names: the judge reads config)
    "adam": {"label": "adam fp32", "optimizer.name": "adam", "optimizer.eps": 1e-8, "model.dtype": "float32"},
    "adam_fp64": {"label": "adam fp64", "optimizer.name": "adam", "optimizer.eps": 1e-8, "model.dtype": "float64"},
    "adam_eps": {"label": "adam eps=1e-4", "optimizer.name": "adam", "optimizer.eps": 1e-4,
                 "model.dtype": "float32"},
    "sgd": {"label": "sgd momentum=0.9 lr=1", "optimizer.name": "sgd", "optimizer.eps": math.nan,
            "model.dtype": "float32"},
}


def loss_curve(seed: int, floor: float = 1e-7, spikes_at=(), height: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    loss = np.maximum(np.exp(-t / 20.0), floor) * np.exp(0.01 * rng.standard_normal(N))
    for s in spikes_at:
        loss[s:s + 10] = height
    return loss


def head_norm(extra: float = 0.005, at: int = SPIKE) -> np.ndarray:
    """0.001 per step, plus ``extra`` per step from ``at`` - 501 on (recent/earlier = 1 + extra/0.001)."""
    t = np.arange(N, dtype=float)
    return 10 + 0.001 * t + extra * np.maximum(0, t - (at - 501))


def mean_row(seed: int, linear: bool = True) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    t = np.arange(N, dtype=float)
    if linear:
        return 0.25 * np.exp(6e-4 * np.maximum(0, t - 1000) + 0.002 * rng.standard_normal(N))
    return 0.25 * np.exp(0.05 * rng.standard_normal(N))  # flat noise: R² ~ 0


def zero_grad(peak: float = 0.95, at: int = SPIKE) -> np.ndarray:
    t = np.arange(N, dtype=float)
    top = at - 2500
    up = np.clip((t - 300) / (top - 300), 0, 1) * peak
    down = peak + (0.3 - peak) * np.clip((t - top) / (at - top), 0, 1)
    return np.where(t <= top, up, down)


def build(seeds=SEEDS, *, fp32=None, arms=None):
    """(metrics, runs): per seed the four arms; ``fp32(seed)`` / ``arms[arm](seed)`` override a run's
    series (a dict of metric -> array), the defaults being the replicated case."""
    frames, rows = [], []
    for seed in seeds:
        for arm, config in ARM_CONFIG.items():
            series = {"loss": loss_curve(seed, spikes_at=(SPIKE,) if arm == "adam" else ()),
                      "head_norm": head_norm() if arm == "adam" else head_norm(0.0),
                      "mean_row_norm": mean_row(seed) if arm == "adam" else mean_row(seed, linear=False),
                      "zero_grad_frac": zero_grad() if arm == "adam" else np.zeros(N)}
            if arm == "adam" and fp32 is not None:
                series.update(fp32(seed))
            if arms and arm in arms:
                series.update(arms[arm](seed))
            rid = f"{arm}-{seed}"
            frames.append(tidy_run(rid, seed, series, experiment="t1_slingshot"))
            rows.append({"run_id": rid, "seed": seed, "status": "done", **config})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)


@pytest.fixture(scope="module")
def replicated():
    return build()


def in_unit(j):
    return j.value is not None and 0 <= j.ci_low <= j.value <= j.ci_high <= 1


# ------------------------------------------------------------------------------ the measures
def test_growth_ratio_on_both_sides_of_2():
    assert growth(pd.Series(head_norm(0.0011)), SPIKE)["met"]  # ratio 2.1
    assert growth(pd.Series(head_norm(0.0011)), SPIKE)["ratio"] == pytest.approx(2.1)
    assert not growth(pd.Series(head_norm(0.0009)), SPIKE)["met"]  # 1.9
    assert not growth(pd.Series(head_norm(0.0)), SPIKE)["met"]  # flat growth: ratio 1
    shrinking = pd.Series(np.r_[np.linspace(12, 10, N - 600), np.linspace(10, 11, 600)])
    g = growth(shrinking, SPIKE)  # earlier rate < 0, recent > 0: infinite ratio, met
    assert g["met"] and g["ratio"] == math.inf
    assert not growth(pd.Series(np.linspace(12, 10, N)), SPIKE)["met"]  # never grows
    late = pd.Series(head_norm(), index=np.arange(N) + 1000)  # the windows start before the first step
    assert not growth(late, SPIKE)["measured"]


def test_zero_grad_window_is_the_whole_stretch_since_loss_below_1e5():
    z = pd.Series(zero_grad())
    assert z.loc[SPIKE - 500:SPIKE - 1].max() < 0.5  # the last 500 steps alone would fail
    assert zero_grad_before(z, 231, SPIKE)["met"]
    assert zero_grad_before(pd.Series(zero_grad(0.51)), 231, SPIKE)["met"]
    assert not zero_grad_before(pd.Series(zero_grad(0.49)), 231, SPIKE)["met"]
    assert not zero_grad_before(z, SPIKE - 400, SPIKE)["met"]  # window starting late: only its own steps count
    assert not zero_grad_before(None, 231, SPIKE)["measured"]


def test_log_linear_on_both_sides():
    assert log_linear(pd.Series(mean_row(0)), SPIKE)["met"]
    assert log_linear(pd.Series(mean_row(0)), SPIKE)["r2"] > 0.99
    assert not log_linear(pd.Series(mean_row(0, linear=False)), SPIKE)["met"]
    falling = pd.Series(1 / mean_row(0))
    assert log_linear(falling, SPIKE)["r2"] > 0.99 and not log_linear(falling, SPIKE)["met"]  # slope < 0
    t = np.arange(N, dtype=float)  # noise around a line: R² ~0.85 and ~0.94, either side of 0.9
    rng = np.random.default_rng(0)
    for noise, met in ((0.12, False), (0.07, True)):
        y = pd.Series(np.exp(1e-3 * t + noise * rng.standard_normal(N)))
        out = log_linear(y, SPIKE)
        assert out["met"] is met and (out["r2"] > 0.9) is met, (noise, out)


def test_the_80_percent_rule_counts_the_spikes_and_gives_a_wilson_interval():
    def pool(k, n):
        return [(0, {"g": {"measured": True, "met": i < k}}) for i in range(n)]
    assert _fraction(pool(4, 5), "g", 0.8)[:2] == ("yes", 0.8)
    assert _fraction(pool(3, 5), "g", 0.8)[0] == "no"
    cond, value, (lo, hi), k, n, _ = _fraction(pool(3, 3), "g", 0.8)
    assert cond == "yes" and 0 <= lo < 0.8 < hi == 1.0  # the interval is reported, not tested
    assert _fraction([], "g", 0.8)[0] == "unclear"
    unmeasured = [(1, {"g": {"measured": False, "met": False}, "rise_start": 7})]
    assert _fraction(pool(1, 1) + unmeasured, "g", 0.8)[3:] == (1, 1, [(1, 7)])


def test_spikes_are_counted_after_the_loss_fell_below_1e5(replicated):
    metrics, runs = replicated
    per = slingshot_runs(metrics, runs, "R100")
    assert set(per["arm"]) == {"adam", "adam_fp64", "adam_eps", "sgd"}
    for r in per.itertuples():
        assert r.t_below == pytest.approx(231, abs=3)
        assert [s["rise_start"] for s in r.spikes] == ([SPIKE] if r.arm == "adam" else [])
    # a spike before the loss fell below 1e-5 is not counted
    early, early_runs = build(fp32=lambda s: {"loss": loss_curve(s, spikes_at=(150,))})
    assert all(not r.spikes for r in slingshot_runs(early, early_runs, "R3").itertuples())


# ----------------------------------------------------------------------------------------- T1
def test_t1_replicated(replicated):
    j = t1(*replicated, definition="R100")
    assert j.verdict == "replicated", j.detail
    assert j.value == 1.0 and in_unit(j) and j.premise_held
    assert "6x" in j.detail and "sgd" in j.detail


def test_t1_not_replicated_when_sgd_spikes():
    j = t1(*build(arms={"sgd": lambda s: {"loss": loss_curve(s, spikes_at=(SPIKE,))}}), definition="R100")
    assert j.verdict == "not replicated" and "(iii)" in j.detail and "(iii) SGD and Adam eps 1e-4 have no spike " \
        "after their loss fell below 1e-5: no" in j.detail


def test_t1_not_replicated_when_eps_spikes():
    j = t1(*build(arms={"adam_eps": lambda s: {"loss": loss_curve(s, spikes_at=(SPIKE,))}}), definition="R100")
    assert j.verdict == "not replicated"


def test_t1_not_replicated_when_the_norm_growth_is_flat():
    j = t1(*build(fp32=lambda s: {"head_norm": head_norm(0.0)}), definition="R100")
    assert j.verdict == "not replicated" and j.value == 0.0 and in_unit(j)


def test_t1_not_replicated_when_a_seed_does_not_spike():
    j = t1(*build(fp32=lambda s: {"loss": loss_curve(s)} if s == 2 else {}), definition="R100")
    assert j.verdict == "not replicated" and "(1/1/0)" in j.detail and j.premise_held


def test_t1_unclear_when_sgd_never_reaches_1e5():
    j = t1(*build(arms={"sgd": lambda s: {"loss": loss_curve(s, floor=5e-5)}}), definition="R100")
    assert j.verdict == "inconclusive" and "nothing to count" in j.detail and "sgd seed 0" in j.detail


def test_t1_out_of_regime_when_a_seed_never_falls_below_1e5():
    j = t1(*build(fp32=lambda s: {"loss": loss_curve(s, floor=1e-4, spikes_at=(SPIKE,))} if s == 1 else {}),
           definition="R100")
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "never" in j.premise and "by its threshold: not replicated" in j.detail


def test_t1_too_few_seeds_is_inconclusive():
    j = t1(*build(seeds=(0, 1)), definition="R100")
    assert j.verdict == "inconclusive" and "only 2 seed(s)" in j.detail


# ----------------------------------------------------------------------------------------- T2
def test_t2_replicated(replicated):
    j = t2(*replicated, definition="R3")
    assert j.verdict == "replicated", j.detail
    assert j.value == 1.0 and in_unit(j) and j.premise_held
    assert "fp32 1, fp64 0 (100% fewer)" in j.detail


def test_t2_not_replicated_when_fp64_spikes_as_much():
    j = t2(*build(arms={"adam_fp64": lambda s: {"loss": loss_curve(s, spikes_at=(SPIKE,))}}), definition="R3")
    assert j.verdict == "not replicated" and "fp32 1, fp64 1 (0% fewer)" in j.detail


def test_t2_fp64_80_percent_fewer_on_both_sides():
    five = (SPIKE, SPIKE + 80, SPIKE + 160, SPIKE + 240, SPIKE + 320)
    fp32 = lambda s: {"loss": loss_curve(s, spikes_at=five)}  # noqa: E731
    yes = t2(*build(fp32=fp32, arms={"adam_fp64": lambda s: {"loss": loss_curve(s, spikes_at=(SPIKE,))}}),
             definition="R3")
    assert yes.verdict == "replicated" and "fp32 5, fp64 1 (80% fewer)" in yes.detail, yes.detail
    no = t2(*build(fp32=fp32, arms={"adam_fp64": lambda s: {"loss": loss_curve(s, spikes_at=five[:2])}}),
            definition="R3")
    assert no.verdict == "not replicated" and "fp32 5, fp64 2 (60% fewer)" in no.detail


def test_t2_not_replicated_when_zero_grad_frac_stays_below_half():
    j = t2(*build(fp32=lambda s: {"zero_grad_frac": zero_grad(0.45)}), definition="R3")
    assert j.verdict == "not replicated" and j.value == 0.0 and in_unit(j)


def test_t2_not_replicated_when_log_mean_row_is_not_linear():
    j = t2(*build(fp32=lambda s: {"mean_row_norm": mean_row(s, linear=False)}), definition="R3")
    assert j.verdict == "not replicated" and "(iii)" in j.detail and j.value == 1.0


def test_t2_unclear_for_a_seed_without_an_fp32_spike():
    j = t2(*build(fp32=lambda s: {"loss": loss_curve(s)} if s == 0 else {}), definition="R3")
    assert j.verdict == "inconclusive" and "seed 0: fp32 0 spikes" in j.detail


def test_t2_out_of_regime_when_a_seed_never_falls_below_1e5():
    j = t2(*build(fp32=lambda s: {"loss": loss_curve(s, floor=1e-4, spikes_at=(SPIKE,))} if s == 0 else {}),
           definition="R3")
    assert j.verdict == "out of regime" and j.premise_held is False


def test_t2_too_few_seeds_is_inconclusive():
    j = t2(*build(seeds=(0,)), definition="R3")
    assert j.verdict == "inconclusive" and "only 1 seed(s)" in j.detail


# ------------------------------------------------------------------------ registry, definitions
def test_registered_on_t1_slingshot_with_their_primaries():
    t1c, t2c = CLAIMS["T1"], CLAIMS["T2"]
    assert (t1c.experiment, t2c.experiment) == ("t1_slingshot", "t1_slingshot")
    assert (t1c.primary, t2c.primary) == ("R100", "R3") and t1c.spikes and t2c.spikes
    assert t1c.figures == ["loss"] and t2c.figures == ["loss", "slingshot"]
    assert t1c.threshold.startswith("Adam spikes (R100) after its loss fell below 1e-5")
    assert t2c.metric.startswith("value = fraction") and t1c.metric.startswith("value = fraction")


@pytest.mark.parametrize("cid", ["T1", "T2"])
def test_every_definition_judges_without_error(replicated, cid):
    by = judge(CLAIMS[cid], *replicated)
    assert set(by) == set(spikes.DEFINITIONS)
    for d, j in by.items():
        assert j.verdict == "replicated", (cid, d, j.detail)
        assert in_unit(j) and d in j.detail


@pytest.mark.parametrize("cid", ["T1", "T2"])
def test_no_runs_or_no_spikes_give_intervals_in_range_or_none(cid):
    flat = build(fp32=lambda s: {"loss": loss_curve(s)})
    for d, j in judge(CLAIMS[cid], *flat).items():
        assert j.verdict in ("not replicated", "inconclusive")
        assert j.value is None and j.ci_low is None and j.ci_high is None  # nothing to take a fraction of
    empty = CLAIMS[cid].judge(pd.DataFrame(columns=["run_id", "experiment", "seed", "status", "step", "metric",
                                                    "value"]), pd.DataFrame(columns=["run_id", "seed", "status"]))
    assert empty.verdict == "inconclusive"
