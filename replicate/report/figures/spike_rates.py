"""Spike rates over a sweep: a heatmap of R3's rate over two swept keys, or the rates under the four
spike definitions of CLAIMS.md (R3, the primary, then R10, R100, Z6) per arm."""

from __future__ import annotations

from typing import TYPE_CHECKING

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ... import spikes
from ...stats import count_of_rate, rate_interval
from .arms import _SYMBOL, SWEEP_KEYS, _natural, _value_label, arm_labels, varied_keys
from .kinds import Kind
from .selection import _of
from .style import _seeds, tight

if TYPE_CHECKING:
    from .kinds import Data


# R3 first (spikes.PRIMARY), then the other definitions of CLAIMS.md, "Spike definitions"
DEFINITIONS = (spikes.PRIMARY, *(d for d in spikes.DEFINITIONS if d != spikes.PRIMARY))
RATE_COLUMNS = {d: f"spikes_{d}" for d in DEFINITIONS}  # definition -> its rate column in spike_table


def spike_table(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str | None = None) -> pd.DataFrame:
    """One row per run: n_steps, spikes per 1k steps under each definition (``spikes_R3``,
    ``spikes_R10``, ``spikes_R100``, ``spikes_Z6``: all the episodes of that definition,
    ``spikes.summarize(..., definition=d)``) and the run's config."""
    if metrics is None or metrics.empty or "metric" not in metrics.columns:
        return pd.DataFrame()
    loss = _of(metrics, experiment)
    loss = loss[loss["metric"] == "loss"]
    if loss.empty:
        return pd.DataFrame()
    s = None
    for d, col in RATE_COLUMNS.items():
        r = spikes.summarize(loss, definition=d).rename(columns={"spikes_per_1k": col})
        s = r[["run_id", "n_steps", col]] if s is None else s.merge(r[["run_id", col]], on="run_id")
    return s.merge(_of(runs, experiment).drop(columns=["experiment", "status"]), on="run_id")


def fig_spike_rates(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str):
    """Spike rate over the sweep. Two swept keys among β2, batch size, ε, η, ...: a heatmap of the
    mean R3 spikes per 1k steps over seeds (R3: the primary definition), each cell annotated with
    its mean and seed count. One swept key (or named arms): spikes per 1k steps under each of the
    four definitions per arm, R3 first and emphasised (larger, filled), then R10, R100, Z6: the rate
    pooled over seeds (episodes summed over the seeds per 1k steps summed over them) with the exact
    Poisson 95% interval of the pooled count (``stats.rate_interval``; never below 0), each seed's
    own rate as a cross."""
    table = spike_table(metrics, runs, experiment)
    if table.empty:
        return None
    runs_e = _of(runs, experiment)
    varied = varied_keys(runs_e)
    # named arms (conf/arm/*: ``label``) are compared as arms, even when they differ in β2 or ε
    keys = [] if "label" in varied else [k for k in SWEEP_KEYS if k in varied]
    n_seeds = table["seed"].nunique()
    if len(keys) >= 2:
        # one heatmap per combination of whatever else varies (never averaged over other arms)
        rest = dict(zip(runs_e["run_id"], arm_labels(runs_e.drop(columns=keys[:2]))))
        return _rate_heatmap(table.assign(_rest=table["run_id"].map(rest)), keys[0], keys[1], experiment, n_seeds)
    alone = len(keys) == 1 and set(arm_labels(runs_e.drop(columns=keys))) == {"all runs"}
    if alone:
        key = keys[0]
        table = table.assign(x=table[key].map(lambda v: _value_label(key, v)))
        order = [_value_label(key, v) for v in _natural(table[key].tolist())]
        xlabel = _SYMBOL.get(key, key)
    elif len(varied) > 0:
        labels = dict(zip(runs_e["run_id"], arm_labels(runs_e)))
        table = table.assign(x=table["run_id"].map(labels))
        order = sorted(table["x"].unique())
        xlabel = "arm"
    else:
        return None
    long = table.melt(id_vars=["run_id", "seed", "x", "n_steps"], value_vars=list(RATE_COLUMNS.values()),
                      var_name="column", value_name="rate")
    # the integer episode count behind each run's rate (exact, or an error), pooled per arm below
    long["count"] = [count_of_rate(r, n) for r, n in zip(long["rate"], long["n_steps"])]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 * len(order) + 2.5), 3.2))
    # the loss curves' marker colours (style.OTHER_SPIKES): R3 crimson, R10 orange, R100 purple, Z6 teal
    palette = dict(zip(DEFINITIONS, ["crimson", "darkorange", "purple", "teal"]))
    markers = dict(zip(DEFINITIONS, ["o", "s", "D", "^"]))
    width = 0.18
    dodge = {d: (i - (len(DEFINITIONS) - 1) / 2) * width for i, d in enumerate(DEFINITIONS)}
    pos = {x: i for i, x in enumerate(order)}
    for d, col in RATE_COLUMNS.items():
        primary = d == spikes.PRIMARY
        g_d = long[long["column"] == col]
        stats = {x: rate_interval(g["count"], g["n_steps"]) for x, g in g_d.groupby("x")}
        xs = [pos[x] + dodge[d] for x in stats]
        rates = [s[0] for s in stats.values()]
        err = np.array([[max(0.0, s[0] - s[1]) if np.isfinite(s[1]) else 0.0 for s in stats.values()],
                        [max(0.0, s[2] - s[0]) if np.isfinite(s[2]) else 0.0 for s in stats.values()]])
        ax.errorbar(xs, rates, yerr=err, fmt=markers[d], ms=5.5 if primary else 3.5, capsize=3 if primary else 2,
                    lw=1.3 if primary else 0.8, color=palette[d], mfc=palette[d] if primary else "white",
                    zorder=3 if primary else 2,
                    label=f"{d}{' (primary)' if primary else ''}: pooled rate, exact Poisson 95% interval")
        ax.scatter([pos[x] + dodge[d] + 0.05 for x in g_d["x"]], g_d["rate"], s=9, color=palette[d], alpha=0.45,
                   marker="x", linewidths=0.8)
    ax.scatter([], [], s=9, color="gray", marker="x", label="one seed")
    ax.set_xticks(range(len(order)), order, rotation=30 if xlabel == "arm" else 0, ha="right" if xlabel == "arm" else "center",
                  fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("spikes per 1k steps")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(f"{experiment}: spike rate under R3 (primary), R10, R100, Z6 ({_seeds(n_seeds)} per arm)",
                 fontsize=9.5)
    tight(fig)
    return fig


def _rate_heatmap(table: pd.DataFrame, xkey: str, ykey: str, experiment: str, n_seeds: int, max_panels: int = 8):
    xs, ys = _natural(table[xkey].tolist()), _natural(table[ykey].tolist())
    panels = sorted(table["_rest"].unique())[:max_panels]
    ncol = min(len(panels), 3)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * (1.0 * len(xs) + 2.6) + 0.6, nrow * (0.6 * len(ys) + 1.6) + 0.5),
                             squeeze=False)
    col = RATE_COLUMNS[spikes.PRIMARY]
    vmax = max(1e-9, float(table[col].max()))
    for ax, panel in zip(axes.flat, panels):
        t = table[table["_rest"] == panel]
        mean = np.full((len(ys), len(xs)), np.nan)
        count = np.zeros((len(ys), len(xs)), dtype=int)
        for (i, y), (j, x) in ((a, b) for a in enumerate(ys) for b in enumerate(xs)):
            cell = t[(t[ykey].map(repr) == repr(y)) & (t[xkey].map(repr) == repr(x))]
            if len(cell):
                mean[i, j] = cell[col].mean()
                count[i, j] = cell["seed"].nunique()
        # drawn by hand (sns.heatmap draws the whole figure once per call to place its tick labels)
        im = ax.imshow(mean, cmap="rocket_r", vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
        for i in range(len(ys)):
            for j in range(len(xs)):
                if count[i, j]:
                    dark = mean[i, j] > 0.55 * vmax
                    ax.text(j, i, f"{mean[i, j]:.1f}\n(n={count[i, j]})", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(xs)), [_value_label(xkey, x) for x in xs])
        ax.set_yticks(range(len(ys)), [_value_label(ykey, y) for y in ys])
        ax.grid(False)
        fig.colorbar(im, ax=ax, label=f"{spikes.PRIMARY} spikes per 1k steps,\nmean over seeds")
        ax.set_xlabel(_SYMBOL.get(xkey, xkey))
        ax.set_ylabel(_SYMBOL.get(ykey, ykey))
        if len(panels) > 1 or panel != "all runs":
            ax.set_title(panel, fontsize=8.5)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    more = f"; first {max_panels} of {table['_rest'].nunique()} arms" if table["_rest"].nunique() > max_panels else ""
    fig.suptitle(f"{experiment}: {spikes.PRIMARY} spike rate over {_SYMBOL.get(ykey, ykey)} × {_SYMBOL.get(xkey, xkey)} "
                 f"(n = seeds per cell, up to {n_seeds}{more})", fontsize=9.5)
    tight(fig)
    return fig


def _sweeps(d: Data) -> bool:
    return bool(varied_keys(d.runs))


# The report's per-experiment figure kinds of this family (``replicate.report.FIGURES``).
KINDS = (
    Kind("spike_rates", "Spike rate over the sweep", _sweeps,
         lambda d: fig_spike_rates(d.metrics, d.runs, d.experiment),
         "Spikes per 1k steps per arm under the spike definitions of CLAIMS.md, fixed before any run: "
         "<b>R3</b> (the primary: the loss exceeds 3× the median of the previous 100 non-spiking losses, "
         "until back under 1.2× it), <b>R10</b> and <b>R100</b> (the same rule at 10× and 100×) and <b>Z6</b> "
         "(OLMo-core's SkipStepOptimizer rule: more than 6 standard deviations above the mean of the previous "
         "128 losses). Two swept keys (β2, batch size, ε, η): a heatmap of R3's rate, the mean over seeds, "
         "each cell with its seed count. One swept key or named arms: the rate under each definition, R3 "
         "first (filled, larger), then R10, R100, Z6 (open markers): the rate pooled over seeds (episodes "
         "summed over the seeds per 1k of their summed steps) with the exact (Garwood) Poisson 95% interval "
         "of the pooled count, never below 0; it treats the seeds as one Poisson process with a common "
         "rate, so it is narrower than an interval over seeds where they differ. Crosses: single seeds.",
         "the experiment sweeps no key, or logged no loss"),
)
