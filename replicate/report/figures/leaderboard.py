"""The mitigation leaderboard: spikes and final loss per mitigation arm, per workload."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .style import _legend_entries, _seeds, tight

# (column, x label, log x, what the dot and bar are: replicate/leaderboard.py's intervals)
LEADERBOARD_PANELS = (("spikes_per_1k_h3", "spikes per 1k steps (> 3× median of previous 100)", False,
                       "spikes: rate pooled over seeds, exact Poisson 95% interval"),
                      ("final_loss", "final loss (median of the last 5% of steps; log)", True,
                       "final loss: mean over seeds, 95% t interval clipped at 0"))


def fig_leaderboard(table: pd.DataFrame, title: str = "mitigations"):
    """Per workload, spikes per 1k steps and final loss per mitigation arm with the table's 95%
    intervals (``replicate.leaderboard``: the spike rate pooled over seeds with the exact Poisson
    interval of the pooled count; the final loss's mean over seeds with its t interval clipped at
    0), in the table's order (fewest spikes first)."""
    if table is None or table.empty or "arm" not in table.columns:
        return None
    panels = [p for p in LEADERBOARD_PANELS if p[0] in table.columns]
    if not panels:
        return None
    if "workload" not in table.columns:
        table = table.assign(workload="all")
    workloads = list(dict.fromkeys(table["workload"]))
    sizes = [int((table["workload"] == w).sum()) for w in workloads]
    fig, axes = plt.subplots(len(workloads), len(panels), figsize=(4.2 * len(panels) + 2.4, 0.24 * sum(sizes) + 1.3 * len(workloads)),
                             squeeze=False, gridspec_kw={"height_ratios": sizes})
    colour = sns.color_palette("colorblind")
    n_seeds = set()
    for i, w in enumerate(workloads):
        t = table[table["workload"] == w].reset_index(drop=True)
        seeds = t["seeds"].map(lambda s: len(s) if isinstance(s, (list, tuple)) else s)
        n_seeds.update(int(x) for x in seeds.dropna())
        y = np.arange(len(t))
        for j, (m, xlabel, logx, what) in enumerate(panels):
            ax = axes[i][j]
            v = t[m].astype(float).replace([np.inf, -np.inf], np.nan)
            lo = t.get(f"{m}_lo", v).astype(float).replace([np.inf, -np.inf], np.nan)
            hi = t.get(f"{m}_hi", v).astype(float).replace([np.inf, -np.inf], np.nan)
            err = np.array([(v - lo).clip(lower=0).fillna(0), (hi - v).clip(lower=0).fillna(0)])
            ax.errorbar(v, y, xerr=err, fmt="o", ms=4, color=colour[j], capsize=2.5, lw=1,
                        label=what)
            base = t.index[t["arm"] == "adam"]
            if len(base) and np.isfinite(v[base[0]]):
                ax.axvline(v[base[0]], color="0.4", ls="--", lw=0.9, label="plain Adam (the baseline arm)")
            if logx and (v > 0).any():
                ax.set_xscale("log")
            elif not logx:
                ax.set_xlim(left=0)
            ax.set_ylim(len(t) - 0.5, -0.5)
            if j == 0:
                diverged = t["diverged"] if "diverged" in t.columns else pd.Series(0, index=t.index)
                ax.set_yticks(y, [f"{a} (n={n}{', ' + str(d) + ' diverged' if d else ''})"
                                  for a, n, d in zip(t["arm"], seeds, diverged)], fontsize=7.5)
                ax.set_ylabel(f"{w}: mitigation arm (n = seeds)")
            else:
                ax.set_yticks(y, [""] * len(y))
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_title(f"{w} workload", fontsize=9)
    handles, labels = _legend_entries(axes)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    n = (f"{min(n_seeds)}–{max(n_seeds)} seeds" if len(n_seeds) > 1 else _seeds(next(iter(n_seeds)))) if n_seeds else "seeds unknown"
    fig.suptitle(f"{title}: spikes and final loss per mitigation ({n} per arm), fewest spikes first", fontsize=10)
    tight(fig)
    return fig

