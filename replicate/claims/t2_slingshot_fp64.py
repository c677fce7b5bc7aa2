"""T2 (Liu et al. 2026, arXiv 2605.06152): the Slingshot is numerical, float32 absorption of the
correct class's gradient; T1's workload in fp32 against fp64.

Pending: the experiment ``conf/experiment/t2_slingshot_fp64.yaml`` is not written yet, so the scorecard shows
T2 as ``not run (no experiment yet)``. Its judge goes here, named like the experiment. Texts copied
from CLAIMS.md.
"""

from __future__ import annotations

from .registry import pending

pending("T2", source="Liu et al. 2026 (arXiv 2605.06152)",
        statement=("The Slingshot is numerical: once the correct-class logit margin passes float32's "
                   "absorption threshold, that class's gradient rounds to exactly 0 while the other "
                   "classes' do not, the softmax gradient stops summing to 0, and the resulting drift"
                   " inflates the classifier and feature means until the spike"),
        metric=("T1's workload in fp32 and fp64 (same seeds, same steps); per step the fraction of "
                "training examples whose correct-class gradient is exactly 0, and the norm of the "
                "classifier's mean row"),
        threshold=("the fraction exceeds 0.5 before ≥ 80% of fp32 spikes; fp64 has ≥ 80% fewer spikes"
                   " than fp32 over the same steps in every seed; log of the mean-row norm rises "
                   "linearly (R² > 0.9) over the 1000 steps before each spike"))
