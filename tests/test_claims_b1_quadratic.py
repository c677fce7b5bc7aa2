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
