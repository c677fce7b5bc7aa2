"""Loss curves: training loss per arm of the sweep, one line per seed, detected spikes marked."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .arms import _natural_arms, arm_labels
from .kinds import Kind
from .selection import _of, episodes
from .style import MAX_POINTS, _legend_entries, _mark_spikes, _seeds, _thin, tight


def fig_loss_curves(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, max_points: int = MAX_POINTS,
                    eps: pd.DataFrame | None = None):
    """Training loss over steps, one panel per arm of the sweep (β2, batch size, ε, ...), one line
    per seed, detected spikes marked at their peak (log scale; symmetric log for a loss that can be
    negative)."""
    runs = _of(runs, experiment)
    loss = _of(metrics, experiment)
    loss = loss[loss["metric"] == "loss"]
    if loss.empty:
        return None
    runs = runs.assign(arm=arm_labels(runs))
    eps = (episodes(loss) if eps is None else eps).merge(runs[["run_id", "arm", "seed"]], on="run_id")
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
        n = d["seed"].nunique()
        ax.set_title(f"{arm}\n{_seeds(n)}, " + (f"{len(e)} spikes" if nonneg else "loss < 0: no spike ratio"),
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
         "Training loss per arm of the sweep, one line per seed; crimson triangles mark detected spikes "
         "(loss > 3× the median of the previous 100 logged losses, <code>replicate/spikes.py</code>). "
         "Lines are thinned to at most 1500 points, keeping each bin's maximum, so no spike is hidden.",
         "no loss was logged"),
)
