"""Molybog et al. 2023 (arXiv 2304.09871): layers whose √v̂ falls to about ε stall, shallow ones first.

M4: where √v̂ ≈ ε the update u = m̂/(√v̂+ε) collapses while r = m̂/√v̂ does not (the embedding
stalls, the deepest block does not); M5: shallow layers reach that regime first, more so in deeper
models. Both on the tiny GPT in the imitated regime (ε raised relative to the gradients). The
judges read ``u_over_r``, ``eps_damping``, ``grad_rms`` and ``frac_sqrtv_below_eps`` per layer
(``replicate.probes``), averaged over the probe steps of the last part of each run (``late``).
Conditions and verdicts as in ``update_distribution`` (t intervals over seeds; every seed for a
per-seed yes/no property).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import Judgement, claim, t_interval, wide
from .update_distribution import combine, every_seed, layers_of, side

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# M4 (CLAIMS.md): embedding ||u||/||r|| < 0.1 while the deepest block's > 0.5; ||u||/||r|| within 10% of
# the mean of sqrt(v_hat)/(sqrt(v_hat)+eps), in both of those layers
M4_STALLED, M4_ACTIVE, M4_TOL = 0.1, 0.5, 0.1
LATE = 1 / 3  # the probe steps in the last third of a run (steps >= 2/3 of its last probe step)


def late(w: pd.DataFrame, column: str, fraction: float = LATE) -> pd.DataFrame:
    """Per run, the mean of every column over the probe steps (rows where ``column`` is measured)
    in the last ``fraction`` of the run: one row per run, with its seed and config keys."""
    have = w[w[column].notna()] if column in w else w.iloc[0:0]
    last = have.groupby("run_id")["step"].transform("max")
    tail = have[have["step"] >= (1 - fraction) * last]
    keys = [c for c in tail.columns if c == "seed" or "." in c]  # config keys are dotted, metrics not
    numeric = [c for c in tail.columns if c not in keys and c not in ("run_id", "status")
               and pd.api.types.is_numeric_dtype(tail[c])]
    means = tail[["run_id", *numeric]].groupby("run_id").mean()
    return means.join(tail[["run_id", *keys]].groupby("run_id").first()).reset_index()


def deepest_block(layers: list[str]) -> str | None:
    blocks = [x for x in layers if x.startswith("block")]
    return blocks[-1] if blocks else None


# ------------------------------------------------------------------------------------------- M4
@claim("M4", experiment="m4_stall", source=f"{SOURCE} §4-5",
       statement="Where sqrt(v_hat) falls to about eps the update u collapses while r does not: the layer stalls",
       metric="embedding ||u||/||r|| on the tiny GPT in the imitated regime (eps = 1e-3), mean over the last "
              "third of each run (mean over seeds, t interval); beside it the deepest block's, and |(||u||/||r||) / "
              "mean sqrt(v)/(sqrt(v)+eps) - 1| in both layers",
       threshold="embedding < 0.1 while deepest block > 0.5; within 10% of mean sqrt(v)/(sqrt(v)+eps)")
def m4(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["optimizer.eps"])
    layers = layers_of(w.columns, "u_over_r")
    deep = deepest_block(layers)
    if "embedding" not in layers or deep is None:
        return combine({"an embedding and a block measured": "no"}, [], None, (np.nan, np.nan),
                       f"layers with u_over_r: {layers}")
    per_run = late(w, "u_over_r/embedding")
    emb = per_run["u_over_r/embedding"].to_numpy(dtype=float)
    dee = per_run[f"u_over_r/{deep}"].to_numpy(dtype=float)
    dev = np.max([np.abs(per_run[f"u_over_r/{x}"] / per_run[f"eps_damping/{x}"] - 1).to_numpy(dtype=float)
                  for x in ("embedding", deep)], axis=0)
    conditions = {f"embedding ||u||/||r|| < {M4_STALLED:g}": side(emb, M4_STALLED, above=False),
                  f"{deep} ||u||/||r|| > {M4_ACTIVE:g}": side(dee, M4_ACTIVE, above=True),
                  f"within {M4_TOL:.0%} of mean sqrt(v)/(sqrt(v)+eps)": side(dev, M4_TOL, above=False)}
    mean = per_run.mean(numeric_only=True)
    order = sorted(layers, key=lambda x: mean[f"u_over_r/{x}"])
    detail = ("means over seeds, layer: ||u||/||r|| / mean sqrt(v)/(sqrt(v)+eps) / fraction sqrt(v) < eps / grad RMS: "
              + "; ".join(f"{x}: {mean[f'u_over_r/{x}']:.3f} / {mean[f'eps_damping/{x}']:.3f} / "
                          f"{mean[f'frac_sqrtv_below_eps/{x}']:.2f} / {mean[f'grad_rms/{x}']:.1e}" for x in layers)
              + f". Most stalled (lowest ||u||/||r||) first: {', '.join(order)}. "
              + f"std of r in the embedding {mean['r_std/embedding']:.3f} (r does not collapse). "
              + f"Relative deviation from the damping, per run: {[round(float(x), 3) for x in dev]}")
    return combine(conditions, sorted(set(per_run["seed"].astype(int))), float(np.mean(emb)), t_interval(emb), detail)


# ------------------------------------------------------------------------------------------- M5
@claim("M5", experiment="m5_depth", source=f"{SOURCE} §4-5",
       statement="Shallow layers reach the stalled regime (sqrt(v_hat) about eps) first, more so in deeper models",
       metric="per seed, (embedding grad RMS / deepest-block grad RMS) at the largest depth over that at the "
              "smallest (depth 2, 4, 8, width 64, tiny GPT, eps = 1e-3; last third of each run; mean over seeds, "
              "t interval): < 1 when the ratio falls with depth",
       threshold="the ratio falls monotonically with depth in every seed; the embedding has the highest fraction "
                 "sqrt(v) < eps at every depth in every seed")
def m5(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    w = wide(metrics, runs, keys=["model.depth"])
    per_run = late(w, "grad_rms/embedding")
    falls, first, rel, seeds, table = [], [], [], [], {}
    for seed, g in per_run.groupby("seed"):
        g = g.sort_values("model.depth")
        if g["model.depth"].nunique() < 3:
            continue  # an incomplete sweep: this seed cannot be judged
        ratios, highest = [], []
        for _, r in g.iterrows():
            layers = layers_of([c for c in g.columns if c.startswith("frac_sqrtv_below_eps/") and np.isfinite(r[c])],
                               "frac_sqrtv_below_eps")
            deep = deepest_block(layers)
            ratio = r["grad_rms/embedding"] / r[f"grad_rms/{deep}"]
            frac = {x: r[f"frac_sqrtv_below_eps/{x}"] for x in layers}
            top = max(frac, key=frac.get)
            ratios.append(ratio)
            highest.append(frac["embedding"] >= frac[top])
            table.setdefault(int(r["model.depth"]), []).append((ratio, frac["embedding"], top, frac[top]))
        seeds.append(int(seed))
        falls.append(bool(np.all(np.diff(ratios) < 0)))
        first.append(all(highest))
        rel.append(ratios[-1] / ratios[0])
    conditions = {"ratio falls with depth in every seed": every_seed(falls),
                  "embedding has the highest fraction sqrt(v) < eps at every depth, every seed": every_seed(first)}
    detail = (f"seeds judged {seeds}: the ratio falls with depth in {sum(falls)}, the embedding has the highest "
              f"fraction at every depth in {sum(first)}; by depth, means over seeds: embedding/deepest-block grad "
              "RMS; fraction sqrt(v) < eps in the embedding; "
              "the layer with the highest fraction (most often): " + "; ".join(
                  f"depth {d}: {np.mean([x[0] for x in v]):.2f}; {np.mean([x[1] for x in v]):.2f}; "
                  f"{max(set(x[2] for x in v), key=[x[2] for x in v].count)} ({np.mean([x[3] for x in v]):.2f})"
                  for d, v in sorted(table.items())))
    value = float(np.mean(rel)) if rel else None
    return combine(conditions, seeds, value, t_interval(rel), detail)
