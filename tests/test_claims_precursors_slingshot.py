"""M7_slingshot, W1_slingshot, B2_slingshot (replicate/claims/precursors_slingshot.py): the
precursor judges registered again on the Slingshot's experiment, judged through the registry
(all four definitions, R3 primary) on synthetic runs with the Slingshot's layer names (embedding,
hidden, head): both sides of each threshold and of the premise (>= 10 spikes per seed)."""

from __future__ import annotations

import pandas as pd
from test_claims_b2_curvature_mlp import _b2_runs
from test_claims_m7_warning_gpt import _m7_runs
from test_claims_w1_rms_mlp import _w1_runs

from replicate.claims import CLAIMS, _load_modules
from replicate.claims.registry import judge

_load_modules()
RENAME = {"layer0": "embedding", "layer1": "hidden"}


def _slingshot_layers(metrics: pd.DataFrame) -> pd.DataFrame:
    """The synthetic runs' layers renamed to the modular MLP's: layer0 -> embedding, layer1 -> hidden."""
    def rename(m: str) -> str:
        head, _, layer = m.partition("/")
        return f"{head}/{RENAME.get(layer, layer)}" if layer else m
    return metrics.assign(metric=metrics["metric"].map(rename))


def _verdict(cid: str, metrics, runs):
    by = judge(CLAIMS[cid], metrics, runs)
    assert set(by) == {"R3", "R10", "R100", "Z6"} and CLAIMS[cid].primary == "R3"
    return by["R3"]


def test_w1_slingshot_both_sides_and_its_premise():
    m, r = _w1_runs("lead")
    j = _verdict("W1_slingshot", _slingshot_layers(m), r)
    assert j.verdict == "replicated" and "embedding 33" in j.detail and j.premise_held
    m, r = _w1_runs("deep_first")  # the deeper layer (hidden) crosses first
    assert _verdict("W1_slingshot", _slingshot_layers(m), r).verdict == "not replicated"
    m, r = _w1_runs("lead", few=1)  # 9 spikes in seed 1
    j = _verdict("W1_slingshot", _slingshot_layers(m), r)
    assert j.verdict == "out of regime" and "11/9/11" in j.premise


def test_m7_slingshot_both_sides_and_its_premise():
    assert _verdict("M7_slingshot", *_m7_runs("lead")).verdict == "replicated"
    assert _verdict("M7_slingshot", *_m7_runs("after")).verdict == "not replicated"
    j = _verdict("M7_slingshot", *_m7_runs("after", few=0))
    assert j.verdict == "out of regime" and j.premise_held is False and "9/11/11" in j.premise


def test_b2_slingshot_both_sides_and_its_premise():
    assert _verdict("B2_slingshot", *_b2_runs("good", every=2)).verdict == "replicated"
    assert _verdict("B2_slingshot", *_b2_runs("late", every=2)).verdict == "not replicated"
    j = _verdict("B2_slingshot", *_b2_runs("good", every=2, few=2))
    assert j.verdict == "out of regime" and "11/11/9" in j.premise


def test_the_twins_read_only_their_own_experiment(tmp_path):
    """No runs of precursors_slingshot: the twins are not run, whatever the own rows' runs say."""
    from replicate.claims import evaluate

    for v in evaluate(tmp_path, ids=["M7_slingshot", "W1_slingshot", "B2_slingshot"]):
        assert v.experiment == "precursors_slingshot" and v.verdict == "not run"
