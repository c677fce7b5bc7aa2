"""M3 (replicate/claims/m3_batch_gpt.py) on synthetic results: both sides of each threshold, too
few seeds or batch sizes; and tiny end-to-end runs of the experiment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tidy

from replicate import train
from replicate.claims import CLAIMS, VERDICTS, _load_modules, evaluate
from replicate.claims.m3_batch_gpt import m3

_load_modules()
LAYERS = ("embedding", "block0", "head")
BATCHES = (4, 16, 64, 256)


def test_the_judge_is_registered_with_its_experiment():
    assert CLAIMS["M3"].judge is m3 and CLAIMS["M3"].experiment == "m3_batch_gpt"


def _m3_runs(kind: str, seeds=(0, 1, 2), steps: int = 121, every: int = 10):
    """Per seed and batch size, probes every ``every`` steps. kind 'rise': autocorrelation and
    fraction |r| > 0.9 of the embedding rise with the batch; 'flat_sign': the fraction does not rise
    in seed 2 (one swap: rho 0.8, not > 0.8); 'falls': both fall with the batch."""
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for i, b in enumerate(BATCHES):
            level = {"rise": i, "flat_sign": i, "falls": -i}[kind]
            sign_level = (1, 0, 2, 3)[i] if kind == "flat_sign" and seed == 2 else level
            probe = np.arange(steps) % every == 0
            rid = f"m3-{seed}-{b}"
            m = {"loss": 3 - 0.01 * np.arange(steps)}
            for layer in LAYERS:
                noise = 0.002 * rng.standard_normal(steps)
                m[f"grad_autocorr/{layer}"] = np.where(probe, 0.2 + 0.05 * level + noise, np.nan)
                m[f"r_frac_sign/{layer}"] = np.where(probe, 0.02 + 0.005 * sign_level + noise / 10, np.nan)
                m[f"r_bc/{layer}"] = np.where(probe, 0.3 + 0.01 * level + noise, np.nan)
            series[rid], seed_of[rid] = m, seed
            rows.append({"run_id": rid, "seed": seed, "status": "done", "data.batch_size": b})
    return tidy(series, seed_of), pd.DataFrame(rows)


def test_m3_replicates_when_both_embedding_metrics_rise_with_the_batch_in_every_seed():
    j = m3(*_m3_runs("rise"))
    assert j.verdict == "replicated" and j.seeds == [0, 1, 2] and j.value == pytest.approx(1.0)
    assert "largest rise" in j.detail and "below M0's bimodal level" in j.detail


def test_m3_not_replicated_when_one_seed_misses_the_order_or_the_metrics_fall():
    j = m3(*_m3_runs("flat_sign"))
    assert j.verdict == "not replicated", j.detail
    assert "r_frac_sign 0: 1.00, 1: 1.00, 2: 0.80" in j.detail
    assert m3(*_m3_runs("falls")).verdict == "not replicated"


def test_m3_inconclusive_with_too_few_seeds_or_batch_sizes():
    assert m3(*_m3_runs("rise", seeds=(0, 1))).verdict == "inconclusive"
    metrics, runs = _m3_runs("rise")
    few = runs[runs["data.batch_size"] != 256]
    assert m3(metrics[metrics["run_id"].isin(few["run_id"])], few).verdict == "inconclusive"


def test_m3_end_to_end_on_tiny_runs(cfg_factory, tmp_path):
    root = tmp_path / "r"
    for seed in (0, 1, 2):
        for b in (2, 4, 8, 16):
            cfg = cfg_factory("experiment=m3_batch_gpt", f"seed={seed}", f"data.batch_size={b}", "train.steps=11",
                              "threads=1", results_dir=root)
            assert train.run(cfg)["status"] == "done"
    (v,) = evaluate(root, ids=["M3"])
    assert v.verdict in VERDICTS and v.seeds == [0, 1, 2], v.detail


def test_m3_premise_batch_span():
    """The premise (batch sizes span >= 16x; the stream is unbounded): held, the verdict stands; a
    seed whose batches span only 8x makes it out of regime, the threshold's verdict in the detail."""
    j = m3(*_m3_runs("rise"))
    assert j.premise_held and "64x/64x/64x" in j.premise and "unbounded" in j.premise
    metrics, runs = _m3_runs("rise")
    narrow = {4: 16, 16: 32, 64: 64, 256: 128}  # seed 1: 16..128, same order, an 8x span
    runs.loc[runs["seed"] == 1, "data.batch_size"] = runs.loc[runs["seed"] == 1, "data.batch_size"].map(narrow)
    j = m3(metrics, runs)
    assert j.verdict == "out of regime" and j.premise_held is False
    assert "by its threshold: replicated" in j.detail and "64x/8x/64x" in j.premise
