"""H1 (replicate/claims/h1_beta2_halflife_gpt.py) on synthetic results: each condition (fewer spikes
and no higher final held-out loss at the smallest batch, a smaller spread over batch sizes) on both
sides, both arms without spikes (unclear: inconclusive), the premise (span >= 16x, no full batch) both
ways, too few seeds, the interval inside the per-seed differences; the experiment's configs carry
batch, steps at equal tokens and beta2; a tiny end-to-end run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from claims_synthetic import counted_spikes
from conftest import tidy

from replicate import spikes
from replicate.claims import CLAIMS, _load_modules
from replicate.claims.h1_beta2_halflife_gpt import h1

_load_modules()

N = 3000


def test_the_judge_is_registered_with_its_experiment_and_z6():
    c = CLAIMS["H1"]
    assert c.experiment == "h1_beta2_halflife_gpt" and c.judge is h1 and c.spikes and c.primary == "Z6"


def _val(level: float, n: int = N) -> np.ndarray:
    """A val_loss logged every 100 steps (and the last), NaN elsewhere, ending at ``level``."""
    v = np.full(n, np.nan)
    at = [*range(0, n, 100), n - 1]
    v[at] = level + 1.0 * np.exp(-np.asarray(at) / 500)
    return v


def _runs(seeds=(0, 1, 2), batches=(4, 16, 64), fixed_spikes=5, scaled_spikes=1, fixed_val=None,
          scaled_val=None, per_seed=None):
    """Fixed arm (beta2 0.95 at every batch) and scaled arm (0.95^(B/Bmax)); the largest batch's run
    is shared. ``fixed_val``/``scaled_val``: final held-out loss per batch; ``per_seed``: {seed: kwargs}."""
    fixed_val = fixed_val or {4: 2.0, 16: 1.8, 64: 1.7}
    scaled_val = scaled_val or {4: 1.75, 16: 1.72, 64: 1.7}
    bmax = max(batches)
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        kw = {**dict(fixed_spikes=fixed_spikes, scaled_spikes=scaled_spikes, fixed_val=fixed_val,
                     scaled_val=scaled_val), **(per_seed or {}).get(seed, {})}
        for b in batches:
            for arm in ("fixed", "scaled"):
                if b == bmax and arm == "scaled":
                    continue  # the same run as the fixed arm's
                b2 = 0.95 if arm == "fixed" else 0.95 ** (b / bmax)
                k = kw[f"{arm}_spikes"] if b == min(batches) else 0
                rid = f"{seed}-{arm}-{b}"
                series[rid] = {"loss": counted_spikes(seed, k, n=N), "val_loss": _val(kw[f"{arm}_val"][b])}
                seed_of[rid] = seed
                rows.append({"run_id": rid, "seed": seed, "status": "done", "data.batch_size": b,
                             "optimizer.b2": b2, "train.steps": N, "data.name": "shakespeare"})
    return tidy(series, seed_of), pd.DataFrame(rows)


def test_replicated_when_every_condition_holds_in_every_seed():
    j = h1(*_runs())
    assert j.verdict == "replicated" and j.seeds == [0, 1, 2] and j.premise_held
    assert j.value == pytest.approx(4.0)  # 5 - 1 Z6 episodes at the smallest batch, every seed
    assert "16x" in j.premise


@pytest.mark.parametrize("definition", spikes.DEFINITIONS)
def test_each_definition_counts_the_episodes(definition):
    j = h1(*_runs(), definition=definition)
    if definition == "R100":  # the synthetic spikes are 30x tall: none under R100, in either arm
        assert j.verdict == "inconclusive" and j.value == 0 and "unclear" in j.detail
    else:
        assert j.verdict == "replicated" and j.value == pytest.approx(4.0)


def test_more_spikes_in_the_scaled_arm_is_not_replicated():
    j = h1(*_runs(per_seed={1: {"fixed_spikes": 2, "scaled_spikes": 3}}))
    assert j.verdict == "not replicated"
    assert "fewer Z6 spikes (scaled) at the smallest batch in every seed: no" in j.detail


def test_as_many_spikes_is_not_fewer():
    j = h1(*_runs(fixed_spikes=3, scaled_spikes=3))
    assert j.verdict == "not replicated" and j.value == 0


def test_no_spike_in_either_arm_is_unclear_so_inconclusive():
    j = h1(*_runs(fixed_spikes=0, scaled_spikes=0))
    assert j.verdict == "inconclusive" and j.premise_held
    assert "at the smallest batch in every seed: unclear" in j.detail and "cannot be shown" in j.detail
    # one seed without spikes, the others fewer: still unclear, never yes
    j = h1(*_runs(per_seed={2: {"fixed_spikes": 0, "scaled_spikes": 0}}))
    assert j.verdict == "inconclusive"


def test_higher_held_out_loss_of_the_scaled_arm_at_the_smallest_batch_is_not_replicated():
    j = h1(*_runs(per_seed={0: {"scaled_val": {4: 2.05, 16: 1.72, 64: 1.7}}}))
    assert j.verdict == "not replicated"
    assert "final held-out loss (scaled) <= fixed at the smallest batch in every seed: no" in j.detail


def test_a_wider_spread_of_the_scaled_arm_is_not_replicated():
    # the scaled arm lower at B=4 but far worse at B=16: its spread is the wider
    j = h1(*_runs(per_seed={2: {"scaled_val": {4: 1.9, 16: 2.3, 64: 1.7}}}))
    assert j.verdict == "not replicated"
    assert "spread over batch sizes (scaled) < fixed in every seed: no" in j.detail


def test_premise_span_below_16x_is_out_of_regime():
    j = h1(*_runs(batches=(8, 16, 64), fixed_val={8: 2.0, 16: 1.8, 64: 1.7},
                  scaled_val={8: 1.75, 16: 1.72, 64: 1.7}))  # 8x; by its threshold: replicated
    assert j.verdict == "out of regime" and not j.premise_held and "8x" in j.premise


def test_premise_a_full_batch_is_out_of_regime():
    m, r = _runs()
    r["data.n"] = 64.0  # the largest batch is the whole data set
    j = h1(m, r)
    assert j.verdict == "out of regime" and "full batch" in j.premise


def test_too_few_seeds_is_inconclusive():
    j = h1(*_runs(seeds=(0, 1)))
    assert j.verdict == "inconclusive" and "only 2 seed(s)" in j.detail


def test_too_few_batch_sizes_judges_no_seed():
    j = h1(*_runs(batches=(4, 64)))
    assert j.verdict == "inconclusive" and j.seeds == []


def test_the_interval_stays_within_the_seeds_differences():
    j = h1(*_runs(per_seed={0: {"fixed_spikes": 6}, 1: {"fixed_spikes": 8}}))
    diffs = [5, 7, 4]
    assert j.value == pytest.approx(np.mean(diffs))
    assert min(diffs) <= j.ci_low <= j.value <= j.ci_high <= max(diffs)


def test_the_experiments_runs_carry_batch_beta2_and_equal_tokens(cfg_factory):
    arms = ("scaled_b4", "fixed_b4", "scaled_b16", "fixed_b16", "both_b64")
    cfgs = {a: cfg_factory("experiment=h1_beta2_halflife_gpt", f"+arm/h1_beta2_halflife_gpt={a}") for a in arms}
    tokens = {c["data"]["batch_size"] * c["data"]["context"] * c["train"]["steps"] for c in cfgs.values()}
    assert len(tokens) == 1  # equal tokens
    bs = {c["data"]["batch_size"] for c in cfgs.values()}
    assert max(bs) / min(bs) >= 16
    for a, c in cfgs.items():
        b, b2 = c["data"]["batch_size"], c["optimizer"]["b2"]
        want = 0.95 ** (b / 64) if a.startswith("scaled") else 0.95
        assert b2 == pytest.approx(want, rel=1e-12), a
        assert c["train"]["steps"] // c["train"]["val_every"] == 32  # held-out loss at equal token spacing
        # the half-life in tokens is the reference's in the scaled arm
        if not a.startswith("fixed"):
            assert b * math.log(0.5) / math.log(b2) == pytest.approx(64 * math.log(0.5) / math.log(0.95))


def test_a_tiny_end_to_end_run(cfg_factory, tmp_path):
    from replicate import results
    from replicate.train import run

    for seed in (0, 1, 2):
        for arm in ("fixed_b4", "scaled_b4", "fixed_b16", "scaled_b16", "both_b64"):
            cfg = cfg_factory("experiment=h1_beta2_halflife_gpt", f"+arm/h1_beta2_halflife_gpt={arm}",
                              f"seed={seed}", "model.width=16", "model.heads=2", "model.depth=1",
                              "data.context=8")
            cfg["train"]["steps"] //= 16  # 128, 32, 8 steps: still equal tokens
            cfg["train"]["val_every"] = max(1, cfg["train"]["val_every"] // 16)
            run(cfg)
    root = tmp_path / "results"
    j = h1(results.load(root), results.runs(root))
    assert j.verdict in ("replicated", "not replicated", "inconclusive") and j.seeds == [0, 1, 2]
    assert j.premise_held and "4, 16, 64" in j.premise


def test_a_shared_worst_largest_batch_flags_the_spread_condition():
    # the largest batch (one run in both arms) is the worst: a scaled arm better at B=4 has the wider spread
    j = h1(*_runs(fixed_val={4: 2.2, 16: 2.3, 64: 2.5}, scaled_val={4: 2.1, 16: 2.25, 64: 2.5}))
    assert j.verdict == "not replicated" and "spread over batch sizes (scaled) < fixed in every seed: no" in j.detail
    assert "cannot pass" in j.flag and "h1_beta2_halflife_gpt.yaml header" in j.flag
    assert j.corrected == "replicated"
    assert not h1(*_runs()).flag  # the largest batch the best: no flag
