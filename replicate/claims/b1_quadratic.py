"""B1 (Bai et al. 2025, "Adaptive Preconditioners Trigger Loss Spikes in Adam", arXiv 2506.04805, §3):
on a quadratic of constant curvature Adam spikes at a learning rate where gradient descent
converges, once v decays (large β2); not with β2 = 0.9 or a large ε; GD never spikes.

A run "spikes" when it has at least one spike episode under the definition judged
(``spikes.summarize(definition=...)``: R3 for the verdict, R10, R100 and Z6 beside it); the largest
episode's height is reported, never judged. Value: the fraction of seeds where, on both quadratics,
Adam (β2 0.999) spikes and Adam (β2 0.9), Adam (ε 1) and GD do not, with the bootstrap interval
over seeds of ``fraction_of_seeds`` (it stays inside [0, 1]). CLAIMS.md sets no spike premise for B1.
"""

from __future__ import annotations

import pandas as pd

from .. import spikes
from .registry import Judgement, claim
from .verdicts import fraction_of_seeds

SOURCE = "Bai et al. 2025 (arXiv 2506.04805)"


def _arm(r: pd.Series) -> str:
    """The arm of a b1 run, from its config (not its label)."""
    if r["optimizer.name"] == "sgd":
        return "gd"
    if r["optimizer.eps"] >= 0.1:
        return "adam_large_eps"
    return "adam_slow_v" if r["optimizer.b2"] >= 0.99 else "adam_fast_v"


@claim("B1", experiment="b1_quadratic", figures=["spike_rates"], spikes=True,
       source=f"{SOURCE} §3",
       statement="On a quadratic of constant curvature, Adam spikes at a learning rate where GD converges, "
                 "once v decays (large beta2); not with beta2 = 0.9 or a large epsilon; GD never spikes",
       metric="fraction of seeds where, on both quadratics, Adam (b2=0.999) has at least one spike episode "
              "(R3; R10, R100, Z6 beside it) and Adam (b2=0.9), Adam (eps=1) and GD have none",
       threshold="1.0 (every seed)")
def b1(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    summary = spikes.summarize(metrics, definition=definition).merge(
        runs[["run_id", "model.name", "optimizer.name", "optimizer.b2", "optimizer.eps"]], on="run_id")
    summary["arm"] = summary.apply(_arm, axis=1)
    summary["spiked"] = summary["spikes_per_1k"] > 0
    hits = {}
    for seed, g in summary.groupby("seed"):
        by = g.groupby("arm")["spiked"]
        arms = set(g["arm"])
        complete = {"adam_slow_v", "adam_fast_v", "adam_large_eps", "gd"} <= arms
        hits[int(seed)] = bool(complete and by.all()["adam_slow_v"]
                               and not any(by.any()[a] for a in ("adam_fast_v", "adam_large_eps", "gd")))
    counts = summary.groupby("arm").agg(n=("spiked", "sum"), runs=("spiked", "count"),
                                        largest=("largest_spike", "max"))
    detail = (f"runs with a {definition} spike episode: "
              + ", ".join(f"{a} {int(r['n'])}/{int(r['runs'])}" for a, r in counts.iterrows())
              + "; largest episode height per arm (reported, not judged): "
              + ", ".join(f"{a} {r['largest']:.3g}x" for a, r in counts.iterrows()))
    return fraction_of_seeds(hits, need=1.0, detail=detail)
