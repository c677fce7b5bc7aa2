"""The claims of ../shared/CLAIMS.md as verdict functions: results in, an honest verdict out.

One module per experiment, named like its file in conf/experiment/ (``m8_beta2_mlp.py`` holds M8,
judged on the runs of ``conf/experiment/m8_beta2_mlp.yaml``; ``m9_batch_mlp.py`` holds M9 and Q1,
both judged on ``m9_batch_mlp``'s runs). A claim whose experiment is not written yet is
``pending`` in the module named like the experiment it will get. Beside them:

- ``registry.py``: ``Claim``, ``Judgement``, ``Verdict``, ``CLAIMS``, ``@claim`` (with the claim's
  GPU twin, ``gpu=``, and the report figures it always shows, ``figures=``), ``twin`` (a claim's
  judge again on a second workload: ``precursors_slingshot.py``), ``pending``, ``evaluate``;
- ``verdicts.py``: ``MIN_SEEDS`` and the verdict helpers (``judged``, ``fraction_of_seeds``,
  ``answered``, ``side``, ``inside``, ``every_seed``, ``combine``, ``in_regime`` for premises,
  ``spike_premise``);
- ``frames.py``: the results shaped for a judge (``wide``, ``late``, ``layers_of``, ``spiking_runs``,
  ``injected``, ...).

Statistics (intervals, rank correlations) come from ``replicate.stats``, spikes from
``replicate.spikes``. A claim is registered with ``@claim(id, experiment=..., source=...,
statement=..., metric=..., threshold=...)`` on a function ``judge(metrics, runs) -> Judgement``
that reads only ``results.load()`` (tidy metrics) and ``results.runs()`` (one row per run,
flattened config) of its experiment. ``evaluate(root)`` judges every claim; a claim whose
experiment has no finished runs is ``not run``.

Verdicts: ``replicated``, ``not replicated``, ``out of regime`` (the runs did not reach the claim's
premise in every seed), ``inconclusive`` (too few seeds, or the interval straddles the threshold
where the claim asks for a clear effect), ``answered`` (the open questions
Q1–Q4: a measured answer, no pass/fail), ``not run (...)``. No verdict is written anywhere by hand:
every one comes from a judge function applied to results, and tests feed each judge synthetic
results on both sides of its threshold.

Spike claims (``@claim(..., spikes=True)``) are judged under each of the four spike definitions
(``judge(metrics, runs, definition=...)``); the verdict is R3's, the others give its robustness.

Adding a claim: one experiment YAML, one module of the same name here with its ``@claim`` judge,
and a test file ``tests/test_claims_<experiment>.py``.
"""

from __future__ import annotations

from .registry import (CLAIMS, GPU, VERDICTS, Claim, Judgement, Verdict, _load_modules, _order,  # noqa: F401
                       claim, evaluate, pending, twin)
from .verdicts import MIN_SEEDS, fraction_of_seeds, in_regime  # noqa: F401
