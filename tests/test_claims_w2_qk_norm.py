"""W2 (replicate/claims/w2_qk_norm.py) on synthetic grids on both sides of its threshold, with too few
seeds and with a grid that never reaches a high learning rate; one tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from replicate import results
from replicate.claims.w2_qk_norm import w2

LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def _grid(finals: dict[str, dict[int, list[float]]], init: float = 4.0):
    """tidy metrics and runs: for each arm and seed a loss series per lr that starts at ``init`` and
    ends at the given final loss (nan = diverged)."""
    frames, rows = [], []
    for arm, per_seed in finals.items():
        for seed, ends in per_seed.items():
            for lr, end in zip(LRS, ends):
                rid = f"{arm}-{seed}-{lr}"
                loss = np.r_[init, np.linspace(init, end, 40)] if np.isfinite(end) else np.r_[init, 2.0, np.nan]
                frames.append(pd.DataFrame({"run_id": rid, "experiment": "w2_qk_norm", "seed": seed, "status": "done",
                                            "step": np.arange(len(loss)), "metric": "loss", "value": loss}))
                rows.append({"run_id": rid, "seed": seed, "status": "done", "optimizer.lr": lr,
                             "model.qk_norm": arm == "qk", "model.z_loss": 1e-4 if arm == "qk" else 0.0})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)


PLAIN = [1.0, 0.5, 0.4, 2.0, np.nan]  # degrades at high lr, diverges at the top
ROBUST = [1.0, 0.5, 0.4, 0.6, 1.0]  # qk-norm + z-loss: flatter


def test_lower_sensitivity_with_qk_norm_in_every_seed_replicates():
    j = w2(*_grid({"plain": {s: PLAIN for s in range(3)}, "qk": {s: ROBUST for s in range(3)}}))
    assert j.verdict == "replicated" and j.value == 1.0 and j.seeds == [0, 1, 2]
    assert "degrades at the top of the grid in 3 of 3" in j.detail


def test_lower_in_only_one_seed_does_not_replicate():
    qk = {0: ROBUST, 1: [1.0, 0.5, 0.4, 3.0, np.nan], 2: [np.nan] * 5}  # seed 2: diverged at every lr
    j = w2(*_grid({"plain": {s: PLAIN for s in range(3)}, "qk": qk}))
    assert j.verdict == "not replicated" and abs(j.value - 1 / 3) < 1e-9


def test_two_seeds_are_inconclusive():
    j = w2(*_grid({"plain": {s: PLAIN for s in range(2)}, "qk": {s: ROBUST for s in range(2)}}))
    assert j.verdict == "inconclusive"


def test_a_grid_where_the_plain_model_never_degrades_is_out_of_regime():
    """The premise: the plain GPT's final loss at the top of the grid >= 2x its best, in every seed."""
    flat = [0.6, 0.5, 0.4, 0.4, 0.41]
    j = w2(*_grid({"plain": {s: flat for s in range(3)}, "qk": {s: [0.5, 0.45, 0.4, 0.4, 0.4] for s in range(3)}}))
    assert j.verdict == "out of regime" and j.premise_held is False and "1.02x" in j.premise


def test_premise_held_keeps_the_verdict_and_missed_in_one_seed_is_out_of_regime():
    j = w2(*_grid({"plain": {s: PLAIN for s in range(3)}, "qk": {s: ROBUST for s in range(3)}}))
    assert j.premise_held and "8.12x" in j.premise  # diverged at the top: capped at the initial loss 4.0
    mild = [1.0, 0.5, 0.4, 0.6, 0.7]  # final losses (tail medians) 1.59x its best at the top: short of 2x
    plain = {0: PLAIN, 1: PLAIN, 2: mild}
    j = w2(*_grid({"plain": plain, "qk": {s: [1.0, 0.5, 0.4, 0.45, 0.5] for s in range(3)}}))
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: replicated" in j.detail and "1.59x" in j.premise


def test_missing_arm_is_inconclusive():
    assert w2(*_grid({"plain": {s: PLAIN for s in range(3)}})).verdict == "inconclusive"


def test_tiny_end_to_end_run_gives_a_valid_verdict(tmp_path):
    from conftest import cli

    r = cli("-m", "experiment=w2_qk_norm", "train.steps=12", "seed=0", "threads=1",
            "optimizer.lr=1e-3,1e-2,1e-1,1.0,3.0", f"results_dir={tmp_path}", "progress=false")
    assert r.returncode == 0, r.stderr[-2000:]
    runs = results.runs(tmp_path, experiment="w2_qk_norm")
    assert len(runs) == 10 and set(runs["status"]) <= set(results.FINISHED)
    v = w2(results.load(tmp_path, experiment="w2_qk_norm"), runs)
    assert v.verdict == "inconclusive" and v.seeds == [0]  # one seed
    assert "LR sensitivity per seed" in v.detail
