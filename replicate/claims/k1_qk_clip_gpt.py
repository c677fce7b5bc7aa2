"""K1 (Kimi K2, arXiv 2507.20534, QK-Clip): clipping each head's max attention logit at τ by
rescaling W_q and W_k holds it there without costing loss; Muon's logits grow faster than AdamW's.

Pending: the experiment ``conf/experiment/k1_qk_clip_gpt.yaml`` is not written yet, so the scorecard shows
K1 as ``not run (no experiment yet)``. Its judge goes here, named like the experiment. Texts copied
from CLAIMS.md.
"""

from __future__ import annotations

from .registry import pending

pending("K1", source="Kimi K2 (arXiv 2507.20534), QK-Clip",
        statement=("QK-Clip (after a step, any head whose max logit S exceeds τ gets W_q and W_k "
                   "scaled by √(τ/S)) holds the max logit at τ without costing loss; Muon's logits "
                   "grow faster than AdamW's"),
        metric=("the same GPT at the top of the grid, τ set below the plain model's max (state how), "
                "AdamW and Muon"),
        threshold=("max logit ≤ 1.05 τ at every probe after the first clip in every seed; final loss "
                   "no more than 1% above the unclipped run's (or lower); Muon's max logit above "
                   "AdamW's at the same step in ≥ 2 of 3 seeds (reported beside)"))
