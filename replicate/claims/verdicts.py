"""Verdict helpers: how the judges turn measured numbers into a verdict.

Every judge needs ``MIN_SEEDS`` seeds: with fewer, a verdict is ``inconclusive`` (``enough_seeds``;
``judged`` for a single pass/fail threshold, ``fraction_of_seeds`` for "holds in >= x of the
seeds", ``answered`` for the open questions Q1-Q4, which get a measured answer and no pass/fail).

Where a claim has several conditions, each is decided over seeds ("yes", "no" or "unclear": a t
interval over seeds wholly on one side of its threshold (``side``, ``inside``), or straddling it; a
per-seed yes/no property is "yes" only when it holds in every seed, ``every_seed``) and
``combine`` gives ``replicated`` when every condition is "yes", ``not replicated`` when any is
"no", ``inconclusive`` otherwise or with fewer than MIN_SEEDS seeds.

Premises (CLAIMS.md, "Premises"): a judge measures its claim's premise in the same runs and passes
it through ``in_regime``: where it did not hold in every seed the verdict is ``out of regime`` (the
verdict the threshold would give is kept in the detail), never ``not replicated``.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from ..stats import bootstrap_interval, t_interval
from .registry import Judgement

MIN_SEEDS = 3
PREMISE_SPIKES = 10  # CLAIMS.md (M7, W1, B2, M11): >= 10 spikes per seed under the definition used, none injected


def enough_seeds(seeds: Sequence) -> bool:
    """At least MIN_SEEDS seeds: fewer make any verdict ``inconclusive``."""
    return len(seeds) >= MIN_SEEDS


def few_seeds(seeds: Sequence, what: str = "") -> str:
    """The note an inconclusive verdict for too few seeds starts its detail with."""
    return f"only {len(seeds)} seed(s){' ' + what if what else ''}, {MIN_SEEDS} needed. "


def judged(seeds: Sequence, holds: bool, *, unclear: bool = False) -> str:
    """The verdict of a pass/fail claim: ``inconclusive`` with too few seeds or when ``unclear``
    (e.g. the workload did not reach the regime the claim is about), else ``replicated`` when it
    ``holds`` and ``not replicated`` when not."""
    if not enough_seeds(seeds) or unclear:
        return "inconclusive"
    return "replicated" if holds else "not replicated"


def answered(seeds: Sequence, value: float | None, ci: tuple, detail: str, *, complete: bool = True,
             why: str | None = None) -> Judgement:
    """An open question's measured answer (Q1-Q4): ``answered`` with MIN_SEEDS seeds and every arm
    it needs (``complete``), else ``inconclusive``; ``why``: say so in the detail (see ``few_seeds``)."""
    verdict = "answered" if complete and enough_seeds(seeds) else "inconclusive"
    if verdict == "inconclusive" and why is not None:
        detail = few_seeds(seeds, why) + detail
    return Judgement(verdict, value, ci[0], ci[1], seeds, detail)


def in_regime(j: Judgement, held: dict[int, bool], reached: str) -> Judgement:
    """``j`` with its premise: ``held`` per seed (did the run reach the regime the claim is about?)
    and ``reached``, one line saying what was reached. Unless the premise held in every seed, a
    judged verdict (replicated, not replicated, answered; inconclusive with enough seeds) becomes
    ``out of regime``, the threshold's verdict kept at the head of the detail. An inconclusive
    verdict becomes ``out of regime`` too when the premise was measured in MIN_SEEDS seeds, even if
    the threshold saw fewer (a judge whose runs have no spike under a definition judges no seed:
    that is the premise missed, not too few seeds)."""
    j.premise = reached
    j.premise_held = bool(held) and all(held.values())
    judged_ = j.verdict in ("replicated", "not replicated", "answered") or (
        j.verdict == "inconclusive" and (enough_seeds(j.seeds) or enough_seeds(list(held))))
    if not j.premise_held and judged_:
        j.detail = f"premise not reached in every seed ({reached}); by its threshold: {j.verdict}. " + j.detail
        j.verdict = "out of regime"
    return j


def fraction_of_seeds(hits: dict[int, bool], need: float, detail: str = "") -> Judgement:
    """For claims of the form "holds in ≥ ``need`` of the seeds": value = fraction of seeds where
    it holds, bootstrap interval over seeds; fewer than MIN_SEEDS seeds is inconclusive."""
    seeds = sorted(hits)
    frac = [float(hits[s]) for s in seeds]
    value = float(np.mean(frac)) if frac else float("nan")
    lo, hi = bootstrap_interval(frac)
    return Judgement(judged(seeds, value >= need), value, lo, hi, seeds, detail)


def side(values: Sequence[float], threshold: float, above: bool) -> str:
    """'yes' when the t interval over seeds of ``values`` lies wholly above (``above``) or below
    the threshold, 'no' when it lies wholly on the other side, 'unclear' when it straddles it or
    there are fewer than 2 values."""
    lo, hi = t_interval(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unclear"
    if above:
        return "yes" if lo > threshold else "no" if hi <= threshold else "unclear"
    return "yes" if hi < threshold else "no" if lo >= threshold else "unclear"


def inside(values: Sequence[float], low: float, high: float) -> str:
    """'yes' when the t interval over seeds lies inside [low, high], 'no' when it is disjoint from
    it, 'unclear' otherwise."""
    lo, hi = t_interval(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unclear"
    return "yes" if low <= lo and hi <= high else "no" if hi < low or lo > high else "unclear"


def every_seed(hits: Iterable[bool]) -> str:
    hits = list(hits)
    return "yes" if hits and all(hits) else "no"


def combine(conditions: dict[str, str], seeds: Sequence[int], value: float | None,
            ci: tuple[float, float], detail: str) -> Judgement:
    """The verdict from the conditions' 'yes'/'no'/'unclear' (see the module's docstring)."""
    said = "; ".join(f"{name}: {answer}" for name, answer in conditions.items())
    detail = f"{said}. {detail}" if detail else said
    if not enough_seeds(seeds):
        verdict = "inconclusive"
        detail = few_seeds(seeds) + detail
    elif any(a == "no" for a in conditions.values()):
        verdict = "not replicated"
    elif all(a == "yes" for a in conditions.values()):
        verdict = "replicated"
    else:
        verdict = "inconclusive"
    return Judgement(verdict, value, ci[0], ci[1], sorted(int(s) for s in seeds), detail)


def spike_premise(counts: dict[int, int], definition: str) -> tuple[dict[int, bool], str]:
    """CLAIMS.md's premise of M7, W1, B2 and M11 from the spike episodes counted per seed (injected
    batches left out): (held per seed, the ``reached`` line for ``verdicts.in_regime``)."""
    seeds = sorted(counts)
    held = {s: counts[s] >= PREMISE_SPIKES for s in seeds}
    reached = (f"{definition} spike episodes per seed ({'/'.join(str(s) for s in seeds)}): "
               + "/".join(str(counts[s]) for s in seeds)
               + f" (premise: >= {PREMISE_SPIKES} per seed, injected batches not counted)")
    return held, reached
