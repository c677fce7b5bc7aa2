"""H1 (Marek et al. 2025, arXiv 2507.07101): β2 held fixed makes small batches unstable; β2 scaled
to a fixed half-life in tokens does not.

Pending: the experiment ``conf/experiment/h1_beta2_halflife_gpt.yaml`` is not written yet, so the scorecard shows
H1 as ``not run (no experiment yet)``. Its judge goes here, named like the experiment. Texts copied
from CLAIMS.md.
"""

from __future__ import annotations

from .registry import pending

pending("H1", source="Marek et al. 2025 (arXiv 2507.07101)",
        statement=("Small batches are unstable with β2 held fixed; holding β2's half-life fixed in "
                   "tokens (β2(B) = β2(B_ref)^(B/B_ref)) makes them train stably"),
        metric=("tiny GPT on byte-level text, batch sizes spanning ≥ 16× at equal tokens, β2 fixed at"
                " 0.95 vs scaled from 0.95 at the largest batch; spikes (Z6) and final held-out loss"),
        threshold=("at the smallest batch the scaled arm has fewer spikes and a final held-out loss "
                   "no higher than the fixed arm's in every seed, and the scaled arm's spread of "
                   "final loss over batch sizes is smaller"))
