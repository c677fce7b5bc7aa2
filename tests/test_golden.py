"""Golden losses: a refactor that changes no computation leaves these loss series unchanged.

The series in golden/*.json were written by this suite (``UPDATE_GOLDEN=1 pytest tests/test_golden.py``);
regenerate them only for a change that is meant to change the numbers, and say so in the commit.
Compared to 1e-5 relative: CPU kernels may round differently on another instruction set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from replicate import results, train

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "mlp_adam": ["model=mlp", "data=regression", "train.steps=200", "optimizer.b2=0.99"],
    "gpt_adamw_cosine": ["model=gpt", "data=markov", "data.batch_size=8", "data.context=16", "model.width=32",
                         "model.heads=2", "optimizer=adamw", "optimizer.lr=3.0e-3", "schedule=cosine",
                         "train.steps=40"],
    "quadratic_sgd": ["model=diag_quadratic", "data=none", "optimizer=sgd", "optimizer.lr=0.05", "train.steps=50"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_series_matches_the_golden_one(case, cfg_factory):
    cfg = cfg_factory(*CASES[case], "threads=1")
    train.run(cfg)
    df = results.load(cfg["results_dir"], metrics=["loss", "lr"])
    series = {m: g.sort_values("step")["value"].tolist() for m, g in df.groupby("metric")}
    path = GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps({"overrides": CASES[case], **series}, indent=0) + "\n")
    golden = json.loads(path.read_text())
    for metric in ("loss", "lr"):
        np.testing.assert_allclose(series[metric], golden[metric], rtol=1e-5, atol=0, err_msg=metric)
