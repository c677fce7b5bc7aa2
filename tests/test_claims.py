"""Verdict functions on synthetic results on both sides of their thresholds, and the scorecard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replicate.claims import CLAIMS, MIN_SEEDS, VERDICTS, _load_modules, fraction_of_seeds
from replicate.claims.bai import b1
from replicate.claims.molybog import m8

ROOT = Path(__file__).resolve().parent.parent
_load_modules()


def tidy(series: dict[str, np.ndarray], seeds: dict[str, int]) -> pd.DataFrame:
    """A tidy metrics frame (as results.load) with one loss series per run id."""
    return pd.concat([pd.DataFrame({"run_id": rid, "experiment": "x", "seed": seeds[rid], "status": "done",
                                    "step": np.arange(len(loss)), "metric": "loss", "value": loss})
                      for rid, loss in series.items()], ignore_index=True)


def smooth(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.exp(-np.arange(n) / 500) * np.exp(0.02 * rng.standard_normal(n)) + 1e-3


def spiky(n=2000, every=100, height=50.0, seed=0):
    loss = smooth(n, seed)
    for t in range(150, n, every):
        loss[t:t + 3] *= height
    return loss


def test_fraction_of_seeds_on_both_sides_and_with_too_few_seeds():
    assert fraction_of_seeds({0: True, 1: True, 2: False}, need=2 / 3).verdict == "replicated"
    assert fraction_of_seeds({0: True, 1: False, 2: False}, need=2 / 3).verdict == "not replicated"
    few = fraction_of_seeds({0: True, 1: True}, need=0.5)
    assert few.verdict == "inconclusive" and MIN_SEEDS == 3


def _b1_runs(spiking_controls: bool, seeds=(0, 1, 2)):
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        for model in ("quadratic", "diag_quadratic"):
            for name, b2, eps in (("adam", 0.999, 1e-8), ("adam", 0.9, 1e-8), ("adam", 0.999, 1.0), ("sgd", None, None)):
                rid = f"{seed}-{model}-{name}-{b2}-{eps}"
                slow = name == "adam" and b2 == 0.999 and eps < 0.1
                series[rid] = spiky(seed=seed) if slow or (spiking_controls and name == "sgd") else smooth(seed=seed)
                seed_of[rid] = seed
                rows.append({"run_id": rid, "seed": seed, "model.name": model, "optimizer.name": name,
                             "optimizer.b2": b2 if b2 else np.nan, "optimizer.eps": eps if eps else np.nan})
    return tidy(series, seed_of), pd.DataFrame(rows)


def test_b1_verdict_on_both_sides():
    assert b1(*_b1_runs(spiking_controls=False)).verdict == "replicated"
    no = b1(*_b1_runs(spiking_controls=True))
    assert no.verdict == "not replicated" and no.value == 0.0
    assert b1(*_b1_runs(spiking_controls=False, seeds=(0, 1))).verdict == "inconclusive"


def _m8_runs(increasing: bool, seeds=(0, 1, 2)):
    series, seed_of, rows = {}, {}, []
    for seed in seeds:
        for i, b2 in enumerate((0.9, 0.95, 0.99, 0.999)):
            rid = f"{seed}-{b2}"
            every = [1000, 400, 200, 100][i] if increasing else [100, 200, 400, 1000][i]
            series[rid], seed_of[rid] = spiky(every=every, seed=seed), seed
            rows.append({"run_id": rid, "seed": seed, "optimizer.b2": b2})
    return tidy(series, seed_of), pd.DataFrame(rows)


def test_m8_verdict_on_both_sides():
    yes = m8(*_m8_runs(increasing=True))
    assert yes.verdict == "replicated" and yes.value == 1.0 and yes.seeds == [0, 1, 2]
    assert m8(*_m8_runs(increasing=False)).verdict == "not replicated"
    assert m8(*_m8_runs(increasing=True, seeds=(0,))).verdict == "inconclusive"


def claim_ids_in_claims_md() -> set[str]:
    text = (ROOT.parent / "shared" / "CLAIMS.md").read_text()
    ids = set(re.findall(r"^\| ([MBWS]\d+) \|", text, flags=re.M)) | set(re.findall(r"^- (Q\d)\.", text, flags=re.M))
    gpu = re.search(r"Tier `gpu`.*?: ([^.]*) again", text, flags=re.S)
    ids |= {f"{i.strip()}_gpu" for i in re.findall(r"[MBWS]\d+", gpu.group(1))} if gpu else set()
    return ids


@pytest.mark.skipif(not (ROOT.parent / "shared" / "CLAIMS.md").exists(), reason="../shared/CLAIMS.md not beside the repo")
def test_every_claim_of_claims_md_is_registered():
    ids = claim_ids_in_claims_md()
    assert len(ids) >= 20
    assert ids <= set(CLAIMS), sorted(ids - set(CLAIMS))


def _valid(verdict: str) -> bool:
    return verdict in VERDICTS or verdict.startswith("not run")


def test_the_committed_scorecard_lists_every_claim_with_a_valid_verdict():
    card = json.loads((ROOT / "results" / "scorecard.json").read_text())
    keys = {"claim", "source", "metric", "value", "ci_low", "ci_high", "threshold", "verdict", "seeds", "runtime_s"}
    assert all(keys <= set(row) for row in card)
    assert {row["claim"] for row in card} == set(CLAIMS)
    assert all(_valid(row["verdict"]) for row in card)
    for row in card:  # a verdict always comes with its numbers
        if row["verdict"] in ("replicated", "not replicated"):
            assert row["value"] is not None and len(row["seeds"]) >= MIN_SEEDS


def test_scorecard_writes_both_files_from_a_results_folder(tmp_path):
    from replicate import scorecard

    js, md = scorecard.write(tmp_path)
    rows = json.loads(js.read_text())
    assert {r["claim"] for r in rows} == set(CLAIMS)
    assert all(r["verdict"].startswith("not run") for r in rows)  # nothing was run
    assert "| claim | verdict |" in md.read_text()
    assert scorecard.experiments("m8,b1") == ["b1_quadratic", "m8_beta2_mlp"]
    with pytest.raises(SystemExit, match="CLAIMS=NOPE"):
        scorecard.experiments("nope")


def test_q1_answers_with_the_full_batch_rate_and_needs_three_seeds():
    from replicate.claims.questions import q1

    series, seed_of, rows = {}, {}, []
    for seed in (0, 1, 2):
        for batch in (16, 64, None):
            rid = f"{seed}-{batch}"
            series[rid], seed_of[rid] = (spiky(every=200, seed=seed) if batch is None else smooth(seed=seed)), seed
            rows.append({"run_id": rid, "seed": seed, "data.batch_size": batch, "data.n": 256})
    runs = pd.DataFrame(rows)
    a = q1(tidy(series, seed_of), runs)
    assert a.verdict == "answered" and a.detail.startswith("yes")
    assert a.value == pytest.approx(5.0, rel=0.1)  # spikes every 200 steps: 5 per 1k
    quiet = {rid: smooth(seed=seed_of[rid]) for rid in series}
    assert q1(tidy(quiet, seed_of), runs).detail.startswith("no spike")
    few = runs[runs["seed"] < 2]
    assert q1(tidy({r: series[r] for r in few["run_id"]}, seed_of), few).verdict == "inconclusive"
