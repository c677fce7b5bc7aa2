"""M5 (replicate/claims/m5_depth.py) on synthetic results on both sides of its thresholds and with
too few seeds."""

from __future__ import annotations

import pytest
from claims_synthetic import frames

from replicate.claims.m5_depth import m5

SEEDS = (0, 1, 2)


def _m5_runs(ratios, emb_highest=True, seeds=SEEDS, missed=None):
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
            if seed == missed and depth == 8:  # no layer reaches 10% sqrt(v_hat) < eps at the largest depth
                for t in steps:
                    steps[t].update({k: 0.02 for k in steps[t] if k.startswith("frac_sqrtv_below_eps/")})
                    steps[t]["frac_sqrtv_below_eps/embedding"] = 0.05
            out.append((f"run{seed}-{depth}", seed, {"model.depth": depth}, steps))
    return frames(out)


def test_m5_on_both_sides_and_with_too_few_seeds():
    yes = m5(*_m5_runs([0.5, 0.3, 0.1]))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(0.2)
    assert m5(*_m5_runs([3.5, 5.3, 9.6])).verdict == "not replicated"  # the ratio rises with depth
    assert m5(*_m5_runs([0.5, 0.3, 0.1], emb_highest=False)).verdict == "not replicated"
    assert m5(*_m5_runs([0.5, 0.3, 0.1], seeds=(0, 1))).verdict == "inconclusive"


def test_m5_premise():
    """The premise (some layer >= 10% sqrt(v_hat) < eps at the largest depth): held, the threshold's
    verdict stands; missed in one seed, out of regime with the threshold's verdict in the detail."""
    yes = m5(*_m5_runs([0.5, 0.3, 0.1]))
    assert yes.premise_held and "90%/90%/90%" in yes.premise
    out = m5(*_m5_runs([0.5, 0.3, 0.1], missed=1))
    assert out.verdict == "out of regime" and out.premise_held is False
    assert "by its threshold: replicated" in out.detail and "5%" in out.premise
