"""Molybog et al. 2023 (arXiv 2304.09871): the shape of Adam's update distribution, r = m̂/√v̂.

M0: early in training each layer's r is bimodal, then unimodal; M1: gradients independent over time
give a unimodal r of std √((1-β1)/(1+β1)); M2: time-correlated gradients pile r up near ±1, more
so as the signal-to-noise ratio grows. The judges read the per-layer probe metrics of
``replicate.probes`` (``r_frac_sign``, ``r_std``, ``r_abs_mean``, ``r_dip_p``).

Where a claim has several conditions, each is decided over seeds ("yes", "no" or "unclear": a t
interval over seeds wholly on one side of its threshold, or straddling it; a per-seed yes/no
property is "yes" only when it holds in every seed) and the verdict is ``replicated`` when every
condition is "yes", ``not replicated`` when any is "no", ``inconclusive`` otherwise or with fewer
than MIN_SEEDS seeds.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from . import MIN_SEEDS, Judgement, claim, fraction_of_seeds, t_interval, wide

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
SIGN = 0.9  # |r| > 0.9: the "sign-like" mass (CLAIMS.md's "bim")

# M0 (CLAIMS.md): bimodal = fraction |r| > 0.9 above 0.3; unimodal = below 0.05
M0_BIMODAL, M0_UNIMODAL = 0.3, 0.05
# M1 (CLAIMS.md): std(r) within 5% of sqrt((1-b1)/(1+b1)); dip test p > 0.05; fraction |r| > 0.9 < 1%
M1_STD_TOL, M1_DIP_P, M1_FRAC = 0.05, 0.05, 0.01
# M2 (CLAIMS.md): fraction |r| > 0.9 above 0.9 at SNR >= 3
M2_FRAC, M2_HIGH_SNR = 0.9, 3.0


# ------------------------------------------------------------------------------------- helpers
def side(values: Sequence[float], threshold: float, above: bool) -> str:
    """'yes' when the t interval over seeds of ``values`` lies wholly above (``above``) or below
    the threshold, 'no' when it lies wholly on the other side, 'unclear' when it straddles it or
    there are fewer than 2 values."""
    lo, hi = t_interval(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unclear"
    if above:
        return "yes" if lo > threshold else "no" if hi <= threshold else "unclear"
    return "yes" if hi < threshold else "no" if lo >= threshold else "unclear"


def inside(values: Sequence[float], low: float, high: float) -> str:
    """'yes' when the t interval over seeds lies inside [low, high], 'no' when it is disjoint from
    it, 'unclear' otherwise."""
    lo, hi = t_interval(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unclear"
    return "yes" if low <= lo and hi <= high else "no" if hi < low or lo > high else "unclear"


def every_seed(hits: Iterable[bool]) -> str:
    hits = list(hits)
    return "yes" if hits and all(hits) else "no"


def combine(conditions: dict[str, str], seeds: Sequence[int], value: float | None,
            ci: tuple[float, float], detail: str) -> Judgement:
    """The verdict from the conditions' 'yes'/'no'/'unclear' (see the module's docstring)."""
    said = "; ".join(f"{name}: {answer}" for name, answer in conditions.items())
    detail = f"{said}. {detail}" if detail else said
    if len(seeds) < MIN_SEEDS:
        verdict = "inconclusive"
        detail = f"only {len(seeds)} seed(s), {MIN_SEEDS} needed. " + detail
    elif any(a == "no" for a in conditions.values()):
        verdict = "not replicated"
    elif all(a == "yes" for a in conditions.values()):
        verdict = "replicated"
    else:
        verdict = "inconclusive"
    return Judgement(verdict, value, ci[0], ci[1], sorted(int(s) for s in seeds), detail)


def layers_of(columns: Iterable[str], metric: str) -> list[str]:
    """The layers that have ``metric/<layer>`` columns, shallow first: embedding, block0…, head
    (other names in natural order between them)."""
    names = [c.split("/", 1)[1] for c in columns if isinstance(c, str) and c.startswith(metric + "/")]

    def key(name: str):
        digits = re.findall(r"\d+", name)
        rank = 0 if name == "embedding" else 2 if name == "head" else 1
        return rank, re.sub(r"\d+", "", name), int(digits[-1]) if digits else -1

    return sorted(set(names), key=key)


def last_probe(w: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per run, the row of the last step at which ``column`` was measured."""
    have = w[w[column].notna()] if column in w else w.iloc[0:0]
    return have.sort_values("step").groupby("run_id").tail(1)


# ------------------------------------------------------------------------------------------- M0
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


@claim("M0", experiment="m0_early_bimodal", source=f"{SOURCE} §4 (update distributions over training)",
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


# ------------------------------------------------------------------------------------------- M1
@claim("M1", experiment="m1_iid_gradients", source=f"{SOURCE} §3-4",
       statement="Gradients independent over time give a unimodal update distribution",
       metric="std(r) / sqrt((1-b1)/(1+b1)) at the last probe, i.i.d. N(0, 1) gradients on 1e5 coordinates "
              "(mean over seeds, t interval); beside it the dip test p and the fraction |r| > 0.9",
       threshold="std ratio in [0.95, 1.05]; dip p > 0.05; fraction < 0.01 (each by its interval over seeds)")
def m1(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["optimizer.b1"])
    layers = layers_of(w.columns, "r_std")
    rows = last_probe(w, f"r_std/{layers[0]}") if layers else w.iloc[0:0]
    ratio, dip_p, frac, seeds = [], [], [], []
    for _, r in rows.iterrows():
        expected = math.sqrt((1 - r["optimizer.b1"]) / (1 + r["optimizer.b1"]))
        rs = [r[f"r_std/{layer}"] / expected for layer in layers]
        ratio.append(max(rs, key=lambda x: abs(x - 1)))  # the layer farthest from the formula
        dip_p.append(min(r.get(f"r_dip_p/{layer}", float("nan")) for layer in layers))
        frac.append(max(r[f"r_frac_sign/{layer}"] for layer in layers))
        seeds.append(int(r["seed"]))
    conditions = {
        f"std ratio in [{1 - M1_STD_TOL:g}, {1 + M1_STD_TOL:g}]": inside(ratio, 1 - M1_STD_TOL, 1 + M1_STD_TOL),
        f"dip p > {M1_DIP_P:g}": side(dip_p, M1_DIP_P, above=True) if all(map(math.isfinite, dip_p))
        else "unclear",
        f"fraction |r| > {SIGN:g} < {M1_FRAC:g}": side(frac, M1_FRAC, above=False),
    }
    detail = (f"per seed {seeds}: std ratio {[round(x, 4) for x in ratio]}, dip p {[round(x, 3) for x in dip_p]}"
              f"{' (no dip test: diptest not installed)' if not all(map(math.isfinite, dip_p)) else ''}, "
              f"fraction |r| > {SIGN:g} {[f'{x:.1e}' for x in frac]}")
    value = float(np.mean(ratio)) if ratio else None
    return combine(conditions, sorted(set(seeds)), value, t_interval(ratio), detail)


# ------------------------------------------------------------------------------------------- M2
def rises(values: Sequence[float]) -> bool:
    """Never falls, and ends higher than it starts."""
    v = np.asarray(values, dtype=float)
    return bool(len(v) >= 2 and np.all(np.diff(v) >= 0) and v[-1] > v[0])


@claim("M2", experiment="m2_correlated_gradients", source=f"{SOURCE} §3-4",
       statement="Time-correlated gradients make the update distribution bimodal near +-1 (sign descent), "
                 "more so as the per-coordinate signal-to-noise ratio grows",
       metric="fraction |r| > 0.9 at SNR >= 3 (its minimum over SNR 3 and 10; mean over seeds, t interval), "
              "gradients = fixed +-1 signal + N(0, 1/SNR^2) noise on 1e5 coordinates; beside it, whether mean |r| "
              "and the fraction rise with SNR (0.3, 1, 3, 10) in every seed",
       threshold="both rise monotonically in every seed; fraction > 0.9 at SNR >= 3")
def m2(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["data.snr"])
    layers = layers_of(w.columns, "r_frac_sign")
    rows = last_probe(w, f"r_frac_sign/{layers[0]}") if layers else w.iloc[0:0]
    high, mono, seeds, table = [], [], [], {}
    for seed, g in rows.groupby("seed"):
        g = g.sort_values("data.snr")
        snr = g["data.snr"].to_numpy(dtype=float)
        if len(snr) < 3 or not (snr >= M2_HIGH_SNR).any():
            continue  # an incomplete sweep: this seed cannot be judged
        frac = np.min([g[f"r_frac_sign/{layer}"].to_numpy(dtype=float) for layer in layers], axis=0)
        absr = np.min([g[f"r_abs_mean/{layer}"].to_numpy(dtype=float) for layer in layers], axis=0) \
            if all(f"r_abs_mean/{layer}" in g for layer in layers) else np.full(len(snr), np.nan)
        seeds.append(int(seed))
        mono.append(rises(frac) and rises(absr))
        high.append(float(frac[snr >= M2_HIGH_SNR].min()))
        for s, f, a in zip(snr, frac, absr):
            table.setdefault(float(s), []).append((f, a))
    conditions = {"mean |r| and fraction rise with SNR in every seed": every_seed(mono),
                  f"fraction |r| > {SIGN:g} at SNR >= {M2_HIGH_SNR:g} above {M2_FRAC:g}":
                      side(high, M2_FRAC, above=True)}
    detail = "mean over seeds by SNR (fraction |r| > 0.9 / mean |r|): " + "; ".join(
        f"{s:g}: {np.mean([x[0] for x in v]):.3f} / {np.mean([x[1] for x in v]):.3f}" for s, v in sorted(table.items()))
    value = float(np.mean(high)) if high else None
    return combine(conditions, seeds, value, t_interval(high), detail)
