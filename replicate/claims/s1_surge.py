"""Li et al. 2024 (arXiv 2405.14578) and Su Jianlin (kexue.fm 10542, 10563): the "surge" of the
optimal learning rate with the batch size.

For an update φ(g̃) of a minibatch gradient g̃ (mean g, covariance Σ/B) on a quadratic with
Hessian H, the learning rate that minimises the expected loss after a step is

    η*(B) = E[φ]ᵀg / tr(E[φφᵀ] H).

SGD (φ = g̃): η* = gᵀg / (gᵀHg + tr(HΣ)/B) only rises with B, to gᵀg/gᵀHg. Sign-like Adam
(φ ≈ sign g̃, E[φ_i] ≈ erf(g_i √B / (σ_i √2))): the numerator grows like √B, while the
off-diagonal part of the denominator, Σ_{i≠j} H_ij E[φ_i]E[φ_j], grows like B where H's
off-diagonal terms agree with the gradient's signs; η* rises, peaks near B_noise and falls to
gᵀsign(g) / sign(g)ᵀH sign(g). A large ε (u = m̂/(√v̂+ε) → m̂/ε) makes Adam SGD-like and flattens
the fall.

The judge reads a grid of runs (optimizer arm × batch size × learning rate × seed) on the noisy
quadratic (``model=noisy_quadratic``, ``data=gradient_noise``). Per run: the final loss, the mean
of the logged loss over the last ``TAIL`` of the steps (a diverged run counts as infinitely bad).
Per (arm, batch, seed): the optimal learning rate η*, the grid's best learning rate refined by
the vertex of the parabola through it and its two neighbours in (log η, log loss), kept between
those neighbours (the grid's end point where the best is at an end). The "drop" of a curve
η*(B) is max_B η*(B) / η*(B_largest): how far the optimum falls from its peak to the largest
batch (1 = no fall); the "rise" is max_B η*(B) / η*(B_smallest).

Intervals live where the quantity does: a drop is a ratio >= 1, so its interval is the t interval
over seeds of log drop, clipped at log 1 = 0 (``stats.mean_interval``), then exponentiated: the
geometric mean's interval, never below 1 (nor a negative learning rate). The η* curves in the detail
are geometric means over seeds (an average of learning rates taken on log η).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..stats import mean_interval
from .registry import Judgement, claim
from .verdicts import combine, every_seed, in_regime, side

SOURCE = "Li et al. 2024 (arXiv 2405.14578) §2-3; Su Jianlin (kexue.fm 10542, 10563)"
TAIL = 0.2  # the final loss: mean over the last 20% of the logged steps
# SGD's optimum counts as non-decreasing unless it falls by more than this factor between two
# neighbouring batches: the resolution of the refined optimum (a tenth of the grid's factor-2 step)
SGD_TOLERANCE = 0.9


def optimal_lr(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, bool]:
    """(η*, at_edge): the best learning rate of a grid, refined by the vertex of the parabola
    through (log η, log loss) at the best point and its two neighbours; at_edge when the best
    point is the grid's first or last (then η* is that point)."""
    order = np.argsort(lrs)
    grid = np.asarray(lrs, dtype=float)[order]
    x = np.log(grid)
    y = np.asarray(losses, dtype=float)[order]
    y = np.where(np.isfinite(y) & (y > 0), y, np.inf)
    k = int(np.argmin(y))
    if k == 0 or k == len(x) - 1 or not np.isfinite(y[k - 1:k + 2]).all():
        return float(grid[k]), k == 0 or k == len(x) - 1
    xs, ys = x[k - 1:k + 2], np.log(y[k - 1:k + 2])
    a, b, _ = np.polyfit(xs, ys, 2)
    vertex = -b / (2 * a) if a > 0 else x[k]
    return float(math.exp(min(max(vertex, xs[0]), xs[2]))), False


def final_losses(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its arm (optimizer name and eps), batch size, learning rate, seed and final loss."""
    loss = metrics[metrics["metric"] == "loss"]
    last = loss.groupby("run_id")["step"].transform("max")
    tail = loss[loss["step"] >= (1 - TAIL) * (last + 1)]
    final = tail.groupby("run_id")["value"].apply(lambda v: float(v.mean()) if np.isfinite(v).all() else np.inf)
    out = runs[["run_id", "seed", "status", "optimizer.name", "optimizer.lr", "data.batch_size"]].copy()
    out["eps"] = runs["optimizer.eps"] if "optimizer.eps" in runs else np.nan
    out["final_loss"] = out["run_id"].map(final).fillna(np.inf)
    out.loc[out["status"] == "diverged", "final_loss"] = np.inf
    out["arm"] = [n if n != "adam" else f"adam eps={e:g}" for n, e in zip(out["optimizer.name"], out["eps"])]
    return out


def optima(table: pd.DataFrame) -> pd.DataFrame:
    """η* per (arm, batch size, seed), with the flag ``at_edge``."""
    rows = []
    for (arm, batch, seed), g in table.groupby(["arm", "data.batch_size", "seed"]):
        lr, edge = optimal_lr(g["optimizer.lr"].to_numpy(float), g["final_loss"].to_numpy(float))
        rows.append({"arm": arm, "batch": int(batch), "seed": int(seed), "lr": lr, "at_edge": edge})
    return pd.DataFrame(rows, columns=["arm", "batch", "seed", "lr", "at_edge"])


def curve_stats(lrs: np.ndarray) -> dict:
    """Of η*(B) over increasing batches: peak position, rise, drop, non-decreasing (with tolerance)."""
    k = int(np.argmax(lrs))
    return {"peak": k, "interior": 0 < k < len(lrs) - 1, "rise": lrs[k] / lrs[0], "drop": lrs[k] / lrs[-1],
            "monotone": bool(np.all(lrs[1:] >= SGD_TOLERANCE * lrs[:-1]))}


@claim("S1", experiment="s1_surge", source=SOURCE,
       statement="For sign-like Adam the optimal learning rate first rises then falls as the batch grows "
                 "(the surge); for SGD it only rises; a larger eps flattens the surge toward SGD",
       metric="drop of Adam's (eps = 1e-8) optimal LR from its peak to the largest batch, max_B eta*(B) / "
              "eta*(B_max), on a noisy quadratic with sign-aligned off-diagonal curvature (geometric mean over "
              "seeds, t interval of log drop clipped at 0, exponentiated: never below 1); eta* = best of an LR grid "
              "refined by a parabola in (log lr, log final loss)",
       threshold="Adam's eta* peaks at an interior batch in every seed, with rise and drop intervals above 1; "
                 "SGD's eta* non-decreasing in every seed (falls under 10% ignored); drop(small eps) > "
                 "drop(large eps) (t interval of the log ratio above 0)")
def s1(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    opt = optima(final_losses(metrics, runs))
    adams = sorted({a for a in opt["arm"] if a.startswith("adam")}, key=lambda a: float(a.split("=")[1]))
    if "sgd" not in set(opt["arm"]) or len(adams) < 2 or opt["batch"].nunique() < 3:
        return combine({"an SGD arm, two Adam eps arms and >= 3 batch sizes": "no"}, [], None, (np.nan, np.nan),
                       f"arms {sorted(set(opt['arm']))}, batches {sorted(set(opt['batch']))}")
    small, large = adams[0], adams[-1]
    batches = sorted(set(opt["batch"]))
    stats: dict[str, dict[int, dict]] = {}
    curves: dict[str, dict[int, np.ndarray]] = {}
    for (arm, seed), g in opt.groupby(["arm", "seed"]):
        g = g.set_index("batch").reindex(batches)
        if g["lr"].isna().any():
            continue  # an incomplete grid: this seed cannot be judged for this arm
        curves.setdefault(arm, {})[int(seed)] = g["lr"].to_numpy(float)
        stats.setdefault(arm, {})[int(seed)] = curve_stats(g["lr"].to_numpy(float))
    seeds = sorted(set.intersection(*(set(stats.get(a, {})) for a in ("sgd", small, large))))
    s_small = [stats[small][s] for s in seeds]
    s_large = [stats[large][s] for s in seeds]
    log_drop = [math.log(x["drop"]) for x in s_small]
    log_rise = [math.log(x["rise"]) for x in s_small]
    shrink = [math.log(a["drop"]) - math.log(b["drop"]) for a, b in zip(s_small, s_large)]
    conditions = {
        f"{small}: peak at an interior batch in every seed": every_seed(x["interior"] for x in s_small),
        f"{small}: rises to the peak (log rise > 0)": side(log_rise, 0.0, above=True),
        f"{small}: falls after it (log drop > 0)": side(log_drop, 0.0, above=True),
        "sgd: non-decreasing in every seed": every_seed(stats["sgd"][s]["monotone"] for s in seeds),
        f"drop shrinks from {small} to {large} (log ratio > 0)": side(shrink, 0.0, above=True),
    }
    _, lo, hi = mean_interval(log_drop, bounds=(0.0, math.inf))  # log drop >= 0: drop = peak / last >= 1
    edges = opt[opt["at_edge"]].groupby("arm").size().to_dict()
    detail = (f"batches {batches}; eta* per batch, geometric mean over seeds {seeds}: " + "; ".join(
        f"{arm}: " + ", ".join(f"{v:.3g}" for v in np.exp(np.mean([np.log(curves[arm][s]) for s in seeds], axis=0)))
        for arm in ("sgd", *adams)) +
        f". Drop (peak / largest batch) per seed: {small} {[round(float(x['drop']), 2) for x in s_small]}, "
        f"{large} {[round(float(x['drop']), 2) for x in s_large]}; rise (peak / smallest batch) {small} "
        f"{[round(float(x['rise']), 2) for x in s_small]}; peak batch {small} "
        f"{[batches[x['peak']] for x in s_small]}, {large} {[batches[x['peak']] for x in s_large]}; "
        f"sgd non-decreasing per seed {[stats['sgd'][s]['monotone'] for s in seeds]}. "
        f"Optima at the grid's edge (arm: count): {edges or 'none'}")
    value = float(math.exp(np.mean(log_drop))) if log_drop else None
    j = combine(conditions, seeds, value, (math.exp(lo), math.exp(hi)) if np.isfinite(lo) else (lo, hi), detail)
    # premise (CLAIMS.md): Adam's and SGD's optimal learning rates inside the grid at every batch size
    judged_arms = ("sgd", small, large)
    inner = opt[opt["arm"].isin(judged_arms)]
    n_edge = {s: int(inner[inner["seed"] == s]["at_edge"].sum()) for s in seeds}
    held = {s: n_edge[s] == 0 and len(inner[inner["seed"] == s]) == len(judged_arms) * len(batches) for s in seeds}
    reached = ("optima at the lr grid's edge (arms " + ", ".join(judged_arms) + f" x {len(batches)} batches): "
               + "/".join(str(n_edge[s]) for s in seeds) + f" (seeds {seeds}; premise: 0, every optimum interior)")
    return in_regime(j, held, reached)
