"""Molybog et al. 2023 (arXiv 2304.09871) against Bai et al. 2025 (arXiv 2506.04805): ε in two regimes.

M10: u = m̂/(√v̂+ε). (a) In the imitated regime (ε raised relative to the gradients, standing for a
large model whose gradients are about ε) layers with √v̂ ≪ ε stall, u ≈ m̂/ε, and a burst can make
them spike (M6); lowering ε (1e-12, 0, or Adam-atan2) un-stalls them (‖u‖/‖r‖ → 1) and should cut
spikes. (b) In the small-gradient toy regime (the quadratic of Bai et al.), spikes come from v
decaying until the preconditioned step η/√v̂ passes Adam's stability limit; a large ε caps that step
at η/ε (gradient descent) and should remove them.

Per direction the runs split into a baseline arm and a fix arm by ε: (a) baseline = the larger ε,
fix = the smaller; (b) baseline = the smaller ε, fix = the larger. Which regime a run belongs to
is read from its model (``REGIMES``). Per seed: spike episodes under the definition judged
(``spikes.episodes(..., definition)``: R3 for the verdict, R10, R100 and Z6 beside it; in the
imitated regime not counting episodes that start on an injected batch, whose high loss is the
data's) and final loss (mean of the last 10% of logged steps, injected batches left out). A direction holds when in every seed
the fix arm has at most half the baseline's spikes (a baseline without spikes has nothing to cut:
that seed fails) and the t interval over seeds of final loss (fix / baseline) lies below 1.01.
The value (per seed the smaller of the two directions' cuts 1 - fix/baseline, at most 1) gets a
percentile bootstrap interval over seeds (``stats.bootstrap_interval``), which stays within the
seeds' values and so never above 1 (a t interval could leave the range).
Premise (CLAIMS.md): each direction's baseline has >= 1 episode in every run under the definition
used (``in_regime``; else ``out of regime``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import bootstrap_interval
from .frames import injected, late, layers_of, wide
from .registry import Judgement, claim
from .verdicts import combine, every_seed, in_regime, side

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# M10 (CLAIMS.md): each direction with >= 50% fewer spikes and a final loss no more than 1% worse
CUT, WORSE = 0.5, 1.01
FINAL = 0.1  # the last 10% of logged steps
REGIMES = {"gpt": "imitated", "quadratic": "toy", "diag_quadratic": "toy", "mlp": "toy"}
# per regime: True when the fix is the smaller eps (imitated), False when it is the larger (toy)
FIX_IS_SMALLER = {"imitated": True, "toy": False}


def run_summary(g: pd.DataFrame, row: pd.Series, definition: str = spikes.PRIMARY) -> dict:
    """Spike episodes under ``definition`` (off and on injected batches) and the final loss of one
    run (``g``: its wide rows)."""
    g = g.sort_values("step")
    loss = g[["step", "loss"]].dropna()
    steps, values = loss["step"].to_numpy(), loss["loss"].to_numpy(dtype=float)
    ep = spikes.episodes(values, steps, definition)
    on = injected(row, ep["start"].to_numpy()) if len(ep) else np.zeros(0, dtype=bool)
    n = max(1, int(round(FINAL * len(values))))
    tail = values[-n:][~injected(row, steps[-n:])]  # an injected batch's loss is the data's, not the model's
    return {"spikes": int((~on).sum()), "spikes_injected": int(on.sum()), "final": float(np.mean(tail)),
            "diverged": bool(row.get("status") == "diverged")}


def ratio(a: float, b: float) -> float:
    """a / b for final losses: 1 when both are 0 (a quadratic that converged in both arms)."""
    if a == 0 and b == 0:
        return 1.0
    return float(a / b) if b > 0 else float("inf")


@claim("M10", experiment="m10_eps_regimes", figures=["grad_rms", "spike_rates"],
       source=f"{SOURCE} §5-7; Bai et al. 2025 (arXiv 2506.04805) §3",
       statement="eps acts in two regimes: in the imitated regime lowering eps (to 1e-12, 0, or atan2) un-stalls "
                 "layers and cuts spikes; in the small-gradient toy regime raising eps removes spikes",
       spikes=True,
       metric="per direction and seed, spike episodes (R3; R10, R100, Z6 beside it) with the fix over without ((a) tiny GPT with rare-token bursts, "
              "eps 3e-2 -> 1e-12; (b) Bai et al.'s quadratic, eps 1e-8 -> 1) and final loss fix / baseline; "
              "value: the mean over seeds of the smaller of the two directions' spike cuts (1 - fix/baseline, "
              "0 where the baseline has no spike), bootstrap interval over seeds; beside them ||u||/||r|| per layer",
       threshold="both directions: the fix has <= 50% of the baseline's spikes in every seed and final loss "
                 "fix / baseline < 1.01 (t interval over seeds)")
def m10(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    w = wide(metrics, runs)
    info = runs.set_index("run_id")
    arms: dict[str, dict[float, dict[int, dict]]] = {}
    for run_id, g in w.groupby("run_id"):
        row = info.loc[run_id]
        regime = REGIMES.get(str(row.get("model.name")))
        eps = row.get("optimizer.eps")
        if regime is None or eps is None or pd.isna(eps):
            continue
        arms.setdefault(regime, {}).setdefault(float(eps), {})[int(row["seed"])] = run_summary(g, row, definition)
    conditions, cuts, said, seed_sets = {}, {}, [], []
    base_spikes: dict[str, dict[int, int]] = {}  # premise: each direction's baseline spikes in every seed
    for regime in ("imitated", "toy"):
        by_eps = arms.get(regime, {})
        name = "(a) imitated, lower eps" if regime == "imitated" else "(b) toy, higher eps"
        if len(by_eps) < 2:
            conditions[f"{name}: cuts spikes by >= {CUT:.0%} in every seed"] = "unclear"
            conditions[f"{name}: final loss no more than {WORSE - 1:.0%} worse"] = "unclear"
            said.append(f"{name}: not run (arms with eps {sorted(by_eps)})")
            continue
        lo_eps, hi_eps = min(by_eps), max(by_eps)
        base_eps, fix_eps = (hi_eps, lo_eps) if FIX_IS_SMALLER[regime] else (lo_eps, hi_eps)
        base, fix = by_eps[base_eps], by_eps[fix_eps]
        seeds = sorted(set(base) & set(fix))
        seed_sets.append(set(seeds))
        cut = {s: (1 - fix[s]["spikes"] / base[s]["spikes"]) if base[s]["spikes"] else 0.0 for s in seeds}
        worse = [ratio(fix[s]["final"], base[s]["final"]) for s in seeds]
        cuts[regime] = cut
        base_spikes[regime] = {s: int(base[s]["spikes"]) for s in seeds}
        conditions[f"{name}: cuts spikes by >= {CUT:.0%} in every seed"] = every_seed(
            base[s]["spikes"] > 0 and cut[s] >= CUT for s in seeds)
        conditions[f"{name}: final loss no more than {WORSE - 1:.0%} worse"] = side(worse, WORSE, above=False)
        said.append(f"{name} (eps {base_eps:g} -> {fix_eps:g}), seeds {seeds}: spikes {[base[s]['spikes'] for s in seeds]}"
                    f" -> {[fix[s]['spikes'] for s in seeds]}"
                    + (f" (on injected batches, not counted: {[base[s]['spikes_injected'] for s in seeds]} -> "
                       f"{[fix[s]['spikes_injected'] for s in seeds]})" if regime == "imitated" else "")
                    + f"; final loss {_finals(base, seeds)} -> {_finals(fix, seeds)} (fix / baseline "
                    f"{[round(x, 3) for x in worse]})" + _stall(w, runs, regime, base_eps, fix_eps))
    seeds = sorted(set.intersection(*seed_sets)) if len(seed_sets) == 2 else []
    both = [min(cuts["imitated"][s], cuts["toy"][s]) for s in seeds]
    value = float(np.mean(both)) if both else None
    j = combine(conditions, seeds, value, bootstrap_interval(both), f"{definition} spike episodes. " + ". ".join(said))
    every = sorted(set().union(*seed_sets)) if seed_sets else []
    held = {s: all(base_spikes.get(r, {}).get(s, 0) >= 1 for r in ("imitated", "toy")) for s in every}
    reached = (f"baseline {definition} spike episodes per run (injected batches not counted): " + "; ".join(
        f"{'(a) imitated' if r == 'imitated' else '(b) toy'} "
        + ("/".join(str(base_spikes[r][s]) if s in base_spikes[r] else "not run" for s in every)
           if r in base_spikes else "not run") for r in ("imitated", "toy"))
        + f" (seeds {every}; premise: >= 1 in every run)")
    return in_regime(j, held, reached)


def _finals(arm: dict[int, dict], seeds: list[int]) -> str:
    return "[" + ", ".join(f"{arm[s]['final']:.3g}" for s in seeds) + "]"


def _stall(w: pd.DataFrame, runs: pd.DataFrame, regime: str, base_eps: float, fix_eps: float) -> str:
    """Per layer ||u||/||r|| and update RMS / grad RMS, last third of the runs, mean over seeds, per arm."""
    ids = runs[runs["model.name"].map(REGIMES.get) == regime]
    parts = []
    for eps in (base_eps, fix_eps):
        sub = w[w["run_id"].isin(ids[ids["optimizer.eps"] == eps]["run_id"])]
        layers = [x for x in layers_of(sub.columns, "u_over_r") if sub[f"u_over_r/{x}"].notna().any()]
        if not layers:
            continue
        m = late(sub, f"u_over_r/{layers[0]}").mean(numeric_only=True)
        parts.append(f"eps {eps:g}: " + ", ".join(
            f"{x} {m[f'u_over_r/{x}']:.3f} / {m[f'update_rms/{x}'] / m[f'grad_rms/{x}']:.3g}" for x in layers))
    return ("; ||u||/||r|| / update RMS over grad RMS per layer, last third, mean over seeds: " + "; ".join(parts)
            if parts else "")
