"""One ``fig_*`` function per figure of the report, each drawn from ``results/`` alone.

Every function takes what ``results.load()`` / ``results.runs()`` / ``results.load_histograms()``
return (already narrowed to one experiment by the caller, or not: they filter on ``experiment``)
and returns a matplotlib Figure, or ``None`` when there is nothing to draw (the report then shows a
"no data for this figure" box in its place). Every figure has labelled axes, a legend (or a colour
bar) and the number of seeds in its title.

Spikes are ``replicate.spikes.detect``'s: loss > 3× the median of the previous 100 logged losses
(Molybog et al. 2023's and this suite's a-priori definition); rates per 1k steps at heights > 3×,
10×, 100× (CLAIMS.md asks for rates by height).
"""

from __future__ import annotations

import glob
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

from .. import results, spikes  # noqa: E402

sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)

MAX_POINTS = 1500  # points per line at most (a run's maximum in each bin is kept: spikes survive)
SPIKE = dict(marker="v", color="crimson", s=16, zorder=5, linewidths=0)
# Config keys a sweep heatmap / rate plot is drawn over, in the order they are preferred as axes.
SWEEP_KEYS = ("optimizer.b2", "data.batch_size", "optimizer.eps", "optimizer.lr", "optimizer.b1",
              "model.depth", "model.width")
# Config keys that never label an arm of a sweep.
_NOT_ARMS = {"run_id", "experiment", "seed", "status", "wall_time_s", "steps_done", "path", "data.seed"}
_SYMBOL = {"optimizer.b2": "β2", "optimizer.b1": "β1", "data.batch_size": "batch size", "optimizer.eps": "ε",
           "optimizer.lr": "learning rate η", "model.depth": "depth", "model.width": "width"}


# ------------------------------------------------------------------------------------------ helpers
def varied_keys(runs: pd.DataFrame) -> list[str]:
    """The config keys whose values differ between an experiment's runs, seeds aside."""
    cols = [c for c in runs.columns if c not in _NOT_ARMS]
    if len(runs) < 2:
        return []
    df = runs[cols]
    objects = [c for c in cols if df[c].dtype == object]  # lists, mixed types: compared by repr
    n = df.drop(columns=objects).nunique(dropna=False)
    varied = set(n.index[n > 1]) | {c for c in objects if df[c].map(repr).nunique() > 1}
    return [c for c in cols if c in varied]


def arm_labels(runs: pd.DataFrame) -> pd.Series:
    """A short label per run naming its arm of the sweep: ``b2=0.999``, ``adam b2=0.9, model=mlp``.

    A config group's own keys are left out when its ``name`` varies (the name says it), and so are
    keys that the run's ``label`` (set by ``conf/arm/*``) already determines."""
    keys = varied_keys(runs)
    names = {k.rsplit(".", 1)[0] for k in keys if k.endswith(".name")}
    keys = [k for k in keys if k.endswith(".name") or k.rsplit(".", 1)[0] not in names]
    has_label = "label" in runs.columns and runs["label"].notna().any()
    if has_label:
        by_label = runs.assign(_l=runs["label"].fillna("-")).groupby("_l")
        keys = [k for k in keys if k == "label" or by_label[k].apply(lambda c: c.map(repr).nunique()).max() > 1]
    if not keys:
        return pd.Series("all runs", index=runs.index)

    def val(v):  # 8.0 -> 8 (a column read as float because other experiments lack the key)
        return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 1e6 else v

    def fmt(r):
        return ", ".join(str(r[k]) if k == "label" else f"{k.split('.')[-2] if k.endswith('.name') else k.split('.')[-1]}={val(r[k])}"
                         for k in keys)
    return runs.apply(fmt, axis=1)


def tight(fig) -> None:
    """``fig.tight_layout()`` without leaving a layout engine on the figure: with one set (even the
    placeholder ``tight_layout`` leaves) every ``savefig`` lays the whole figure out again before
    drawing it, doubling the cost of each PNG and SVG. Ticks are lightened first
    (``lighten_ticks``), so no layout pass creates or parses what is never shown."""
    from matplotlib.layout_engine import TightLayoutEngine

    lighten_ticks(fig)
    TightLayoutEngine().execute(fig)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _plain_text(label: str) -> str:
    """``$\\mathdefault{2\\times10^{-3}}$`` -> ``2×10⁻³``; anything else unchanged."""
    m = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
    if not m:
        return label
    text = re.sub(r"\^\{(-?\d+)\}", lambda e: e.group(1).translate(_SUPERSCRIPT), m.group(1).replace("\\times", "×"))
    return label if any(c in text for c in "\\{}^$") else text.replace("-", "−")


class PlainLogFormatter(LogFormatterSciNotation):
    """Matplotlib's log-axis labels (same ticks, same choice of labelled minor ticks) as plain
    Unicode text, 10⁻³ rather than mathtext ``$10^{-3}$``: mathtext parses every label again at
    each resolution once its small cache overflows, a tenth of the report's time."""

    def __call__(self, x, pos=None):
        return _plain_text(super().__call__(x, pos))


def lighten_ticks(fig) -> None:
    """Cheaper ticks, same picture. On log axes spanning more than one decade, no minor ticks: the
    formatter labels none of them and the style draws no tick marks or minor grid, yet each is laid
    out and drawn (narrower log axes keep them: their minor labels show). Log-axis labels as plain
    text (``PlainLogFormatter``)."""
    from matplotlib.ticker import NullLocator

    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for which in ("major", "minor"):
                f = getattr(axis, f"get_{which}_formatter")()
                if type(f) is LogFormatterSciNotation:  # matplotlib's default on log and symlog axes
                    plain = PlainLogFormatter.__new__(PlainLogFormatter)
                    plain.__dict__.update(f.__dict__)
                    getattr(axis, f"set_{which}_formatter")(plain)
            if axis.get_scale() != "log":
                continue
            p = axis.get_tick_params(which="minor")
            if p.get("gridOn") or any(p.get(k) for k in ("left", "right", "bottom", "top")):
                continue  # minor tick marks or grid lines are drawn: keep them
            lo, hi = sorted(lim)
            if 0 < lo < hi < math.inf and math.log10(hi) - math.log10(lo) > 1.05:
                axis.set_minor_locator(NullLocator())


def _seeds(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}"


def _of(df: pd.DataFrame, experiment: str | None) -> pd.DataFrame:
    if experiment is None or df.empty or "experiment" not in df.columns:
        return df
    return df[df["experiment"] == experiment]


def _natural(values) -> list:
    """Sweep values in their natural order: numbers ascending, then None (full batch) last."""
    def key(v):
        try:
            return (0, float(v), "") if v is not None and not (isinstance(v, float) and math.isnan(v)) else (1, 0.0, "")
        except (TypeError, ValueError):
            return (0, math.inf, str(v))
    return sorted(set(values), key=key)


def _value_label(key: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "full batch" if key == "data.batch_size" else "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


def layer_order(names) -> list[str]:
    """Layers shallow to deep: embedding, then by the number in the name (layer0, block1…), head last."""
    def key(n: str):
        digits = re.findall(r"\d+", n)
        rank = 0 if "emb" in n else 2 if n == "head" else 1
        return rank, int(digits[-1]) if digits else -1, n
    return sorted(set(names), key=key)


def _layers(metrics: pd.DataFrame, metric: str) -> list[str]:
    names = metrics.loc[metrics["metric"].str.startswith(metric + "/"), "metric"].unique()
    return layer_order(n.split("/", 1)[1] for n in names)


def _thin(df: pd.DataFrame, by: str = "run_id", keep_max: bool = True, max_points: int = MAX_POINTS):
    """At most ``max_points`` rows per ``by`` group: each bin's maximum (so a spike is never thinned
    away) or every k-th step."""
    if df.empty:
        return df
    span = int(df["step"].max() - df["step"].min()) + 1
    stride = max(1, span // max_points + (span % max_points > 0))
    if stride == 1:
        return df
    df = df.assign(_bin=(df["step"] - df["step"].min()) // stride)
    if keep_max:
        return df.loc[df.groupby([by, "_bin"])["value"].idxmax()].drop(columns="_bin")
    return df[df["step"] % stride == 0].drop(columns="_bin")


def episodes(metrics: pd.DataFrame) -> pd.DataFrame:
    """Spike episodes of every run in ``metrics`` (``spikes.episodes_of`` on the loss). A run whose
    loss goes below 0 (a linear model's θ·g) has none: a ratio to its median means nothing there."""
    loss = metrics[metrics["metric"] == "loss"]
    negative = loss.loc[loss["value"] < 0, "run_id"].unique()
    return spikes.episodes_of(loss[~loss["run_id"].isin(negative)])


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


def _first_spike_window(eps: pd.DataFrame, runs: pd.DataFrame, before: int, after: int):
    """(run_id, seed, lo, hi, episodes of that run in the window) around the first spike of the
    lowest seed that has one; None when no run spiked."""
    if eps.empty:
        return None
    e = eps.merge(runs[["run_id", "seed"]], on="run_id").sort_values(["seed", "start"])
    first = e.iloc[0]
    lo, hi = int(first["rise_start"]) - before, int(first["peak"]) + after
    mine = e[(e["run_id"] == first["run_id"]) & (e["peak"] >= lo) & (e["start"] <= hi)]
    return first["run_id"], int(first["seed"]), lo, hi, mine


def _mark_spikes(ax, eps: pd.DataFrame, loss: pd.Series | None = None, label: bool = True):
    """Crimson triangles at each episode's peak loss (or vertical lines without ``loss``)."""
    if eps.empty:
        return
    if loss is not None:
        ax.scatter(eps["peak"], eps["peak_loss"], label="spike (> 3× median of previous 100)" if label else None,
                   **SPIKE)
    else:
        for i, s in enumerate(eps["rise_start"]):
            ax.axvline(s, color="crimson", lw=0.8, ls=":", label="loss rise starts" if label and i == 0 else None)


# ------------------------------------------------------------------------------------- loss curves
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


def _natural_arms(runs: pd.DataFrame) -> list[str]:
    """Arm labels ordered by the swept values (numbers ascending), not alphabetically."""
    keys = [k for k in varied_keys(runs) if k in runs.columns and k != "label"]
    if not keys:
        return sorted(runs["arm"].unique())
    order = runs.assign(_k=runs[keys].apply(lambda r: tuple(_sortable(v) for v in r), axis=1))
    return list(dict.fromkeys(order.sort_values("_k")["arm"]))


def _sortable(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def _legend_entries(axes):
    seen = {}
    for ax in np.ravel(axes):
        for h, l in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(l, h)
    return list(seen.values()), list(seen.keys())


# ------------------------------------------------------------------------------------- spike rates
def spike_table(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str | None = None) -> pd.DataFrame:
    """One row per run: spikes per 1k steps at heights > 3×, 10×, 100× and the run's config."""
    if metrics is None or metrics.empty or "metric" not in metrics.columns:
        return pd.DataFrame()
    loss = _of(metrics, experiment)
    loss = loss[loss["metric"] == "loss"]
    if loss.empty:
        return pd.DataFrame()
    s = spikes.summarize(loss)
    return s.merge(_of(runs, experiment).drop(columns=["experiment", "seed", "status"]), on="run_id")


def _interval(x: pd.Series) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval over seeds (NaN interval for one seed)."""
    from ..claims import t_interval

    lo, hi = t_interval(list(x))
    return float(np.mean(x)), lo, hi


def fig_spike_rates(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str):
    """Spike rate over the sweep. Two swept keys among β2, batch size, ε, η, ...: a heatmap of the
    mean spikes per 1k steps (> 3×) over seeds, each cell annotated with its mean and seed count.
    One swept key (or named arms): spikes per 1k steps at heights > 3×, 10×, 100× per arm, mean
    with a 95% t interval over seeds, the seeds as dots."""
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
    heights = {"spikes_per_1k_h3": "> 3×", "spikes_per_1k_h10": "> 10×", "spikes_per_1k_h100": "> 100×"}
    long = table.melt(id_vars=["run_id", "seed", "x"], value_vars=list(heights), var_name="height",
                      value_name="rate")
    long["height"] = long["height"].map(heights)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(order) + 2.5), 3.2))
    palette = dict(zip(heights.values(), sns.color_palette("rocket", 3)))
    dodge = {h: (i - 1) * 0.22 for i, h in enumerate(heights.values())}
    pos = {x: i for i, x in enumerate(order)}
    for h in heights.values():
        d = long[long["height"] == h]
        stats = d.groupby("x")["rate"].apply(_interval)
        xs = [pos[x] + dodge[h] for x in stats.index]
        means = [s[0] for s in stats]
        err = np.array([[max(0.0, s[0] - s[1]) if np.isfinite(s[1]) else 0.0 for s in stats],
                        [max(0.0, s[2] - s[0]) if np.isfinite(s[2]) else 0.0 for s in stats]])
        ax.errorbar(xs, means, yerr=err, fmt="o", ms=5, capsize=3, color=palette[h], label=f"height {h}: mean, 95% t interval")
        ax.scatter([pos[x] + dodge[h] + 0.06 for x in d["x"]], d["rate"], s=9, color=palette[h], alpha=0.45,
                   marker="x", linewidths=0.8)
    ax.scatter([], [], s=9, color="gray", marker="x", label="one seed")
    ax.set_xticks(range(len(order)), order, rotation=30 if xlabel == "arm" else 0, ha="right" if xlabel == "arm" else "center",
                  fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("spikes per 1k steps")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(f"{experiment}: spike rate by height ({_seeds(n_seeds)} per arm)", fontsize=9.5)
    tight(fig)
    return fig


def _rate_heatmap(table: pd.DataFrame, xkey: str, ykey: str, experiment: str, n_seeds: int, max_panels: int = 8):
    xs, ys = _natural(table[xkey].tolist()), _natural(table[ykey].tolist())
    panels = sorted(table["_rest"].unique())[:max_panels]
    ncol = min(len(panels), 3)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * (1.0 * len(xs) + 2.6) + 0.6, nrow * (0.6 * len(ys) + 1.6) + 0.5),
                             squeeze=False)
    vmax = max(1e-9, float(table["spikes_per_1k_h3"].max()))
    for ax, panel in zip(axes.flat, panels):
        t = table[table["_rest"] == panel]
        mean = np.full((len(ys), len(xs)), np.nan)
        count = np.zeros((len(ys), len(xs)), dtype=int)
        for (i, y), (j, x) in ((a, b) for a in enumerate(ys) for b in enumerate(xs)):
            cell = t[(t[ykey].map(repr) == repr(y)) & (t[xkey].map(repr) == repr(x))]
            if len(cell):
                mean[i, j] = cell["spikes_per_1k_h3"].mean()
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
        fig.colorbar(im, ax=ax, label="spikes per 1k steps (> 3×),\nmean over seeds")
        ax.set_xlabel(_SYMBOL.get(xkey, xkey))
        ax.set_ylabel(_SYMBOL.get(ykey, ykey))
        if len(panels) > 1 or panel != "all runs":
            ax.set_title(panel, fontsize=8.5)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    more = f"; first {max_panels} of {table['_rest'].nunique()} arms" if table["_rest"].nunique() > max_panels else ""
    fig.suptitle(f"{experiment}: spike rate over {_SYMBOL.get(ykey, ykey)} × {_SYMBOL.get(xkey, xkey)} "
                 f"(n = seeds per cell, up to {n_seeds}{more})", fontsize=9.5)
    tight(fig)
    return fig


# --------------------------------------------------------------------------- update histograms
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


# ----------------------------------------------------------------------- gradient RMS against ε
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


# ------------------------------------------------------------------- precursors around spikes
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
    top.scatter(mine["peak"], mine["peak_loss"], label="spike (> 3× median of previous 100)", **SPIKE)
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


# ------------------------------------------------------------------------------- leaderboard
LEADERBOARD_PANELS = (("spikes_per_1k_h3", "spikes per 1k steps (> 3× median of previous 100)", False),
                      ("final_loss", "final loss (median of the last 5% of steps; log)", True))


def fig_leaderboard(table: pd.DataFrame, title: str = "mitigations"):
    """Per workload, spikes per 1k steps and final loss per mitigation arm, mean with its 95% t
    interval over seeds, in the table's order (fewest spikes first)."""
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
        for j, (m, xlabel, logx) in enumerate(panels):
            ax = axes[i][j]
            v = t[m].astype(float).replace([np.inf, -np.inf], np.nan)
            lo = t.get(f"{m}_lo", v).astype(float).replace([np.inf, -np.inf], np.nan)
            hi = t.get(f"{m}_hi", v).astype(float).replace([np.inf, -np.inf], np.nan)
            err = np.array([(v - lo).clip(lower=0).fillna(0), (hi - v).clip(lower=0).fillna(0)])
            ax.errorbar(v, y, xerr=err, fmt="o", ms=4, color=colour[j], capsize=2.5, lw=1,
                        label="mean, 95% t interval over seeds")
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


# ------------------------------------------------------------------------------- throughput
def bench_table(root: Path | str) -> pd.DataFrame:
    """Optimizer-step benchmarks of every ``root/bench/*.json`` (pytest-benchmark JSON written by
    ``make bench``), one row each: file, device, variant, mode, params, gbps, bandwidth_fraction,
    copy_gbps, rounds."""
    rows = []
    for path in sorted(glob.glob(str(Path(root) / "bench" / "*.json"))):
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        for b in data.get("benchmarks", []):
            x = b.get("extra_info", {})
            if x.get("kind") != "optimizer_step" or x.get("gbps") is None:
                continue
            rows.append({"file": Path(path).stem, "device": x.get("device"), "variant": x.get("variant"),
                         "mode": x.get("mode"), "dtype": x.get("dtype"), "params": x.get("params"),
                         "gbps": x.get("gbps"), "bandwidth_fraction": x.get("bandwidth_fraction"),
                         "copy_gbps": x.get("copy_gbps"), "rounds": b.get("stats", {}).get("rounds")})
    return pd.DataFrame(rows)


def fig_throughput(table: pd.DataFrame):
    """Achieved GB/s of one optimizer step per variant (counted bytes per parameter / median step
    time), eager and compiled, beside torch.optim.AdamW, at the largest size of each device, one
    panel per device and layout (fp32; bf16 params with fp32 master and state), with the device's
    measured copy bandwidth (dashed)."""
    if table is None or table.empty:
        return None
    t = table[table["dtype"].isin(["fp32", "bf16"])]
    if t.empty:
        return None
    t = t[t["params"] == t.groupby(["file", "dtype"])["params"].transform("max")]
    panels = [(f, dt) for f in dict.fromkeys(t["file"]) for dt in ("fp32", "bf16")
              if ((t["file"] == f) & (t["dtype"] == dt)).any()]
    variants = list(dict.fromkeys(t.sort_values("variant")["variant"]))
    variants = [v for v in variants if v != "torch_adamw"] + (["torch_adamw"] if "torch_adamw" in variants else [])
    modes = [m for m in ("eager", "compiled", "forloop", "foreach", "fused") if m in set(t["mode"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1.5, 0.42 * len(variants) + 1.8),
                             squeeze=False, sharey=True)
    for i, (ax, (f, dt)) in enumerate(zip(axes[0], panels)):
        d = t[(t["file"] == f) & (t["dtype"] == dt)]
        sns.barplot(data=d, y="variant", x="gbps", hue="mode", order=variants, hue_order=modes, ax=ax,
                    palette=dict(zip(("eager", "compiled", "forloop", "foreach", "fused"),
                                     sns.color_palette("colorblind", 5))), orient="h", errorbar=None)
        copy = d["copy_gbps"].dropna()
        if len(copy):
            ax.axvline(copy.median(), color="crimson", ls="--", lw=1,
                       label=f"copy bandwidth {copy.median():.1f} GB/s" + (" (median)" if copy.nunique() > 1 else ""))
        r = d["rounds"].dropna()
        rounds = (f"median of {int(r.min())}" + (f"–{int(r.max())}" if r.max() != r.min() else "") + " rounds") if len(r) else ""
        layout = "fp32 params and state" if dt == "fp32" else "bf16 params, fp32 master and state"
        ax.set_title(f"{d['device'].iloc[0]} ({f}), {d['params'].iloc[0] / 1e6:.1f}M params,\n{layout}; "
                     f"{rounds}; 1 seed (a timing)", fontsize=8.5)
        ax.set_xlabel("achieved GB/s (counted bytes per param / step time)")
        ax.set_ylabel("optimizer variant" if i == 0 else "")
        if i == len(panels) - 1:
            ax.legend(fontsize=7.5, title="mode", title_fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                      frameon=False)
        else:
            ax.get_legend().remove()
    fig.suptitle("Optimizer step throughput", fontsize=10)
    tight(fig)
    return fig
