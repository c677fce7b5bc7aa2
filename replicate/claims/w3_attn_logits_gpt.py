"""W3 (Wortsman et al. 2023, arXiv 2309.14322, §3.1): at high learning rate the attention logits of
a model without qk-layernorm grow until attention collapses, before the loss degrades.

Pending: the experiment ``conf/experiment/w3_attn_logits_gpt.yaml`` is not written yet, so the scorecard shows
W3 as ``not run (no experiment yet)``. Its judge goes here, named like the experiment. Texts copied
from CLAIMS.md.
"""

from __future__ import annotations

from .registry import pending

pending("W3", source="Wortsman et al. 2023 (arXiv 2309.14322) §3.1",
        statement=("At high learning rate the attention logits of a model without qk-layernorm grow "
                   "until attention collapses, and this precedes the loss degradation; qk-layernorm "
                   "keeps them bounded"),
        metric=("W2's tiny GPT and LR grid; per layer the largest attention logit (max over heads, "
                "positions) and the attention entropy"),
        threshold=("without qk-layernorm Spearman ρ(LR, final max logit) > 0.8 in every seed, and at "
                   "the top LR the max logit passes 10× its low-LR value before the loss rises; with "
                   "qk-layernorm the top-LR max logit is ≤ 1/10 of the plain model's"))
