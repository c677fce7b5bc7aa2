"""W2 (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
instabilities", arXiv 2309.14322, §3.1-3.2, Fig. 1): qk-layernorm (against attention-logit growth)
and z-loss (against output-logit divergence) lower the learning-rate sensitivity.

Per seed, the LR sensitivity (replicate/sensitivity.py: mean over the grid of min(L(η), L0) minus
the best, L the final loss, L0 the loss at init) of the plain tiny GPT and of the same GPT with
``model.qk_norm=true model.z_loss=1e-4``, over the same >= 5-point grid. The claim holds in a seed
when the sensitivity with them is lower; replicated when it holds in >= 2 of 3 seeds. The claim is
about high learning rates: when the grid never reaches an η where the plain model degrades
(capped loss at the largest η more than 10% of the way from its best back to L0) in at least
2 seeds, the verdict is ``inconclusive``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import sensitivity
from ..stats import bootstrap_interval
from .registry import Judgement, claim
from .verdicts import judged

SOURCE = "Wortsman et al. 2023 (arXiv 2309.14322)"
W2_NEED = 2 / 3
MIN_LRS = 5
DEGRADED = 0.1  # the plain model degrades at the top of the grid: capped loss > best + 0.1 (L0 - best)


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
       threshold=">= 2/3 of seeds (inconclusive if the plain GPT does not degrade at the top of the grid)")
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
    degraded = {}
    plain = per_run[per_run["arm"] == "plain"]
    for s, g in plain.groupby("seed"):
        grid = g.groupby("optimizer.lr")["final_loss"].mean()
        init = float(g["init_loss"].mean())
        capped = grid.clip(upper=init)
        best = float(capped.min())
        degraded[int(s)] = bool(capped.iloc[-1] - best > DEGRADED * (init - best))
    n_degraded = sum(degraded.get(s, False) for s in seeds)

    verdict = judged(seeds, value >= W2_NEED, unclear=n_degraded < 2)  # unclear: the grid never reached a high LR

    finals = per_run.groupby(["arm", "optimizer.lr"])["final_loss"].mean().unstack(0)
    detail = ("LR sensitivity per seed (plain / qk_norm+z_loss): "
              + "; ".join(f"{s}: {wide.loc[s, 'plain']:.3g} / {wide.loc[s, 'qk_norm+z_loss']:.3g}" for s in seeds)
              + "; mean final loss by lr (plain / qk_norm+z_loss): "
              + "; ".join(f"{lr:g}: {r.get('plain', np.nan):.3g} / {r.get('qk_norm+z_loss', np.nan):.3g}"
                          for lr, r in finals.iterrows())
              + f"; the plain GPT degrades at the top of the grid in {n_degraded} of {len(seeds)} seeds"
              + ("" if n_degraded >= 2 else " (too few: the grid does not reach a high learning rate)"))
    return Judgement(verdict, value, lo, hi, seeds, detail)
