"""The mitigation leaderboard: spikes (R3, the primary definition, beside R10, R100 and Z6) and
final loss per mitigation arm, per workload."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ... import spikes
from .style import _legend_entries, _seeds, tight

# R3 first (spikes.PRIMARY), then the other definitions of CLAIMS.md, "Spike definitions"
DEFINITIONS = (spikes.PRIMARY, *(d for d in spikes.DEFINITIONS if d != spikes.PRIMARY))
RATE_WHAT = "rate pooled over seeds, exact Poisson 95% interval"
# (columns, x label, log x, what each dot and bar is: replicate/leaderboard.py's intervals); a
# panel with several columns draws them side by side in each arm's row, with its own markers
LEADERBOARD_PANELS = (
    ((f"spikes_{spikes.PRIMARY}",), f"{spikes.PRIMARY} (primary) spikes per 1k steps\n(> 3× median of previous "
     "100, until back under 1.2×)", False, (f"spikes {spikes.PRIMARY} (primary): {RATE_WHAT}",)),
    (tuple(f"spikes_{d}" for d in DEFINITIONS[1:]), "spikes per 1k steps under "
     + ", ".join(DEFINITIONS[1:]) + "\n(R10, R100: R3's rule at 10×, 100×; Z6: OLMo-core's 6σ rule)", False,
     tuple(f"spikes {d}: {RATE_WHAT}" for d in DEFINITIONS[1:])),
    (("final_loss",), "final loss (median of the last 5% of steps; log)", True,
     ("final loss: mean over seeds, 95% t interval clipped at 0",)),
)
_MARKERS = ("o", "s", "D", "^")


def fig_leaderboard(table: pd.DataFrame, title: str = "mitigations"):
    """Per workload, per mitigation arm with the table's 95% intervals, in the table's order
    (fewest R3 spikes first): R3's spikes per 1k steps (the primary definition), the rates under
    R10, R100 and Z6 side by side, and the final loss (``replicate.leaderboard``: each spike rate
    pooled over seeds with the exact Poisson interval of the pooled count; the final loss's mean
    over seeds with its t interval clipped at 0)."""
    if table is None or table.empty or "arm" not in table.columns:
        return None
    panels = [(tuple(c for c in cols if c in table.columns), xl, logx,
               tuple(w for c, w in zip(cols, what) if c in table.columns))
              for cols, xl, logx, what in LEADERBOARD_PANELS]
    panels = [p for p in panels if p[0]]
    if not panels:
        return None
    if "workload" not in table.columns:
        table = table.assign(workload="all")
    workloads = list(dict.fromkeys(table["workload"]))
    sizes = [int((table["workload"] == w).sum()) for w in workloads]
    fig, axes = plt.subplots(len(workloads), len(panels), figsize=(4.0 * len(panels) + 2.4, 0.26 * sum(sizes) + 1.5 * len(workloads)),
                             squeeze=False, gridspec_kw={"height_ratios": sizes})
    colour = sns.color_palette("colorblind")
    colours = {}
    n_seeds = set()
    for i, w in enumerate(workloads):
        t = table[table["workload"] == w].reset_index(drop=True)
        seeds = t["seeds"].map(lambda s: len(s) if isinstance(s, (list, tuple)) else s)
        n_seeds.update(int(x) for x in seeds.dropna())
        y = np.arange(len(t))
        for j, (cols, xlabel, logx, whats) in enumerate(panels):
            ax = axes[i][j]
            finite = []
            for k, (m, what) in enumerate(zip(cols, whats)):
                v = t[m].astype(float).replace([np.inf, -np.inf], np.nan)
                lo = t.get(f"{m}_lo", v).astype(float).replace([np.inf, -np.inf], np.nan)
                hi = t.get(f"{m}_hi", v).astype(float).replace([np.inf, -np.inf], np.nan)
                err = np.array([(v - lo).clip(lower=0).fillna(0), (hi - v).clip(lower=0).fillna(0)])
                dy = (k - (len(cols) - 1) / 2) * 0.25
                c = colours.setdefault(m, colour[len(colours) % len(colour)])
                ax.errorbar(v, y + dy, xerr=err, fmt=_MARKERS[k % len(_MARKERS)], ms=4 if len(cols) == 1 else 3,
                            color=c, capsize=2.5 if len(cols) == 1 else 1.5, lw=1 if len(cols) == 1 else 0.8,
                            label=what)
                finite.append(v)
            if len(cols) == 1:
                v = finite[0]
                base = t.index[t["arm"] == "adam"]
                if len(base) and np.isfinite(v[base[0]]):
                    ax.axvline(v[base[0]], color="0.4", ls="--", lw=0.9, label="plain Adam (the baseline arm)")
            if logx and any((v > 0).any() for v in finite):
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
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    n = (f"{min(n_seeds)}–{max(n_seeds)} seeds" if len(n_seeds) > 1 else _seeds(next(iter(n_seeds)))) if n_seeds else "seeds unknown"
    fig.suptitle(f"{title}: spikes under {spikes.PRIMARY} (primary), {', '.join(DEFINITIONS[1:])} and final loss "
                 f"per mitigation ({n} per arm), fewest {spikes.PRIMARY} spikes first", fontsize=10)
    tight(fig)
    return fig
