"""M3 (Molybog et al. 2023, arXiv 2304.09871): larger batches raise the time correlation of gradients and the bimodality of r = m̂/√v̂ in a
real model, most in the embedding (§4: a larger batch lowers the gradient noise, so the gradient's
sign persists from step to step and r piles up near ±1). Per run, the mean over the probes of the
last ``M3_LATE`` of the run of ``grad_autocorr/<layer>`` (the lag-1 autocorrelation
Σ g_t·g_{t-1} / √(Σ g_t² Σ g_{t-1}²) of fixed gradient coordinates, ``replicate.probes``) and
``r_frac_sign/<layer>`` (fraction |r| > 0.9; ``r_bc``, the bimodality coefficient, reported beside
it); per seed, Spearman ρ(batch size, metric) over >= 4 batch sizes in the embedding.
The same judge gives M3_gpu on ``m3_gpu``. Interval: percentile bootstrap over seeds of the
per-seed smaller rho (``stats.bootstrap_interval``): it stays inside the seeds' range, so in [-1, 1]
(a t interval left it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import bootstrap_interval, spearman
from .frames import late, layers_of, wide
from .m0_early_bimodal import M0_BIMODAL
from .registry import Judgement, claim
from .verdicts import combine, every_seed, in_regime

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"

# M3 (CLAIMS.md): Spearman rho(batch, metric) > 0.8 in the embedding for every seed, >= 4 batch sizes
M3_NEED, M3_MIN_BATCHES = 0.8, 4
M3_LATE = 0.75  # the probes of the last 3/4 of a run: after the fast first loss drop (fixed before any seed 1+ run)
M3_METRICS = ("grad_autocorr", "r_frac_sign")  # judged; r_bc is reported beside them
# premise (CLAIMS.md): the batch sizes span >= 16x, none of them the full data set (the Markov/text stream is
# unbounded: batches are drawn afresh each step, so no batch is the full data set)
M3_SPAN = 16


def _batch_of(df: pd.DataFrame) -> pd.Series:
    return df["data.batch_size"].astype(float)


@claim("M3", experiment="m3_batch_gpt", gpu="m3_gpu", figures=["update_histograms"],
       source=f"{SOURCE} §4",
       statement="Larger batches raise the time correlation of gradients and the bimodality of r in a real model, "
                 "most in the embedding",
       metric=f"per seed, Spearman rho between batch size (>= {M3_MIN_BATCHES}) and the embedding's lag-1 gradient "
              f"autocorrelation and its fraction |r| > 0.9 (means over the probes of the last {M3_LATE:.0%} of each "
              "run, tiny GPT); value = mean over seeds of the smaller of the two rhos, bootstrap interval over seeds",
       threshold=f"rho > {M3_NEED} for both metrics in every seed")
def m3(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["data.batch_size"])
    col = "grad_autocorr/embedding"
    if col not in w or "data.batch_size" not in w:
        return combine({"embedding probes and batch sizes": "no"}, [], None, (np.nan, np.nan), "")
    per_run = late(w, col, fraction=M3_LATE)
    per_run["batch"] = _batch_of(per_run)
    layers = layers_of(per_run.columns, "grad_autocorr")
    rho: dict[str, dict[int, float]] = {m: {} for m in (*M3_METRICS, "r_bc")}
    rise: dict[str, list[float]] = {x: [] for x in layers}
    span: dict[int, float] = {}
    for seed, g in per_run.groupby("seed"):
        g = g.groupby("batch").mean(numeric_only=True).sort_index()
        b = g.index.to_numpy(dtype=float)
        span[int(seed)] = float(b.max() / b.min()) if len(b) and b.min() > 0 else float("nan")
        if len(g) < M3_MIN_BATCHES:
            continue  # an incomplete sweep: this seed cannot be judged
        for m in rho:
            if f"{m}/embedding" in g:
                rho[m][int(seed)] = spearman(g.index.to_numpy(), g[f"{m}/embedding"].to_numpy(dtype=float))
        for x in layers:  # rise of the autocorrelation from the smallest to the largest batch
            rise[x].append(float(g[f"grad_autocorr/{x}"].iloc[-1] - g[f"grad_autocorr/{x}"].iloc[0]))
    seeds = sorted(rho["grad_autocorr"])
    low = [min(rho[m].get(s, np.nan) for m in M3_METRICS) for s in seeds]
    conditions = {f"rho(batch, {m}) > {M3_NEED:g} in the embedding in every seed":
                  every_seed(rho[m].get(s, -1.0) > M3_NEED for s in seeds) for m in M3_METRICS}
    table = per_run.groupby("batch").mean(numeric_only=True).sort_index()
    mean_rise = {x: float(np.mean(v)) for x, v in rise.items() if v}
    top = max(mean_rise, key=mean_rise.get) if mean_rise else None
    peak_sign = float(per_run["r_frac_sign/embedding"].max()) if "r_frac_sign/embedding" in per_run else float("nan")
    detail = ("rho per seed, embedding: " + "; ".join(
                  f"{m} " + ", ".join(f"{s}: {rho[m][s]:.2f}" for s in sorted(rho[m])) for m in rho)
              + ". Means over seeds by batch size, embedding autocorrelation / fraction |r| > 0.9 / r_bc: "
              + "; ".join(f"{b:g}: {r.get('grad_autocorr/embedding', np.nan):.3f} / "
                          f"{r.get('r_frac_sign/embedding', np.nan):.3f} / {r.get('r_bc/embedding', np.nan):.3f}"
                          for b, r in table.iterrows())
              + ". Rise of the autocorrelation from the smallest to the largest batch, per layer (mean over seeds): "
              + ", ".join(f"{x} {v:+.3f}" for x, v in mean_rise.items())
              + f"; largest rise: {top}" + (" (the embedding)" if top == "embedding" else " (not the embedding)")
              + f". Largest fraction |r| > 0.9 in the embedding of any run: {peak_sign:.3f} "
              + f"({'above' if peak_sign > M0_BIMODAL else 'below'} M0's bimodal level {M0_BIMODAL:g})")
    value = float(np.mean(low)) if low else None
    j = combine(conditions, seeds, value, bootstrap_interval(low), detail)
    held = {s: bool(np.isfinite(span.get(s, np.nan)) and span[s] >= M3_SPAN) for s in seeds}
    reached = ("batch sizes (data.batch_size) span " + "/".join(f"{span[s]:g}x" for s in seeds)
               + f" (seeds {seeds}; premise: >= {M3_SPAN}x); none is the full data set: the token stream is "
               "unbounded (sampled afresh each step)")
    return in_regime(j, held, reached)
