"""Q3 (open question of CLAIMS.md): do beta1/beta2 that decay over training avoid spikes without the
cost of a small beta2 early on? Answered with numbers (verdict ``answered``), no pass/fail.

Arms (conf/arm/q3_beta_schedule): constant beta2 = 0.999, constant beta2 = 0.95, and beta2
decaying from 0.999 to 0.95 over the run (mitigation ``beta_schedule``: β2(t) = β2_0 + (β2_1 -
β2_0)·t/T, bias correction 1 - Π_s β2(s); Molybog et al. 2023, arXiv 2304.09871, and Bai et al.
2025, arXiv 2506.04805, for why a smaller β2 spikes less). Per arm: spike episodes per 1k steps
under the definition judged (``spikes.summarize(definition=...)``: R3 for the row, R10, R100 and Z6
beside it), pooled over seeds with the exact Poisson interval (``stats.rate_interval``: a rate
cannot go below 0, a t interval could), and the rates of the definition's taller episodes (height >
10x, > 100x) as reported detail; the early loss (median loss over steps [200, 500): after the first
descent, before this workload's spikes start near step 900: the cost of a small beta2 early) and
the final loss (median over the last 500 steps), mean over seeds with a t interval clipped at 0 (a
loss is >= 0). The row's value is the scheduled arm's spike rate; the detail gives the rest.
Premise (CLAIMS.md): the constant-β2-0.999 arm has >= 10 spike episodes in every seed under the
definition used (``in_regime``; else ``out of regime``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import count_of_rate, mean_interval, rate_interval
from .registry import Judgement, claim
from .verdicts import answered, enough_seeds, in_regime

Q3_STATEMENT = "Do beta1/beta2 that decay over training avoid spikes without the cost of a small beta2 early on?"
EARLY = (200, 500)  # steps [a, b): the early loss
FINAL = 500  # the last steps: the final loss
SCHEDULED = "scheduled"
PREMISE_ARM = "b2=0.999"
PREMISE_EPISODES = 10  # CLAIMS.md: the constant beta2 0.999 arm has >= 10 spike episodes in every seed
RATES = ("spikes_per_1k", "spikes_per_1k_h10", "spikes_per_1k_h100")


def arm_of(r: pd.Series) -> str:
    """A run's arm from its config: the beta2 schedule 'scheduled', else 'b2=<constant>'."""
    sched = r.get("mitigation.beta_schedule.b2")
    if isinstance(sched, (list, tuple, np.ndarray)) or (isinstance(sched, str) and sched):
        return SCHEDULED
    return f"b2={float(r['optimizer.b2']):g}"


def run_losses(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: early and final median loss."""
    rows = []
    for rid, g in metrics[metrics["metric"] == "loss"].groupby("run_id"):
        g = g.sort_values("step")
        step, loss = g["step"].to_numpy(), g["value"].to_numpy(float)
        early = loss[(step >= EARLY[0]) & (step < EARLY[1])]
        final = loss[step > step.max() - FINAL]
        rows.append({"run_id": rid, "early_loss": float(np.median(early)) if len(early) else math.nan,
                     "final_loss": float(np.median(final)) if len(final) else math.nan})
    return pd.DataFrame(rows)


def _fmt(m: float, lo: float, hi: float, f: str = ".1f") -> str:
    return f"{m:{f}} [{lo:{f}}, {hi:{f}}]" if math.isfinite(lo) else f"{m:{f}}"


@claim("Q3", experiment="q3_beta_schedule", source="open question (CLAIMS.md)", statement=Q3_STATEMENT,
       spikes=True,
       metric="spike episodes per 1k steps (R3; R10, R100, Z6 beside it) with beta2 decaying 0.999 -> 0.95 over "
              "the run, full-batch spiking MLP, pooled over seeds, exact Poisson interval; beside it constant "
              "beta2 0.999 and 0.95: rates (all / height > 10x / > 100x), early loss (median, steps 200-499) and "
              "final loss (median, last 500 steps)",
       threshold="none (answered with the measured numbers)")
def q3(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    s = spikes.summarize(metrics, definition=definition)
    if s.empty:
        return Judgement("inconclusive", None, detail="no loss series")
    cols = [c for c in ("optimizer.b2", "mitigation.beta_schedule.b2") if c in runs]
    info = runs[["run_id", *cols]].copy()
    info["arm"] = info.apply(arm_of, axis=1)
    s = s.merge(info[["run_id", "arm"]], on="run_id").merge(run_losses(metrics), on="run_id")
    for k in RATES:
        s[f"n_{k}"] = [count_of_rate(r[k], r["n_steps"]) for _, r in s.iterrows()]
    order = sorted(s["arm"].unique(), key=lambda a: (a == SCHEDULED, a))
    stats = {}
    for a in order:
        g = s[s["arm"] == a]
        stats[a] = {k: rate_interval(g[f"n_{k}"].to_list(), g["n_steps"].to_list()) for k in RATES}
        stats[a].update({k: mean_interval(g[k].to_list(), bounds=(0.0, math.inf))
                         for k in ("early_loss", "final_loss")})  # losses are >= 0
    seeds_of = {a: sorted(int(x) for x in s.loc[s["arm"] == a, "seed"]) for a in order}
    sched = s[s["arm"] == SCHEDULED].sort_values("seed")
    seeds = seeds_of.get(SCHEDULED, [])
    value, lo, hi = stats[SCHEDULED]["spikes_per_1k"] if SCHEDULED in stats else (None, None, None)
    complete = len(order) >= 3 and all(enough_seeds(v) for v in seeds_of.values())

    d = definition
    per_arm = "; ".join(
        f"{a} ({len(seeds_of[a])} seeds): {d} episodes per 1k {_fmt(*st['spikes_per_1k'])}, height > 10x "
        f"{_fmt(*st['spikes_per_1k_h10'])}, > 100x {_fmt(*st['spikes_per_1k_h100'])}; early loss "
        f"{_fmt(*st['early_loss'], f='.2e')}; final loss {_fmt(*st['final_loss'], f='.2e')}"
        for a, st in stats.items())
    answer = ""
    if SCHEDULED in stats and {"b2=0.999", "b2=0.95"} <= set(stats):
        sc, big, small = stats[SCHEDULED], stats["b2=0.999"], stats["b2=0.95"]
        answer = (f"scheduled vs constant 0.999 / 0.95: {d} episodes {sc['spikes_per_1k'][0]:.1f} vs "
                  f"{big['spikes_per_1k'][0]:.1f} / {small['spikes_per_1k'][0]:.1f}, height > 10x "
                  f"{sc['spikes_per_1k_h10'][0]:.1f} vs {big['spikes_per_1k_h10'][0]:.1f} / "
                  f"{small['spikes_per_1k_h10'][0]:.1f} per 1k; early loss {sc['early_loss'][0]:.2e} vs "
                  f"{big['early_loss'][0]:.2e} / {small['early_loss'][0]:.2e}; final loss "
                  f"{sc['final_loss'][0]:.2e} vs {big['final_loss'][0]:.2e} / {small['final_loss'][0]:.2e}. ")
    detail = answer + ("Per arm, spike rates pooled over seeds [exact Poisson 95%], losses mean [95% t interval, "
                       "clipped at 0] over seeds: ") + per_arm + f"; scheduled arm per seed ({d}): " + \
        ", ".join(f"{int(r.seed)}: {r.spikes_per_1k:.1f}" for r in sched.itertuples())
    j = answered(seeds, value, (lo, hi), detail, complete=complete)
    every = sorted(int(x) for x in s["seed"].unique())
    top = s[s["arm"] == PREMISE_ARM]
    counts = {int(sd): int(g["n_spikes_per_1k"].sum()) for sd, g in top.groupby("seed")}
    held = {sd: counts.get(sd, 0) >= PREMISE_EPISODES for sd in every}
    reached = (f"{d} spike episodes in the constant beta2 0.999 arm: " + "/".join(str(counts.get(sd, 0)) for sd in every)
               + f" (seeds {every}; premise: >= {PREMISE_EPISODES} per seed)")
    return in_regime(j, held, reached)
