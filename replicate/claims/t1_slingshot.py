"""T1 (Thilak et al. 2022, arXiv 2206.04817) and T2 (Liu et al. 2026, arXiv 2605.06152): the Slingshot.

Both are judged on experiment ``t1_slingshot``: modular addition (a + b mod p, half the pairs for
training), a network with an embedding, full batch, no weight decay, logged every step, four arms
(told apart by their config, ``arm_of``): ``adam`` (fp32 Adam, the spiking arm), ``adam_fp64`` (the
same in float64), ``adam_eps`` (Adam with ε = 1e-4) and ``sgd`` (SGD with momentum), the same seeds
and steps.

The mechanism (CLAIMS.md notation). Adam's update is u = m̂/(√v̂ + ε), m̂ = m/(1-β1^t), v̂ = v/(1-β2^t):
its size is about lr whatever the gradient's scale (while √v̂ >> ε), so a tiny but consistent gradient
still moves the weights by lr-sized steps; SGD's step, lr·g, shrinks with the gradient.
Thilak et al. see, late in unregularised training, the last layer's weight norm grow fast just before
the loss jumps back near its initial value (the Slingshot), and no such cycles with SGD. Liu et al.
explain it numerically: with logits z and p = softmax(z), the cross-entropy gradient is ∂L/∂z_c = p_c
- 1[c = y], summing to 0 over c exactly; once the correct class's margin passes float32's absorption
threshold, p_y rounds to 1, p_y - 1 to exactly 0 while the other classes' p_c stay > 0, so the
gradient no longer sums to 0: each example pushes every row of the classifier W in the same
direction, the mean row of W (and the feature mean) drift, Adam rescales that drift to lr-sized
steps, the mean-row norm grows exponentially (log-linear in the step), and the spike follows. In
float64 the absorption threshold lies far beyond the margins the run reaches, so the drift does not
start. The probes (``zero_grad_frac``, the fraction of training examples whose correct-class
gradient is exactly 0 in the model's dtype;
``mean_row_norm``, ‖mean over classes of W's rows‖; ``head_norm``, ‖W‖_F of the last layer) are the
model's own, logged every step.

Common rules (fixed here before any run of ``t1_slingshot`` was looked at):

- "Spikes after its loss fell below 1e-5": a run's episodes under the definition judged
  (``spikes.episodes``: R3, R10, R100, Z6, via ``frames.spiking_runs``) whose ``start`` is after
  ``t_below``, the first logged step with loss < 1e-5 (``BELOW``). A run whose loss never falls below
  1e-5 has no such spike and nothing to count.
- A spike's reference step is its ``rise_start`` (where its loss rise begins, > 1.2x the episode's
  baseline), so its windows hold the run-up and not the jump.
- "≥ 80% of those spikes": the spikes of the fp32 Adam runs pooled over seeds; the condition is the
  observed fraction k/n >= 0.8 ('unclear' when n = 0); the value is that fraction with its Wilson
  interval (``stats.wilson_interval``, inside [0, 1]). The interval is reported, not tested: CLAIMS.md
  counts the spikes the runs had, and this workload has about one spike per seed, where 3 of 3 gives
  a Wilson interval [0.44, 1]: a test on the interval could never pass a true claim.
- A spike whose window reaches back before the metric's first logged step cannot be measured: it
  is left out of that fraction (and named in the detail); with none measurable the condition is
  'unclear'.
- Premise (CLAIMS.md, T1 and T2): the fp32 Adam loss falls below 1e-5 within the run, in every seed;
  else ``out of regime`` (``verdicts.in_regime``), the threshold's verdict kept in the detail. A
  seed without an fp32 Adam run has not reached it.
- Conditions are 'yes'/'no'/'unclear' and ``verdicts.combine`` decides (any 'no': not replicated;
  all 'yes': replicated; else inconclusive; fewer than MIN_SEEDS seeds with an fp32 Adam run:
  inconclusive).

T1, registered with ``primary="R100"`` (its row: "Adam spikes (R100)"): replicated when

(i) fp32 Adam spikes after its loss fell below 1e-5 in every seed (>= 1 such episode per seed);
(ii) >= 80% of those spikes have the head's weight-norm growth rate over the 500 steps before
     (rise_start - 501 to rise_start - 1) >= 2x its rate over the 2000 steps before that
     (rise_start - 2501 to rise_start - 501). The rate is the linear change of ‖W‖ per step,
     (‖W‖(b) - ‖W‖(a)) / (b - a), ‖W‖(t) the value at the last logged step <= t. Chosen before any
     run: the claim speaks of the norm's growth, d‖W‖/dt (not its relative growth), and it is
     the exploration's "growth ratio" (/tmp/slingshot/analyze.py: (W[s-1] - W[s-501]) / 500 over
     (W[s-501] - W[s-2501]) / 2000, s the spike), which is not wrong, so the same. A log rate
     (relative growth) would be smaller by about the ratio of the two windows' norms; it is reported
     in the detail, not judged. A spike meets (ii) when the recent rate is > 0 and either the
     earlier rate is <= 0 (the norm was flat or shrinking: the ratio is infinite) or recent >= 2x
     earlier; a norm that does not grow in the last 500 steps never meets it.
(iii) SGD and Adam with ε = 1e-4 have no spike after their loss fell below 1e-5 over the same steps
     (their runs are as long as the fp32 runs): per seed and arm 'yes' with 0 such episodes, 'no'
     with >= 1. An arm whose loss never fell below 1e-5 in a seed has nothing to count, and "shows
     none" is then no test: 'unclear' for that seed (reported as such), as is a missing arm. (iii)
     is 'no' when any arm spikes in any seed, 'yes' when every (arm, seed) is 'yes', else 'unclear'.

Value: the fraction in (ii) (Wilson interval). If the claim held exactly: every fp32 spike is
preceded by faster norm growth, value 1.0, and the exploration's ratios (3.5-3.9) clear 2: passable.

T2 (primary R3: its row names no definition): replicated when

(i) zero_grad_frac exceeds 0.5 at some logged step between t_below (included) and the spike's
    rise_start (excluded), before >= 80% of the fp32 spikes. This window is CLAIMS.md's "before" read
    literally (any time after the run entered the loss < 1e-5 regime and before the spike begins).
    The exploration found the fraction peaking at 0.95-0.98 about 2.5k steps before each spike and
    down to 0.33-0.43 (maximum) over the last 500 steps (the drift undoes the absorption): a
    "last 500 steps" window would fail. That finding is stated here, not used to choose the window.
    A spike whose window has no logged zero_grad_frac does not meet (i) (the fraction did not
    exceed 0.5 at any logged step before it); a run without the metric leaves its spikes unmeasured.
(ii) fp64 has >= 80% fewer spikes than fp32 over the same steps in every seed: per seed n64 <= 0.2 x
    n32, each arm's episodes counted after its own loss fell below 1e-5. 'unclear' for a seed whose
    fp32 run has no such spike (no reduction to measure), whose fp64 loss never fell below 1e-5
    (nothing counted: no test), or that lacks either arm; (ii) is 'no' when any seed is 'no', 'yes'
    when every seed is 'yes', else 'unclear'.
(iii) log mean_row_norm rises linearly over the 1000 steps before each fp32 spike (logged steps
    rise_start - 1000 to rise_start - 1): the least-squares line of log ‖mean row‖ on the step has
    R² > 0.9 and a positive slope. CLAIMS.md says "each spike": every measured fp32 spike must meet
    it (``T2_LINEAR_NEED`` = 1.0; the brief this judge was written from said >= 80%; the two agree
    whenever at most 4 spikes are pooled, as here, about one per seed, since 0.8 x n then rounds up
    to n). A window with fewer than 10
    finite positive values, or reaching before the first logged step, is unmeasured.

Value: the fraction in (i) (Wilson interval). If the claim held exactly: the fraction is 1.0, fp64
has 0 spikes (100% fewer), R² near 1 (the exploration: 0.990-0.995): passable.

Detail: per seed and arm the step the loss fell below 1e-5 (or "never"), the post-1e-5 spike starts
(rise_start); per fp32 spike the growth ratio (linear; log beside it), the zero_grad_frac maximum in
its window, the R² and slope of log mean_row_norm.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import wilson_interval
from .frames import spiking_runs
from .registry import Judgement, claim
from .verdicts import combine, in_regime

EXPERIMENT = "t1_slingshot"
T1_SOURCE = "Thilak et al. 2022 (arXiv 2206.04817)"
T2_SOURCE = "Liu et al. 2026 (arXiv 2605.06152)"
ARMS = ("adam", "adam_fp64", "adam_eps", "sgd")
FP32, FP64, EPS, SGD = ARMS
BELOW = 1e-5  # "after its loss fell below 1e-5" and the premise
NEED = 0.8  # ">= 80% of those spikes"
RECENT, EARLIER = 500, 2000  # T1 (ii): the norm's growth windows before the spike
GROWTH = 2.0  # T1 (ii): recent rate >= 2x the earlier one
ZERO_GRAD = 0.5  # T2 (i)
FEWER = 0.8  # T2 (ii): fp64 has >= 80% fewer spikes
LINEAR_WINDOW = 1000  # T2 (iii)
R2_NEED = 0.9  # T2 (iii)
T2_LINEAR_NEED = 1.0  # T2 (iii): "before each spike"
MIN_POINTS = 10  # T2 (iii): a window needs this many finite positive values


def arm_of(r: pd.Series) -> str:
    """A run's arm from its config, not its label (conf/arm/t1_slingshot labels them "adam fp32",
    "adam fp64", "adam eps=1e-4", "sgd momentum=0.9 lr=1"): SGD by ``optimizer.name``; float64 by
    ``model.dtype``; eps >= 1e-6 the large-eps arm (the baseline's is 1e-8); else fp32 Adam. A label
    that is itself one of ARMS is taken as it is."""
    label = r.get("label")
    if isinstance(label, str) and label in ARMS:
        return label
    if str(r.get("optimizer.name", "")) == "sgd":
        return SGD
    if "64" in str(r.get("model.dtype", "")):
        return FP64
    eps = r.get("optimizer.eps")
    if eps is not None and pd.notna(eps) and float(eps) >= 1e-6:
        return EPS
    return FP32


def _at(s: pd.Series, t: float) -> tuple[float, float] | None:
    """(step, value) of ``s`` (finite, index: step) at the last logged step <= t; None before its first."""
    i = int(np.searchsorted(s.index.to_numpy(), t, side="right")) - 1
    return None if i < 0 else (float(s.index[i]), float(s.iloc[i]))


def growth(head: pd.Series, rs: int) -> dict:
    """T1 (ii) for a spike rising at ``rs``: the head norm's linear rates over the RECENT steps before
    rs and the EARLIER steps before those, their ratio (and the log rates' beside it), and whether it
    meets GROWTH; ``measured`` False when the windows reach before the first logged value."""
    out = {"measured": False, "ratio": math.nan, "log_ratio": math.nan, "met": False}
    a, b, c = rs - 1, rs - 1 - RECENT, rs - 1 - RECENT - EARLIER
    if not len(head) or c < head.index[0]:
        return out
    pa, pb, pc = _at(head, a), _at(head, b), _at(head, c)
    if pb[0] <= pc[0] or pa[0] <= pb[0]:
        return out
    recent, earlier = (pa[1] - pb[1]) / (pa[0] - pb[0]), (pb[1] - pc[1]) / (pb[0] - pc[0])
    out["measured"] = True
    out["ratio"] = recent / earlier if earlier > 0 else (math.inf if recent > 0 else math.nan)
    out["met"] = bool(recent > 0 and (earlier <= 0 or recent >= GROWTH * earlier))
    if min(pa[1], pb[1], pc[1]) > 0:
        lr_, le = (math.log(pa[1] / pb[1]) / (pa[0] - pb[0]), math.log(pb[1] / pc[1]) / (pb[0] - pc[0]))
        out["log_ratio"] = lr_ / le if le > 0 else (math.inf if lr_ > 0 else math.nan)
    return out


def zero_grad_before(zgf: pd.Series | None, t_below: float, rs: int) -> dict:
    """T2 (i): the largest zero_grad_frac at the logged steps in [t_below, rs), and whether it exceeds
    ZERO_GRAD (none logged there: not met); unmeasured when the run does not log the metric."""
    if zgf is None or not len(zgf):
        return {"measured": False, "max": math.nan, "met": False}
    seg = zgf[(zgf.index >= t_below) & (zgf.index < rs)]
    top = float(seg.max()) if len(seg) else math.nan
    return {"measured": True, "max": top, "met": bool(len(seg) and top > ZERO_GRAD)}


def log_linear(mr: pd.Series | None, rs: int) -> dict:
    """T2 (iii): R² and slope (per 1k steps) of the least-squares line of log mean_row_norm on the
    step over the logged steps in [rs - LINEAR_WINDOW, rs); met when R² > R2_NEED and slope > 0."""
    out = {"measured": False, "r2": math.nan, "slope_1k": math.nan, "met": False}
    if mr is None or not len(mr) or rs - LINEAR_WINDOW < mr.index[0]:
        return out
    seg = mr[(mr.index >= rs - LINEAR_WINDOW) & (mr.index < rs)]
    seg = seg[np.isfinite(seg.to_numpy(float)) & (seg.to_numpy(float) > 0)]
    if len(seg) < MIN_POINTS:
        return out
    x, y = seg.index.to_numpy(float), np.log(seg.to_numpy(float))
    slope, icept = np.polyfit(x, y, 1)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(((y - (slope * x + icept)) ** 2).sum()) / ss if ss > 0 else math.nan
    out.update(measured=True, r2=r2, slope_1k=1000 * float(slope),
               met=bool(math.isfinite(r2) and r2 > R2_NEED and slope > 0))
    return out


def _series(g: pd.DataFrame, col: str) -> pd.Series | None:
    if col not in g:
        return None
    s = g[col].dropna()
    return s[np.isfinite(s.to_numpy(float))]


def slingshot_runs(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> pd.DataFrame:
    """One row per run: seed, arm, t_below (the first logged step with loss < BELOW, NaN if never),
    the lowest loss, and ``spikes``: a list of dicts, one per episode under ``definition`` starting
    after t_below (start, rise_start, and for the fp32 Adam arm the T1/T2 measures of ``growth``,
    ``zero_grad_before``, ``log_linear``)."""
    info = runs.set_index("run_id")
    rows = []
    for seed, g, ep in spiking_runs(metrics, runs, definition):
        rid = g["run_id"].iloc[0]
        if rid not in info.index:
            continue
        arm = arm_of(info.loc[rid])
        loss = g["loss"].dropna()
        below = loss.index[loss.to_numpy(float) < BELOW]
        t_below = float(below[0]) if len(below) else math.nan
        post = ep[ep["start"] > t_below] if len(below) else ep.iloc[0:0]
        head, zgf, mr = _series(g, "head_norm"), _series(g, "zero_grad_frac"), _series(g, "mean_row_norm")
        found = []
        for e in post.itertuples():
            rs = int(e.rise_start)
            s = {"start": int(e.start), "rise_start": rs}
            if arm == FP32:
                s["growth"] = growth(head if head is not None else pd.Series(dtype=float), rs)
                s["zero_grad"] = zero_grad_before(zgf, t_below, rs)
                s["linear"] = log_linear(mr, rs)
            found.append(s)
        rows.append({"run_id": rid, "seed": int(seed), "arm": arm, "t_below": t_below,
                     "min_loss": float(loss.min()) if len(loss) else math.nan, "spikes": found})
    return pd.DataFrame(rows, columns=["run_id", "seed", "arm", "t_below", "min_loss", "spikes"])


def _fmt(x: float, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else "inf" if x == math.inf else format(x, spec)


def _arm_row(per: pd.DataFrame, seed: int, arm: str) -> pd.Series | None:
    d = per[(per["seed"] == seed) & (per["arm"] == arm)]
    return None if d.empty else d.iloc[0]


def _premise(per: pd.DataFrame, seeds: list[int]) -> tuple[dict[int, bool], str]:
    held, said = {}, []
    for s in seeds:
        r = _arm_row(per, s, FP32)
        held[s] = r is not None and math.isfinite(r["t_below"])
        said.append("no fp32 Adam run" if r is None else
                    f"loss < 1e-5 from step {int(r['t_below'])}" if held[s] else f"never (lowest {r['min_loss']:.3g})")
    return held, (f"fp32 Adam loss below 1e-5 per seed ({'/'.join(str(s) for s in seeds)}): " + "; ".join(said)
                  + " (premise: falls below 1e-5 within the run in every seed)")


def _fp32_spikes(per: pd.DataFrame, seeds: list[int]) -> list[tuple[int, dict]]:
    return [(s, sp) for s in seeds for r in [_arm_row(per, s, FP32)] if r is not None for sp in r["spikes"]]


def _fraction(pooled: list[tuple[int, dict]], key: str, need: float) -> tuple[str, float, tuple, int, int, list]:
    """(condition, value, Wilson interval, k, n, unmeasured (seed, rise_start)) of ``key``'s ``met``."""
    measured = [(s, sp) for s, sp in pooled if sp[key]["measured"]]
    unmeasured = [(s, sp["rise_start"]) for s, sp in pooled if not sp[key]["measured"]]
    n, k = len(measured), sum(sp[key]["met"] for _, sp in measured)
    if n == 0:
        return "unclear", math.nan, (math.nan, math.nan), 0, 0, unmeasured
    value = k / n
    return ("yes" if round(value, 12) >= need else "no"), value, wilson_interval(k, n), k, n, unmeasured


def _none_if_nan(value: float, ci: tuple) -> tuple:
    """(value, interval), None for both when there was nothing to take a fraction of."""
    return (value, ci) if math.isfinite(value) else (None, (None, None))


def _arms_line(per: pd.DataFrame, seeds: list[int], arms) -> str:
    out = []
    for s in seeds:
        parts = []
        for arm in arms:
            r = _arm_row(per, s, arm)
            if r is None:
                parts.append(f"{arm} no run")
                continue
            reached = f"< 1e-5 from {int(r['t_below'])}" if math.isfinite(r["t_below"]) else \
                f"never < 1e-5 (lowest {r['min_loss']:.3g})"
            starts = [sp["rise_start"] for sp in r["spikes"]]
            shown = ",".join(str(x) for x in starts[:8]) + (f",... ({len(starts)})" if len(starts) > 8 else "")
            parts.append(f"{arm} {reached}, {len(starts)} spike(s) after" + (f" rising at {shown}" if starts else ""))
        out.append(f"seed {s}: " + "; ".join(parts))
    return " | ".join(out)


def _per_spike(pooled: list[tuple[int, dict]], limit: int = 12) -> str:
    rows = [f"seed {s} @{sp['rise_start']}: growth {_fmt(sp['growth']['ratio'])}x (log {_fmt(sp['growth']['log_ratio'])}x)"
            f", zero_grad_frac max {_fmt(sp['zero_grad']['max'])}, log mean-row R² {_fmt(sp['linear']['r2'], '.4f')}"
            f" slope {_fmt(sp['linear']['slope_1k'])}/1k" for s, sp in pooled[:limit]]
    more = f"; ... ({len(pooled) - limit} more)" if len(pooled) > limit else ""
    return "; ".join(rows) + more


def _setup(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str):
    per = slingshot_runs(metrics, runs, definition) if not metrics.empty else pd.DataFrame(
        columns=["run_id", "seed", "arm", "t_below", "min_loss", "spikes"])
    fp32_seeds = sorted(int(s) for s in per.loc[per["arm"] == FP32, "seed"].unique())
    all_seeds = sorted(int(s) for s in per["seed"].unique())
    return per, fp32_seeds, all_seeds


T1_STATEMENT = ("Without regularisation, adaptive optimizers show cyclic late-training loss spikes, each preceded by "
                "rapid growth of the last layer's weight norm; SGD shows none, and a larger ε suppresses them")
T1_THRESHOLD = ("Adam spikes (R100) after its loss fell below 1e-5 in every seed; ≥ 80% of those spikes have the "
                "last-layer norm's growth rate over the 500 steps before ≥ 2× its rate over the 2000 steps before "
                "that; SGD with momentum and Adam with ε = 1e-4 have none over the same steps")
T2_STATEMENT = ("The Slingshot is numerical: once the correct-class logit margin passes float32's absorption threshold, "
                "that class's gradient rounds to exactly 0 while the other classes' do not, the softmax gradient stops "
                "summing to 0, and the resulting drift inflates the classifier and feature means until the spike")
T2_THRESHOLD = ("the fraction exceeds 0.5 before ≥ 80% of fp32 spikes; fp64 has ≥ 80% fewer spikes than fp32 over the "
                "same steps in every seed; log of the mean-row norm rises linearly (R² > 0.9) over the 1000 steps "
                "before each spike")


@claim("T1", experiment=EXPERIMENT, source=T1_SOURCE, spikes=True, primary="R100", figures=["loss"],
       statement=T1_STATEMENT,
       metric=("value = fraction of fp32 Adam spikes after its loss fell below 1e-5 (R100; R3, R10, Z6 beside it), "
               "pooled over seeds, whose last-layer (head) weight norm grew per step over the 500 steps before the "
               "spike's rise >= 2x its rate over the 2000 steps before that (Wilson interval); modular addition, "
               "full batch, fp32 Adam vs SGD with momentum and Adam eps 1e-4, same seeds and steps"),
       threshold=T1_THRESHOLD)
def t1(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = "R100") -> Judgement:
    per, seeds, all_seeds = _setup(metrics, runs, definition)
    pooled = _fp32_spikes(per, seeds)
    spiked = {s: bool(_arm_row(per, s, FP32)["spikes"]) for s in seeds}
    c2, value, ci, k, n, unmeasured = _fraction(pooled, "growth", NEED)

    quiet = {}
    for s in seeds:
        for arm in (SGD, EPS):
            r = _arm_row(per, s, arm)
            quiet[(arm, s)] = ("unclear" if r is None or not math.isfinite(r["t_below"])
                               else "no" if r["spikes"] else "yes")
    c3 = ("no" if any(a == "no" for a in quiet.values()) else
          "yes" if quiet and all(a == "yes" for a in quiet.values()) else "unclear")
    unclear3 = [f"{arm} seed {s}" for (arm, s), a in quiet.items() if a == "unclear"]

    conditions = {
        f"(i) fp32 Adam spikes ({definition}) after loss < 1e-5 in every seed "
        f"({'/'.join(str(int(spiked[s])) for s in seeds) or '-'})": "yes" if seeds and all(spiked.values()) else "no",
        f"(ii) growth ratio >= {GROWTH:g} in >= {NEED:.0%} of those spikes: {k}/{n}": c2,
        "(iii) SGD and Adam eps 1e-4 have no spike after their loss fell below 1e-5"
        + (f" (nothing to count, loss never < 1e-5 or no run: {', '.join(unclear3)})" if unclear3 else ""): c3,
    }
    detail = (_arms_line(per, all_seeds, ARMS) + ". Per fp32 spike: " + (_per_spike(pooled) or "none")
              + (f". Unmeasured (window before the first logged step): {unmeasured}" if unmeasured else ""))
    j = combine(conditions, seeds, *_none_if_nan(value, ci), detail)
    held, reached = _premise(per, all_seeds)
    return in_regime(j, held, reached)


@claim("T2", experiment=EXPERIMENT, source=T2_SOURCE, spikes=True, figures=["loss", "slingshot"],
       statement=T2_STATEMENT,
       metric=("value = fraction of fp32 Adam spikes after its loss fell below 1e-5 (R3; R10, R100, Z6 beside it), "
               "pooled over seeds, with zero_grad_frac (examples whose correct-class gradient is exactly 0) > 0.5 at "
               "some step between loss < 1e-5 and the spike's rise (Wilson interval); beside it fp64's spike count "
               "against fp32's per seed and the R² of log mean-row norm over the 1000 steps before each spike"),
       threshold=T2_THRESHOLD)
def t2(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    per, seeds, all_seeds = _setup(metrics, runs, definition)
    pooled = _fp32_spikes(per, seeds)
    c1, value, ci, k, n, unmeasured1 = _fraction(pooled, "zero_grad", NEED)
    c3, v3, _, k3, n3, unmeasured3 = _fraction(pooled, "linear", T2_LINEAR_NEED)

    fewer, said = {}, []
    for s in seeds:
        r32, r64 = _arm_row(per, s, FP32), _arm_row(per, s, FP64)
        if r64 is None:
            fewer[s] = "unclear"
            said.append(f"seed {s}: no fp64 run")
            continue
        n32, n64 = len(r32["spikes"]), len(r64["spikes"])
        if not math.isfinite(r64["t_below"]):
            fewer[s] = "unclear"
            said.append(f"seed {s}: fp64 loss never < 1e-5 (lowest {r64['min_loss']:.3g}), nothing counted")
        elif n32 == 0:
            fewer[s] = "unclear"
            said.append(f"seed {s}: fp32 0 spikes, fp64 {n64}")
        else:
            fewer[s] = "yes" if round((n32 - n64) / n32, 12) >= FEWER else "no"
            said.append(f"seed {s}: fp32 {n32}, fp64 {n64} ({1 - n64 / n32:.0%} fewer)")
    c2 = ("no" if any(a == "no" for a in fewer.values()) else
          "yes" if fewer and all(a == "yes" for a in fewer.values()) else "unclear")

    conditions = {
        f"(i) zero_grad_frac > {ZERO_GRAD:g} between loss < 1e-5 and the rise before >= {NEED:.0%} of fp32 spikes "
        f"({definition}): "
        f"{k}/{n}": c1,
        f"(ii) fp64 has >= {FEWER:.0%} fewer spikes than fp32 in every seed ({'; '.join(said) or 'no seed'})": c2,
        f"(iii) log mean-row norm linear (R² > {R2_NEED:g}, slope > 0) over the {LINEAR_WINDOW} steps before "
        f"each fp32 spike: {k3}/{n3}": c3,
    }
    unmeasured = sorted(set(unmeasured1) | set(unmeasured3))
    detail = (_arms_line(per, all_seeds, (FP32, FP64)) + ". Per fp32 spike: " + (_per_spike(pooled) or "none")
              + (f". Unmeasured (metric not logged or window before the first logged step): {unmeasured}"
                 if unmeasured else ""))
    j = combine(conditions, seeds, *_none_if_nan(value, ci), detail)
    held, reached = _premise(per, all_seeds)
    return in_regime(j, held, reached)
