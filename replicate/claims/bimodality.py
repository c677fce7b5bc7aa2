"""Molybog et al. 2023 (arXiv 2304.09871): time-correlated gradients, bimodal updates, and spikes.

M3: larger batches raise the time correlation of gradients and the bimodality of r = m̂/√v̂ in a
real model, most in the embedding (§4: a larger batch lowers the gradient noise, so the gradient's
sign persists from step to step and r piles up near ±1). Per run, the mean over the probes of the
last ``M3_LATE`` of the run of ``grad_autocorr/<layer>`` (the lag-1 autocorrelation
Σ g_t·g_{t-1} / √(Σ g_t² Σ g_{t-1}²) of fixed gradient coordinates, ``replicate.probes``) and
``r_frac_sign/<layer>`` (fraction |r| > 0.9; ``r_bc``, the bimodality coefficient, reported beside
it); per seed, Spearman ρ(batch size, metric) over >= 4 batch sizes in the embedding.

M7: shallow-layer bimodality precedes spikes and warns of them (§5). On a spiking run, every probe
step t outside a loss spike ([rise_start, end] of an episode of ``spikes.detect``, loss > 3x the
median of the previous 100 steps) is a positive when an episode's loss rise starts within the next
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
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import Judgement, claim, t_interval, wide
from .batch import _spearman
from .precursors import _onset_crossing, _runs, mean_interval
from .stalling import late
from .update_distribution import M0_BIMODAL, combine, every_seed, layers_of, side

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"

# M3 (CLAIMS.md): Spearman rho(batch, metric) > 0.8 in the embedding for every seed, >= 4 batch sizes
M3_NEED, M3_MIN_BATCHES = 0.8, 4
M3_LATE = 0.75  # the probes of the last 3/4 of a run: after the fast first loss drop (fixed before any seed 1+ run)
M3_METRICS = ("grad_autocorr", "r_frac_sign")  # judged; r_bc is reported beside them

# M7 (CLAIMS.md): AUROC >= 0.7 for "a spike within K steps", and the bimodality leads the loss rise
M7_AUROC, M7_K = 0.7, 5  # K = 5 as B2's "within 5 steps before", fixed before any run
M7_BASE = 20  # probes before the lag window whose median is the bimodality's baseline
M7_MIN_RISE = 1e-3  # a bimodality "rise" smaller than this (fraction |r| > 0.9: 0.1% of the layer) counts as none


# ------------------------------------------------------------------------------------------- M3
def _batch_of(df: pd.DataFrame) -> pd.Series:
    return df["data.batch_size"].astype(float)


@claim("M3", experiment="m3_batch_gpt", source=f"{SOURCE} §4",
       statement="Larger batches raise the time correlation of gradients and the bimodality of r in a real model, "
                 "most in the embedding",
       metric=f"per seed, Spearman rho between batch size (>= {M3_MIN_BATCHES}) and the embedding's lag-1 gradient "
              f"autocorrelation and its fraction |r| > 0.9 (means over the probes of the last {M3_LATE:.0%} of each "
              "run, tiny GPT); value = mean over seeds of the smaller of the two rhos",
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
    for seed, g in per_run.groupby("seed"):
        g = g.groupby("batch").mean(numeric_only=True).sort_index()
        if len(g) < M3_MIN_BATCHES:
            continue  # an incomplete sweep: this seed cannot be judged
        for m in rho:
            if f"{m}/embedding" in g:
                rho[m][int(seed)] = _spearman(g.index.to_numpy(), g[f"{m}/embedding"].to_numpy(dtype=float))
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
    return combine(conditions, seeds, value, t_interval(low), detail)


# ------------------------------------------------------------------------------------------- M7
def auroc(score, label) -> float:
    """Area under the ROC curve of ``score`` for the binary ``label``: the Mann-Whitney U statistic
    of the positives' scores over the negatives', U / (n_pos n_neg), ties counted one half; NaN when a
    class is empty. 1 = every positive scores above every negative, 0.5 = no better than chance."""
    from scipy import stats

    score, label = np.asarray(score, dtype=float), np.asarray(label, dtype=bool)
    keep = np.isfinite(score)
    score, label = score[keep], label[keep]
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    u = ranks[label].sum() - n1 * (n1 + 1) / 2
    return float(u / (n1 * n0))


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
    return _onset_crossing(x, lo - 1, int(win.idxmax()), b + 0.5 * (top - b))


@claim("M7", experiment="m7_warning_gpt", source=f"{SOURCE} §5",
       statement="Shallow-layer bimodality precedes spikes and warns of them",
       metric=f"per seed, AUROC of the embedding's fraction |r| > 0.9 at a probe step for 'a loss spike (> 3x the "
              f"median of the previous 100 steps) starts within the next {M7_K} steps' (mean over seeds, t "
              "interval), beside the gradient norm's AUROC; the lag of the bimodality rise behind/ahead of the loss "
              "rise (lead > 0)",
       threshold=f"AUROC >= {M7_AUROC} and the bimodality rise leads the loss rise (median lag >= 1 step over "
                 "isolated spikes) in every seed")
def m7(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    col = "r_frac_sign/embedding"
    auc, auc_g, lags, isolated, per = {}, {}, {}, {}, []
    for seed, g, ep in _runs(metrics, runs):
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
    value, lo, hi = mean_interval({s: auc[s] for s in seeds})
    gvals = [auc_g[s] for s in seeds if math.isfinite(auc_g[s])]
    detail = (f"K = {M7_K}; per seed (spikes, positive / usable probe steps): "
              + ", ".join(f"{s}: {n} ({p}/{u})" for s, n, p, u in sorted(per))
              + "; AUROC embedding fraction |r| > 0.9 per seed: " + ", ".join(f"{s}: {auc[s]:.3f}" for s in seeds)
              + "; gradient-norm baseline AUROC: " + ", ".join(f"{s}: {auc_g[s]:.3f}" for s in seeds)
              + (f" (mean {np.mean(gvals):.3f})" if gvals else "")
              + f". Lag of the bimodality rise (rise_start - onset; > 0 lead), isolated spikes (no episode ending in "
              + f"the {2 * M7_K} steps before the rise, so the window holds no earlier spike's own rise): "
              + lag_text(alli) + "; median per seed: " + ", ".join(f"{s}: {med[s]:.1f}" for s in seeds)
              + "; all spikes (not judged): " + lag_text(allg))
    return combine(conditions, seeds, value, (lo, hi), detail)
