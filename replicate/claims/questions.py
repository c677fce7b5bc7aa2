"""The open questions of CLAIMS.md: answered with numbers (verdict ``answered``), no pass/fail."""

import numpy as np
import pandas as pd

from .. import spikes
from . import MIN_SEEDS, Judgement, claim, pending, t_interval

Q1_STATEMENT = "Would spikes still happen if every step saw the whole data set (full batch)?"


@claim("Q1", experiment="m9_batch_mlp", source="open question (CLAIMS.md)", statement=Q1_STATEMENT,
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
    verdict = "answered" if len(seeds) >= MIN_SEEDS else "inconclusive"
    return Judgement(verdict, float(np.mean(rates)) if rates else None, lo, hi, seeds, detail)


_Q = {
    "Q2": "Does low-precision training make shallow layers stall more?",
    "Q3": "Do beta1/beta2 that decay over training avoid spikes without the cost of a small beta2 early on?",
    "Q4": "Does eps relative to each layer's gradient RMS, rather than eps itself, predict stalling across sizes?",
}
for _id, _q in _Q.items():
    pending(_id, source="open question (CLAIMS.md)", statement=_q, metric="measured answer", threshold="none")
