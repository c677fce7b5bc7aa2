"""Molybog et al. 2023, "A Theory on Adam Instability in Large-Scale Machine Learning" (arXiv 2304.09871)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import spikes
from . import Judgement, claim, fraction_of_seeds, pending

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# The spike of CLAIMS.md, fixed before any run: loss > 3x the median of the previous 100 steps.
# Rates of taller spikes (> 10x, > 100x) are reported beside it, never used for the verdict.
M8_HEIGHT = 3


@claim("M8", experiment="m8_beta2_mlp", source=f"{SOURCE} §4",
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
    table = s.groupby("optimizer.b2")[["spikes_per_1k_h3", "spikes_per_1k_h10", "spikes_per_1k_h100"]].mean()
    detail = "mean spikes per 1k steps (>3x / >10x / >100x) by beta2: " + "; ".join(
        f"{b2:g}: {r.iloc[0]:.1f} / {r.iloc[1]:.1f} / {r.iloc[2]:.1f}" for b2, r in table.iterrows())
    return fraction_of_seeds(hits, need=2 / 3, detail=detail)


_PENDING = {
    "M0": ("Early in training each layer's update distribution is bimodal, passes an intermediate state and "
           "settles unimodal", "per layer: fraction |r| > 0.9 over the first steps",
           "every layer goes from > 0.3 to < 0.05"),
    "M1": ("Gradients independent over time give a unimodal update distribution",
           "std of r, dip test p, fraction |r| > 0.9 on i.i.d. Gaussian gradients",
           "std within 5% of sqrt((1-b1)/(1+b1)); dip p > 0.05; fraction < 1%"),
    "M2": ("Time-correlated gradients make it bimodal near +-1 (sign descent), more so as SNR grows",
           "mean |r| and fraction |r| > 0.9 at SNR 0.3, 1, 3, 10",
           "both rise monotonically; fraction > 0.9 at SNR >= 3"),
    "M3": ("Larger batches raise the time correlation of gradients and the bimodality of r, most in the "
           "embedding", "Spearman rho(batch, lag-1 autocorrelation and bimodality) in the embedding",
           "rho > 0.8 for every seed"),
    "M4": ("Where sqrt(v_hat) falls to about eps the update u collapses while r does not: the layer stalls",
           "embedding and deepest-block ||u||/||r|| in the imitated regime",
           "embedding < 0.1 while deepest block > 0.5; within 10% of mean sqrt(v)/(sqrt(v)+eps)"),
    "M5": ("Shallow layers reach that regime first, more so in deeper models",
           "ratio of embedding to last-block gradient RMS at depth 2, 4, 8",
           "falls monotonically with depth; embedding has the highest fraction sqrt(v) < eps"),
    "M6": ("A gradient burst in a stalled, time-correlated layer gives a large update unrelated to descent, "
           "then a loss spike", "||u|| jump, cosine(u, -grad), loss after a rare-token burst",
           "jump >= 10x, cosine < 0.1, spike within 20 steps; < 3x with eps = 0 or atan2"),
    "M7": ("Shallow-layer bimodality precedes spikes and warns of them",
           "AUROC of embedding bimodality for 'spike within K steps', beside a gradient-norm baseline",
           "AUROC >= 0.7, bimodality leading the loss rise"),
    "M9": ("Larger batches give more spikes", "spike rate at >= 4 batch sizes, equal steps",
           "Spearman rho > 0.8"),
    "M10": ("eps acts in two regimes: lowering it un-stalls layers in the imitated regime, raising it "
            "removes spikes in the small-gradient toy regime", "spike rate and final loss in both regimes",
            ">= 50% fewer spikes each way, final loss no more than 1% worse"),
    "M11": ("Spikes come from a batch meeting a model state (PaLM)",
            "replay from the same checkpoint; roll back and skip; the same batches from an earlier checkpoint",
            "replay spikes again; skip and earlier-checkpoint show no spike in >= 80% of events"),
}
for _id, (_statement, _metric, _threshold) in _PENDING.items():
    pending(_id, source=SOURCE, statement=_statement, metric=_metric, threshold=_threshold)
for _id in ("M3", "M6", "M7", "M8", "M9"):
    pending(f"{_id}_gpu", source=SOURCE, statement="(GPU tier: a GPT of 10M-125M parameters on real text)",
            metric="as the cpu tier", threshold="as the cpu tier", tier="gpu")
