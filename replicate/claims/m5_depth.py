"""M5 (Molybog et al. 2023, arXiv 2304.09871, §4-5): shallow layers reach the stalled regime
(√v̂ about ε, M4) first, more so in deeper models. On the tiny GPT at depth 2, 4, 8 in the imitated
regime; the judge reads ``grad_rms`` and ``frac_sqrtv_below_eps`` per layer, averaged over the
probe steps of the last third of each run (``frames.late``); conditions decided over seeds
(``verdicts.combine``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import t_interval
from .frames import deepest_block, late, layers_of, wide
from .registry import Judgement, claim
from .verdicts import combine, every_seed, in_regime

SOURCE = "Molybog et al. 2023 (arXiv 2304.09871)"
# premise (CLAIMS.md): at the largest depth some layer has sqrt(v_hat) < eps in >= 10% of its coordinates
M5_PREMISE = 0.1


@claim("M5", experiment="m5_depth", figures=["grad_rms"],
       source=f"{SOURCE} §4-5",
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
    held, reached_at = {}, {}
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
        top_frac = table[int(g["model.depth"].max())][-1][3]  # this seed's highest fraction at the largest depth
        reached_at[int(seed)] = float(top_frac)
        held[int(seed)] = bool(np.isfinite(top_frac) and top_frac >= M5_PREMISE)
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
    j = combine(conditions, seeds, value, t_interval(rel), detail)
    reached = ("at the largest depth the highest per-layer fraction sqrt(v_hat) < eps is "
               + ("/".join(f"{x:.0%}" for x in reached_at.values()) if reached_at else "not measured")
               + f" (seeds {list(reached_at)}) over the last third of each run (premise: >= {M5_PREMISE:.0%})")
    return in_regime(j, held, reached)
