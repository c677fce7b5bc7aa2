"""M9 (Molybog et al. 2023): larger batches give more loss spikes.

Per seed, the Spearman rank correlation between the batch size and the spike rate (episodes of
``spikes.detect`` with the spike of CLAIMS.md, loss > 3x the median of the previous 100 steps, per
1k steps) over >= 4 batch sizes trained for the same number of steps; the value is its mean over
seeds with a t interval. The rates of taller spikes (> 10x, > 100x) and their correlations are
reported beside it, never used for the verdict. A batch size of null (the full batch) counts as
the data set's size ``data.n``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from . import MIN_SEEDS, Judgement, claim
from .precursors import mean_interval

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
M9_HEIGHT = 3  # the spike of CLAIMS.md, fixed before any run
M9_NEED = 0.8
MIN_BATCH_SIZES = 4


def _spearman(x, y) -> float:
    """Spearman's rho; 0 when the rates do not vary (no rise), NaN with fewer than 2 points."""
    from scipy import stats

    if len(x) < 2:
        return float("nan")
    if np.ptp(np.asarray(y, float)) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def _batch(r: pd.Series) -> float:
    b = r.get("data.batch_size")
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return float(r.get("data.n", np.nan))
    return float(b)


@claim("M9", experiment="m9_batch_mlp", source=f"{SOURCE} §4",
       statement="Larger batches give more spikes",
       metric=f"per seed: Spearman rho between batch size and spikes (> {M9_HEIGHT}x the median of the previous "
              f"100 steps) per 1k steps, >= {MIN_BATCH_SIZES} batch sizes at equal steps; value = mean over seeds",
       threshold=f"rho > {M9_NEED}")
def m9(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    s = spikes.summarize(metrics)
    if s.empty:
        return Judgement("inconclusive", None, detail="no loss series")
    info = runs.set_index("run_id")
    s["batch"] = [_batch(info.loc[rid]) for rid in s["run_id"]]
    keys = {h: f"spikes_per_1k_h{h}" for h in (3, 10, 100)}
    rho = {h: {} for h in keys}
    for seed, g in s.groupby("seed"):
        g = g.groupby("batch")[list(keys.values())].mean().sort_index()  # one rate per batch size
        if len(g) < MIN_BATCH_SIZES:
            continue
        for h, key in keys.items():
            rho[h][int(seed)] = _spearman(g.index.to_numpy(), g[key].to_numpy())
    main = rho[M9_HEIGHT]
    value, lo, hi = mean_interval(main, bounds=(-1.0, 1.0))
    seeds = sorted(main)
    if len(seeds) < MIN_SEEDS:
        verdict = "inconclusive"
    else:
        verdict = "replicated" if value > M9_NEED else "not replicated"
    table = s.groupby("batch")[list(keys.values())].mean()
    detail = ("mean spikes per 1k steps (>3x / >10x / >100x) by batch size: "
              + "; ".join(f"{b:g}: {r.iloc[0]:.1f} / {r.iloc[1]:.1f} / {r.iloc[2]:.1f}" for b, r in table.iterrows())
              + f"; rho per seed (>{M9_HEIGHT}x): " + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(main.items()))
              + "; mean rho for taller spikes (not judged): "
              + ", ".join(f">{h}x {np.mean(list(rho[h].values())):.2f}" for h in (10, 100) if rho[h]))
    return Judgement(verdict, value, lo, hi, seeds, detail)
