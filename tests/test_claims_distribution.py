"""The judges of M0, M1, M2 (update distributions) and M4, M5 (stalling) on synthetic results on both
sides of their thresholds and with too few seeds; the linear model and the gradient stream behind M1/M2."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from replicate import train
from replicate.claims import MIN_SEEDS, evaluate
from replicate.claims.stalling import m4, m5
from replicate.claims.update_distribution import construction_steps, iid_fraction, m0, m1, m2
from replicate.data import build_data
from replicate.models import build_model

SEEDS = (0, 1, 2)


def frames(runs: list[tuple[str, int, dict, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics, runs) as results.load / results.runs give them, from (run_id, seed, config,
    {step: {metric: value}})."""
    rows, meta = [], []
    for rid, seed, config, steps in runs:
        for step, values in steps.items():
            for metric, value in values.items():
                rows.append({"run_id": rid, "experiment": "x", "seed": seed, "status": "done", "step": step,
                             "metric": metric, "value": float(value)})
        meta.append({"run_id": rid, "seed": seed, "status": "done", **config})
    return pd.DataFrame(rows), pd.DataFrame(meta)


# ------------------------------------------------------------------------------------------ M0
def test_iid_gradients_are_bimodal_only_in_the_first_steps_by_construction():
    frac = iid_fraction(0.9, 0.999)
    assert frac[0] == 1.0 and 0.2 < frac[1] < 0.4 and frac[5] < 0.01
    assert construction_steps(0.9, 0.999) == 3 and construction_steps(0.9, 0.95) == 3


def _m0_runs(curves: dict[str, callable], seeds=SEEDS):
    out = []
    for seed in seeds:
        steps = {}
        for t in range(0, 151, 3):
            steps[t] = {"loss": 5 - t / 100}
            for layer, curve in curves.items():
                steps[t][f"r_frac_sign/{layer}"] = 1.0 if t == 0 else curve(t) + 0.001 * seed
        out.append((f"run{seed}", seed, {"optimizer.b1": 0.9, "optimizer.b2": 0.95}, steps))
    return frames(out)


def bimodal_then_unimodal(t):
    return 0.6 if t < 30 else 0.6 * math.exp(-(t - 30) / 10)


def only_by_construction(t):  # 1 at step 0 (set by _m0_runs), then what i.i.d. gradients give
    return 0.02


def never_settles(t):
    return 0.6 if t < 30 else 0.1


def test_m0_on_both_sides_and_with_too_few_seeds():
    layers = ("embedding", "block0", "block1", "head")
    yes = m0(*_m0_runs({x: bimodal_then_unimodal for x in layers}))
    assert yes.verdict == "replicated" and yes.value == 1.0 and yes.seeds == [0, 1, 2]
    assert "settles at step" in yes.detail
    # step 0 (r = +-1 by construction) alone does not make a layer bimodal
    no = m0(*_m0_runs({"embedding": only_by_construction, "block0": bimodal_then_unimodal,
                       "block1": bimodal_then_unimodal, "head": bimodal_then_unimodal}))
    assert no.verdict == "not replicated" and no.value == 0.0
    assert m0(*_m0_runs({x: never_settles for x in layers})).verdict == "not replicated"
    assert m0(*_m0_runs({x: bimodal_then_unimodal for x in layers}, seeds=(0, 1))).verdict == "inconclusive"


# ------------------------------------------------------------------------------------------ M1
def _m1_runs(ratio, dip_p=0.9, frac=1e-4, seeds=SEEDS, b1=0.9):
    ratio = ratio if isinstance(ratio, (list, tuple)) else [ratio] * len(seeds)
    expected = math.sqrt((1 - b1) / (1 + b1))
    return frames([(f"run{s}", s, {"optimizer.b1": b1},
                    {t: {"r_std/theta": (1.0 if t == 0 else ratio[i] * expected), "r_dip_p/theta": dip_p,
                         "r_frac_sign/theta": frac, "r_abs_mean/theta": 0.18} for t in (0, 100, 200, 300)})
                   for i, s in enumerate(seeds)])


def test_m1_on_both_sides_and_with_too_few_seeds():
    yes = m1(*_m1_runs([0.998, 1.0, 1.002]))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(1.0) and yes.ci_low < 1 < yes.ci_high
    assert m1(*_m1_runs([1.20, 1.21, 1.19])).verdict == "not replicated"  # std 20% off the formula
    assert m1(*_m1_runs(1.0, frac=0.05)).verdict == "not replicated"    # mass at +-1
    assert m1(*_m1_runs(1.0, dip_p=0.001)).verdict == "not replicated"  # the dip test rejects unimodality
    assert m1(*_m1_runs([0.93, 0.97, 1.0])).verdict == "inconclusive"   # the interval straddles 0.95
    few = m1(*_m1_runs(1.0, seeds=(0, 1)))
    assert few.verdict == "inconclusive" and "3 needed" in few.detail and MIN_SEEDS == 3


# ------------------------------------------------------------------------------------------ M2
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


# ------------------------------------------------------------------------------------------ M4
def _m4_runs(emb, deep, off=0.0, seeds=SEEDS):
    out = []
    for seed in seeds:
        jitter = 0.002 * seed
        values = {"embedding": emb + jitter, "block0": 0.7, "block1": deep + jitter, "head": 0.6}
        steps = {t: {**{f"u_over_r/{x}": v for x, v in values.items()},
                     **{f"eps_damping/{x}": v / (1 + off) for x, v in values.items()},
                     **{f"frac_sqrtv_below_eps/{x}": 1 - v for x, v in values.items()},
                     **{f"grad_rms/{x}": 1e-3 * v for x, v in values.items()},
                     **{f"r_std/{x}": 0.2 for x in values}} for t in range(0, 301, 50)}
        out.append((f"run{seed}", seed, {"optimizer.eps": 1e-3}, steps))
    return frames(out)


def test_m4_on_both_sides_and_with_too_few_seeds():
    yes = m4(*_m4_runs(emb=0.05, deep=0.8))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(0.052) and yes.ci_high < 0.1
    assert m4(*_m4_runs(emb=0.6, deep=0.4)).verdict == "not replicated"  # the embedding is not the stalled one
    assert m4(*_m4_runs(emb=0.05, deep=0.8, off=0.3)).verdict == "not replicated"  # not the eps damping
    assert m4(*_m4_runs(emb=0.05, deep=0.8, seeds=(0,))).verdict == "inconclusive"


# ------------------------------------------------------------------------------------------ M5
def _m5_runs(ratios, emb_highest=True, seeds=SEEDS):
    out = []
    for seed in seeds:
        for depth, ratio in zip((2, 4, 8), ratios):
            layers = ["embedding", *[f"block{i}" for i in range(depth)], "head"]
            deep = f"block{depth - 1}"
            steps = {}
            for t in range(0, 101, 25):
                steps[t] = {f"grad_rms/{x}": 1e-3 for x in layers}
                steps[t]["grad_rms/embedding"] = 1e-3 * ratio * (1 + 0.01 * seed)
                steps[t]["grad_rms/" + deep] = 1e-3
                steps[t].update({f"frac_sqrtv_below_eps/{x}": 0.5 for x in layers})
                steps[t]["frac_sqrtv_below_eps/embedding"] = 0.9 if emb_highest else 0.2
            out.append((f"run{seed}-{depth}", seed, {"model.depth": depth}, steps))
    return frames(out)


def test_m5_on_both_sides_and_with_too_few_seeds():
    yes = m5(*_m5_runs([0.5, 0.3, 0.1]))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(0.2)
    assert m5(*_m5_runs([3.5, 5.3, 9.6])).verdict == "not replicated"  # the ratio rises with depth
    assert m5(*_m5_runs([0.5, 0.3, 0.1], emb_highest=False)).verdict == "not replicated"
    assert m5(*_m5_runs([0.5, 0.3, 0.1], seeds=(0, 1))).verdict == "inconclusive"


# ------------------------------------------------------------------------- linear model, gradient stream
def test_the_linear_models_gradient_is_the_batch_of_the_gradient_stream():
    data = build_data({"name": "gradients", "seed": 3, "n": 1000, "snr": 2.0, "signal": "sign"})
    model = build_model({"name": "linear", "dim": 1000})
    g = data.batch_at(5)
    model.loss(g).backward()
    assert torch.equal(model.theta.grad, g)
    assert torch.equal(data.batch_at(5), g)  # a pure function of (seed, step)
    noise = (g.double() - torch.from_numpy(data.signal)).std()
    assert noise == pytest.approx(0.5, rel=0.1) and set(np.unique(data.signal)) == {-1.0, 1.0}
    pure = build_data({"name": "gradients", "seed": 3, "n": 100_000, "snr": 0.0})
    assert pure.batch_at(0).double().std() == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ValueError):
        build_data({"name": "gradients", "seed": 0, "snr": -1.0})


def test_m1_end_to_end_on_three_short_runs(cfg_factory, tmp_path):
    for seed in SEEDS:
        cfg = cfg_factory("experiment=m1_iid_gradients", f"seed={seed}", "data.n=20000", "train.steps=101",
                          "probe.every=50", "probe.dip_samples=20000", results_dir=tmp_path / "r")
        train.run(cfg)
    (v,) = evaluate(tmp_path / "r", ids=["M1"])
    assert v.verdict == "replicated" and v.seeds == [0, 1, 2], v.detail
