"""Update histograms: one run's distribution of update values over time, around its first spike."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .kinds import Kind
from .selection import _first_spike_window, _of, episodes, layer_order
from .style import _legend_entries, _mark_spikes, _seeds


def fig_update_histograms(hist: pd.DataFrame, experiment: str, quantity: str = "r", seed: int | None = None,
                          metrics: pd.DataFrame | None = None, runs: pd.DataFrame | None = None,
                          before: int = 80, after: int = 80, eps: pd.DataFrame | None = None):
    """Heatmap of one run's update values over time (step × value, log colour) for the shallowest
    layer (embedding) and the deepest block: unimodal around 0 ↔ piled up near ±1 (sign descent,
    Molybog et al. 2023 §4). With ``metrics``, the window is centred on the first loss spike of the
    lowest seed that spiked inside the probed steps, and the loss is drawn above."""
    h = _of(hist, experiment)
    h = h[h["quantity"] == quantity] if not h.empty else h
    if h.empty:
        return None
    n_seeds = h["seed"].nunique()
    window, run_id = None, None
    loss = pd.DataFrame()
    if metrics is not None and runs is not None:
        loss = _of(metrics, experiment)
        loss = loss[(loss["metric"] == "loss") & loss["run_id"].isin(h["run_id"].unique())]
        eps = episodes(loss) if eps is None else eps[eps["run_id"].isin(loss["run_id"].unique())]
        if seed is not None and not eps.empty:
            eps = eps[eps["run_id"].isin(_of(runs, experiment).query("seed == @seed")["run_id"])]
        if not eps.empty:
            first = _first_spike_window(eps, _of(runs, experiment), before, after)
            if first is not None:
                run_id, seed, lo, hi, _ = first
                window = (lo, hi)
    if run_id is None:
        seed = h["seed"].min() if seed is None else seed
        if seed not in set(h["seed"]):
            return None
        run_id = h.loc[h["seed"] == seed, "run_id"].iloc[0]  # one run: the first arm of that seed
    h = h[h["run_id"] == run_id]
    if window is not None:
        h = h[(h["step"] >= window[0]) & (h["step"] <= window[1])]
        if h["step"].nunique() < 2:
            return None
    layers = layer_order(h["layer"].unique())
    blocks = [x for x in layers if x.startswith("block")]
    shown = list(dict.fromkeys([layers[0], blocks[-1] if blocks else layers[-1]]))
    with_loss = not loss.empty
    fig, axes = plt.subplots(2 if with_loss else 1, len(shown), figsize=(4.4 * len(shown) + 1.2, 5.2 if with_loss else 3.4),
                             squeeze=False, sharex=True, gridspec_kw={"height_ratios": [1, 2.4]} if with_loss else None)
    symbol = {"r": r"$r = \hat m/\sqrt{\hat v}$", "u": r"$u = \hat m/(\sqrt{\hat v}+\epsilon)$"}[quantity]
    lo_s, hi_s = h["step"].min(), h["step"].max()
    im = None
    for j, layer in enumerate(shown):
        g = h[h["layer"] == layer].sort_values("step")
        counts = np.stack(g["counts"].to_numpy()).astype(float)
        frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        lo, hi = g["lo"].iloc[0], g["hi"].iloc[0]
        ax = axes[-1][j]
        steps = g["step"].to_numpy(float)
        gaps = np.diff(steps) if len(steps) > 1 else np.array([1.0])
        xedges = np.concatenate([[steps[0] - gaps[0] / 2], steps[:-1] + gaps / 2, [steps[-1] + gaps[-1] / 2]])
        im = ax.pcolormesh(xedges, np.linspace(lo, hi, frac.shape[1] + 1), np.log10(frac.T + 1e-6), cmap="magma",
                           vmin=-6, vmax=0, rasterized=True, shading="flat")
        ax.grid(False)
        ax.set_xlabel("step (optimizer steps)")
        ax.set_title(f"{layer}: {symbol}", fontsize=9)
        if with_loss:
            top = axes[0][j]
            lr = loss[(loss["run_id"] == run_id) & loss["step"].between(lo_s, hi_s)].sort_values("step")
            top.plot(lr["step"], lr["value"], lw=0.8, color="0.2", label=f"training loss, seed {seed}")
            logy = bool((lr["value"] > 0).all() and lr["value"].max() > 30 * lr["value"].min())
            if logy:
                top.set_yscale("log")
            e = episodes(loss[loss["run_id"] == run_id])
            e = e[e["peak"].between(lo_s, hi_s)]
            _mark_spikes(top, e, loss=lr["value"])
            for s in e["peak"]:
                ax.axvline(s, color="cyan", lw=0.6, ls="--")
            top.set_ylabel("loss" + (" (log)" if logy else ""))
    axes[-1][0].set_ylabel(f"update value {symbol}")
    cbar = fig.colorbar(im, ax=axes[-1].tolist(), label="log10 fraction of the layer's coordinates", pad=0.02)
    cbar.ax.tick_params(labelsize=7)
    if with_loss:
        handles, labels = _legend_entries(axes[0])
        if window is not None:
            handles.append(matplotlib.lines.Line2D([], [], color="cyan", lw=0.8, ls="--"))
            labels.append("spike peak (heatmap)")
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.45, 0.0), ncol=3, fontsize=7.5, frameon=False)
    where = f"around the first spike, steps {lo_s}–{hi_s}" if window is not None else f"steps {lo_s}–{hi_s}, no spike in the probed steps"
    fig.suptitle(f"{experiment}: update values over time, seed {seed} ({where}; 1 of {_seeds(n_seeds)} shown)",
                 fontsize=9.5)
    return fig


# The report's per-experiment figure kinds of this family (``replicate.report.FIGURES``).
KINDS = (
    Kind("update_histograms", "Update histograms over time", lambda d: not d.hist.empty,
         lambda d: fig_update_histograms(d.hist, d.experiment, metrics=d.metrics, runs=d.runs, eps=d.eps),
         "Distribution of r = m̂/√v̂ per coordinate over time (64 fixed bins over [−1.25, 1.25], log colour) "
         "for the shallowest layer and the deepest block of one run, around the first loss spike when the "
         "probes cover one (dashed lines: spike peaks). Unimodal around 0 means i.i.d.-like gradients; "
         "mass at ±1 means sign descent (Molybog et al. 2023 §4).",
         "no update histograms (needs <code>probe=layers</code>) in the probed window"),
)
