"""B2 (Bai et al. 2025, arXiv 2506.04805, §4): a loss spike follows the preconditioner decaying.

B2 reads one spiking run at a time: its loss episodes under the spike definition judged
(``spikes.episodes``: R3, loss > 3x the median of the previous 100 non-spiking losses until back
under 1.2x it, for the verdict; R10, R100 and Z6 beside it) and the probes logged beside the loss.
Premise (CLAIMS.md): >= 10 episodes per seed under the definition used, none starting on an injected
batch (``verdicts.spike_premise``); unless it held in every seed, ``out of regime``.

B2, the preconditioned curvature (``lambda_grad_Hhat``, ``lambda_max_Hhat`` against
``threshold_2_over_lr`` = 2/eta). Timing: the curvature logged at step t is taken *after* the
optimizer's step t, i.e. at the parameters theta_{t+1} (whose loss is logged at step t+1) with the
preconditioner v_t that the next step uses. So it describes parameter step s = t + 1, and "within
K steps before the spike" means some probe with s in [rise_start - K, rise_start - 1], where
rise_start is the episode's first step above 1.2x its baseline (the start of the rise, not the late
factor crossing). Precision of a predictor: over the probe steps s outside any spike (not in
[rise_start, end] of an episode) where it exceeds 2/eta, the fraction with a spike whose rise
starts within the next K steps (s in [rise_start - K, rise_start - 1] of some episode).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import mean_interval
from .frames import layer_order, not_injected, spiking_runs
from .registry import Judgement, claim
from .verdicts import in_regime, judged, spike_premise

BAI = "Bai et al. 2025 (arXiv 2506.04805)"

B2_K = 5  # "within 5 steps before" (CLAIMS.md), also the horizon of the precision
B2_NEED = 0.8


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
    shallow = layer_order([c.split("/", 1)[1] for c in cols])[0]
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


@claim("B2", experiment="b2_curvature_mlp", figures=["curvature"], spikes=True,
       source=f"{BAI} §4",
       statement="Spikes follow the preconditioner decaying: g^2 << v, then lambda_max(Hhat) > 2/eta for a "
                 "sustained period, then the spike when lambda_grad(Hhat) = g'Hhat g/|g|^2 > 2/eta",
       metric=f"per seed: fraction of loss spikes (R3 episodes: > 3x the median of the previous 100 non-spiking "
              f"losses, until back under 1.2x; R10, R100, Z6 beside it) with lambda_grad(Hhat) "
              f"> 2/eta at a probe within the {B2_K} steps before the rise starts; value = mean over seeds; and "
              f"precision (probe steps over 2/eta followed by a rise within {B2_K} steps) of lambda_grad > lambda_max "
              "in every seed",
       threshold=f">= {B2_NEED}, and lambda_grad more precise than lambda_max in every seed; premise: >= 10 "
                 "spikes per seed under the definition")
def b2(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    per: dict[int, dict] = {}
    mom: dict[int, dict] = {}
    decay: list[tuple[bool, float]] = []
    counts: dict[int, int] = {}
    info = runs.set_index("run_id")
    for seed, g, ep in spiking_runs(metrics, runs, definition):
        counts[seed] = counts.get(seed, 0) + not_injected(ep, info.loc[g["run_id"].iloc[0]])
        per[seed] = b2_run(g, ep)
        decay += decay_runs(g, ep)
        if "threshold_momentum" in g.columns:
            mom[seed] = b2_run(g, ep, thr_col="threshold_momentum")
    frac = {s: r["hit"] / r["covered"] for s, r in per.items() if r["covered"]}
    better = {s: bool(per[s]["prec_grad"] > per[s]["prec_max"]) for s in frac}  # NaN compares False
    value, lo, hi = mean_interval(frac, bounds=(0.0, 1.0))
    seeds = sorted(frac)
    verdict = judged(seeds, value >= B2_NEED and all(better.values()))
    lines = [f"{definition} episodes"]
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
    held, reached = spike_premise(counts, definition)
    return in_regime(Judgement(verdict, value, lo, hi, seeds, "; ".join(lines)), held, reached)
