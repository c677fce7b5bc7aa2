"""W2 (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
instabilities", arXiv 2309.14322, §3.1-3.2, Fig. 1): qk-layernorm (against attention-logit growth)
and z-loss (against output-logit divergence) lower the learning-rate sensitivity.

Per seed, the LR sensitivity (replicate/sensitivity.py: mean over the grid of min(L(η), L0) minus
the best, L the final loss, L0 the loss at init) of the plain tiny GPT and of the same GPT with
``model.qk_norm=true model.z_loss=1e-4``, over the same >= 5-point grid. The claim holds in a seed
when the sensitivity with them is lower; replicated when it holds in >= 2 of 3 seeds. The claim is
about high learning rates: its premise (CLAIMS.md) is that the plain model degrades at the top of
the grid, its final loss there (capped at L0; a diverged run counts as L0) >= 2x its best over the
grid, in every seed; otherwise ``out of regime`` (``verdicts.in_regime``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import sensitivity
from ..stats import bootstrap_interval
from .registry import Judgement, claim
from .verdicts import in_regime, judged

SOURCE = "Wortsman et al. 2023 (arXiv 2309.14322)"
W2_NEED = 2 / 3
MIN_LRS = 5
DEGRADED = 2.0  # premise: the plain model's capped final loss at the top of the grid >= 2x its best


def _arm(r: pd.Series) -> str:
    qk = bool(r.get("model.qk_norm", False))
    z = float(r.get("model.z_loss", 0.0) or 0.0)
    if qk and z > 0:
        return "qk_norm+z_loss"
    if not qk and z == 0:
        return "plain"
    return "other"


@claim("W2", experiment="w2_qk_norm", source=f"{SOURCE} §3",
       statement="At high learning rate, qk-layernorm and z-loss lower learning-rate sensitivity",
       metric=f"per seed: LR sensitivity (mean over a >= {MIN_LRS}-point grid of min(final loss, initial loss) "
              "- best) of a tiny GPT with qk_norm + z_loss 1e-4 below the plain GPT's; value = fraction of seeds",
       threshold=">= 2/3 of seeds (out of regime unless the plain GPT's final loss at the top of the grid is >= 2x "
                 "its best in every seed)")
def w2(metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement:
    per_run = sensitivity.run_losses(metrics).drop(columns="seed").merge(
        runs.assign(arm=runs.apply(_arm, axis=1))[["run_id", "seed", "arm", "optimizer.lr"]], on="run_id")
    per_run = per_run[per_run["arm"] != "other"]
    sens = sensitivity.table(per_run, by=["arm"], min_lrs=MIN_LRS)
    wide = sens.pivot_table(index="seed", columns="arm", values="lr_sensitivity")
    if not {"plain", "qk_norm+z_loss"} <= set(wide.columns):
        return Judgement("inconclusive", None, detail="needs both arms, plain and qk_norm+z_loss, on a grid "
                         f"of >= {MIN_LRS} learning rates")
    wide = wide.dropna(how="all").fillna(np.inf)  # an arm that trained at no lr: infinitely sensitive
    seeds = sorted(int(s) for s in wide.index)
    hits = {s: bool(wide.loc[s, "qk_norm+z_loss"] < wide.loc[s, "plain"]) for s in seeds}
    frac = [float(hits[s]) for s in seeds]
    value = float(np.mean(frac)) if frac else float("nan")
    lo, hi = bootstrap_interval(frac)

    # did the plain model degrade at the top of the grid (the "high learning rate" of the claim)?
    degraded, ratio = {}, {}
    plain = per_run[per_run["arm"] == "plain"]
    for s, g in plain.groupby("seed"):
        grid = g.groupby("optimizer.lr")["final_loss"].mean()
        init = float(g["init_loss"].mean())
        capped = grid.clip(upper=init)
        best = float(capped.min())
        ratio[int(s)] = float(capped.iloc[-1] / best) if best > 0 else float("nan")
        degraded[int(s)] = bool(np.isfinite(ratio[int(s)]) and ratio[int(s)] >= DEGRADED)
    n_degraded = sum(degraded.get(s, False) for s in seeds)

    verdict = judged(seeds, value >= W2_NEED)

    finals = per_run.groupby(["arm", "optimizer.lr"])["final_loss"].mean().unstack(0)
    detail = ("LR sensitivity per seed (plain / qk_norm+z_loss): "
              + "; ".join(f"{s}: {wide.loc[s, 'plain']:.3g} / {wide.loc[s, 'qk_norm+z_loss']:.3g}" for s in seeds)
              + "; mean final loss by lr (plain / qk_norm+z_loss): "
              + "; ".join(f"{lr:g}: {r.get('plain', np.nan):.3g} / {r.get('qk_norm+z_loss', np.nan):.3g}"
                          for lr, r in finals.iterrows())
              + f"; the plain GPT degrades at the top of the grid in {n_degraded} of {len(seeds)} seeds")
    held = {s: degraded.get(s, False) for s in seeds}
    reached = ("plain GPT's final loss at the top of the lr grid / its best over the grid (capped at the initial "
               "loss): " + "/".join("not measured" if not np.isfinite(ratio.get(s, np.nan)) else f"{ratio[s]:.2f}x"
                                    for s in seeds) + f" (seeds {seeds}; premise: >= {DEGRADED:g}x)")
    return in_regime(Judgement(verdict, value, lo, hi, seeds, detail), held, reached)
