"""M9 (Molybog et al. 2023): larger batches give more loss spikes.

Per seed, the Spearman rank correlation between the batch size and the spike rate (episodes per
1k steps under the spike definition judged, ``spikes.summarize(definition=...)``: R3 for the
verdict, R10, R100 and Z6 beside it) over >= 4 batch sizes trained for the same number of steps.
The value is the mean of the per-seed rhos; its interval is a percentile bootstrap over the seeds'
rhos (``stats.bootstrap_interval``), which stays within the rhos' range and so within [-1, 1] (a t
interval could leave it). The rates of the definition's taller episodes (height > 10x, > 100x their
baseline) are reported beside it, never used for the verdict. A batch size of null (the full batch)
counts as the data set's size ``data.n``.
Premise (CLAIMS.md): the largest batch has >= 10 spike episodes in every seed under the definition
used; otherwise the verdict is ``out of regime`` (``in_regime``).
The same judge gives M9_gpu on ``m9_gpu``.

Q1 (open question of CLAIMS.md), judged on the same runs: would spikes still happen if every step
saw the whole data set? The full batch's spike rate under the definition used, pooled over seeds
with the exact Poisson interval (``stats.rate_interval``: a rate cannot go below 0, a t interval
could), beside the minibatches' rates with the same interval (answered, no pass/fail). Premise: the
minibatch arms together have >= 10 episodes in every seed (a full batch without spikes is an answer,
not a missed regime).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import bootstrap_interval, count_of_rate, rate_interval, spearman
from .registry import Judgement, claim
from .verdicts import answered, in_regime, judged

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
M9_NEED = 0.8
MIN_BATCH_SIZES = 4
PREMISE_EPISODES = 10  # CLAIMS.md: >= 10 spike episodes in every seed (M9: the largest batch; Q1: the minibatches)
Q1_STATEMENT = "Would spikes still happen if every step saw the whole data set (full batch)?"
TALLER = (10, 100)  # height buckets reported beside the verdict, never judged


def _batch(r: pd.Series) -> float:
    b = r.get("data.batch_size")
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return float(r.get("data.n", np.nan))
    return float(b)


def _count(r) -> int:
    """Episodes of one run (summary row) from its rate and n_steps."""
    return count_of_rate(r["spikes_per_1k"], r["n_steps"])


def _summary(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str) -> pd.DataFrame:
    s = spikes.summarize(metrics, definition=definition)
    if s.empty:
        return s
    info = runs.set_index("run_id")
    s["batch"] = [_batch(info.loc[rid]) for rid in s["run_id"]]
    s["count"] = [_count(r) for _, r in s.iterrows()]
    return s


@claim("M9", experiment="m9_batch_mlp", gpu="m9_gpu", figures=["spike_rates"], spikes=True,
       source=f"{SOURCE} §4",
       statement="Larger batches give more spikes",
       metric=f"per seed: Spearman rho between batch size and spike episodes per 1k steps (R3; R10, R100, Z6 "
              f"beside it), >= {MIN_BATCH_SIZES} batch sizes at equal steps; value = mean over seeds, "
              "bootstrap interval over the seeds' rhos",
       threshold=f"rho > {M9_NEED}")
def m9(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    s = _summary(metrics, runs, definition)
    if s.empty:
        return Judgement("inconclusive", None, detail="no loss series")
    keys = {"all": "spikes_per_1k", **{h: f"spikes_per_1k_h{h}" for h in TALLER}}
    rho = {h: {} for h in keys}
    for seed, g in s.groupby("seed"):
        g = g.groupby("batch")[list(keys.values())].mean().sort_index()  # one rate per batch size
        if len(g) < MIN_BATCH_SIZES:
            continue
        for h, key in keys.items():
            rho[h][int(seed)] = spearman(g.index.to_numpy(), g[key].to_numpy())
    main = {sd: r for sd, r in rho["all"].items() if math.isfinite(r)}
    seeds = sorted(main)
    vals = [main[sd] for sd in seeds]
    value = float(np.mean(vals)) if vals else None
    lo, hi = bootstrap_interval(vals)
    verdict = judged(seeds, value is not None and value > M9_NEED)
    table = s.groupby("batch")[list(keys.values())].mean()
    detail = (f"mean {definition} spike episodes per 1k steps (all / height > 10x / > 100x) by batch size: "
              + "; ".join(f"{b:g}: {r.iloc[0]:.1f} / {r.iloc[1]:.1f} / {r.iloc[2]:.1f}" for b, r in table.iterrows())
              + f"; rho per seed ({definition}): " + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(main.items()))
              + "; mean rho for taller episodes (not judged): "
              + ", ".join(f">{h}x {np.nanmean(list(rho[h].values())):.2f}" for h in TALLER if rho[h]))
    j = Judgement(verdict, value, lo, hi, seeds, detail)
    top = s[s["batch"] == s["batch"].max()]
    counts = {int(sd): int(g["count"].sum()) for sd, g in top.groupby("seed")}
    every = sorted(int(x) for x in s["seed"].unique())
    held = {sd: counts.get(sd, 0) >= PREMISE_EPISODES for sd in every}
    reached = (f"{definition} spike episodes at the largest batch ({s['batch'].max():g}): "
               + "/".join(str(counts.get(sd, 0)) for sd in every)
               + f" (seeds {every}; premise: >= {PREMISE_EPISODES} per seed)")
    return in_regime(j, held, reached)


# ------------------------------------------------------------------------------------------- Q1


def _rate(g: pd.DataFrame) -> tuple[float, float, float]:
    return rate_interval(g["count"].to_list(), g["n_steps"].to_list())


@claim("Q1", experiment="m9_batch_mlp", figures=["spike_rates"], spikes=True,
       source="open question (CLAIMS.md)", statement=Q1_STATEMENT,
       metric="spike episodes per 1k steps (R3; R10, R100, Z6 beside it) with the full batch (256 of 256 "
              "points), pooled over seeds, exact Poisson interval; beside it the rates of minibatches of "
              "16-128 of the same workload (the M9 sweep, same steps)",
       threshold="none (answered with the measured rate)")
def q1(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    s = _summary(metrics, runs, definition)
    if s.empty:
        return Judgement("inconclusive", None, detail="no loss series")
    n = s["run_id"].map(runs.set_index("run_id")["data.n"]).astype(float)
    full_mask = s["batch"] >= n
    full, mini = s[full_mask], s[~full_mask]
    seeds = sorted(int(x) for x in full["seed"].unique())
    value, lo, hi = _rate(full) if len(full) else (None, math.nan, math.nan)
    keys = ["spikes_per_1k", *(f"spikes_per_1k_h{h}" for h in TALLER)]
    by_batch = s.groupby("batch")
    rows = []
    for b, g in by_batch:
        r, rl, rh = _rate(g)
        taller = g[keys[1:]].mean()
        rows.append(f"{b:g}: {r:.1f} [{rl:.1f}, {rh:.1f}] (height > 10x / > 100x {taller.iloc[0]:.1f} / "
                    f"{taller.iloc[1]:.1f})")
    spiked = value is not None and value > 0
    detail = (("yes: the full batch spikes too" if spiked else "no spike with the full batch")
              + f"; {definition} spike episodes per 1k steps by batch size, pooled over seeds [exact Poisson "
              "95%]: " + "; ".join(rows))
    j = answered(seeds, value, (lo, hi), detail, complete=len(full) > 0 and len(mini) > 0,
                 why="with the full batch")
    every = sorted(int(x) for x in s["seed"].unique())
    counts = {int(sd): int(g["count"].sum()) for sd, g in mini.groupby("seed")}
    held = {sd: counts.get(sd, 0) >= PREMISE_EPISODES for sd in every}
    reached = (f"{definition} spike episodes in the minibatch arms (batch "
               + ", ".join(f"{b:g}" for b in sorted(mini["batch"].unique())) + "), summed per seed: "
               + "/".join(str(counts.get(sd, 0)) for sd in every)
               + f" (seeds {every}; premise: >= {PREMISE_EPISODES} per seed)")
    return in_regime(j, held, reached)
