"""Open question Q2 (CLAIMS.md): does low-precision training make shallow layers stall more?

Arms of ``train.precision`` / ``train.loss_scale`` (replicate/precision.py): fp32, bf16 autocast,
fp16 with the dynamic scale, fp16 with fixed scales s. With fp16 gradient storage a coordinate whose
|g·s| ≤ 2⁻²⁵ reaches Adam as exactly 0 (Micikevicius et al. 2018, arXiv 1710.03740, §3.2: loss
scaling against gradient underflow); a layer whose gradients are all below 2⁻²⁵/s gets no signal, so
m decays, u = m̂/(√v̂+ε) dies out and the layer stops moving: the stall of Molybog et al. 2023
(arXiv 2304.09871, §4-5) reached through the gradient instead of through ε.

Per run, the mean over every probe step of, per layer: ``frac_g_zero`` (g exactly 0),
``frac_g_below_eps``, ``frac_sqrtv_below_eps``, ``u_over_r``, ``grad_rms``, ``update_rms`` (over
the fp32 arm's of the same seed: < 1 where the layer moves less); spike episodes per 1k steps under
the definition judged (``spikes.summarize(definition=...)``: R3 for the row, R10, R100 and Z6 beside
it; with the rate of its episodes taller than 10x as detail) and the final loss. Value: the
shallowest layer's zero-gradient fraction at the smallest fixed scale, mean over seeds with a
percentile bootstrap interval over seeds (``stats.bootstrap_interval``: it stays within the seeds'
fractions and so inside [0, 1], where a t interval could leave it). Verdict ``answered`` with
≥ MIN_SEEDS seeds that have both that arm and fp32, else ``inconclusive``. CLAIMS.md sets no spike
premise for Q2 (it is M2-like: the stall is reached through the loss scale), so none is measured.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import bootstrap_interval
from .frames import late, layers_of, wide
from .registry import Judgement, claim
from .verdicts import answered

STATEMENT = "Does low-precision training make shallow layers stall more?"
METRICS = ("frac_g_zero", "frac_g_below_eps", "frac_sqrtv_below_eps", "u_over_r", "grad_rms", "update_rms")


def arm_name(precision: str, loss_scale) -> str:
    """'fp32', 'bf16', 'fp16 dynamic', 'fp16 s=2^-16' (a power of two) or 'fp16 s=0.3'."""
    if precision != "fp16":
        return str(precision)
    if loss_scale == "dynamic" or loss_scale is None:
        return "fp16 dynamic"
    s = float(loss_scale)
    k = math.log2(s)
    return f"fp16 s=2^{int(k)}" if k == int(k) else f"fp16 s={s:g}"


def per_run(metrics: pd.DataFrame, runs: pd.DataFrame,
            definition: str = spikes.PRIMARY) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: seed, arm, fixed scale (NaN unless fp16 fixed), the probe means per layer,
    spike rates and the final loss; and the layers, shallow first."""
    runs = runs.copy()
    prec = runs["train.precision"] if "train.precision" in runs else pd.Series("fp32", index=runs.index)
    scale = runs["train.loss_scale"] if "train.loss_scale" in runs else pd.Series("dynamic", index=runs.index)
    runs["arm"] = [arm_name(p, s) for p, s in zip(prec, scale)]
    runs["fixed_scale"] = [float(s) if p == "fp16" and s != "dynamic" else np.nan for p, s in zip(prec, scale)]
    w = wide(metrics, runs)
    layers = layers_of(w.columns, "frac_g_zero")
    if not layers:
        return pd.DataFrame(), []
    means = late(w, f"frac_g_zero/{layers[0]}", fraction=1.0)  # every probe step of the run
    cols = [f"{m}/{x}" for m in METRICS for x in layers if f"{m}/{x}" in means]
    out = means[["run_id", *cols]].merge(runs[["run_id", "seed", "arm", "fixed_scale"]], on="run_id")
    s = spikes.summarize(metrics, definition=definition)[["run_id", "spikes_per_1k", "spikes_per_1k_h10"]]
    loss = metrics[metrics["metric"] == "loss"].sort_values("step").groupby("run_id")["value"].last()
    out = out.merge(s, on="run_id", how="left").merge(loss.rename("final_loss"), on="run_id", how="left")
    for x in layers:  # update RMS over the fp32 arm's, same seed
        ref = out[out["arm"] == "fp32"].set_index("seed")[f"update_rms/{x}"]
        out[f"update_vs_fp32/{x}"] = out[f"update_rms/{x}"] / out["seed"].map(ref)
    return out, layers


def _fmt(values, digits: int = 3) -> str:
    return " / ".join(f"{v:.{digits}g}" for v in values)


@claim("Q2", experiment="q2_precision", source="open question (CLAIMS.md)", statement=STATEMENT, spikes=True,
       metric="the shallowest layer's fraction of exactly-zero gradient coordinates at the smallest fixed fp16 "
              "loss scale (mean over probe steps, then over seeds, bootstrap interval over seeds); beside it every arm's per-layer "
              "zero fraction, sqrt(v)<eps, ||u||/||r||, update RMS vs fp32, spike episodes per 1k steps (R3; R10, R100, "
              "Z6 beside it), final loss",
       threshold="none (answered with the measured values)")
def q2(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    r, layers = per_run(metrics, runs, definition)
    if r.empty or "fp32" not in set(r["arm"]) or r["fixed_scale"].isna().all():
        return Judgement("inconclusive", None, None, None, [], "needs an fp32 arm, a fixed-scale fp16 arm and "
                         f"frac_g_zero probes; arms found: {sorted(set(r['arm'])) if not r.empty else []}")
    smallest = float(r["fixed_scale"].min())
    low = r[r["fixed_scale"] == smallest].sort_values("seed")
    seeds = sorted(set(low["seed"].astype(int)) & set(r.loc[r["arm"] == "fp32", "seed"].astype(int)))
    low = low[low["seed"].isin(seeds)]
    shallow, deep = layers[0], layers[-1]
    vals = low[f"frac_g_zero/{shallow}"].to_numpy(float)
    lo, hi = bootstrap_interval(vals)
    arm_low = arm_name("fp16", smallest)
    more = [bool(a > b) for a, b in zip(low[f"frac_g_zero/{shallow}"], low[f"frac_g_zero/{deep}"])]
    g32 = r[r["arm"] == "fp32"][[f"grad_rms/{x}" for x in layers]].mean().to_numpy()
    by_rms = [layers[i] for i in np.argsort(g32)]
    zl = low[[f"frac_g_zero/{x}" for x in layers]].mean().to_numpy()
    fixed = sorted(set(r["fixed_scale"].dropna()), reverse=True)
    ranks = "; ".join(f"{arm_name('fp16', s)}: " + ", ".join(
        layers[i] for i in np.argsort(-r[r["fixed_scale"] == s][[f"frac_g_zero/{x}" for x in layers]].mean().to_numpy(),
                                      kind="stable")) for s in fixed)
    answer = (f"at {arm_low} the shallowest layer ({shallow}) has {'more' if np.mean(vals) > zl[-1] else 'no more'} "
              f"zero-gradient coordinates than the deepest ({deep}): {zl[0]:.3f} vs {zl[-1]:.3f} (shallow > deep in "
              f"{sum(more)} of {len(more)} seeds); layers by zero fraction, most first, {ranks}; "
              f"by fp32 gradient RMS, smallest first: "
              f"{', '.join(by_rms)} ({_fmt(g32[np.argsort(g32)], 2)})")
    order = sorted(set(r["arm"]), key=lambda a: (a != "fp32", a != "bf16", a != "fp16 dynamic",
                                                  -r.loc[r["arm"] == a, "fixed_scale"].fillna(np.inf).max()))
    rows = []
    for a in order:
        g = r[r["arm"] == a]
        z = [g[f"frac_g_zero/{x}"].mean() for x in layers]
        zci = bootstrap_interval(g[f"frac_g_zero/{shallow}"].to_numpy(float))
        rows.append(f"{a} ({len(g)} seeds): zero {_fmt(z)} ({shallow} 95% bootstrap {zci[0]:.3f}-{zci[1]:.3f}); "
                    f"sqrt(v)<eps {_fmt([g[f'frac_sqrtv_below_eps/{x}'].mean() for x in layers])}; "
                    f"||u||/||r|| {_fmt([g[f'u_over_r/{x}'].mean() for x in layers])}; "
                    f"update RMS/fp32 {_fmt([g[f'update_vs_fp32/{x}'].mean() for x in layers], 2)}; "
                    f"{definition} episodes/1k {g['spikes_per_1k'].mean():.1f} (height > 10x {g['spikes_per_1k_h10'].mean():.1f}); "
                    f"final loss {g['final_loss'].mean():.2g}")
    detail = (f"{answer}. Per arm, means over seeds, layers {' / '.join(layers)} (shallow first): " + "; ".join(rows)
              + f". Per seed, {shallow} zero fraction at {arm_low}: {[round(float(v), 3) for v in vals]}")
    return answered(seeds, float(np.mean(vals)) if len(vals) else None, (lo, hi), detail,
                    why=f"with fp32 and {arm_low}")
