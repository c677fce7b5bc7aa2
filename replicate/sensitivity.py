"""Learning-rate sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
training instabilities", arXiv 2309.14322, §2.2): how much the final loss suffers, on average over an
LR grid, against the best LR of the grid:

    sensitivity = mean over η in the grid of min(L(η), L0)  -  min over η in the grid of L(η)

with L(η) the final loss of the run at learning rate η and L0 the loss at initialisation (a run
that diverges, or ends worse than it started, counts as L0: the ``min`` caps each term). Lower is
better: a model whose loss barely depends on η has sensitivity near 0. A grid where no run ends
finite and below L0 (nothing trained at any η) has no sensitivity: NaN, not 0.

The final loss of a run is the median of its finite losses over the last ``TAIL`` (5%) of its
logged steps, robust to a spike on the last step; a run whose loss stopped being finite has a final
loss of +inf. One implementation for the leaderboard (replicate/leaderboard.py) and claim W2
(replicate/claims/w2_qk_norm.py).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

TAIL = 0.05  # final loss: median over the last 5% of logged steps


def final_loss(loss: Sequence[float], tail: float = TAIL) -> float:
    """Median of the last ``tail`` fraction (at least one point) of a loss series; +inf if any
    value is not finite (the run diverged), NaN for an empty series."""
    x = np.asarray(loss, dtype=float)
    if len(x) == 0:
        return float("nan")
    if not np.all(np.isfinite(x)):
        return float("inf")
    k = max(1, int(math.ceil(tail * len(x))))
    return float(np.median(x[-k:]))


def lr_sensitivity(final: Mapping[float, float], init: float) -> float:
    """mean_η min(L(η), L0) - min_η L(η) over the grid ``final`` = {η: L(η)}; NaN for an empty
    grid, a non-finite L0, or a grid where no L(η) is finite and below L0."""
    if not final or not math.isfinite(init):
        return float("nan")
    capped = np.array([min(v, init) if not math.isnan(v) else init for v in final.values()], dtype=float)
    if not np.any(capped < init):
        return float("nan")
    return float(capped.mean() - capped.min())


def run_losses(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a tidy metrics frame (``results.load()``): run_id, seed, init_loss (the
    first logged loss, before any update) and final_loss (``final_loss``)."""
    rows = []
    for run_id, g in metrics[metrics["metric"] == "loss"].groupby("run_id", sort=False):
        loss = g.sort_values("step")["value"].to_numpy(float)
        rows.append({"run_id": run_id, "seed": g["seed"].iloc[0], "init_loss": float(loss[0]) if len(loss) else np.nan,
                     "final_loss": final_loss(loss)})
    return pd.DataFrame(rows, columns=["run_id", "seed", "init_loss", "final_loss"])


def table(per_run: pd.DataFrame, by: Sequence[str] = (), lr: str = "optimizer.lr", min_lrs: int = 5) -> pd.DataFrame:
    """LR sensitivity per (``by``..., seed) from ``per_run`` (columns ``by``, seed, ``lr``,
    init_loss, final_loss; one row per run). Runs at the same η (e.g. the same run in two
    experiments) are averaged first. Columns: ``by``, seed, lr_sensitivity, n_lrs, best_lr,
    best_loss, init_loss; lr_sensitivity is NaN where the grid has fewer than ``min_lrs`` points."""
    by = list(by)
    rows = []
    for key, g in per_run.groupby([*by, "seed"], sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        grid = g.groupby(lr)["final_loss"].mean()
        init = float(g["init_loss"].mean())
        sens = lr_sensitivity(grid.to_dict(), init) if len(grid) >= min_lrs else float("nan")
        capped = grid.clip(upper=init)
        rows.append({**dict(zip([*by, "seed"], key)), "lr_sensitivity": sens, "n_lrs": len(grid),
                     "best_lr": float(capped.idxmin()) if len(grid) else np.nan,
                     "best_loss": float(capped.min()) if len(grid) else np.nan, "init_loss": init})
    return pd.DataFrame(rows, columns=[*by, "seed", "lr_sensitivity", "n_lrs", "best_lr", "best_loss", "init_loss"])
