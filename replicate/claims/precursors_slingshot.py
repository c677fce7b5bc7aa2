"""The precursor claims judged twice (issue 16): M7, W1 and B2 again on the Slingshot.

``M7_slingshot``, ``W1_slingshot`` and ``B2_slingshot`` are twins (``registry.twin``): the judges of
M7 (``m7_warning_gpt.m7``: the embedding's fraction |r| > 0.9 warns of a loss rise within 5 steps,
AUROC >= 0.7, and leads it), W1 (``w1_rms_mlp.w1``: RMS_t = sqrt(mean(g^2 / v_hat)) > 1 in the 1-8
steps before the rise, the shallow layer first) and B2 (``b2_curvature_mlp.b2``: lambda_grad(Hhat)
= g'Hhat g / |g|^2 > 2/eta within 5 steps before, more precise than lambda_max), with their
thresholds, their four spike definitions (R3 primary) and their premise (>= 10 spikes per seed
under the definition used, none injected), on the runs of ``conf/experiment/precursors_slingshot.yaml``:
the Slingshot's modular addition at beta2 0.9, where it is cyclic (~270 steps a cycle).
"""

from __future__ import annotations

from .b2_curvature_mlp import b2  # noqa: F401  (registers B2 before its twin)
from .m7_warning_gpt import m7  # noqa: F401
from .registry import twin
from .w1_rms_mlp import w1  # noqa: F401

EXPERIMENT = "precursors_slingshot"
WORKLOAD = (" (second workload, the Slingshot: modular addition p = 23, full batch, fp32 Adam beta2 0.9, lr 1e-3, "
            "6k steps; layers embedding, hidden, head)")
TWINS = ("M7", "W1", "B2")

for _id in TWINS:
    twin(_id, "slingshot", experiment=EXPERIMENT, workload=WORKLOAD)
