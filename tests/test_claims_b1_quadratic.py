"""B1 (replicate/claims/b1_quadratic.py) on synthetic results on both sides of its threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
from claims_synthetic import loss_frame as tidy, smooth, spiky

from replicate.claims.b1_quadratic import b1


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


def test_b1_a_spike_is_one_episode_of_the_definition_used():
    from replicate.claims import CLAIMS, _load_modules

    _load_modules()
    assert CLAIMS["B1"].spikes
    for d in ("R10", "R100", "Z6"):  # 50x spikes: episodes under R10 and Z6, none under R100
        j = b1(*_b1_runs(spiking_controls=False), definition=d)
        assert j.verdict == ("not replicated" if d == "R100" else "replicated"), (d, j.detail)
        assert f"runs with a {d} spike episode" in j.detail and j.premise_held is None


def test_b1_interval_stays_in_zero_one_and_one_seed_is_inconclusive():
    j = b1(*_b1_runs(spiking_controls=False))
    assert j.value == 1.0 and 0.0 <= j.ci_low <= j.ci_high <= 1.0
    one = b1(*_b1_runs(spiking_controls=False, seeds=(0,)))
    assert one.verdict == "inconclusive" and all(np.isnan(x) or 0 <= x <= 1 for x in (one.ci_low, one.ci_high))
