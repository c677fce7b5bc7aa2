"""M8 (Molybog et al. 2023, arXiv 2304.09871, §4): smaller β2 gives fewer spikes.

Per seed, the spike rates (``spikes.summarize``) at β2 = 0.9, 0.95, 0.99, 0.999; the claim holds in
a seed when they never decrease as β2 grows and are higher at 0.999 than at 0.9. The same judge
gives M8_gpu on ``m8_gpu``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import spikes
from .registry import Judgement, claim
from .verdicts import fraction_of_seeds, in_regime

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# The spike of CLAIMS.md, fixed before any run: loss > 3x the median of the previous 100 steps.
# Rates of taller spikes (> 10x, > 100x) are reported beside it, never used for the verdict.
M8_HEIGHT = 3


@claim("M8", experiment="m8_beta2_mlp", gpu="m8_gpu", figures=["spike_rates"],
       source=f"{SOURCE} §4",
       statement="Smaller beta2 gives fewer spikes",
       metric=f"per seed: spikes (> {M8_HEIGHT}x the median of the previous 100 steps) per 1k steps at beta2 = 0.9, 0.95, 0.99, "
              "0.999 never decrease as beta2 grows and are higher at 0.999 than at 0.9; value = fraction of seeds",
       threshold=">= 2/3 of seeds")
def m8(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    s = spikes.summarize(metrics).merge(runs[["run_id", "optimizer.b2"]], on="run_id")
    key = f"spikes_per_1k_h{M8_HEIGHT}"
    hits = {}
    for seed, g in s.groupby("seed"):
        rates = g.sort_values("optimizer.b2")[key].to_numpy()
        hits[int(seed)] = bool(len(rates) >= 3 and np.all(np.diff(rates) >= 0) and rates[-1] > rates[0])
    # Premise (CLAIMS.md): the beta2 0.999 arm has >= 10 spike episodes (> M8_HEIGHT x) in every seed.
    top = s[s["optimizer.b2"] == s["optimizer.b2"].max()]
    counts = {int(seed): int(round(sum(r[key] * r["n_steps"] / 1000 for _, r in g.iterrows())))
              for seed, g in top.groupby("seed")}
    held = {sd: counts.get(sd, 0) >= 10 for sd in hits}
    reached = (f"spike episodes in the beta2 {s['optimizer.b2'].max():g} arm: "
               + "/".join(str(counts.get(sd, 0)) for sd in sorted(hits)) + " (premise: >= 10 per seed)")
    table = s.groupby("optimizer.b2")[["spikes_per_1k_h3", "spikes_per_1k_h10", "spikes_per_1k_h100"]].mean()
    detail = "mean spikes per 1k steps (>3x / >10x / >100x) by beta2: " + "; ".join(
        f"{b2:g}: {r.iloc[0]:.1f} / {r.iloc[1]:.1f} / {r.iloc[2]:.1f}" for b2, r in table.iterrows())
    return in_regime(fraction_of_seeds(hits, need=2 / 3, detail=detail), held, reached)
