"""Shared drawing helpers of every figure: the seaborn theme, cheap ticks and layout (``tight``,
``PlainLogFormatter``, ``lighten_ticks``), thinning long lines (``_thin``), spike markers, legends
and seed counts for titles."""

from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)

MAX_POINTS = 1500  # points per line at most (a run's maximum in each bin is kept: spikes survive)
SPIKE = dict(marker="v", color="crimson", s=16, zorder=5, linewidths=0)  # an R3 episode's peak (the primary)
# the episode starts of the other definitions of CLAIMS.md, small and distinct (R3's SPIKE stays the main mark)
OTHER_SPIKES = {"R10": dict(marker="o", s=9, facecolors="none", edgecolors="darkorange", linewidths=0.8, zorder=4),
                "R100": dict(marker="s", s=9, facecolors="none", edgecolors="purple", linewidths=0.8, zorder=4),
                "Z6": dict(marker="x", s=9, color="teal", linewidths=0.8, zorder=4)}
SPIKE_LABEL = "R3 spike (primary): peak of an episode > 3× median of previous 100"


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


def _mark_spikes(ax, eps: pd.DataFrame, loss: pd.Series | None = None, label: bool = True):
    """Crimson triangles at each (R3) episode's peak loss (or vertical lines without ``loss``)."""
    if eps.empty:
        return
    if loss is not None:
        ax.scatter(eps["peak"], eps["peak_loss"], label=SPIKE_LABEL if label else None, **SPIKE)
    else:
        for i, s in enumerate(eps["rise_start"]):
            ax.axvline(s, color="crimson", lw=0.8, ls=":", label="loss rise starts" if label and i == 0 else None)


def _legend_entries(axes):
    seen = {}
    for ax in np.ravel(axes):
        for h, l in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(l, h)
    return list(seen.values()), list(seen.keys())

