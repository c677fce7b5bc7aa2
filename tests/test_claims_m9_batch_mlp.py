"""M9 and Q1 (replicate/claims/m9_batch_mlp.py) on synthetic results: M9 on both sides of its
threshold and with too few seeds or batch sizes; Q1's full-batch answer."""

from __future__ import annotations

import pandas as pd
import pytest
from claims_synthetic import N, loss_frame, runs_frame, smooth, spiky, spiky_loss
from conftest import tidy

from replicate.claims import CLAIMS, _load_modules
from replicate.claims.m9_batch_mlp import m9, q1

_load_modules()


def test_the_judges_are_registered_with_their_experiment():
    assert CLAIMS["M9"].experiment == CLAIMS["Q1"].experiment == "m9_batch_mlp"
    assert CLAIMS["M9"].judge is m9 and CLAIMS["Q1"].judge is q1


BATCHES = (16, 32, 64, 128, None)  # None: the full batch, counted as data.n = 256


def _m9_runs(rising: bool, seeds=(0, 1, 2), batches=BATCHES):
    series, seed_of, batch_of = {}, {}, {}
    for seed in seeds:
        for i, b in enumerate(batches):
            k = i if rising else len(batches) - 1 - i
            rid = f"m9-{seed}-{b}"
            series[rid] = {"loss": spiky_loss(seed, starts=tuple(range(150, N, (N - 150) // (k + 1)))[:k + 1])}
            seed_of[rid], batch_of[rid] = seed, b
    return tidy(series, seed_of), runs_frame(series, seed_of, **{"data.batch_size": batch_of,
                                                                 "data.n": {r: 256 for r in series}})


def test_m9_on_both_sides_of_its_threshold():
    yes = m9(*_m9_runs(rising=True))
    assert yes.verdict == "replicated" and yes.value == pytest.approx(1.0) and yes.seeds == [0, 1, 2]
    no = m9(*_m9_runs(rising=False))
    assert no.verdict == "not replicated" and no.value == pytest.approx(-1.0)


def test_m9_inconclusive_with_too_few_seeds_or_batch_sizes():
    assert m9(*_m9_runs(rising=True, seeds=(0, 1))).verdict == "inconclusive"
    assert m9(*_m9_runs(rising=True, batches=(16, 64, None))).verdict == "inconclusive"


def test_q1_answers_with_the_full_batch_rate_and_needs_three_seeds():
    series, seed_of, rows = {}, {}, []
    for seed in (0, 1, 2):
        for batch in (16, 64, None):
            rid = f"{seed}-{batch}"
            series[rid], seed_of[rid] = (spiky(every=200, seed=seed) if batch is None else smooth(seed=seed)), seed
            rows.append({"run_id": rid, "seed": seed, "data.batch_size": batch, "data.n": 256})
    runs = pd.DataFrame(rows)
    a = q1(loss_frame(series, seed_of), runs)
    assert a.verdict == "answered" and a.detail.startswith("yes")
    assert a.value == pytest.approx(5.0, rel=0.1)  # spikes every 200 steps: 5 per 1k
    quiet = {rid: smooth(seed=seed_of[rid]) for rid in series}
    assert q1(loss_frame(quiet, seed_of), runs).detail.startswith("no spike")
    few = runs[runs["seed"] < 2]
    assert q1(loss_frame({r: series[r] for r in few["run_id"]}, seed_of), few).verdict == "inconclusive"
