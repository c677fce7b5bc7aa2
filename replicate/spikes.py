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

The four definitions of CLAIMS.md ("Spike definitions"): ``episodes(loss, steps, definition)``,
with ``DEFINITIONS`` (R3, R10, R100, Z6; ``PRIMARY`` = R3) and the same ``COLUMNS`` as ``detect``.

- **R3, R10, R100** (``Ratio``): the start test is ``detect``'s (loss > factor × the median of the
  previous 100 finite non-spiking losses, above the floor ``min_loss``), but an episode, once
  started, runs until the first step with loss <= 1.2 × the baseline frozen at its start (its
  ``recovery``); every step above the factor before that belongs to the same episode. So a loss that
  dips below 3× but stays above 1.2× and rises again is one R3 episode, two for ``detect``. Steps
  above the factor never enter a later baseline's window; an episode's other steps do (as in
  ``detect``). ``end`` is the episode's last step (the step before ``recovery``; the last finite
  step when it never recovers). ``height`` = peak_loss / baseline.
- **Z6** (``Sigma``): OLMo-core's SkipStepOptimizer rule (see ``Sigma``): a step is flagged when its
  loss exceeds the mean of the previous 128 losses (all of them, flagged ones included) by more than
  6 of their sample standard deviations, from the 64th loss on; a run of consecutive flagged steps
  is one episode, ``end`` its last flagged step. ``baseline`` is the window mean at the episode's
  first step and ``height`` = peak_loss / baseline, a ratio like the other definitions' (so
  ``rates``' 3×/10×/100× buckets mean the same thing under all four), not the z-score that flagged
  it. ``recovery`` and ``rise_start`` use 1.2 × that baseline, as ``detect`` does.

``detect`` itself (the legacy rule: an episode is a run of consecutive spiking steps, merged over
``merge_gap``) is unchanged and remains what ``episodes_of``/``summarize`` use when no definition
is given.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Union

import numpy as np
import pandas as pd

COLUMNS = ["start", "peak", "end", "recovery", "rise_start", "baseline", "peak_loss", "height",
           "steps_to_recover"]


def _ratio(a: float, b: float) -> float:
    """a / b, inf (not a warning) when it overflows: float64 quadratics go from 1e-300 to 1e-5."""
    with np.errstate(over="ignore", divide="ignore"):
        return float(np.float64(a) / np.float64(b))


def _scan(loss: np.ndarray, window: int, factor: float, min_loss: float, merge_gap: int,
          until: float | None = None) -> tuple[int, np.ndarray, list[int], list[list[int]]]:
    """The definition's pass over one loss series: (n, the length of its finite prefix; the
    baseline of each of those steps, NaN where there is none; the spiking steps; the episodes).

    Without ``until`` (``detect``'s rule) an episode's baseline stays frozen while spiking steps
    are at most ``merge_gap`` apart, and the episode list is empty (``detect`` groups the spiking
    steps itself). With ``until`` (the R rules of CLAIMS.md; ``merge_gap`` unused) an episode opens
    at a spiking step and stays open, its baseline frozen, until the first step with loss <=
    ``until`` × that baseline; each episode is listed as [its first step, that recovery step, or n
    when it never recovers]."""
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
    spans: list[list[int]] = []
    is_open = False  # (with `until`) an episode has started and not yet recovered
    frozen = np.nan
    for t in range(t0, n):
        x = loss[t]
        if until is None:
            in_episode = bool(spiking) and t - spiking[-1] <= merge_gap + 1
        else:
            in_episode = is_open
        if in_episode:
            base = frozen
        elif len(ordered) >= min_pred:
            m = len(ordered)
            base = frozen = 0.5 * (ordered[(m - 1) // 2] + ordered[m // 2])
        else:
            base = np.nan
        base_at[t] = base
        if base == base and x > factor * base and x > min_loss:  # (base == base: not NaN)
            if until is not None and not is_open:
                spans.append([t, n])
                is_open = True
            spiking.append(t)
            continue  # spiking steps stay out of the baseline window
        if is_open and x <= until * frozen:
            spans[-1][1] = t
            is_open = False
        recent.append(x)
        bisect.insort(ordered, x)
        if len(recent) > window:
            ordered.pop(bisect.bisect_left(ordered, recent.popleft()))
    return n, base_at, spiking, spans


def _row(loss: np.ndarray, steps: np.ndarray, n: int, s: int, e: int, b: float, rise: float,
         prev_end: int, rec: int | None = None) -> dict:
    """One episode's row: steps s..e (indices) with baseline b. ``rec``: its recovery index (n:
    none) when the definition fixes it; otherwise the first step after the peak with loss <=
    ``rise`` × b. ``rise_start`` goes back no further than the step after ``prev_end``."""
    p = s + int(np.argmax(loss[s:e + 1]))
    r = s
    while r - 1 > prev_end and loss[r - 1] > rise * b:
        r -= 1
    if rec is None:
        after = np.flatnonzero(loss[p + 1:n] <= rise * b)
        recovery = steps[p + 1 + after[0]] if len(after) else np.nan
    else:
        recovery = steps[rec] if rec < n else np.nan
    return {"start": steps[s], "peak": steps[p], "end": steps[e], "recovery": recovery,
            "rise_start": steps[r], "baseline": b, "peak_loss": loss[p],
            "height": _ratio(loss[p], b), "steps_to_recover": recovery - steps[p]}


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
    n, base_at, spiking, _ = _scan(loss, window, factor, min_loss, merge_gap)

    groups: list[list[int]] = []
    for t in spiking:
        if groups and t - groups[-1][-1] <= merge_gap + 1:
            groups[-1].append(t)
        else:
            groups.append([t])

    rows, prev_end = [], -1
    for g in groups:
        s, e = g[0], g[-1]
        rows.append(_row(loss, steps, n, s, e, base_at[s], rise, prev_end))
        prev_end = e
    return pd.DataFrame(rows, columns=COLUMNS)


def largest_ratio(loss, *, window: int = 100, factor: float = 3.0, min_loss: float = 0.0,
                  merge_gap: int = 0) -> float:
    """The largest ratio of a loss to its baseline under ``detect``'s definition, over the finite
    prefix (NaN when no step has a baseline). In a series of positive losses with episodes it is
    the tallest one's ``height``; in one without, the tallest excursion that stayed under ``factor`` × the baseline,
    which is then the plain median of the previous ``window`` losses (no step was left out of it)."""
    loss = np.asarray(loss, dtype=float)
    n, base_at, _, _ = _scan(loss, window, factor, min_loss, merge_gap)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = loss[:n] / base_at
    r = r[np.isfinite(r)]
    return float(r.max()) if len(r) else float("nan")


@dataclass(frozen=True)
class Ratio:
    """A ratio rule of CLAIMS.md (R3, R10, R100): an episode starts at the first step whose loss
    exceeds ``factor`` × the median of the previous ``window`` finite losses that exceeded no
    baseline (and ``min_loss``, the floor), and runs until the loss is back at or under ``rise`` ×
    that baseline, frozen at the start (``_scan`` with ``until=rise``)."""
    name: str
    factor: float
    description: str
    window: int = 100
    rise: float = 1.2
    min_loss: float = 0.0


@dataclass(frozen=True)
class Sigma:
    """Z6: the skip rule of OLMo-core's SkipStepOptimizer (allenai/OLMo-core,
    src/olmo_core/optim/skip_step_optimizer.py, ``get_step_factor`` and the ``latest_loss``
    setter, as of commit fa6c501; the train module sets ``latest_loss`` to each step's reduced CE
    batch loss), applied to the logged loss. As read there:

    - the optimizer keeps the last ``rolling_interval_length + 1`` (= 129) losses, the current one
      included, appending every step's loss whether or not that step was skipped; so the window of
      step t is the previous min(t, 128) losses, flagged ones included;
    - no step is tested while fewer than ``max(2, rolling_interval_length // 2)`` (= 64) losses are
      held, the current one included: the first tested step is index 63, against 63 previous losses;
    - ``torch.std_mean`` over the window: the mean and the *sample* standard deviation (ddof 1,
      torch's default correction);
    - a step proceeds when ``loss - mean <= sigma_factor * std`` (sigma_factor = 6), so it is
      flagged when ``loss - mean > 6 std``;
    - OLMo-core also flags a step whose grad norm exceeds its own mean + 6 std over the same kind
      of window, when the grad norm is recorded (it is with gradient clipping). Z6 is CLAIMS.md's
      loss rule: the loss test only.

    Unlike OLMo-core's, the series is cut at its first non-finite loss (a NaN there would make the
    window's statistics NaN and flag every later step). ``window`` counts logged points, as
    ``detect``'s does. Consecutive flagged steps are one episode; ``rise`` is used only for its
    ``recovery`` and ``rise_start`` columns (loss <= / > ``rise`` × the window mean)."""
    name: str
    description: str
    sigmas: float = 6.0
    window: int = 128
    rise: float = 1.2


Definition = Union[Ratio, Sigma]

PRIMARY = "R3"
DEFINITIONS: dict[str, Definition] = {
    d.name: d for d in (
        Ratio("R3", 3.0, "R3 (primary): an episode starts when the loss exceeds 3x the median of the previous "
                         "100 non-spiking losses and ends when it is back under 1.2x that median"),
        Ratio("R10", 10.0, "R10: as R3 at 10x the median of the previous 100 non-spiking losses "
                           "(ends back under 1.2x)"),
        Ratio("R100", 100.0, "R100: as R3 at 100x the median of the previous 100 non-spiking losses "
                             "(ends back under 1.2x)"),
        Sigma("Z6", "Z6: OLMo-core SkipStepOptimizer's rule: the loss exceeds the mean of the previous 128 "
                    "losses by more than 6 sample std, from the 64th loss on; consecutive flagged steps are "
                    "one episode, its height the peak over that mean"),
    )
}


def resolve(d: str | Definition) -> Definition:
    """A definition by name (``DEFINITIONS``) or the object itself."""
    if isinstance(d, (Ratio, Sigma)):
        return d
    try:
        return DEFINITIONS[d]
    except KeyError:
        raise ValueError(f"unknown spike definition {d!r}; known: {', '.join(DEFINITIONS)}") from None


_CHUNK = 8192  # windows per numpy block in _sigma_scan (8192 x 128 floats = 8 MB)


def _sigma_scan(loss: np.ndarray, window: int, sigmas: float) -> tuple[int, np.ndarray, np.ndarray]:
    """``Sigma``'s pass over one loss series: (n, the length of its finite prefix; the window mean
    of each of those steps, NaN where untested; the flagged steps). Each window's mean and std are
    computed on its own values (no running sums, which lose all precision when a loss falls by
    orders of magnitude)."""
    bad = np.flatnonzero(~np.isfinite(loss))
    n = int(bad[0]) if len(bad) else len(loss)
    x = loss[:n]
    mean, std = np.full(n, np.nan), np.full(n, np.nan)
    first = max(2, window // 2) - 1  # OLMo-core tests once it holds max(2, window // 2) losses, this one included
    for t in range(first, min(window, n)):  # the window still growing: all previous losses
        mean[t], std[t] = x[:t].mean(), x[:t].std(ddof=1)
    if n > window:
        w = np.lib.stride_tricks.sliding_window_view(x[:n - 1], window)  # row i: the window of step i + window
        for a in range(0, len(w), _CHUNK):
            c = w[a:a + _CHUNK]
            mean[window + a:window + a + len(c)] = c.mean(axis=1)
            std[window + a:window + a + len(c)] = c.std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", over="ignore"):
        flagged = np.flatnonzero(x - mean > sigmas * std)
    return n, mean, flagged


def episodes(loss, steps=None, definition: str | Definition = PRIMARY) -> pd.DataFrame:
    """Spike episodes of one loss series under one of CLAIMS.md's definitions (``DEFINITIONS``,
    or a ``Ratio``/``Sigma`` object), one row each, columns ``COLUMNS``, in ``steps``' units
    (the module docstring says what each column means under each kind of definition)."""
    d = resolve(definition)
    loss = np.asarray(loss, dtype=float)
    steps = np.arange(len(loss)) if steps is None else np.asarray(steps)
    if len(steps) != len(loss):
        raise ValueError(f"loss has {len(loss)} points but steps has {len(steps)}")
    rows, prev_end = [], -1
    if isinstance(d, Ratio):
        n, base_at, _, spans = _scan(loss, d.window, d.factor, d.min_loss, 0, until=d.rise)
        for s, rec in spans:
            e = rec - 1  # the step before recovery; the last finite step when it never recovers
            rows.append(_row(loss, steps, n, s, e, base_at[s], d.rise, prev_end, rec=rec))
            prev_end = e
    else:
        n, mean, flagged = _sigma_scan(loss, d.window, d.sigmas)
        cut = np.flatnonzero(np.diff(flagged) > 1) + 1
        for g in np.split(flagged, cut) if len(flagged) else []:
            s, e = int(g[0]), int(g[-1])
            rows.append(_row(loss, steps, n, s, e, mean[s], d.rise, prev_end))
            prev_end = e
    return pd.DataFrame(rows, columns=COLUMNS)


def _per_label(per: int) -> str:
    return f"{per // 1000}k" if per >= 1000 and per % 1000 == 0 else f"{per:g}"


def rates(episodes: pd.DataFrame, n_steps: int, heights=(3, 10, 100), per: int = 1000) -> dict[str, float]:
    """Episodes per ``per`` steps, overall and with height > each of ``heights``; the largest
    height (0 if none) and the median steps_to_recover (NaN if none recovered). With the default
    ``per`` the keys are ``spikes_per_1k``, ``spikes_per_1k_h3``, ...; other ``per`` relabel them.

    It takes no definition: it reads an episodes frame, and every definition's (``detect``'s and
    ``episodes``' under R3, R10, R100, Z6) has the same columns with ``height`` = peak_loss /
    baseline, so its buckets mean the same under all of them."""
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


def _episodes_fn(definition, detect_kw: dict):
    """loss, steps -> episodes: ``detect(**detect_kw)`` without a definition, else ``episodes``."""
    if definition is None:
        return lambda loss, steps: detect(loss, steps, **detect_kw)
    if detect_kw:
        raise TypeError(f"a definition ({definition!r}) fixes the rule; detect's keywords "
                        f"{sorted(detect_kw)} do not apply")
    d = resolve(definition)
    return lambda loss, steps: episodes(loss, steps, d)


def episodes_of(metrics: pd.DataFrame, definition: str | Definition | None = None, **detect_kw) -> pd.DataFrame:
    """The episodes of every run's loss in a tidy metrics frame (``results.load()``), with run_id:
    ``episodes`` under ``definition`` when one is given, else ``detect(**detect_kw)``."""
    find = _episodes_fn(definition, detect_kw)
    frames = [find(g["value"].to_numpy(), g["step"].to_numpy()).assign(run_id=run_id)
              for run_id, g in _loss_runs(metrics)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["run_id", *COLUMNS])
    return pd.concat(frames, ignore_index=True)[["run_id", *COLUMNS]]


def summarize(metrics: pd.DataFrame, heights=(3, 10, 100), per: int = 1000,
              definition: str | Definition | None = None, **detect_kw) -> pd.DataFrame:
    """One row per run: run_id, experiment, seed, status, n_steps and the ``rates()`` keys, of the
    episodes under ``definition`` when one is given, else of ``detect(**detect_kw)``.

    n_steps is the training steps covered by the finite part of the run's loss (a diverged run's
    rate is per step it ran), in the caller's step units."""
    find = _episodes_fn(definition, detect_kw)
    rows = []
    for run_id, g in _loss_runs(metrics):
        loss, steps = g["value"].to_numpy(float), g["step"].to_numpy()
        ok = np.flatnonzero(~np.isfinite(loss))
        n_ok = int(ok[0]) if len(ok) else len(loss)
        n = _n_steps(steps[:n_ok])
        first = g.iloc[0]
        rows.append({"run_id": run_id, "experiment": first["experiment"], "seed": first["seed"],
                     "status": first["status"], "n_steps": n,
                     **rates(find(loss, steps), n, heights=heights, per=per)})
    return pd.DataFrame(rows)


class OnlineDetector:
    """The online form of ``detect`` (for loop events such as rollback) (merge_gap 0): a loss x is a spike when at
    least min(window, 10) earlier non-spiking losses are known, x > factor·median(the last
    ``window`` of them) and x > min_loss. Spiking losses never enter the window.

    Definition: with the defaults it flags exactly ``detect``'s spiking steps (the legacy rule),
    which is R3's start test step by step; it has no episode state. So after a loss dips under 3×
    (staying above 1.2×) and rises again, R3 is still in one episode with its baseline frozen,
    while this tests the rise again against the window's current median (the dip's steps now in
    it) and reports it as a new spike. It is not Z6."""

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
