"""T1 (Thilak et al. 2022, arXiv 2206.04817): the Slingshot, cyclic late-training loss spikes of adaptive
optimizers without regularisation, each after a rapid growth of the last layer's weight norm.

Pending: the experiment ``conf/experiment/t1_slingshot.yaml`` is not written yet, so the scorecard shows
T1 as ``not run (no experiment yet)``. Its judge goes here, named like the experiment. Texts copied
from CLAIMS.md.
"""

from __future__ import annotations

from .registry import pending

pending("T1", source="Thilak et al. 2022 (arXiv 2206.04817)",
        statement=("Without regularisation, adaptive optimizers show cyclic late-training loss "
                   "spikes, each preceded by rapid growth of the last layer's weight norm; SGD shows "
                   "none, and a larger ε suppresses them"),
        metric=("modular addition (p ≈ 50-100, half the pairs for training), a network with an "
                "embedding (MLP or 1-2 blocks), full batch, Adam without weight decay, fp32, ≥ 20k "
                "steps; last-layer weight norm every step"),
        threshold=("Adam spikes (R100) after its loss fell below 1e-5 in every seed; ≥ 80% of those "
                   "spikes have the last-layer norm's growth rate over the 500 steps before ≥ 2× its "
                   "rate over the 2000 steps before that; SGD with momentum and Adam with ε = 1e-4 "
                   "have none over the same steps"))
