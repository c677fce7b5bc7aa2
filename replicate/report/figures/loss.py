"""Loss curves: training loss per arm of the sweep, one line per seed, spikes marked: R3's episodes
(the primary definition) at their peaks, R10's, R100's and Z6's at their starts."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .arms import _natural_arms, arm_labels
from .kinds import Kind
from ... import spikes
from .selection import _of, episodes
from .style import MAX_POINTS, OTHER_SPIKES, _legend_entries, _mark_spikes, _seeds, _thin, tight

OTHERS = tuple(d for d in spikes.DEFINITIONS if d != spikes.PRIMARY)  # R10, R100, Z6
OTHER_LABELS = {"R10": "R10 episode start (R3's rule at 10×)", "R100": "R100 episode start (R3's rule at 100×)",
                "Z6": "Z6 episode start (OLMo-core: > 6σ above the mean of the previous 128)"}


def fig_loss_curves(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, max_points: int = MAX_POINTS,
                    eps: pd.DataFrame | None = None):
    """Training loss over steps, one panel per arm of the sweep (β2, batch size, ε, ...), one line
    per seed (log scale; symmetric log for a loss that can be negative). R3's episodes (the primary
    definition; ``eps``, R3's unless given) are marked at their peak with crimson triangles, and the
    other definitions' (R10, R100, Z6) at their first step with small distinct markers."""
    runs = _of(runs, experiment)
    loss = _of(metrics, experiment)
    loss = loss[loss["metric"] == "loss"]
    if loss.empty:
        return None
    runs = runs.assign(arm=arm_labels(runs))
    eps = (episodes(loss) if eps is None else eps).merge(runs[["run_id", "arm", "seed"]], on="run_id")
    at = loss[["run_id", "step", "value"]].rename(columns={"step": "start", "value": "start_loss"})
    others = {d: episodes(loss, definition=d)[["run_id", "start"]].merge(at, on=["run_id", "start"])
              .merge(runs[["run_id", "arm"]], on="run_id") for d in OTHERS}
    df = _thin(loss.merge(runs[["run_id", "arm"]], on="run_id"), max_points=max_points)
    arms = _natural_arms(runs)
    drawn = set(df["arm"])
    arms = [a for a in arms if a in drawn]
    seeds = sorted(df["seed"].unique())
    palette = dict(zip(seeds, sns.color_palette("colorblind", len(seeds))))
    ncol = min(4, len(arms))
    nrow = math.ceil(len(arms) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol + 1.6, 2.5 * nrow + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    # log scale for losses >= 0 (exact zeros, a converged float64 quadratic, are left off); a linear
    # model's loss (θ·g) can be negative: symmetric log there
    nonneg = bool((df["value"] >= 0).all())
    zeros = nonneg and bool((df["value"] == 0).any())
    for ax, arm in zip(axes.flat, arms):
        d = df[df["arm"] == arm]
        for seed, g in d.groupby("seed"):
            g = g.sort_values("step")
            ax.plot(g["step"], g["value"], lw=0.7, alpha=0.85, color=palette[seed], label=f"seed {seed}")
        e = eps[eps["arm"] == arm]
        _mark_spikes(ax, e, loss=d["value"])
        for name, o in others.items():
            o = o[o["arm"] == arm]
            if len(o):
                ax.scatter(o["start"], o["start_loss"], label=OTHER_LABELS.get(name, f"{name} episode start"),
                           **OTHER_SPIKES[name])
        n = d["seed"].nunique()
        ax.set_title(f"{arm}\n{_seeds(n)}, " + (f"{len(e)} R3 spikes" if nonneg else "loss < 0: no spike ratio"),
                     fontsize=8.5)
    for ax in axes.flat[len(arms):]:
        ax.set_visible(False)
    if nonneg:
        axes[0][0].set_yscale("log", nonpositive="mask")
    else:
        tiny = df["value"].abs()[df["value"] != 0]
        axes[0][0].set_yscale("symlog", linthresh=float(tiny.quantile(0.05)) if len(tiny) else 1.0)
    for ax in axes[-1]:
        ax.set_xlabel("step (optimizer steps)")
    for row in axes:
        row[0].set_ylabel("training loss" + (" (log)" if nonneg else " (symlog)"))
    handles, labels = _legend_entries(axes)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{experiment}: training loss per arm, one line per seed ({_seeds(len(seeds))})"
                 + ("; losses of exactly 0 are not drawn on the log axis" if zeros else ""), y=1.0)
    tight(fig)
    return fig


# The report's per-experiment figure kinds of this family (``replicate.report.FIGURES``).
KINDS = (
    Kind("loss", "Loss curves", lambda d: d.has("loss"),
         lambda d: fig_loss_curves(d.metrics, d.runs, d.experiment, eps=d.eps),
         "Training loss per arm of the sweep, one line per seed; crimson triangles mark the peaks of the "
         "spike episodes under R3, the primary definition of CLAIMS.md (the loss exceeds 3× the median of the "
         "previous 100 non-spiking logged losses, until back under 1.2× it; <code>replicate/spikes.py</code>). "
         "Small markers at an episode's first step: open orange circles R10, open purple squares R100 (the "
         "same rule at 10×, 100×), teal crosses Z6 (OLMo-core's rule: more than 6 standard deviations above "
         "the mean of the previous 128 losses). "
         "Lines are thinned to at most 1500 points, keeping each bin's maximum, so no spike is hidden.",
         "no loss was logged"),
)
