"""The Slingshot (Thilak et al. 2022, arXiv 2206.04817; Liu et al. 2026, arXiv 2605.06152): per arm
(fp32 Adam beside fp64 Adam, then the other arms), the training loss with the fraction of training
examples whose correct-class gradient p_y − 1 is exactly 0 on a second axis (above), and the norm
of the classifier's mean row, ‖mean_c W_c‖, with the last layer's weight norm (below), one line per
seed. Liu et al.'s account: once that fraction is large, the softmax gradient no longer sums to 0
and the mean row drifts, log-linearly, until the loss jumps back."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .arms import _natural_arms, arm_labels
from .kinds import Kind
from .selection import _of
from .style import MAX_POINTS, _legend_entries, _mark_spikes, _seeds, _thin, tight

ZERO, ROW, HEAD = "zero_grad_frac", "mean_row_norm", "head_norm"


def _order(arms: list[str]) -> list[str]:
    """fp32 Adam first, fp64 beside it, then the rest in their natural order."""
    def rank(a: str) -> int:
        low = a.lower()
        if "fp64" in low or "float64" in low:
            return 1
        return 0 if "fp32" in low or low.split("=")[-1].strip() == "adam" else 2
    return sorted(arms, key=lambda a: (rank(a), arms.index(a)))


def fig_slingshot(metrics: pd.DataFrame, runs: pd.DataFrame, experiment: str, eps: pd.DataFrame | None = None,
                  max_points: int = MAX_POINTS):
    """Two rows per arm: loss (log) with ``zero_grad_frac`` on a twin axis; ``mean_row_norm`` and
    ``head_norm`` (log). R3 spike peaks marked on the loss. None without the model's probes."""
    m = _of(metrics, experiment)
    runs = _of(runs, experiment)
    if m.empty or not (m["metric"] == ZERO).any():
        return None
    runs = runs.assign(arm=arm_labels(runs))
    m = m[m["metric"].isin(["loss", ZERO, ROW, HEAD])].merge(runs[["run_id", "arm"]], on="run_id")
    m = pd.concat([_thin(g, max_points=max_points) for _, g in m.groupby("metric")], ignore_index=True)
    arms = _order([a for a in _natural_arms(runs) if a in set(m["arm"])])
    seeds = sorted(m["seed"].unique())
    palette = dict(zip(seeds, sns.color_palette("colorblind", len(seeds))))
    n = len(arms)
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n + 1.8, 5.2), squeeze=False, sharex=True)
    for j, arm in enumerate(arms):
        top, low = axes[0][j], axes[1][j]
        twin = top.twinx()
        d = m[m["arm"] == arm]
        for seed, g in d.groupby("seed"):
            c = palette[seed]
            for metric, ax, kw in (("loss", top, dict(lw=0.8)), (ZERO, twin, dict(lw=0.7, ls="--", alpha=0.8)),
                                   (ROW, low, dict(lw=0.9)), (HEAD, low, dict(lw=0.7, ls=":"))):
                s = g[g["metric"] == metric].sort_values("step")
                if len(s):
                    ax.plot(s["step"], s["value"], color=c, **kw,
                            label={"loss": f"loss, seed {seed}", ZERO: "zero-gradient fraction (right axis)",
                                   ROW: "‖classifier mean row‖", HEAD: "‖last layer‖ (dotted)"}[metric])
        if eps is not None and len(eps):
            e = eps[eps["run_id"].isin(set(d["run_id"]))]
            _mark_spikes(top, e, loss=d.loc[d["metric"] == "loss", "value"])
        if (d.loc[d["metric"] == "loss", "value"] > 0).all():
            top.set_yscale("log", nonpositive="mask")
        low.set_yscale("log", nonpositive="mask")
        twin.set_ylim(-0.02, 1.02)
        if j == n - 1:
            twin.set_ylabel("fraction of examples with\ncorrect-class gradient exactly 0", fontsize=8)
        else:
            twin.set_yticklabels([])
        top.set_title(f"{arm}\n{_seeds(d['seed'].nunique())}", fontsize=8.5)
        low.set_xlabel("step (optimizer steps)")
        top._twin = twin  # for the legend below
    axes[0][0].set_ylabel("training loss (log)")
    axes[1][0].set_ylabel("norm (log)")
    handles, labels = _legend_entries([*axes.flat, *(ax._twin for ax in axes[0])])
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{experiment}: the Slingshot, loss with the zero-gradient fraction, and the classifier's "
                 f"mean-row norm ({_seeds(len(seeds))})", fontsize=10)
    tight(fig)
    return fig


KINDS = (
    Kind("slingshot", "The Slingshot: loss, zero-gradient fraction, classifier mean row",
         lambda d: d.has(ZERO),
         lambda d: fig_slingshot(d.metrics, d.runs, d.experiment, eps=d.eps),
         "Per arm (fp32 Adam, fp64 Adam beside it, then the others), one line per seed. Above: the training "
         "loss (log; crimson triangles: R3 spike peaks) and, dashed on the right axis, the fraction of training "
         "examples whose correct-class softmax gradient p_y − 1 is exactly 0 in the model's dtype (Liu et al. "
         "2026: float32 absorbs it once the margin is large). Below: the norm of the classifier's mean row, "
         "‖mean_c W_c‖, and (dotted) the last layer's weight norm (Thilak et al. 2022's precursor), both log.",
         "no run logged the model's Slingshot probes (zero_grad_frac)"),
)
