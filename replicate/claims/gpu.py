"""The gpu tier (CLAIMS.md): M3, M7, M8, M9 and W1 again on a 10.9M-parameter GPT on byte-level Shakespeare
(conf/experiment/*_gpu.yaml), judged by the cpu tier's very judge functions, reported as separate
verdicts ``<id>_gpu`` (tier gpu: ``make replicate TIER=gpu``).

M6 at GPU scale stays ``pending`` (claims/molybog.py): its cpu experiment plants a rare-token burst
through the Markov stream's injections, which byte-level text has no counterpart for yet.
"""

from __future__ import annotations

from . import batch, bimodality, claim, molybog, precursors

GPU = " (GPU tier: 6 x 384 GPT, 10.9M parameters, byte-level Shakespeare, bf16)"


def _again(cpu_id: str, judge, experiment: str) -> None:
    """Register ``judge`` (the cpu tier's) for ``<cpu_id>_gpu`` on ``experiment``."""
    from . import CLAIMS

    cpu = CLAIMS[cpu_id]
    claim(f"{cpu_id}_gpu", experiment=experiment, source=cpu.source, statement=cpu.statement + GPU,
          metric=cpu.metric, threshold=cpu.threshold, tier="gpu")(judge)


_again("M3", bimodality.m3, "m3_gpu")
_again("M7", bimodality.m7, "m7_gpu")
_again("M8", molybog.m8, "m8_gpu")
_again("M9", batch.m9, "m9_gpu")
_again("W1", precursors.w1, "w1_gpu")
