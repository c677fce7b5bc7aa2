"""M1 (replicate/claims/m1_iid_gradients.py) on synthetic results on both sides of its thresholds
and with too few seeds; the linear model and the gradient stream behind M1/M2; three short runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from claims_synthetic import frames

from replicate import train
from replicate.claims import MIN_SEEDS, evaluate
from replicate.claims.m1_iid_gradients import m1
from replicate.data import build_data
from replicate.models import build_model

SEEDS = (0, 1, 2)


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
