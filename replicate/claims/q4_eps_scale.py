"""Q4 (open question of CLAIMS.md): does ε relative to each layer's gradient scale, rather than ε
itself, predict stalling across model sizes, one curve for all?

Where a layer's √v̂ is about s everywhere, ‖u‖/‖r‖ = ‖m̂/(√v̂+ε)‖ / ‖m̂/√v̂‖ ≈ s/(s+ε) = 1/(1+ε/s):
a single curve of x = ε/s that falls to ½ at x = 1, whatever the model (Molybog et al. 2023,
arXiv 2304.09871 §4-5; Wortsman et al. 2023, arXiv 2309.14322 on ε against the gradient RMS).
The judge pools, per seed, one point per (run, layer): y = ``u_over_r/<layer>``, with three
candidates for x: ε alone, ε / ``grad_rms/<layer>`` (this step's gradient RMS) and
ε / ``sqrtv_rms/<layer>`` (√mean v̂, the scale ε is added to), each averaged over the probes of
the last third of the run (``stalling.late``). How well one curve fits: R² of a decreasing
isotonic (monotone) regression of y on log x (tied x pooled first, so ε alone, with few distinct
values, is fitted by its group means), and Spearman's ρ; where the fitted curve crosses
‖u‖/‖r‖ = ½ (log-linear interpolation). Intervals over seeds stay in their quantity's range: R²
(in [0, 1]: a monotone fit is never worse than the constant) and ρ (in [-1, 1]) by the percentile
bootstrap over seeds (``stats.bootstrap_interval``, inside the seeds' range); the crossing x (> 0)
by a t interval of log x, exponentiated (never a negative x). Verdict
``answered`` (no pass/fail), ``inconclusive`` with fewer than MIN_SEEDS seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..stats import bootstrap_interval, spearman, t_interval
from .frames import late, layers_of, wide
from .registry import Judgement, claim
from .verdicts import answered

STATEMENT = "Does eps relative to each layer's gradient RMS, rather than eps itself, predict stalling across sizes?"
CANDIDATES = {"eps": None, "eps/grad_rms": "grad_rms", "eps/sqrtv_rms": "sqrtv_rms"}


def points(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, layer): seed, eps, size, y = u_over_r, grad_rms, sqrtv_rms (late means)."""
    keys = [k for k in ("optimizer.eps", "model.hidden", "model.width", "model.depth") if k in runs.columns]
    w = wide(metrics, runs, keys=keys)
    layers = layers_of(w.columns, "u_over_r")
    if not layers:
        return pd.DataFrame(columns=["run_id", "seed", "eps", "size", "layer", "y", "grad_rms", "sqrtv_rms"])
    per_run = late(w, f"u_over_r/{layers[0]}")
    rows = []
    for _, r in per_run.iterrows():
        size = " ".join(f"{k.split('.')[-1]}={r[k]}" for k in keys if k != "optimizer.eps")
        for layer in layers:
            rows.append({"run_id": r["run_id"], "seed": int(r["seed"]), "eps": float(r["optimizer.eps"]),
                         "size": size, "layer": layer, "y": r.get(f"u_over_r/{layer}", np.nan),
                         "grad_rms": r.get(f"grad_rms/{layer}", np.nan),
                         "sqrtv_rms": r.get(f"sqrtv_rms/{layer}", np.nan)})
    return pd.DataFrame(rows)


def monotone_fit(logx: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decreasing isotonic regression of y on logx, tied logx pooled first (weighted by count).
    Returns (the distinct sorted logx, the fitted curve there, the fitted value of every point)."""
    from scipy.optimize import isotonic_regression

    key = np.round(logx, 9)
    ux, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    fit = isotonic_regression(means, weights=counts.astype(float), increasing=False).x
    return ux, fit, fit[inverse]


def crossing(ux: np.ndarray, fit: np.ndarray, level: float = 0.5) -> float:
    """x where the decreasing fitted curve first falls to ``level`` (log-linear interpolation); NaN
    when it never crosses within the measured range."""
    below = np.nonzero(fit <= level)[0]
    if len(below) == 0 or below[0] == 0:
        return float("nan")
    i = below[0]
    x0, x1, y0, y1 = ux[i - 1], ux[i], fit[i - 1], fit[i]
    t = (y0 - level) / (y0 - y1) if y0 != y1 else 0.0
    return float(math.exp(x0 + t * (x1 - x0)))


def fit_seed(p: pd.DataFrame, candidate: str) -> dict:
    """R², Spearman ρ and the ½ crossing of one seed's points for x = ``candidate``."""
    scale = CANDIDATES[candidate]
    x = p["eps"].to_numpy(float) / (p[scale].to_numpy(float) if scale else 1.0)
    y = p["y"].to_numpy(float)
    ok = np.isfinite(x) & (x > 0) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < 3 or np.var(y) == 0:
        return {"r2": float("nan"), "rho": float("nan"), "x50": float("nan"), "n": int(len(y))}
    ux, curve, fitted = monotone_fit(np.log(x), y)
    r2 = 1 - float(np.sum((y - fitted) ** 2)) / float(np.sum((y - y.mean()) ** 2))
    return {"r2": r2, "rho": spearman(x, y), "x50": crossing(ux, curve), "n": int(len(y))}


def _finite(values: list[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def interval(values: list[float], log: bool = False) -> tuple[float, float, float]:
    """(value, low, high) over seeds: the mean and its percentile bootstrap interval (R², ρ: inside
    the seeds' range, so inside [0, 1] and [-1, 1]); with ``log`` (a positive x) the geometric mean
    and the t interval of log x, exponentiated. NaN without finite values (an interval: fewer than 2)."""
    x = _finite(values)
    if log:
        x = [math.log(v) for v in x if v > 0]
        if not x:
            return float("nan"), float("nan"), float("nan")
        lo, hi = t_interval(x)
        return math.exp(float(np.mean(x))), math.exp(lo) if math.isfinite(lo) else lo, \
            math.exp(hi) if math.isfinite(hi) else hi
    if not x:
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_interval(x)
    return float(np.mean(x)), lo, hi


def _fmt(values: list[float], digits: int = 3, log: bool = False) -> str:
    mean, lo, hi = interval(values, log=log)
    return f"{mean:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


@claim("Q4", experiment="q4_eps_scale", figures=["grad_rms"],
       source="open question (CLAIMS.md)", statement=STATEMENT,
       metric="R^2 of one decreasing (isotonic) curve of ||u||/||r|| against log(eps / grad_rms) pooled over every "
              "layer of every model size and eps (mean over seeds, bootstrap interval over seeds); beside it the "
              "same for x = eps alone and x = eps / RMS sqrt(v_hat), Spearman rho, and the x where the curve falls to 0.5",
       threshold="none (answered with the measured fit)")
def q4(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    pts = points(metrics, runs)
    seeds = sorted(int(s) for s in pts["seed"].unique()) if len(pts) else []
    fits = {c: [fit_seed(pts[pts["seed"] == s], c) for s in seeds] for c in CANDIDATES}
    r2 = {c: [f["r2"] for f in v] for c, v in fits.items()}
    main = "eps/grad_rms"
    value, lo, hi = interval(r2[main])
    value = value if seeds and math.isfinite(value) else None
    best = max(CANDIDATES, key=lambda c: np.nanmean(r2[c]) if seeds else -1)
    sizes = sorted(set(pts["size"])) if len(pts) else []
    detail = (f"{len(pts)} points (run x layer) from {len(sizes)} model sizes ({'; '.join(sizes)}) and eps "
              f"{sorted(set(pts['eps'])) if len(pts) else []}, seeds {seeds}. "
              + "; ".join(f"x = {c}: R^2 {_fmt(r2[c])}, Spearman rho {_fmt([f['rho'] for f in fits[c]])}, "
                          f"||u||/||r|| = 0.5 at x = {_fmt([f['x50'] for f in fits[c]], log=True)} (geometric mean)"
                          for c in CANDIDATES)
              + f". Best single variable: {best}. R^2 per seed: "
              + "; ".join(f"{c} {[round(v, 3) for v in r2[c]]}" for c in CANDIDATES))
    return answered(seeds, value, (lo, hi), detail)
