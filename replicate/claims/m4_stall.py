"""M4 (Molybog et al. 2023, arXiv 2304.09871, §4-5): where √v̂ falls to about ε the update
u = m̂/(√v̂+ε) collapses while r = m̂/√v̂ does not: the layer stalls (the embedding stalls, the
deepest block does not). On the tiny GPT in the imitated regime (ε raised relative to the
gradients). The judge reads ``u_over_r``, ``eps_damping``, ``grad_rms`` and ``frac_sqrtv_below_eps``
per layer (``replicate.probes``), averaged over the probe steps of the last third of each run
(``frames.late``); conditions decided over seeds (``verdicts.combine``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import t_interval
from .frames import deepest_block, late, layers_of, wide
from .registry import Judgement, claim
from .verdicts import combine, in_regime, side

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# M4 (CLAIMS.md): embedding ||u||/||r|| < 0.1 while the deepest block's > 0.5; ||u||/||r|| within 10% of
# the mean of sqrt(v_hat)/(sqrt(v_hat)+eps), in both of those layers
M4_STALLED, M4_ACTIVE, M4_TOL = 0.1, 0.5, 0.1
# premise (CLAIMS.md): the embedding has sqrt(v_hat) < eps in >= 50% of its coordinates over the judged window
M4_PREMISE = 0.5


@claim("M4", experiment="m4_stall", figures=["grad_rms"],
       source=f"{SOURCE} §4-5",
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
    j = combine(conditions, sorted(set(per_run["seed"].astype(int))), float(np.mean(emb)), t_interval(emb), detail)
    col = "frac_sqrtv_below_eps/embedding"
    held, fracs = {}, {}
    for seed, g in per_run.groupby("seed"):
        f = g[col].to_numpy(dtype=float) if col in g else np.array([np.nan])
        fracs[int(seed)] = float(np.min(f))
        held[int(seed)] = bool(np.all(np.isfinite(f)) and np.all(f >= M4_PREMISE))
    reached = ("embedding sqrt(v_hat) < eps in " + "/".join(
        "not logged" if not np.isfinite(x) else f"{x:.0%}" for x in fracs.values())
        + f" of coordinates (seeds {list(fracs)}, lowest run per seed) over the last third of each run "
        f"(premise: >= {M4_PREMISE:.0%})")
    return in_regime(j, held, reached)
