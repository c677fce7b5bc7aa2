"""Per-layer gradient probes: gradient RMS against ε, the stalled fraction and ‖u‖/‖r‖."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .arms import _natural_arms, arm_labels
from .kinds import Kind
from .selection import _layers, _of
from .style import _legend_entries, _seeds, _thin, tight

if TYPE_CHECKING:
    from .kinds import Data


def fig_grad_rms(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, max_points: int = 600):
    """Per-layer gradient RMS over time against ε (dashed), the stalled fraction (coordinates with
    √v̂ < ε) and ‖u‖/‖r‖ (1 = ε negligible, → 0 when the layer stalls; Molybog et al. 2023 §4-5),
    mean over seeds with the min–max band, one row per arm."""
    m = _of(metrics, experiment)
    layers = _layers(m, "grad_rms")
    if not layers:
        return None
    runs = _of(runs, experiment)
    runs = runs.assign(arm=arm_labels(runs))
    arms = [a for a in _natural_arms(runs)]
    panels = [("grad_rms", "gradient RMS per layer (log)"),
              ("frac_sqrtv_below_eps", r"stalled fraction: $\sqrt{\hat v} < \epsilon$"),
              ("u_over_r", r"$\|u\|\,/\,\|r\|$ (1 = not stalled)")]
    panels = [p for p in panels if _layers(m, p[0])]
    names = [f"{p}/{layer}" for p, _ in panels for layer in layers]
    d = m[m["metric"].isin(names)].merge(runs[["run_id", "arm"]], on="run_id")
    if d.empty:
        return None
    d = d.assign(quantity=d["metric"].str.split("/").str[0], layer=d["metric"].str.split("/").str[1])
    palette = dict(zip(layers, sns.color_palette("viridis", len(layers))))
    # one x range for every panel, set by hand: ``sharex=True`` ties all the axes together, and
    # laying out n shared axes costs O(n²) (every axes walks its siblings on each limit update)
    fig, axes = plt.subplots(len(arms), len(panels), figsize=(3.6 * len(panels) + 1.4, 2.6 * len(arms) + 0.6),
                             squeeze=False)
    xlim = (float(d["step"].min()), float(d["step"].max()))
    xlim = (xlim[0] - 0.05 * (xlim[1] - xlim[0]), xlim[1] + 0.05 * (xlim[1] - xlim[0])) if xlim[1] > xlim[0] else None
    n_seeds = d["seed"].nunique()
    for i, arm in enumerate(arms):
        for j, (q, ylabel) in enumerate(panels):
            ax = axes[i][j]
            g = d[(d["arm"] == arm) & (d["quantity"] == q)]
            g = _thin(g, by="metric", keep_max=False, max_points=max_points)
            agg = g.groupby(["layer", "step"])["value"].agg(["mean", "min", "max"]).reset_index()
            for layer in [x for x in layers if x in set(agg["layer"])]:
                a = agg[agg["layer"] == layer]
                ax.plot(a["step"], a["mean"], lw=0.9, color=palette[layer], label=layer)
                ax.fill_between(a["step"], a["min"], a["max"], color=palette[layer], alpha=0.18, lw=0)
            if q == "grad_rms":
                ax.set_yscale("log")
                eps_values = runs.loc[runs["arm"] == arm, "optimizer.eps"] if "optimizer.eps" in runs.columns else []
                for k, e in enumerate(sorted(pd.Series(eps_values).dropna().unique())):
                    ax.axhline(e, color="crimson", ls="--", lw=1, label=r"$\epsilon$" if k == 0 and i == 0 else None)
            if q in ("frac_sqrtv_below_eps", "u_over_r"):
                ax.set_ylim(-0.03, 1.05)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_xlabel("step (optimizer steps)" if i == len(arms) - 1 else "")
            if xlim is not None:
                ax.set_xlim(*xlim)
            if i < len(arms) - 1:
                ax.tick_params(labelbottom=False)
            n = g["seed"].nunique()
            ax.set_title(f"{arm} ({_seeds(n)})" if len(arms) > 1 or j == 0 else "", fontsize=8.5)
    handles, labels = _legend_entries(axes[:, 0])
    order = sorted(range(len(labels)), key=lambda k: layers.index(labels[k]) if labels[k] in layers else len(layers))
    fig.legend([handles[k] for k in order], [labels[k] for k in order], loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, frameon=False, title="layer (line: mean,\nband: min–max over seeds)", title_fontsize=7.5)
    fig.suptitle(f"{experiment}: gradient RMS against ε and the stalled fraction per layer ({_seeds(n_seeds)})", y=1.0)
    tight(fig)
    return fig


def _stalls(d: Data) -> bool:
    if not d.has("frac_sqrtv_below_eps"):
        return False
    m = d.metrics[d.metrics["metric"].str.startswith("frac_sqrtv_below_eps/")]
    return bool((m["value"] > 0).any())


# The report's per-experiment figure kinds of this family (``replicate.report.FIGURES``).
KINDS = (
    Kind("grad_rms", "Gradient RMS against ε", _stalls,
         lambda d: fig_grad_rms(d.metrics, d.runs, d.experiment),
         "Per layer, the gradient RMS against ε (dashed), the fraction of coordinates with √v̂ < ε, and "
         "‖u‖/‖r‖ with u = m̂/(√v̂+ε), r = m̂/√v̂ (1: ε negligible; → 0: the layer stalls). Lines: mean over "
         "seeds; bands: min–max over seeds.",
         "no per-layer gradient probes (needs <code>probe=layers</code>)"),
)
