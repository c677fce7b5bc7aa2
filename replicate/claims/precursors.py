"""Precursors of a loss spike, measured step by step: B2 (Bai et al. 2025) and W1 (Wortsman et al. 2023).

Both read one spiking run at a time: its loss episodes (``spikes.detect`` with the spike of CLAIMS.md,
loss > 3x the median of the previous 100 steps) and the probes logged beside the loss.

B2, the preconditioned curvature (``lambda_grad_Hhat``, ``lambda_max_Hhat`` against
``threshold_2_over_lr`` = 2/eta). Timing: the curvature logged at step t is taken *after* the
optimizer's step t, i.e. at the parameters theta_{t+1} (whose loss is logged at step t+1) with the
preconditioner v_t that the next step uses. So it describes parameter step s = t + 1, and "within
K steps before the spike" means some probe with s in [rise_start - K, rise_start - 1], where
rise_start is the episode's first step above 1.2x its baseline (the start of the rise, not the late
3x crossing). Precision of a predictor: over the probe steps s outside any spike (not in
[rise_start, end] of an episode) where it exceeds 2/eta, the fraction with a spike whose rise
starts within the next K steps (s in [rise_start - K, rise_start - 1] of some episode).

W1, RMS_t = sqrt(mean(g^2 / v_hat)) per layer (``rms_g2_over_v/<layer>``, v_hat from *before* step
t, g of step t: the same parameters theta_t as the loss logged at step t, no shift). An RMS_t
spike is RMS_t > 1 (the second-moment estimate underestimates g^2 on average; StableAdamW's
clipping point), its onset the last upward crossing of 1 after the previous loss episode ended and
at or before this episode's peak. Lead = rise_start - onset of the earliest layer; a hit when
1 <= lead <= 8. The first layer is the one with the earliest onset (a tie at step resolution goes
to the larger RMS_t at that step). A relative definition (RMS_t > 3x the median of its previous
100 values, ``spikes.detect`` on the RMS_t series) is reported beside it, never judged.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from .. import spikes
from . import MIN_SEEDS, Judgement, claim, t_interval, wide

BAI = "Bai et al. 2025 (arXiv 2506.04805)"
WORTSMAN = "Wortsman et al. 2023 (arXiv 2304.13013)"

B2_K = 5  # "within 5 steps before" (CLAIMS.md), also the horizon of the precision
B2_NEED = 0.8
W1_LEAD = (1, 8)  # "1-8 steps before the rise starts" (CLAIMS.md)
W1_NEED = 0.7
W1_RMS = 1.0  # an RMS_t spike: RMS_t > 1
W1_RELATIVE = 3.0  # the relative definition reported beside it: RMS_t > 3x its running median


def _runs(metrics: pd.DataFrame, runs: pd.DataFrame):
    """(seed, one run's wide frame indexed by step, its loss episodes) for every run."""
    if metrics.empty:
        return
    w = wide(metrics, runs)
    for _, g in w.groupby("run_id", sort=True):
        g = g.sort_values("step").set_index("step")
        loss = g["loss"].dropna()
        yield int(g["seed"].iloc[0]), g, spikes.detect(loss.to_numpy(), loss.index.to_numpy())


def mean_interval(values: dict[int, float], bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float, float]:
    """Mean over seeds and its t interval, clipped to the range the metric can take."""
    x = [v for v in values.values() if v is not None and math.isfinite(v)]
    value = float(np.mean(x)) if x else float("nan")
    lo, hi = t_interval(x)
    if math.isfinite(lo):
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return value, lo, hi


# --------------------------------------------------------------------------------------------- B2
def b2_run(g: pd.DataFrame, ep: pd.DataFrame, k: int = B2_K, thr_col: str = "threshold_2_over_lr") -> dict:
    """B2's numbers for one run: spikes, spikes with lambda_grad > thr within k steps before the
    rise, and the precision of lambda_grad and lambda_max as spike predictors."""
    cols = ["lambda_grad_Hhat", "lambda_max_Hhat", thr_col]
    if not set(cols) <= set(g.columns):
        return {"spikes": len(ep), "covered": 0, "hit": 0}
    probe = g[cols].dropna()
    s = probe.index.to_numpy() + 1  # parameter step the curvature describes (see the module doc)
    thr = probe[thr_col].to_numpy()
    over = {name: probe[col].to_numpy() > thr for name, col in (("grad", "lambda_grad_Hhat"), ("max", "lambda_max_Hhat"))}
    covered = hit = 0
    target = np.zeros(len(s), bool)  # probe steps with a rise starting within the next k steps
    inside = np.zeros(len(s), bool)  # probe steps during a spike
    for _, e in ep.iterrows():
        rs = int(e["rise_start"])
        win = (s >= rs - k) & (s <= rs - 1)
        target |= win
        inside |= (s >= rs) & (s <= int(e["end"]))
        if win.any():
            covered += 1
            hit += bool(over["grad"][win].any())
    out = {"spikes": len(ep), "covered": covered, "hit": hit, "probes": int((~inside).sum()),
           "base_rate": float(target[~inside].mean()) if (~inside).any() else float("nan")}
    for name, o in over.items():
        pos = o & ~inside
        out[f"prec_{name}"] = float(target[pos].mean()) if pos.any() else float("nan")
        out[f"frac_over_{name}"] = float(o.mean()) if len(o) else float("nan")
    return out


def decay_runs(g: pd.DataFrame, ep: pd.DataFrame, frac: float = 0.95, near: int = 20,
               isolated: int = 50) -> list[tuple[bool, float]]:
    """Bai's first stage, per spike: (whether the spike is the first of a cluster, i.e. no episode
    ended in the ``isolated`` steps before its rise; the length in steps of the run of probes where
    >= ``frac`` of the shallowest layer's coordinates have g^2 < 0.1 v (``frac_v_decaying``) that
    ends within ``near`` steps before the rise, after the previous episode; 0 when none does)."""
    cols = [c for c in g.columns if c.startswith("frac_v_decaying/")]
    if not cols:
        return []
    shallow = _layer_order([c.split("/", 1)[1] for c in cols])[0]
    x = g[f"frac_v_decaying/{shallow}"].dropna()
    steps, on = x.index.to_numpy(), x.to_numpy() >= frac
    stride = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    out, prev_end = [], -(10**9)
    for _, e in ep.iterrows():
        rs = int(e["rise_start"])
        idx = np.flatnonzero(on & (steps < rs) & (steps >= rs - near) & (steps > prev_end))
        length = 0.0
        if len(idx):
            j = i = idx[-1]
            while i > 0 and on[i - 1] and steps[i - 1] > prev_end:
                i -= 1
            length = float(steps[j] - steps[i] + stride)
        out.append((rs - prev_end > isolated, length))
        prev_end = int(e["end"])
    return out


def _fmt(x: float) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.3g}"


@claim("B2", experiment="b2_curvature_mlp", source=f"{BAI} §4",
       statement="Spikes follow the preconditioner decaying: g^2 << v, then lambda_max(Hhat) > 2/eta for a "
                 "sustained period, then the spike when lambda_grad(Hhat) = g'Hhat g/|g|^2 > 2/eta",
       metric=f"per seed: fraction of loss spikes (> 3x the median of the previous 100 steps) with lambda_grad(Hhat) "
              f"> 2/eta at a probe within the {B2_K} steps before the rise starts; value = mean over seeds; and "
              f"precision (probe steps over 2/eta followed by a rise within {B2_K} steps) of lambda_grad > lambda_max "
              "in every seed",
       threshold=f">= {B2_NEED}, and lambda_grad more precise than lambda_max in every seed")
def b2(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    per: dict[int, dict] = {}
    mom: dict[int, dict] = {}
    decay: list[tuple[bool, float]] = []
    for seed, g, ep in _runs(metrics, runs):
        per[seed] = b2_run(g, ep)
        decay += decay_runs(g, ep)
        if "threshold_momentum" in g.columns:
            mom[seed] = b2_run(g, ep, thr_col="threshold_momentum")
    frac = {s: r["hit"] / r["covered"] for s, r in per.items() if r["covered"]}
    better = {s: bool(per[s]["prec_grad"] > per[s]["prec_max"]) for s in frac}  # NaN compares False
    value, lo, hi = mean_interval(frac)
    seeds = sorted(frac)
    if len(seeds) < MIN_SEEDS:
        verdict = "inconclusive"
    else:
        verdict = "replicated" if value >= B2_NEED and all(better.values()) else "not replicated"
    lines = []
    for s in sorted(per):
        r = per[s]
        lines.append(f"seed {s}: {r['hit']}/{r['covered']} spikes preceded ({r['spikes']} in all); precision "
                     f"lambda_grad {_fmt(r.get('prec_grad'))} vs lambda_max {_fmt(r.get('prec_max'))} (base rate "
                     f"{_fmt(r.get('base_rate'))}); probe steps over 2/eta: lambda_grad {_fmt(r.get('frac_over_grad'))}, "
                     f"lambda_max {_fmt(r.get('frac_over_max'))}")
    for first, what in ((True, "first spikes of a cluster (no episode in the 50 steps before)"),
                        (False, "later spikes of a cluster")):
        n = np.array([length for f, length in decay if f == first])
        if len(n):
            lines.append(f"g^2 << v before the rise (a run of probes with >= 95% of the shallowest layer's coordinates "
                         f"at g^2 < 0.1 v, ending within 20 steps before it), {what}: {np.mean(n > 0):.0%} of "
                         f"{len(n)}, median run {np.median(n):.0f} steps")
    for s in sorted(mom):
        r = mom[s]
        lines.append(f"seed {s} at Adam's momentum limit 2(1+b1)/((1-b1)eta) instead (not judged): "
                     f"{r['hit']}/{r['covered']} preceded; precision lambda_grad {_fmt(r.get('prec_grad'))} vs "
                     f"lambda_max {_fmt(r.get('prec_max'))}")
    return Judgement(verdict, value, lo, hi, seeds, "; ".join(lines))


# --------------------------------------------------------------------------------------------- W1
def _layer_order(names: list[str]) -> list[str]:
    """Layers shallow to deep: an 'embedding' first, then by the number in the name (layer0, block1)."""
    def key(n: str):
        digits = re.findall(r"\d+", n)
        return (0 if "emb" in n else 1, int(digits[0]) if digits else 10**6, n)
    return sorted(names, key=key)


def _onset_crossing(x: pd.Series, lo: int, hi: int, level: float) -> int | None:
    """The last step in (lo, hi] where x goes from <= level (at the logged step before) to > level."""
    seg = x.loc[lo:hi]
    steps, above = seg.index.to_numpy(), seg.to_numpy() > level
    ups = [int(steps[i]) for i in range(1, len(seg)) if above[i] and not above[i - 1] and steps[i] > lo]
    return ups[-1] if ups else None


def w1_run(g: pd.DataFrame, ep: pd.DataFrame, lead: tuple[int, int] = W1_LEAD, level: float = W1_RMS) -> dict:
    """W1's numbers for one run: per loss episode, the RMS_t spike onset per layer, the lead of the
    earliest one over the start of the loss rise, and the layer that crossed first."""
    layers = _layer_order([c.split("/", 1)[1] for c in g.columns if c.startswith("rms_g2_over_v/")])
    rms = {layer: g[f"rms_g2_over_v/{layer}"].dropna() for layer in layers}
    rel = {layer: spikes.detect(x.to_numpy(), x.index.to_numpy(), factor=W1_RELATIVE) for layer, x in rms.items()}
    rows, prev_end = [], -1
    for _, e in ep.iterrows():
        rs, peak = int(e["rise_start"]), int(e["peak"])
        onset = {layer: _onset_crossing(x, prev_end, peak, level) for layer, x in rms.items()}
        onset = {layer: t for layer, t in onset.items() if t is not None}
        row = {"rise_start": rs, "lead": np.nan, "first": None, "lead_rel": np.nan, "isolated": rs - prev_end > 50}
        if onset:
            first = min(onset, key=lambda la: (onset[la], -float(rms[la].get(onset[la], 0.0))))
            row.update(lead=rs - onset[first], first=first)
        rel_on = [max(t) for t in ([int(t) for t in d["start"] if prev_end < t <= peak] for d in rel.values()) if t]
        if rel_on:  # per layer its last RMS_t episode starting in (prev_end, peak]; the earliest layer
            row["lead_rel"] = rs - min(rel_on)
        rows.append(row)
        prev_end = int(e["end"])
    df = pd.DataFrame(rows, columns=["rise_start", "lead", "first", "lead_rel", "isolated"])
    ok = df["lead"].between(*lead)
    return {"spikes": len(df), "hit": int(ok.sum()), "layers": layers, "episodes": df,
            "hit_rel": int(df["lead_rel"].between(*lead).sum())}


@claim("W1", experiment="w1_rms_mlp", source=f"{WORTSMAN} §3.4",
       statement="Loss spikes follow 1-8 steps after the second-moment estimate underestimates g^2: "
                 "RMS_t = sqrt(mean(g^2/v)) spikes first, in the shallow layer",
       metric=f"per seed: fraction of loss spikes (> 3x the median of the previous 100 steps) whose earliest RMS_t "
              f"spike (RMS_t > {W1_RMS:g} in any layer) begins {W1_LEAD[0]}-{W1_LEAD[1]} steps before the loss rise "
              "starts (first step > 1.2x baseline); value = mean over seeds; and the shallowest layer crosses first "
              "most often (pooled)",
       threshold=f">= {W1_NEED}, and the shallowest layer first most often")
def w1(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    frac, frac_rel, per = {}, {}, {}
    for seed, g, ep in _runs(metrics, runs):
        r = w1_run(g, ep)
        per[seed] = r
        if r["spikes"] and r["layers"]:
            frac[seed] = r["hit"] / r["spikes"]
            frac_rel[seed] = r["hit_rel"] / r["spikes"]
    value, lo, hi = mean_interval(frac)
    seeds = sorted(frac)
    eps = pd.concat([per[s]["episodes"].assign(seed=s) for s in seeds], ignore_index=True) if seeds else pd.DataFrame()
    shallow = per[seeds[0]]["layers"][0] if seeds else None
    counts = eps["first"].value_counts() if len(eps) else pd.Series(dtype=int)
    shallow_first = bool(len(counts)) and counts.get(shallow, 0) > max([c for la, c in counts.items() if la != shallow],
                                                                       default=0)
    if len(seeds) < MIN_SEEDS:
        verdict = "inconclusive"
    else:
        verdict = "replicated" if value >= W1_NEED and shallow_first else "not replicated"
    detail = ""
    if len(eps):
        lead = eps["lead"].dropna()
        iso = eps[eps["isolated"]]
        detail = (f"{len(eps)} loss spikes over {len(seeds)} seeds; per seed hit fraction "
                  + ", ".join(f"{s}: {frac[s]:.2f}" for s in seeds)
                  + f"; lead of RMS_t > {W1_RMS:g} over the rise start: median {lead.median():.0f} steps "
                    f"(quartiles {lead.quantile(0.25):.0f}, {lead.quantile(0.75):.0f}), none for {eps['lead'].isna().sum()}"
                  + f"; first layer to cross: " + ", ".join(f"{la} {c}" for la, c in counts.items())
                  + f"; isolated spikes (no episode in the 50 steps before) {len(iso)}, hit fraction "
                    f"{iso['lead'].between(*W1_LEAD).mean() if len(iso) else float('nan'):.2f}"
                  + f"; relative definition (RMS_t > {W1_RELATIVE:g}x its running median, not judged): hit fraction "
                    f"{np.mean(list(frac_rel.values())):.2f}, median lead {eps['lead_rel'].median():.0f}")
    return Judgement(verdict, value, lo, hi, seeds, detail)
