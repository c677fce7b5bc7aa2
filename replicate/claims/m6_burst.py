"""Molybog et al. 2023 (arXiv 2304.09871) §5-6: a gradient burst in a stalled layer.

M6: in a layer whose √v̂ has fallen to about ε (stalled: u = m̂/(√v̂+ε) ≪ r = m̂/√v̂), a sudden
gradient burst g_B lifts √v̂ by √(1-β2)·|g_B| (bias-corrected) and m̂ by (1-β1)·g_B at once, so the
update jumps from the damped m̂/ε to a sign-like ≈ ±1 per coordinate: a large update whose direction
is not that of descent, then a loss spike. With ε = 0 (or Adam-atan2, no ε) the layer never stalls,
so the update was already ≈ r before the burst and cannot jump much.

Read per run, on the embedding, at the burst step B (the first injected batch of ``data.inject_at``,
else the first of ``data.inject_every``): the jump ‖u_B‖ / mean ‖u_t‖ over t = B-30…B-1
(``update_norm``, the parameter change of the step), cos(u_B, -g_B) (``update_cos_neg_grad``), the
stall before the burst (mean ``u_over_r`` over B-30…B-1; the premise, < 0.1 in every seed, else inconclusive) and whether a loss spike
episode under the spike definition judged (``spikes.episodes``: R3, loss > 3x the median of the
previous 100 non-spiking losses until back under 1.2x it, for the verdict; R10, R100 and Z6 beside
it) starts in B+1…B+20 (the injected batch's own high loss at B is data, not a spike that
follows). Conditions are decided over seeds (``verdicts.combine``). The premise
(CLAIMS.md), per seed of the stalled arm: that stall < 0.1 and the burst batch's ``grad_norm`` >= 10x
its median over B-30…B-1; unless it held in every seed, ``out of regime`` (``verdicts.in_regime``). Beside
them, not judged: the mean jump and cosine over B+1…B+5, the updates momentum carries on after the
burst, measured against those steps' own gradients.

M6_gpu stays pending: this experiment plants a rare-token burst through the Markov stream's
injections, which the GPU tier's byte-level text has no counterpart for yet.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spikes
from ..stats import mean_interval
from .frames import wide
from .registry import Judgement, claim, pending
from .verdicts import combine, every_seed, in_regime, side

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# M6 (CLAIMS.md): ||u|| jumps >= 10x, cos(u, -grad) < 0.1, a spike within 20 steps; with eps = 0 or
# Adam-atan2 the jump is < 3x. The premise (a stalled layer) by M4's threshold: ||u||/||r|| < 0.1.
JUMP, COS, WITHIN, CONTROL_JUMP, STALLED = 10.0, 0.1, 20, 3.0, 0.1
GRAD_BURST = 10.0  # premise: the burst batch's gradient norm >= 10x its median over the 30 steps before
BEFORE = 30  # the steps before the burst that the jump is measured against
AFTER = 5  # the steps after it whose mean jump and cosine are reported beside the verdict
LAYER = "embedding"


def arm(row: pd.Series) -> str:
    """'stalled' (Adam with ε > 0), 'eps0' or 'atan2', from a run's optimizer."""
    name = row.get("optimizer.name")
    if name in ("adam_eps0", "adam_atan2"):
        return name[5:]
    return "stalled" if name == "adam" and float(row.get("optimizer.eps") or 0) > 0 else str(name)


def burst_step(row: pd.Series) -> int | None:
    """The first injected batch of a run's Markov stream (``data.inject_at``, else ``inject_every``)."""
    at = row.get("data.inject_at")
    at = [] if at is None or (np.isscalar(at) and pd.isna(at)) else list(at)
    if at:
        return int(min(at))
    every = row.get("data.inject_every")
    return int(every) - 1 if every is not None and pd.notna(every) and int(every) > 0 else None


def _grad_burst(g: pd.DataFrame, b: int, layer: str) -> float:
    """The layer's gradient norm at b over its median in b-30..b-1 (NaN where not logged)."""
    if f"grad_norm/{layer}" not in g:
        return float("nan")
    gn = g[f"grad_norm/{layer}"]
    before = gn.loc[b - BEFORE:b - 1].dropna()
    return float(gn.get(b, np.nan) / before.median()) if len(before) else float("nan")


def around_burst(g: pd.DataFrame, b: int, layer: str = LAYER, definition: str = spikes.PRIMARY) -> dict:
    """One run's measurements around its burst step b (``g``: its wide rows); its loss episodes
    under ``definition``."""
    g = g.set_index("step").sort_index()
    un = g[f"update_norm/{layer}"]
    before = un.loc[b - BEFORE:b - 1].dropna()
    loss = g["loss"].dropna()
    ep = spikes.episodes(loss.to_numpy(), loss.index.to_numpy(), definition)
    base = float(loss.loc[:b - 1].iloc[-100:].median())
    follows = ep[(ep["start"] > b) & (ep["start"] <= b + WITHIN)]
    return {"jump": float(un.get(b, np.nan) / before.mean()) if len(before) else np.nan,
            "cos": float(g[f"update_cos_neg_grad/{layer}"].get(b, np.nan)),
            # not judged: the updates that momentum carries on after the burst, against that step's gradient
            "after_jump": float(un.loc[b + 1:b + AFTER].mean() / before.mean()) if len(before) else np.nan,
            "after_cos": float(g[f"update_cos_neg_grad/{layer}"].loc[b + 1:b + AFTER].mean()),
            "stall": float(g[f"u_over_r/{layer}"].loc[b - BEFORE:b - 1].mean()),
            "grad_burst": _grad_burst(g, b, layer),
            "spike": len(follows) > 0,
            "burst_loss": float(loss.get(b, np.nan) / base),
            "after_loss": float(loss.loc[b + 1:b + WITHIN].max() / base)}


@claim("M6", experiment="m6_burst", figures=["loss"], spikes=True,
       source=f"{SOURCE} §5-6",
       statement="A gradient burst in a stalled, time-correlated layer gives a large update unrelated to descent, "
                 "then a loss spike",
       metric="embedding ||u|| at the burst step over its mean in the 30 steps before, Adam with eps raised to "
              "3e-2 (imitated regime, embedding stalled), tiny GPT, a rare-token batch at step 90 (mean over "
              "seeds, t interval clipped at 0); beside it cos(u, -grad) at the burst, a loss spike (an R3 episode: > 3x the median "
              "of the previous 100 non-spiking losses; R10, R100, Z6 beside it) starting in the 20 steps after, and "
              "the jump with eps = 0 and Adam-atan2",
       threshold="jump >= 10x, cos < 0.1, a spike within 20 steps (every seed); jump < 3x with eps = 0 and "
                 "Adam-atan2; premise: embedding ||u||/||r|| < 0.1 before the burst")
def m6(metrics: pd.DataFrame, runs: pd.DataFrame, definition: str = spikes.PRIMARY) -> Judgement:
    w = wide(metrics, runs)
    info = runs.set_index("run_id")
    per = {}
    for run_id, g in w.groupby("run_id"):
        row = info.loc[run_id]
        b = burst_step(row)
        if b is None or f"update_norm/{LAYER}" not in g or g["step"].max() < b + WITHIN:
            continue
        per.setdefault(arm(row), {})[int(row["seed"])] = around_burst(g, b, definition=definition)
    st, e0, at = per.get("stalled", {}), per.get("eps0", {}), per.get("atan2", {})

    def col(d, k):
        return [d[s][k] for s in sorted(d)]

    conditions = {
        f"stalled arm: {LAYER} ||u|| jump >= {JUMP:g}x": side(col(st, "jump"), JUMP, above=True),
        f"cos(u, -grad) at the burst < {COS:g}": side(col(st, "cos"), COS, above=False),
        f"a loss spike ({definition}) in the {WITHIN} steps after the burst, every seed": every_seed(col(st, "spike")),
        f"eps = 0: jump < {CONTROL_JUMP:g}x": side(col(e0, "jump"), CONTROL_JUMP, above=False),
        f"Adam-atan2: jump < {CONTROL_JUMP:g}x": side(col(at, "jump"), CONTROL_JUMP, above=False)}
    held = {s: bool(st[s]["stall"] < STALLED and st[s]["grad_burst"] >= GRAD_BURST) for s in sorted(st)}
    premise = every_seed(held.values())
    reached = (f"stalled arm, {LAYER} before the burst ||u||/||r|| " + "/".join(f"{st[s]['stall']:.3f}" for s in sorted(st))
               + f" (premise < {STALLED:g}); gradient norm at the burst / median of the {BEFORE} steps before "
               + "/".join("not logged" if not np.isfinite(st[s]["grad_burst"]) else f"{st[s]['grad_burst']:.1f}x"
                          for s in sorted(st)) + f" (premise >= {GRAD_BURST:g}x); seeds {sorted(st)}")

    def fmt(d, k, f="{:.2f}"):
        return "[" + ", ".join(f.format(d[s][k]) for s in sorted(d)) + "]"

    detail = (f"Per seed {sorted(st)}, stalled arm: jump {fmt(st, 'jump')}, cos(u, -grad) {fmt(st, 'cos')}, "
              f"{definition} spike after {[bool(x) for x in col(st, 'spike')]}, loss / median before at the burst batch "
              f"{fmt(st, 'burst_loss')} and its max in the {WITHIN} steps after {fmt(st, 'after_loss')}; "
              f"not judged, mean over the {AFTER} steps after the burst: jump {fmt(st, 'after_jump')}, cos "
              f"{fmt(st, 'after_cos')}. eps = 0 (seeds {sorted(e0)}): jump {fmt(e0, 'jump')}, cos {fmt(e0, 'cos')}, "
              f"after: jump {fmt(e0, 'after_jump')}, cos {fmt(e0, 'after_cos')}, spike after "
              f"{[bool(x) for x in col(e0, 'spike')]}; Adam-atan2 (seeds {sorted(at)}): jump {fmt(at, 'jump')}, "
              f"cos {fmt(at, 'cos')}, after: jump {fmt(at, 'after_jump')}, cos {fmt(at, 'after_cos')}, spike after "
              f"{[bool(x) for x in col(at, 'spike')]}")
    seeds = sorted(set(st) & set(e0) & set(at))
    jumps = col(st, "jump")
    # the jump is a ratio of norms (>= 0): its t interval over seeds clipped at 0 (the leaderboard's argument)
    _, lo, hi = mean_interval(jumps, bounds=(0.0, math.inf))
    j = combine(conditions, seeds, float(np.mean(jumps)) if jumps else None, (lo, hi), detail)
    return in_regime(j, held, reached)


pending("M6_gpu", source=SOURCE, statement="(GPU tier: a GPT of 10M-125M parameters on real text)",
        metric="as the cpu tier", threshold="as the cpu tier", tier="gpu")
