"""M0 (Molybog et al. 2023, arXiv 2304.09871, §4): early in training each layer's update
distribution r = m̂/√v̂ is bimodal, then unimodal.

The judge reads the per-layer probe ``r_frac_sign`` (fraction |r| > 0.9, ``replicate.probes``) over
the probe steps after the bias-correction steps (``construction_steps``: where i.i.d. gradients
alone would still give a fraction >= 0.05; r = ±1 at step 0 by construction).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from .frames import layers_of, wide
from .registry import Judgement, claim
from .verdicts import fraction_of_seeds

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
SIGN = 0.9  # |r| > 0.9: the "sign-like" mass (CLAIMS.md's "bim"), also M1's and M2's

# M0 (CLAIMS.md): bimodal = fraction |r| > 0.9 above 0.3; unimodal = below 0.05
M0_BIMODAL, M0_UNIMODAL = 0.3, 0.05


@functools.lru_cache(maxsize=None)
def iid_fraction(b1: float, b2: float, steps: int = 60, n: int = 20_000, seed: int = 0) -> tuple[float, ...]:
    """Fraction |r| > 0.9 at steps 0…steps-1 of Adam fed i.i.d. N(0, 1) gradients: what the bias
    corrections alone give (1 at step 0, where r = g/|g|). Monte Carlo, fixed seed, float64."""
    rng = np.random.default_rng(seed)
    m, v, out = np.zeros(n), np.zeros(n), []
    for t in range(1, steps + 1):
        g = rng.standard_normal(n)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1**t)) / np.sqrt(v / (1 - b2**t))
        out.append(float((np.abs(r) > SIGN).mean()))
    return tuple(out)


def construction_steps(b1: float, b2: float, level: float = M0_UNIMODAL) -> int:
    """The first step at which i.i.d. gradients give a fraction |r| > 0.9 below ``level``: before
    it, a "bimodal" r can be the bias correction's doing (r = ±1 at step 0 by construction)."""
    frac = iid_fraction(float(b1), float(b2))
    return next((t for t, f in enumerate(frac) if f < level), len(frac))


def layer_course(steps: np.ndarray, frac: np.ndarray, start: int) -> dict:
    """Peak of the fraction |r| > 0.9 at probe steps >= start, and the settling step: the first
    probe step >= start from which the fraction stays below M0_UNIMODAL to the end (None if never)."""
    keep = (steps >= start) & np.isfinite(frac)
    steps, frac = steps[keep], frac[keep]
    if len(steps) == 0:
        return {"peak": float("nan"), "peak_step": None, "settle": None, "ok": False}
    i = int(np.argmax(frac))
    below = frac < M0_UNIMODAL
    settle = None
    for j in range(len(steps) - 1, -1, -1):
        if not below[j]:
            break
        settle = int(steps[j])
    ok = bool(frac[i] > M0_BIMODAL and settle is not None and steps[i] < settle)
    return {"peak": float(frac[i]), "peak_step": int(steps[i]), "settle": settle, "ok": ok}


@claim("M0", experiment="m0_early_bimodal", figures=["update_histograms"],
       source=f"{SOURCE} §4 (update distributions over training)",
       statement="Early in training each layer's update distribution is bimodal (non-stationary), passes an "
                 "intermediate state and settles unimodal (stationary)",
       metric="fraction of seeds in which every layer has fraction |r| > 0.9 above 0.3 at some probe step after "
              "the bias-correction steps (where i.i.d. gradients would give >= 0.05; step 0 has r = +-1 by "
              "construction), then below 0.05 from some later step to the end",
       threshold="1.0 (every layer, every seed): > 0.3, then < 0.05")
def m0(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["optimizer.b1", "optimizer.b2"])
    layers = layers_of(w.columns, "r_frac_sign")
    hits: dict[int, bool] = {}
    per_layer: dict[str, list[dict]] = {layer: [] for layer in layers}
    at_zero: dict[str, list[float]] = {layer: [] for layer in layers}
    start = 0
    for (run_id, seed), g in w.groupby(["run_id", "seed"]):
        g = g.sort_values("step")
        start = construction_steps(g["optimizer.b1"].iloc[0], g["optimizer.b2"].iloc[0])
        ok = bool(layers)
        for layer in layers:
            col = f"r_frac_sign/{layer}"
            course = layer_course(g["step"].to_numpy(), g[col].to_numpy(dtype=float), start)
            per_layer[layer].append(course)
            first = g[g[col].notna()]
            if len(first) and int(first["step"].iloc[0]) == 0:
                at_zero[layer].append(float(first[col].iloc[0]))
            ok = ok and course["ok"]
        hits[int(seed)] = hits.get(int(seed), True) and ok

    def mean(xs):
        xs = [x for x in xs if x is not None and math.isfinite(x)]
        return f"{np.mean(xs):.0f}" if xs else "never"

    parts = []
    for layer in layers:
        c = per_layer[layer]
        n_ok = sum(x["ok"] for x in c)
        never = sum(x["settle"] is None for x in c)
        parts.append(f"{layer}: bimodal-then-unimodal in {n_ok}/{len(c)} runs, "
                     f"peak {np.nanmean([x['peak'] for x in c]):.2f} (step ~{mean([x['peak_step'] for x in c])}), "
                     f"settles at step ~{mean([x['settle'] for x in c])}" + (f" ({never} never)" if never else ""))
    zero = ", ".join(f"{layer} {np.mean(v):.2f}" for layer, v in at_zero.items() if v)
    detail = (f"probe steps < {start} not counted as bimodal: i.i.d. gradients give fraction |r| > 0.9 >= "
              f"{M0_UNIMODAL} there (1.0 at step 0, r = +-1 by construction; fraction at step 0: "
              f"{zero or 'not probed'}). "
              "Per layer, shallow to deep (means over runs): " + "; ".join(parts))
    return fraction_of_seeds(hits, need=1.0, detail=detail)
