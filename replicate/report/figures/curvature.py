"""Precursors around loss spikes: the preconditioned curvature against 2/η and RMS_t per layer,
one run around its first spike and every spike aligned on the start of its rise (``_aligned``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .kinds import Kind
from .selection import _first_spike_window, _layers, _of, episodes
from .style import SPIKE, SPIKE_LABEL, _legend_entries, _seeds, tight

if TYPE_CHECKING:
    from .kinds import Data


def _per_run(metrics: pd.DataFrame, names) -> dict[str, pd.DataFrame]:
    """run_id -> a frame indexed by step with one column per metric in ``names``."""
    m = metrics[metrics["metric"].isin(list(names))]
    if m.empty:
        return {}
    return {rid: g.pivot_table(index="step", columns="metric", values="value").sort_index()
            for rid, g in m.groupby("run_id", sort=False)}


def _aligned(wide: dict[str, pd.DataFrame], eps: pd.DataFrame, cols, before: int, after: int,
             ref: str = "rise_start") -> pd.DataFrame:
    """Event-aligned values: for every spike episode and column, the value at ``ref`` + offset for
    offsets in [-before, after]; long frame (run_id, spike, offset, metric, value)."""
    rows = []
    offsets = np.arange(-before, after + 1)
    for k, ep in enumerate(eps.itertuples()):
        w = wide.get(ep.run_id)
        if w is None:
            continue
        at = getattr(ep, ref) + offsets
        sub = w.reindex(at)
        for c in cols:
            if c in sub.columns:
                rows.append(pd.DataFrame({"run_id": ep.run_id, "spike": k, "offset": offsets,
                                          "metric": c, "value": sub[c].to_numpy()}))
    if not rows:
        return pd.DataFrame(columns=["run_id", "spike", "offset", "metric", "value"])
    return pd.concat(rows, ignore_index=True).dropna(subset=["value"])


def _around_spikes(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, series: dict[str, str],
                   refs: dict[str, float], ylabel: str, title: str, before: int, after: int,
                   shade: tuple[int, int] | None = None, norm: str | None = None, palette=None,
                   eps: pd.DataFrame | None = None):
    """Two panels: (left) one run around its first spike, loss above and ``series`` below against
    the reference lines ``refs``; (right) the same series aligned on every spike's rise start over
    all runs and seeds: median with the interquartile band. ``norm``: a metric the aligned values
    are divided by (e.g. the 2/η threshold), so runs with different η share one axis."""
    m = _of(metrics, experiment)
    runs = _of(runs, experiment)
    if not set(series.values()) <= set(m["metric"].unique()):
        return None
    eps = episodes(m) if eps is None else eps
    if eps.empty:
        return None
    first = _first_spike_window(eps, runs, before, after)
    run_id, seed, lo, hi, mine = first
    refcols = [v for v in refs.values() if isinstance(v, str)]
    wide = _per_run(m, [*series.values(), "loss", *refcols, *([norm] if norm else [])])
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 5.4), gridspec_kw={"height_ratios": [1, 2], "width_ratios": [1.1, 1]})
    palette = palette or dict(zip(series, sns.color_palette("viridis" if len(series) > 2 else "colorblind", len(series))))
    # left: one run
    w = wide[run_id].loc[lo:hi]
    top, ax = axes[0][0], axes[1][0]
    top.plot(w.index, w["loss"], color="0.2", lw=0.9, label=f"training loss (seed {seed})")
    if (w["loss"] > 0).all():
        top.set_yscale("log")
    top.scatter(mine["peak"], mine["peak_loss"], label=SPIKE_LABEL, **SPIKE)
    top.set_ylabel("loss")
    for label, col in series.items():
        if col not in w.columns:  # arms of one experiment may have different layers (a GPT and a quadratic)
            continue
        s = w[col].dropna()
        ax.plot(s.index, s.to_numpy(), lw=1, marker="." if len(s) < 200 else None, ms=3, color=palette[label], label=label)
    for k, (label, v) in enumerate(refs.items()):
        val = (w[v].dropna().median() if v in w.columns else float("nan")) if isinstance(v, str) else v
        ax.axhline(val, color=["crimson", "0.45"][k % 2], ls="--", lw=1, label=label)
    for s in mine["rise_start"]:
        for a in (top, ax):
            a.axvline(s, color="crimson", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step (optimizer steps)")
    ax.set_ylabel(ylabel)
    top.set_xlim(lo, hi)
    ax.set_xlim(lo, hi)
    top.set_title(f"one run around its first spike (seed {seed})", fontsize=9)
    # right: aligned on every spike's rise start
    al = _aligned(wide, eps, [*series.values(), *([norm] if norm else [])], before, after)
    n_spikes, n_runs = len(eps), eps["run_id"].nunique()
    n_seeds = runs.loc[runs["run_id"].isin(eps["run_id"]), "seed"].nunique()
    right = axes[1][1]
    if norm:
        thr = al[al["metric"] == norm][["spike", "offset", "value"]].rename(columns={"value": "_norm"})
        al = al[al["metric"] != norm].merge(thr, on=["spike", "offset"])
        al["value"] = al["value"] / al["_norm"]
    for label, col in series.items():
        q = al[al["metric"] == col].groupby("offset")["value"].quantile([0.25, 0.5, 0.75]).unstack()
        if q.empty:
            continue
        right.plot(q.index, q[0.5], color=palette[label], lw=1.2, label=f"{label}: median")
        right.fill_between(q.index, q[0.25], q[0.75], color=palette[label], alpha=0.2, lw=0)
    right.axhline(1.0, color="crimson", ls="--", lw=1, label=list(refs)[0])
    right.axvline(0, color="crimson", ls=":", lw=0.8, label="loss rise starts (> 1.2× baseline)")
    if shade:
        right.axvspan(*shade, color="gold", alpha=0.25, lw=0, label=f"{-shade[1]}–{-shade[0]} steps before the rise")
    right.set_yscale("log")
    right.set_xlabel("steps from the start of the loss rise")
    right.set_ylabel(f"ratio to {list(refs)[0]} (log)" if norm else ylabel)
    right.set_title(f"all {n_spikes} spikes of {n_runs} runs ({_seeds(n_seeds)}), median and IQR", fontsize=9)
    # the right column's top cell holds the legends
    leg = axes[0][1]
    leg.axis("off")
    handles, labels = _legend_entries([top, ax, right])
    leg.legend(handles, labels, loc="center", fontsize=7.5, frameon=False, ncol=2)
    fig.suptitle(title.format(n_seeds=_seeds(runs["seed"].nunique())), fontsize=10)
    tight(fig)
    return fig


def fig_curvature(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, before: int = 60, after: int = 30,
                  eps: pd.DataFrame | None = None):
    """λ_max(Ĥ) and λ_grad(Ĥ) = gᵀĤg/‖g‖² of the preconditioned Hessian Ĥ = D^½HD^½,
    D = diag(1/(√v̂+ε)), against 2/η (Bai et al. 2025 §4) and Adam's momentum limit 38/η, around
    spikes. The curvature logged at step t is measured after step t."""
    lmax, lgrad = r"$\lambda_{\max}(\hat H)$", r"$\lambda_{\mathrm{grad}}(\hat H)$"
    series = {lmax: "lambda_max_Hhat", lgrad: "lambda_grad_Hhat"}
    refs = {r"$2/\eta$": "threshold_2_over_lr"}
    if "threshold_momentum" in set(_of(metrics, experiment)["metric"].unique()):
        refs[r"$2(1+\beta_1)/((1-\beta_1)\eta)$ (momentum limit)"] = "threshold_momentum"
    return _around_spikes(metrics, runs, experiment, series, refs, r"eigenvalue (same units as $1/\eta$; log)",
                          f"{experiment}: preconditioned curvature against 2/η around loss spikes ({{n_seeds}})",
                          before, after, norm="threshold_2_over_lr",
                          palette={lmax: sns.color_palette("colorblind")[0], lgrad: sns.color_palette("colorblind")[2]},
                          eps=eps)


def fig_rms_lead(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, before: int = 30, after: int = 15,
                 eps: pd.DataFrame | None = None):
    """RMS_t = √mean(g²/max(v̂, ε²)) per layer (StableAdamW's, Wortsman et al. 2023 §3.4), with v̂
    from before the step, around loss spikes; the W1 window (1–8 steps before the rise) shaded."""
    m = _of(metrics, experiment)
    layers = _layers(m, "rms_g2_over_v")
    if not layers:
        return None
    series = {layer: f"rms_g2_over_v/{layer}" for layer in layers}
    return _around_spikes(metrics, runs, experiment, series, {r"RMS$_t$ = 1 ($\hat v$ underestimates $g^2$)": 1.0},
                          r"RMS$_t = \sqrt{\mathrm{mean}(g^2/\hat v)}$ (log)",
                          f"{experiment}: RMS_t per layer leading the loss spikes ({{n_seeds}})", before, after,
                          shade=(-8, -1), eps=eps)


def _spiked(d: Data) -> bool:
    return d.has("loss") and not d.eps.empty


# The report's per-experiment figure kinds of this family (``replicate.report.FIGURES``).
KINDS = (
    Kind("curvature", "Preconditioned curvature around spikes", lambda d: d.has("lambda_grad_Hhat"),
         lambda d: fig_curvature(d.metrics, d.runs, d.experiment, eps=d.eps),
         "λ_max(Ĥ) and λ_grad(Ĥ) = gᵀĤg/‖g‖² of Ĥ = D^½HD^½, D = diag(1/(√v̂+ε)), by Hessian-vector products "
         "and Lanczos, against 2/η (Bai et al. 2025) and Adam's momentum limit 2(1+β1)/((1−β1)η). Left: one "
         "run around its first spike (dotted: the loss rise starts). Right: every spike aligned on the start "
         "of its rise, ratio to 2/η, median and interquartile band. The curvature logged at step t is "
         "measured after step t.",
         "no loss spike in these runs to align on, or no curvature probes"),
    Kind("rms_lead", "RMS_t leading the loss spikes", lambda d: d.has("rms_g2_over_v") and _spiked(d),
         lambda d: fig_rms_lead(d.metrics, d.runs, d.experiment, eps=d.eps),
         "RMS_t = √mean(g²/max(v̂, ε²)) per layer, with v̂ from before the step (StableAdamW's, Wortsman et "
         "al. 2023). Left: one run around its first spike. Right: every spike aligned on the start of its "
         "loss rise (first step > 1.2× the baseline), median and interquartile band per layer; shaded: the "
         "1–8 steps before the rise that W1 asks about.",
         "no loss spike in these runs to align on, or no RMS_t probes"),
)
