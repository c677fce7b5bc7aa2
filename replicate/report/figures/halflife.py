"""β2 by its half-life in tokens (Marek et al. 2025, arXiv 2507.07101; claim H1): over the batch
size, at equal tokens, the final held-out loss and the Z6 spike episodes of β2 held fixed against β2
scaled so that its half-life in tokens, t½ = B·ln ½ / ln β2 (in sequences), stays that of the largest
batch, β2(B) = β2(B_max)^(B/B_max). The largest batch's run belongs to both arms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ... import spikes
from ...claims.h1_beta2_halflife_gpt import _arms, _final_val
from ...stats import rate_interval
from .kinds import Kind
from .selection import _of
from .style import _legend_entries, _seeds, tight

DEFINITION = "Z6"  # H1's row names it
ARMS = {"fixed": ("β2 fixed", "0.45"), "scaled": ("β2 scaled by its half-life in tokens", "tab:blue")}


def _applies(d) -> bool:
    r = d.runs
    return (d.has("val_loss") and {"data.batch_size", "optimizer.b2"} <= set(r.columns)
            and r["data.batch_size"].nunique() > 1 and r["optimizer.b2"].nunique() > 1)


def fig_halflife(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str):
    """Two panels over the batch size (log 2): the final held-out loss per seed with the arms'
    means, and the Z6 episodes per run pooled over seeds with their exact Poisson 95% interval."""
    m, runs = _of(metrics, experiment), _of(runs, experiment)
    if m.empty or not (m["metric"] == "val_loss").any():
        return None
    r = _arms(runs)
    final = _final_val(m, runs)
    s = spikes.summarize(m[m["metric"] == "loss"], definition=DEFINITION)
    count = {rid: round(rate * n / 1000) for rid, rate, n in zip(s["run_id"], s["spikes_per_1k"], s["n_steps"])}
    r = r.assign(final=r["run_id"].map(final), spikes=r["run_id"].map(count))
    seeds = sorted(r["seed"].unique())
    fig, (ax_l, ax_s) = plt.subplots(1, 2, figsize=(9.2, 3.4))
    for k, (arm, (label, color)) in enumerate(ARMS.items()):
        a = r[r[arm]].sort_values("batch")
        if a.empty:
            continue
        dx = 1 + (k - 0.5) * 0.06  # side by side at each batch
        ax_l.scatter(a["batch"] * dx, a["final"], s=12, color=color, alpha=0.6, marker="x",
                     label=f"{label}: one seed")
        mean = a.groupby("batch")["final"].mean()
        ax_l.plot(mean.index * dx, mean.to_numpy(), color=color, lw=1.4, marker="o", ms=4, label=f"{label}: mean")
        rows = []
        for b, g in a.groupby("batch"):
            rate, lo, hi = rate_interval(g["spikes"].fillna(0).to_numpy(float), np.ones(len(g)), per=1)
            rows.append((b, rate, lo, hi))
        b, rate, lo, hi = map(np.array, zip(*rows))
        ax_s.errorbar(b * dx, rate, yerr=[rate - lo, hi - rate], color=color, marker="o", ms=4, capsize=3, lw=1.2,
                      label=f"{label}: pooled over seeds, exact Poisson 95% interval")
    batches = sorted(r["batch"].dropna().unique())
    for ax in (ax_l, ax_s):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [f"{b:g}" for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size (sequences; equal tokens per run)")
    ax_l.set_ylabel("final held-out loss (nats/byte)")
    ax_s.set_ylabel(f"{DEFINITION} spike episodes per run")
    ax_s.set_ylim(bottom=0)
    handles, labels = _legend_entries([ax_l, ax_s])
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{experiment}: β2 fixed vs scaled by its half-life in tokens ({_seeds(len(seeds))})", fontsize=10)
    tight(fig)
    return fig


KINDS = (
    Kind("halflife", "β2 fixed vs scaled by its half-life, over the batch size", _applies,
         lambda d: fig_halflife(d.metrics, d.runs, d.experiment),
         "At equal tokens per run, over the batch size: (left) the final held-out loss (mean of val_loss over the "
         "last 10% of the run) per seed and its mean, β2 held fixed (grey) and β2 scaled so its half-life in "
         "tokens stays the largest batch's, β2(B) = β2(B_max)^(B/B_max) (blue; Marek et al. 2025); (right) the "
         "Z6 spike episodes per run (OLMo-core's 6σ rule, the definition H1's row names), pooled over seeds with "
         "the exact Poisson 95% interval. The largest batch's run is shared by both arms.",
         "no runs that sweep the batch size and β2 together with a held-out loss"),
)
