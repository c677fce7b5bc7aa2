"""Premises (CLAIMS.md): a judged verdict becomes `out of regime` unless the premise held in every seed."""

import pytest

from replicate.claims import Judgement, in_regime


@pytest.mark.parametrize("verdict", ["replicated", "not replicated", "answered"])
def test_a_premise_missed_in_one_seed_puts_the_claim_out_of_regime(verdict):
    j = in_regime(Judgement(verdict, 0.5, seeds=[0, 1, 2], detail="d"), {0: True, 1: False, 2: True}, "x in 2 of 3")
    assert j.verdict == "out of regime" and j.premise_held is False and j.premise == "x in 2 of 3"
    assert j.detail.startswith("premise not reached") and f"by its threshold: {verdict}" in j.detail


@pytest.mark.parametrize("verdict", ["replicated", "not replicated", "inconclusive", "answered"])
def test_a_premise_held_in_every_seed_keeps_the_verdict(verdict):
    j = in_regime(Judgement(verdict, 0.5, seeds=[0, 1, 2], detail="d"), {0: True, 1: True, 2: True}, "x everywhere")
    assert j.verdict == verdict and j.premise_held is True and j.detail == "d"


def test_too_few_seeds_stays_inconclusive_and_no_seed_is_no_premise():
    j = in_regime(Judgement("inconclusive", None, seeds=[0]), {0: False}, "x in 0 of 1")
    assert j.verdict == "inconclusive" and j.premise_held is False
    j = in_regime(Judgement("replicated", 1.0, seeds=[0, 1, 2]), {}, "nothing measured")
    assert j.verdict == "out of regime" and j.premise_held is False


def test_a_premise_missed_in_every_seed_is_out_of_regime_even_when_the_judge_saw_no_seed():
    """Under a tall definition a run may have no spike at all: the judge then has no seed to judge
    (inconclusive), but the premise was measured in every seed and missed."""
    j = in_regime(Judgement("inconclusive", None, seeds=[]), {0: False, 1: False, 2: False}, "0/0/0 episodes")
    assert j.verdict == "out of regime" and "by its threshold: inconclusive" in j.detail
    j = in_regime(Judgement("inconclusive", None, seeds=[0]), {0: False, 1: True}, "two seeds measured")
    assert j.verdict == "inconclusive"  # two seeds measured: too few either way
