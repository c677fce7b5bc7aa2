"""Loss spikes as episodes, and spike rates by height.

Definition. A logged step t is *spiking* when ``loss[t] > factor * baseline[t]`` and
``loss[t] > min_loss``, where ``baseline[t]`` is the median of the previous ``window`` finite,
non-spiking losses (logged points before t only; with fewer than ``min(window, 10)`` of them, t is
never spiking). Spiking steps separated by at most ``merge_gap`` non-spiking steps form one
*episode*. The series is cut at its first NaN/inf (a diverged run): nothing from there on counts.

Why the median of the previous window: it is robust to noise and to the spike itself. To keep an
episode from inflating its own reference, the baseline is frozen at the episode's start for all its
steps (and for the recovery test), and spiking steps never enter any later baseline's window.
Non-spiking steps in a spike's tail do enter it; being few next to ``window``, they barely move a
median. A loss that jumps above ``factor`` × baseline and stays there is one unrecovered episode.
``window`` counts logged points, not training steps, when the caller logs every k steps.

Why several heights: spike counts depend strongly on the height threshold (CLAIMS, "What first
probes ... showed": a 3× count and a 10× count can even order β2 values differently), so ``rates``
reports counts above 3×, 10× and 100× the baseline, not one count.

``rise_start`` is the W1 lead reference: the first step of the contiguous run before the peak with
loss > ``rise`` × baseline (1.2×), i.e. where the loss rise begins, not the late ``factor`` crossing.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Mapping

import numpy as np
import pandas as pd

COLUMNS = ["start", "peak", "end", "recovery", "rise_start", "baseline", "peak_loss", "height",
           "steps_to_recover"]


def _ratio(a: float, b: float) -> float:
    """a / b, inf (not a warning) when it overflows: float64 quadratics go from 1e-300 to 1e-5."""
    with np.errstate(over="ignore", divide="ignore"):
        return float(np.float64(a) / np.float64(b))


def _scan(loss: np.ndarray, window: int, factor: float, min_loss: float,
          merge_gap: int) -> tuple[int, np.ndarray, list[int]]:
    """The definition's pass over one loss series: (n, the length of its finite prefix; the
    baseline of each of those steps, NaN where there is none; the spiking steps)."""
    bad = np.flatnonzero(~np.isfinite(loss))
    n = int(bad[0]) if len(bad) else len(loss)  # a diverged run: detect on its finite prefix
    min_pred = max(1, min(window, 10))

    # Until the first spiking step no step is left out of the window, so the baseline there is a
    # plain rolling median (computed at once); the exact loop below starts at that step.
    base_at = (pd.Series(loss[:n]).rolling(window, min_periods=min_pred).median().shift(1).to_numpy(copy=True)
               if n else np.zeros(0))
    with np.errstate(invalid="ignore"):
        first = np.flatnonzero((loss[:n] > factor * base_at) & (loss[:n] > min_loss))
    t0 = int(first[0]) if len(first) else n
    recent: deque[float] = deque(loss[max(0, t0 - window):t0].tolist())  # the last `window` non-spiking losses
    ordered: list[float] = sorted(recent)  # the same values, sorted (for the median)
    spiking: list[int] = []
    frozen = np.nan
    for t in range(t0, n):
        x = loss[t]
        in_episode = bool(spiking) and t - spiking[-1] <= merge_gap + 1
        if in_episode:
            base = frozen
        elif len(ordered) >= min_pred:
            m = len(ordered)
            base = frozen = 0.5 * (ordered[(m - 1) // 2] + ordered[m // 2])
        else:
            base = np.nan
        base_at[t] = base
        if base == base and x > factor * base and x > min_loss:  # (base == base: not NaN)
            spiking.append(t)
            continue  # spiking steps stay out of the baseline window
        recent.append(x)
        bisect.insort(ordered, x)
        if len(recent) > window:
            ordered.pop(bisect.bisect_left(ordered, recent.popleft()))
    return n, base_at, spiking


def detect(loss, steps=None, *, window: int = 100, factor: float = 3.0, min_loss: float = 0.0,
           rise: float = 1.2, merge_gap: int = 0) -> pd.DataFrame:
    """Spike episodes of one loss series, one row each (columns ``COLUMNS``), in ``steps``' units.

    ``recovery`` is the first step after the peak with loss <= ``rise`` × the episode's baseline
    (searched to the end of the finite series, through later episodes if need be); NaN if never.
    """
    loss = np.asarray(loss, dtype=float)
    steps = np.arange(len(loss)) if steps is None else np.asarray(steps)
    if len(steps) != len(loss):
        raise ValueError(f"loss has {len(loss)} points but steps has {len(steps)}")
    n, base_at, spiking = _scan(loss, window, factor, min_loss, merge_gap)

    groups: list[list[int]] = []
    for t in spiking:
        if groups and t - groups[-1][-1] <= merge_gap + 1:
            groups[-1].append(t)
        else:
            groups.append([t])

    rows, prev_end = [], -1
    for g in groups:
        s, e = g[0], g[-1]
        b = base_at[s]
        p = s + int(np.argmax(loss[s:e + 1]))
        r = s
        while r - 1 > prev_end and loss[r - 1] > rise * b:
            r -= 1
        after = np.flatnonzero(loss[p + 1:n] <= rise * b)
        rec = steps[p + 1 + after[0]] if len(after) else np.nan
        rows.append({"start": steps[s], "peak": steps[p], "end": steps[e], "recovery": rec,
                     "rise_start": steps[r], "baseline": b, "peak_loss": loss[p],
                     "height": _ratio(loss[p], b), "steps_to_recover": rec - steps[p]})
        prev_end = e
    return pd.DataFrame(rows, columns=COLUMNS)


def largest_ratio(loss, *, window: int = 100, factor: float = 3.0, min_loss: float = 0.0,
                  merge_gap: int = 0) -> float:
    """The largest ratio of a loss to its baseline under ``detect``'s definition, over the finite
    prefix (NaN when no step has a baseline). In a series of positive losses with episodes it is
    the tallest one's ``height``; in one without, the tallest excursion that stayed under ``factor`` × the baseline,
    which is then the plain median of the previous ``window`` losses (no step was left out of it)."""
    loss = np.asarray(loss, dtype=float)
    n, base_at, _ = _scan(loss, window, factor, min_loss, merge_gap)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = loss[:n] / base_at
    r = r[np.isfinite(r)]
    return float(r.max()) if len(r) else float("nan")


def _per_label(per: int) -> str:
    return f"{per // 1000}k" if per >= 1000 and per % 1000 == 0 else f"{per:g}"


def rates(episodes: pd.DataFrame, n_steps: int, heights=(3, 10, 100), per: int = 1000) -> dict[str, float]:
    """Episodes per ``per`` steps, overall and with height > each of ``heights``; the largest
    height (0 if none) and the median steps_to_recover (NaN if none recovered). With the default
    ``per`` the keys are ``spikes_per_1k``, ``spikes_per_1k_h3``, ...; other ``per`` relabel them."""
    lab = _per_label(per)
    scale = per / n_steps if n_steps > 0 else np.nan
    h = episodes["height"].to_numpy(float) if len(episodes) else np.zeros(0)
    out = {f"spikes_per_{lab}": len(h) * scale}
    for k in heights:
        out[f"spikes_per_{lab}_h{k:g}"] = int((h > k).sum()) * scale
    out["largest_spike"] = float(h.max()) if len(h) else 0.0
    rec = episodes["steps_to_recover"].dropna().to_numpy(float) if len(episodes) else np.zeros(0)
    out["median_steps_to_recover"] = float(np.median(rec)) if len(rec) else np.nan
    return out


def _loss_runs(metrics: pd.DataFrame):
    loss = metrics[metrics["metric"] == "loss"]
    for run_id, g in loss.groupby("run_id", sort=False):
        yield run_id, g.sort_values("step")


def _n_steps(steps: np.ndarray) -> int:
    """Training steps covered by logged ``steps``: span plus one logging stride (n when contiguous)."""
    if len(steps) < 2:
        return len(steps)
    return int(steps[-1] - steps[0] + np.median(np.diff(steps)))


def episodes_of(metrics: pd.DataFrame, **detect_kw) -> pd.DataFrame:
    """``detect`` on every run's loss in a tidy metrics frame (``results.load()``), with run_id."""
    frames = [detect(g["value"].to_numpy(), g["step"].to_numpy(), **detect_kw).assign(run_id=run_id)
              for run_id, g in _loss_runs(metrics)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["run_id", *COLUMNS])
    return pd.concat(frames, ignore_index=True)[["run_id", *COLUMNS]]


def summarize(metrics: pd.DataFrame, heights=(3, 10, 100), per: int = 1000, **detect_kw) -> pd.DataFrame:
    """One row per run: run_id, experiment, seed, status, n_steps and the ``rates()`` keys.

    n_steps is the training steps covered by the finite part of the run's loss (a diverged run's
    rate is per step it ran), in the caller's step units."""
    rows = []
    for run_id, g in _loss_runs(metrics):
        loss, steps = g["value"].to_numpy(float), g["step"].to_numpy()
        ok = np.flatnonzero(~np.isfinite(loss))
        n_ok = int(ok[0]) if len(ok) else len(loss)
        n = _n_steps(steps[:n_ok])
        first = g.iloc[0]
        rows.append({"run_id": run_id, "experiment": first["experiment"], "seed": first["seed"],
                     "status": first["status"], "n_steps": n,
                     **rates(detect(loss, steps, **detect_kw), n, heights=heights, per=per)})
    return pd.DataFrame(rows)


class OnlineDetector:
    """The online form of ``detect`` (for loop events such as rollback) (merge_gap 0): a loss x is a spike when at
    least min(window, 10) earlier non-spiking losses are known, x > factor·median(the last
    ``window`` of them) and x > min_loss. Spiking losses never enter the window."""

    def __init__(self, window: int = 100, factor: float = 3.0, min_loss: float = 0.0):
        self.window, self.factor, self.min_loss = int(window), float(factor), float(min_loss)
        self.recent: deque[float] = deque(maxlen=self.window)
        self.baseline = float("nan")

    def observe(self, x: float) -> bool:
        """True when x is a spike; otherwise x joins the window."""
        self.baseline = float("nan")
        if len(self.recent) >= max(1, min(self.window, 10)):
            s, m = sorted(self.recent), len(self.recent)
            self.baseline = 0.5 * (s[(m - 1) // 2] + s[m // 2])
            if x > self.factor * self.baseline and x > self.min_loss:
                return True
        self.recent.append(x)
        return False

    def state_dict(self) -> dict:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: Mapping) -> None:
        self.recent = deque(state["recent"], maxlen=self.window)
