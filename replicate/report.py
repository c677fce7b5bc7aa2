"""Figures from ``results/`` alone, no training: ``python -m replicate.report [results_dir]``.

One ``fig_*`` function per figure; each takes the tidy metrics (``results.load``) and the runs
table (``results.runs``) and returns a matplotlib Figure, or None when there is nothing to plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import results  # noqa: E402

# Config keys that never label an arm of a sweep.
_NOT_ARMS = {"run_id", "experiment", "seed", "status", "wall_time_s", "steps_done", "path", "data.seed"}


def varied_keys(runs: pd.DataFrame) -> list[str]:
    """The config keys whose values differ between an experiment's runs, seeds aside."""
    keys = []
    for col in runs.columns:
        if col in _NOT_ARMS:
            continue
        values = runs[col].map(repr)
        if values.nunique() > 1:
            keys.append(col)
    return keys


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

    def fmt(r):
        return ", ".join(str(r[k]) if k == "label" else f"{k.split('.')[-2] if k.endswith('.name') else k.split('.')[-1]}={r[k]}"
                         for k in keys)
    return runs.apply(fmt, axis=1)


def fig_loss_curves(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, max_points: int = 2000):
    """Training loss over steps, one line per seed, coloured by the arm of the sweep (log scale)."""
    runs = runs[runs["experiment"] == experiment]
    loss = metrics[(metrics["experiment"] == experiment) & (metrics["metric"] == "loss")]
    if loss.empty:
        return None
    runs = runs.assign(arm=arm_labels(runs))
    df = loss.merge(runs[["run_id", "arm"]], on="run_id")
    # keep each run's maximum in every bin so that thinning for the plot never hides a spike
    stride = max(1, int(df["step"].max()) // max_points + 1)
    df = df.assign(bin=df["step"] // stride)
    df = df.loc[df.groupby(["run_id", "bin"])["value"].idxmax()]
    arms = sorted(df["arm"].unique())
    n_seeds = runs.groupby("arm")["seed"].nunique()
    g = sns.relplot(data=df, x="step", y="value", hue="arm", hue_order=arms, units="seed",
                    estimator=None, kind="line", col="arm", col_order=arms, col_wrap=min(4, len(arms)),
                    height=2.6, aspect=1.3, linewidth=0.7, alpha=0.8, legend=False,
                    facet_kws={"sharey": True})
    positive = bool((df["value"] > 0).all())  # a linear model's loss (θ·g) can be negative
    g.set(yscale="log" if positive else "linear")
    g.set_axis_labels("step", "training loss (log)" if positive else "training loss")
    for arm, ax in g.axes_dict.items():
        ax.set_title(f"{arm}  ({n_seeds.get(arm, 0)} seeds)", fontsize=9)
    g.figure.suptitle(f"{experiment}: loss per arm, one line per seed", y=1.02)
    return g.figure


def fig_update_histograms(hist: pd.DataFrame, experiment: str, quantity: str = "r", seed: int | None = None):
    """Heatmap of one run's update values over time (step × value, log colour) for the shallowest
    layer and the deepest block: unimodal around 0 ↔ piled up near ±1 (sign descent)."""
    import numpy as np

    h = hist[(hist["experiment"] == experiment) & (hist["quantity"] == quantity)]
    if h.empty:
        return None
    seed = h["seed"].min() if seed is None else seed
    h = h[h["seed"] == seed]
    h = h[h["run_id"] == h["run_id"].iloc[0]]  # one run: the first arm of that seed
    layers = list(dict.fromkeys(h["layer"]))
    blocks = [x for x in layers if x.startswith("block")]
    shown = list(dict.fromkeys([layers[0], blocks[-1] if blocks else layers[-1]]))
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.2), squeeze=False, sharey=True)
    symbol = {"r": "r = m̂/√v̂", "u": "u = m̂/(√v̂+ε)"}[quantity]
    for ax, layer in zip(axes[0], shown):
        g = h[h["layer"] == layer].sort_values("step")
        counts = np.stack(g["counts"].to_numpy()).astype(float)
        frac = counts / counts.sum(axis=1, keepdims=True)
        lo, hi = g["lo"].iloc[0], g["hi"].iloc[0]
        im = ax.imshow(np.log10(frac.T + 1e-6), aspect="auto", origin="lower", cmap="magma",
                       extent=[g["step"].min(), g["step"].max(), lo, hi], vmin=-6, vmax=0)
        ax.set_title(f"{layer}", fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel(symbol)
    fig.colorbar(im, ax=axes[0].tolist(), label="log10 fraction of coordinates")
    fig.suptitle(f"{experiment}: update values over time (seed {seed}, 1 run)", y=1.02)
    return fig


def _save(fig, out: Path, name: str) -> Path:
    for ext in ("png", "svg"):
        fig.savefig(out / f"{name}.{ext}", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out / f"{name}.png"


def build(root: Path | str = "results") -> list[Path]:
    """Write every figure under ``root/report/figures`` (PNG and SVG); return the PNG paths."""
    root = Path(root)
    out = root / "report" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    runs = results.runs(root)
    metrics = results.load(root, metrics=["loss"])
    hist = results.load_histograms(root)
    written = []
    for experiment in sorted(runs["experiment"].unique()) if not runs.empty else []:
        fig = fig_loss_curves(metrics, runs, experiment)
        if fig is not None:
            written.append(_save(fig, out, f"{experiment}_loss"))
        fig = fig_update_histograms(hist, experiment)
        if fig is not None:
            written.append(_save(fig, out, f"{experiment}_update_histograms"))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", nargs="?", default="results")
    args = p.parse_args(argv)
    written = build(args.results_dir)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"no finished runs under {args.results_dir}/runs: nothing to plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
