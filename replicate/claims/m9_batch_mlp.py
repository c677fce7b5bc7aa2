"""M9 (Molybog et al. 2023): larger batches give more loss spikes.

Per seed, the Spearman rank correlation between the batch size and the spike rate (episodes of
``spikes.detect`` with the spike of CLAIMS.md, loss > 3x the median of the previous 100 steps, per
1k steps) over >= 4 batch sizes trained for the same number of steps; the value is its mean over
seeds with a t interval. The rates of taller spikes (> 10x, > 100x) and their correlations are
reported beside it, never used for the verdict. A batch size of null (the full batch) counts as
the data set's size ``data.n``.
The same judge gives M9_gpu on ``m9_gpu``.

Q1 (open question of CLAIMS.md), judged on the same runs: would spikes still happen if every step
saw the whole data set? The full batch's spike rate, beside the minibatches' (answered, no pass/fail).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import mean_interval, spearman, t_interval
from .registry import Judgement, claim
from .verdicts import answered, judged

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
M9_HEIGHT = 3  # the spike of CLAIMS.md, fixed before any run
M9_NEED = 0.8
MIN_BATCH_SIZES = 4
Q1_STATEMENT = "Would spikes still happen if every step saw the whole data set (full batch)?"


def _batch(r: pd.Series) -> float:
    b = r.get("data.batch_size")
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return float(r.get("data.n", np.nan))
    return float(b)


@claim("M9", experiment="m9_batch_mlp", gpu="m9_gpu", figures=["spike_rates"],
       source=f"{SOURCE} §4",
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
            rho[h][int(seed)] = spearman(g.index.to_numpy(), g[key].to_numpy())
    main = rho[M9_HEIGHT]
    value, lo, hi = mean_interval(main, bounds=(-1.0, 1.0))
    seeds = sorted(main)
    verdict = judged(seeds, value > M9_NEED)
    table = s.groupby("batch")[list(keys.values())].mean()
    detail = ("mean spikes per 1k steps (>3x / >10x / >100x) by batch size: "
              + "; ".join(f"{b:g}: {r.iloc[0]:.1f} / {r.iloc[1]:.1f} / {r.iloc[2]:.1f}" for b, r in table.iterrows())
              + f"; rho per seed (>{M9_HEIGHT}x): " + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(main.items()))
              + "; mean rho for taller spikes (not judged): "
              + ", ".join(f">{h}x {np.mean(list(rho[h].values())):.2f}" for h in (10, 100) if rho[h]))
    return Judgement(verdict, value, lo, hi, seeds, detail)


# ------------------------------------------------------------------------------------------- Q1


@claim("Q1", experiment="m9_batch_mlp", figures=["spike_rates"],
       source="open question (CLAIMS.md)", statement=Q1_STATEMENT,
       metric="spikes (> 3x the median of the previous 100 steps) per 1k steps with the full batch (256 of "
              "256 points), mean over seeds; beside it the rates of minibatches of 16-128 of the same "
              "workload (the M9 sweep, same steps)",
       threshold="none (answered with the measured rate)")
def q1(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    s = spikes.summarize(metrics).merge(runs[["run_id", "data.batch_size", "data.n"]], on="run_id")
    s["batch"] = s["data.batch_size"].fillna(s["data.n"]).astype(int)
    full = s[s["batch"] >= s["data.n"]]
    seeds = sorted(int(x) for x in full["seed"])
    rates = full.sort_values("seed")["spikes_per_1k"].to_list()
    lo, hi = t_interval(rates)
    by_batch = s.groupby("batch")[["spikes_per_1k", "spikes_per_1k_h10", "spikes_per_1k_h100"]].mean()
    detail = ("yes: the full batch spikes too" if np.mean(rates) > 0 else "no spike with the full batch") + \
        "; mean spikes per 1k steps (>3x / >10x / >100x) by batch size: " + "; ".join(
            f"{b}: {r.iloc[0]:.1f} / {r.iloc[1]:.1f} / {r.iloc[2]:.1f}" for b, r in by_batch.iterrows())
    return answered(seeds, float(np.mean(rates)) if rates else None, (lo, hi), detail)
