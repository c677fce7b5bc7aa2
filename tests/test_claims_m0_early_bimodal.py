"""M0 (replicate/claims/m0_early_bimodal.py) on synthetic results on both sides of its threshold
and with too few seeds; what the bias correction alone gives on i.i.d. gradients."""

from __future__ import annotations

import math

from claims_synthetic import frames

from replicate.claims.m0_early_bimodal import construction_steps, iid_fraction, m0

SEEDS = (0, 1, 2)


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
