"""Q2 (low precision and stalling): the judge on synthetic results (shallow layer underflowing more,
or less, than the deep one; too few seeds; a missing arm) and one tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from replicate import results, train
from replicate.claims import CLAIMS, evaluate
from replicate.claims.q2_precision import arm_name, q2

LAYERS = ("layer0", "layer1", "layer2")
# (precision, loss_scale): the arms of conf/experiment/q2_precision.yaml
ARMS = [("fp32", "dynamic"), ("bf16", "dynamic"), ("fp16", "dynamic"), ("fp16", 2.0**-8), ("fp16", 2.0**-16)]


def synthetic(zero_at_smallest: dict[str, float], seeds=(0, 1, 2), arms=ARMS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs whose per-layer zero-gradient fraction is 0 except at the smallest scale (the given
    values, +0.01 per seed); a loss series with one 20x spike in the fp32 arm."""
    rows, runs = [], []
    for seed in seeds:
        for prec, scale in arms:
            rid = f"{seed}-{prec}-{scale}"
            runs.append({"run_id": rid, "seed": seed, "status": "done", "train.precision": prec,
                         "train.loss_scale": scale})
            loss = np.exp(-np.arange(400) / 100) + 1e-3
            if prec == "fp32":
                loss[300:303] *= 20
            rows += [{"run_id": rid, "seed": seed, "status": "done", "experiment": "q2_precision", "step": t,
                      "metric": "loss", "value": v} for t, v in enumerate(loss)]
            for step in range(0, 400, 50):
                for i, x in enumerate(LAYERS):
                    z = zero_at_smallest[x] + 0.01 * seed if scale == 2.0**-16 else 0.0
                    for metric, value in (("frac_g_zero", z), ("frac_g_below_eps", z), ("frac_sqrtv_below_eps", z / 2),
                                          ("u_over_r", 1.0), ("grad_rms", 10.0 ** (i - 3)), ("update_rms", 1e-4)):
                        rows.append({"run_id": rid, "seed": seed, "status": "done", "experiment": "q2_precision",
                                     "step": step, "metric": f"{metric}/{x}", "value": value})
    return pd.DataFrame(rows), pd.DataFrame(runs)


def test_q2_is_registered_in_place_of_the_pending_placeholder():
    assert CLAIMS["Q2"].experiment == "q2_precision" and CLAIMS["Q2"].judge is q2


def test_arm_names():
    assert [arm_name(p, s) for p, s in ARMS] == ["fp32", "bf16", "fp16 dynamic", "fp16 s=2^-8", "fp16 s=2^-16"]
    assert arm_name("fp16", 0.3) == "fp16 s=0.3"


def test_shallow_layer_underflowing_most_is_answered_with_its_zero_fraction():
    j = q2(*synthetic({"layer0": 0.9, "layer1": 0.5, "layer2": 0.1}))
    assert j.verdict == "answered" and j.seeds == [0, 1, 2]
    assert j.value == pytest.approx(0.91) and j.ci_low < 0.91 < j.ci_high
    assert "shallowest layer (layer0) has more zero-gradient" in j.detail
    assert "most first, fp16 s=2^-8: layer0, layer1, layer2; fp16 s=2^-16: layer0, layer1, layer2" in j.detail and "shallow > deep in 3 of 3 seeds" in j.detail
    assert "fp16 s=2^-16 (3 seeds): zero 0.91 / 0.51 / 0.11" in j.detail
    assert "fp32 (3 seeds): zero 0 / 0 / 0" in j.detail  # one 20x spike per 400 steps:
    assert "R3 episodes/1k 2.5 (height > 10x 2.5)" in j.detail


def test_q2_fraction_interval_is_a_bootstrap_inside_zero_one():
    j = q2(*synthetic({"layer0": 0.98, "layer1": 0.5, "layer2": 0.1}))  # 0.98, 0.99, 1.00: a t interval passes 1
    assert j.verdict == "answered" and 0.98 <= j.ci_low <= j.value <= j.ci_high <= 1.0
    low = q2(*synthetic({"layer0": 0.0, "layer1": 0.0, "layer2": 0.0}))  # 0, 0.01, 0.02: a t interval goes below 0
    assert low.value == pytest.approx(0.01) and 0.0 <= low.ci_low <= low.value <= low.ci_high <= 0.02
    one = q2(*synthetic({"layer0": 0.98, "layer1": 0.5, "layer2": 0.1}, seeds=(2,)))
    assert one.verdict == "inconclusive" and all(np.isnan(x) or 0 <= x <= 1 for x in (one.ci_low, one.ci_high))


def test_q2_spike_rates_under_each_definition_and_no_premise():
    assert CLAIMS["Q2"].spikes
    for d, rate in (("R10", "2.5"), ("R100", "0.0")):
        j = q2(*synthetic({"layer0": 0.9, "layer1": 0.5, "layer2": 0.1}), definition=d)
        assert j.verdict == "answered" and f"{d} episodes/1k {rate}" in j.detail and j.premise_held is None


def test_deep_layer_underflowing_most_is_answered_the_other_way():
    j = q2(*synthetic({"layer0": 0.05, "layer1": 0.2, "layer2": 0.7}))
    assert j.verdict == "answered" and j.value == pytest.approx(0.06)
    assert "has no more zero-gradient" in j.detail and "shallow > deep in 0 of 3 seeds" in j.detail
    assert "fp16 s=2^-16: layer2, layer1, layer0" in j.detail


def test_too_few_seeds_or_a_missing_arm_is_inconclusive():
    few = q2(*synthetic({"layer0": 0.9, "layer1": 0.5, "layer2": 0.1}, seeds=(0, 1)))
    assert few.verdict == "inconclusive" and few.value == pytest.approx(0.905) and "only 2 seed(s)" in few.detail
    no_fixed = q2(*synthetic({"layer0": 0.9, "layer1": 0.5, "layer2": 0.1}, arms=ARMS[:3]))
    assert no_fixed.verdict == "inconclusive" and no_fixed.value is None


def test_a_tiny_q2_sweep_gives_a_valid_verdict(cfg_factory, tmp_path):
    for seed in (0, 1, 2):
        for arm in ("fp32", "bf16", "fp16_dynamic", "fp16_2m8", "fp16_2m16"):
            cfg = cfg_factory("experiment=q2_precision", f"+arm/q2_precision={arm}", f"seed={seed}",
                              "train.steps=40", "probe.every=10", "threads=1", results_dir=tmp_path)
            assert train.run(cfg)["status"] == "done"
    assert set(results.runs(tmp_path)["label"]) == {"fp32", "bf16", "fp16 dynamic", "fp16 s=2^-8", "fp16 s=2^-16"}
    v = evaluate(tmp_path, ids=["Q2"])[0]
    assert v.verdict == "answered" and v.seeds == [0, 1, 2]
    assert 0.5 < v.value <= 1.0  # at s = 2^-16 most of layer0's gradient underflows from the start
    assert "fp32 (3 seeds): zero 0 / 0 / 0" in v.detail
