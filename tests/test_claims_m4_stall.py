"""M4 (replicate/claims/m4_stall.py) on synthetic results on both sides of its thresholds and with
too few seeds."""

from __future__ import annotations

import pytest
from claims_synthetic import frames

from replicate.claims.m4_stall import m4

SEEDS = (0, 1, 2)


def _m4_runs(emb, deep, off=0.0, seeds=SEEDS, emb_frac=0.9, missed=None):
    out = []
    for seed in seeds:
        jitter = 0.002 * seed
        values = {"embedding": emb + jitter, "block0": 0.7, "block1": deep + jitter, "head": 0.6}
        steps = {t: {**{f"u_over_r/{x}": v for x, v in values.items()},
                     **{f"eps_damping/{x}": v / (1 + off) for x, v in values.items()},
                     **{f"frac_sqrtv_below_eps/{x}": 1 - v for x, v in values.items()},
                     **{f"grad_rms/{x}": 1e-3 * v for x, v in values.items()},
                     **{f"r_std/{x}": 0.2 for x in values}} for t in range(0, 301, 50)}
        for t in steps:  # the premise: embedding sqrt(v_hat) < eps in this fraction of coordinates
            steps[t]["frac_sqrtv_below_eps/embedding"] = 0.2 if seed == missed else emb_frac
        out.append((f"run{seed}", seed, {"optimizer.eps": 1e-3}, steps))
    return frames(out)


def test_m4_on_both_sides_and_with_too_few_seeds():
    yes = m4(*_m4_runs(emb=0.05, deep=0.8))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(0.052) and yes.ci_high < 0.1
    assert m4(*_m4_runs(emb=0.6, deep=0.4)).verdict == "not replicated"  # the embedding is not the stalled one
    assert m4(*_m4_runs(emb=0.05, deep=0.8, off=0.3)).verdict == "not replicated"  # not the eps damping
    assert m4(*_m4_runs(emb=0.05, deep=0.8, seeds=(0,))).verdict == "inconclusive"


def test_m4_premise():
    """The premise (>= 50% of the embedding's sqrt(v_hat) < eps): held, the threshold's verdict
    stands; missed in one seed, out of regime with the threshold's verdict in the detail."""
    yes = m4(*_m4_runs(emb=0.05, deep=0.8))
    assert yes.premise_held and "90%" in yes.premise
    out = m4(*_m4_runs(emb=0.05, deep=0.8, missed=1))
    assert out.verdict == "out of regime" and out.premise_held is False
    assert "by its threshold: replicated" in out.detail and "20%" in out.premise
    out = m4(*_m4_runs(emb=0.6, deep=0.4, missed=2))
    assert out.verdict == "out of regime" and "by its threshold: not replicated" in out.detail
