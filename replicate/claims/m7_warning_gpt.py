"""M7 (Molybog et al. 2023, arXiv 2304.09871): shallow-layer bimodality precedes spikes and warns of them (§5). On a spiking run, every probe
step t outside a loss spike ([rise_start, end] of an episode under the spike definition judged:
``spikes.episodes`` with R3, loss > 3x the median of the previous 100 non-spiking losses until back
under 1.2x it, for the verdict; R10, R100 and Z6 beside it) is a positive when an episode's loss rise starts within the next
``M7_K`` steps (rise_start in [t+1, t+K]), a negative otherwise. The score is the embedding's
fraction |r| > 0.9 at t (r after the optimizer step t, so it has seen the gradient of the batch of
step t and nothing later); the baseline score is the global gradient norm of step t. AUROC by the
Mann-Whitney U statistic (``auroc``). Lag per episode (``bimodality_onset``): in the window
[rise_start - 2K, peak + K], the last upward crossing of half the embedding's bimodality rise (from
its median over the ``M7_BASE`` probes before the window to its maximum in the window) at or before
that maximum; lag = rise_start - onset: > 0 a lead, 0 the same step (r at rise_start has already
seen the spiking batch), < 0 after; none when the rise is < ``M7_MIN_RISE`` or has no crossing.
The lead is judged on isolated spikes (no episode ended in the 2K steps before the rise): in a dense
train of spikes the window holds the previous spike's own bimodality rise, which would read as a lead.
Premise (CLAIMS.md): >= 10 spike episodes per seed under the definition used, episodes starting on
an injected batch of the run's data (``frames.injected``) not counted; unless it held in
every seed, ``out of regime`` (``verdicts.in_regime``). ``verdicts.spike_premise`` (shared with B2, W1, M11)
counts them and writes the premise line. The same judge gives M7_gpu on ``m7_gpu``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import auroc, mean_interval
from .frames import not_injected, onset_crossing, spiking_runs
from .registry import Judgement, claim
from .verdicts import combine, every_seed, in_regime, side, spike_premise

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"

# M7 (CLAIMS.md): AUROC >= 0.7 for "a spike within K steps", and the bimodality leads the loss rise
M7_AUROC, M7_K = 0.7, 5  # K = 5 as B2's "within 5 steps before", fixed before any run
M7_BASE = 20  # probes before the lag window whose median is the bimodality's baseline
M7_MIN_RISE = 1e-3  # a bimodality "rise" smaller than this (fraction |r| > 0.9: 0.1% of the layer) counts as none


def spike_labels(steps: np.ndarray, ep: pd.DataFrame, k: int = M7_K) -> tuple[np.ndarray, np.ndarray]:
    """(label, usable) per step: label = a loss rise starts in [t+1, t+k]; usable = t is not inside
    a spike ([rise_start, end] of an episode)."""
    steps = np.asarray(steps)
    label = np.zeros(len(steps), bool)
    inside = np.zeros(len(steps), bool)
    for _, e in ep.iterrows():
        rs = int(e["rise_start"])
        label |= (steps >= rs - k) & (steps <= rs - 1)
        inside |= (steps >= rs) & (steps <= int(e["end"]))
    return label, ~inside


def bimodality_onset(x: pd.Series, rise_start: int, peak: int, k: int = M7_K, base: int = M7_BASE,
                     min_rise: float = M7_MIN_RISE) -> int | None:
    """The step the score x (indexed by step) starts its rise around a loss spike: in the window
    [rise_start - 2k, peak + k], the last upward crossing of half way from its baseline (the median of
    the ``base`` probes before the window, spikes included: a median shrugs them off) to its maximum
    in the window, at or before that maximum. None when the rise is smaller than ``min_rise`` or x is
    already above the half-way level at the window's start (no crossing inside it)."""
    x = x.dropna()
    lo = rise_start - 2 * k
    before = x.loc[:lo - 1].tail(base)
    win = x.loc[lo:peak + k]
    if len(before) == 0 or len(win) == 0:
        return None
    b, top = float(before.median()), float(win.max())
    if top - b < min_rise:
        return None
    return onset_crossing(x, lo - 1, int(win.idxmax()), b + 0.5 * (top - b))


@claim("M7", experiment="m7_warning_gpt", gpu="m7_gpu", figures=["update_histograms"], spikes=True,
       source=f"{SOURCE} §5",
       statement="Shallow-layer bimodality precedes spikes and warns of them",
       metric=f"per seed, AUROC of the embedding's fraction |r| > 0.9 at a probe step for 'a loss spike (an R3 episode: "
              f"> 3x the median of the previous 100 non-spiking losses, until back under 1.2x; R10, R100, Z6 beside "
              f"it) starts within the next {M7_K} steps' (mean over seeds, t interval), beside the gradient norm's AUROC; the lag of the bimodality rise behind/ahead of the loss "
              "rise (lead > 0)",
       threshold=f"AUROC >= {M7_AUROC} and the bimodality rise leads the loss rise (median lag >= 1 step over "
                 "isolated spikes) in every seed; premise: >= 10 spikes per seed under the definition")
def m7(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    col = "r_frac_sign/embedding"
    auc, auc_g, lags, isolated, per, counts = {}, {}, {}, {}, [], {}
    info = runs.set_index("run_id")
    for seed, g, ep in spiking_runs(metrics, runs, definition):
        counts[seed] = counts.get(seed, 0) + not_injected(ep, info.loc[g["run_id"].iloc[0]])
        if col not in g:
            continue
        x = g[col].dropna()
        label, usable = spike_labels(x.index.to_numpy(), ep)
        auc[seed] = auroc(x.to_numpy()[usable], label[usable])
        gn = g["grad_norm"].reindex(x.index).to_numpy(dtype=float) if "grad_norm" in g else np.full(len(x), np.nan)
        auc_g[seed] = auroc(gn[usable], label[usable])
        lag, iso, prev_end = [], [], -(10**9)
        for _, e in ep.iterrows():
            onset = bimodality_onset(x, int(e["rise_start"]), int(e["peak"]))
            lag.append(np.nan if onset is None else int(e["rise_start"]) - onset)
            iso.append(int(e["rise_start"]) - prev_end > 2 * M7_K)
            prev_end = int(e["end"])
        lags[seed] = np.asarray(lag, dtype=float)
        isolated[seed] = np.asarray(iso, dtype=bool)
        per.append((seed, len(ep), int((label & usable).sum()), int(usable.sum())))
    seeds = sorted(s for s, a in auc.items() if math.isfinite(a))
    values = [auc[s] for s in seeds]
    def median(x):
        return float(np.median(x[np.isfinite(x)])) if np.isfinite(x).any() else float("nan")

    med = {s: median(lags[s][isolated[s]]) for s in seeds}  # judged on isolated spikes (see below)
    leads = "unclear" if any(math.isnan(med[s]) for s in seeds) else every_seed(med[s] >= 1 for s in seeds)
    conditions = {f"AUROC >= {M7_AUROC:g}": side(values, M7_AUROC - 1e-12, above=True),
                  "bimodality rise leads the loss rise (median lag >= 1 over isolated spikes) in every seed": leads}
    allg = np.concatenate([lags[s] for s in seeds]) if seeds else np.zeros(0)
    alli = np.concatenate([lags[s][isolated[s]] for s in seeds]) if seeds else np.zeros(0)

    def lag_text(x: np.ndarray) -> str:
        ok = x[np.isfinite(x)]
        if not len(ok):
            return f"{len(x)} spikes, no bimodality rise at any"
        q1, q2, q3 = (float(np.quantile(ok, q)) for q in (0.25, 0.5, 0.75))
        return (f"{len(x)} spikes: lead {int((ok >= 1).sum())}, same step {int((ok == 0).sum())}, after "
                f"{int((ok < 0).sum())}, no rise of >= {M7_MIN_RISE:g} {int((~np.isfinite(x)).sum())}; median "
                f"{q2:.1f} (quartiles {q1:.1f}, {q3:.1f})")
    value, lo, hi = mean_interval({s: auc[s] for s in seeds}, bounds=(0.0, 1.0))
    gvals = [auc_g[s] for s in seeds if math.isfinite(auc_g[s])]
    detail = (f"{definition} episodes; K = {M7_K}; per seed (spikes, positive / usable probe steps): "
              + ", ".join(f"{s}: {n} ({p}/{u})" for s, n, p, u in sorted(per))
              + "; AUROC embedding fraction |r| > 0.9 per seed: " + ", ".join(f"{s}: {auc[s]:.3f}" for s in seeds)
              + "; gradient-norm baseline AUROC: " + ", ".join(f"{s}: {auc_g[s]:.3f}" for s in seeds)
              + (f" (mean {np.mean(gvals):.3f})" if gvals else "")
              + f". Lag of the bimodality rise (rise_start - onset; > 0 lead), isolated spikes (no episode ending in "
              + f"the {2 * M7_K} steps before the rise, so the window holds no earlier spike's own rise): "
              + lag_text(alli) + "; median per seed: " + ", ".join(f"{s}: {med[s]:.1f}" for s in seeds)
              + "; all spikes (not judged): " + lag_text(allg))
    held, reached = spike_premise(counts, definition)
    return in_regime(combine(conditions, seeds, value, (lo, hi), detail), held, reached)
