"""M8 (Molybog et al. 2023, arXiv 2304.09871, §4): smaller β2 gives fewer spikes.

Per seed, the spike rates (``spikes.summarize`` under the definition judged: R3, the verdict, and
R10, R100, Z6 beside it) at β2 = 0.9, 0.95, 0.99, 0.999; the claim holds in a seed when they never
decrease as β2 grows and are higher at 0.999 than at 0.9. Premise (CLAIMS.md): the β2 0.999 arm
has >= 10 episodes in every seed under the same definition. The same judge gives M8_gpu on
``m8_gpu``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import spikes
from .registry import Judgement, claim
from .verdicts import fraction_of_seeds, in_regime

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
PREMISE_EPISODES = 10  # CLAIMS.md: the beta2 0.999 arm has >= 10 spike episodes in every seed


@claim("M8", experiment="m8_beta2_mlp", gpu="m8_gpu", figures=["spike_rates"], spikes=True,
       source=f"{SOURCE} §4",
       statement="Smaller beta2 gives fewer spikes",
       metric="per seed: spike episodes per 1k steps (R3; R10, R100, Z6 beside it) at beta2 = 0.9, 0.95, 0.99, "
              "0.999 never decrease as beta2 grows and are higher at 0.999 than at 0.9; value = fraction of seeds",
       threshold=">= 2/3 of seeds")
def m8(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    s = spikes.summarize(metrics, definition=definition).merge(runs[["run_id", "optimizer.b2"]], on="run_id")
    key = "spikes_per_1k"
    hits = {}
    for seed, g in s.groupby("seed"):
        rates = g.sort_values("optimizer.b2")[key].to_numpy()
        hits[int(seed)] = bool(len(rates) >= 3 and np.all(np.diff(rates) >= 0) and rates[-1] > rates[0])
    top = s[s["optimizer.b2"] == s["optimizer.b2"].max()]
    counts = {int(seed): int(round(sum(r[key] * r["n_steps"] / 1000 for _, r in g.iterrows())))
              for seed, g in top.groupby("seed")}
    held = {sd: counts.get(sd, 0) >= PREMISE_EPISODES for sd in hits}
    reached = (f"{definition} spike episodes in the beta2 {s['optimizer.b2'].max():g} arm: "
               + "/".join(str(counts.get(sd, 0)) for sd in sorted(hits)) + f" (premise: >= {PREMISE_EPISODES} per seed)")
    table = s.groupby("optimizer.b2")[key].mean()
    detail = f"mean {definition} spike episodes per 1k steps by beta2: " + "; ".join(
        f"{b2:g}: {r:.1f}" for b2, r in table.items())
    return in_regime(fraction_of_seeds(hits, need=2 / 3, detail=detail), held, reached)
