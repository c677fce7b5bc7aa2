"""The committed scorecard's runs are the runs the config tree composes today: a key added to the tree
(issue 17: every documented key with its default) must not change a run's hash and strand its
results (``results.HASHED_UNLESS``, ``results.IDLE_WHEN``)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
from conftest import CONF, ROOT, make_cfg
from hydra.core.override_parser.overrides_parser import OverridesParser

from replicate import results

SCORECARD = ROOT / "results" / "scorecard.json"
# one experiment per kind of key that was added later: val_every / val_batches (h1), an explicit
# model_every (t1_slingshot), probe=layers' model_every default (w1), arms (b1), a GPT (m7)
EXPERIMENTS = ["h1_beta2_halflife_gpt", "t1_slingshot", "w1_rms_mlp", "b1_quadratic", "m7_warning_gpt"]


def sweep_points(experiment: str) -> list[list[str]]:
    """Every override list of the experiment's sweep (its hydra.sweeper.params, seeds 0-2)."""
    cfg = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())
    params = cfg["hydra"]["sweeper"]["params"]
    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        o = parser.parse_override(f"{key}={value}")
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(value)]
        axes.append([f"{key}={v}" for v in values])
    return [[f"experiment={experiment}", *p] for p in itertools.product(*axes)]


@pytest.mark.skipif(not SCORECARD.exists(), reason="no committed scorecard")
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_committed_runs_are_what_the_tree_composes(experiment, tmp_path):
    committed = {r for v in json.loads(SCORECARD.read_text()) if v.get("experiment") == experiment
                 for r in v.get("runs", [])}
    assert committed, experiment
    composed = {results.run_id(make_cfg(p, tmp_path)) for p in sweep_points(experiment)}
    assert composed == committed


def test_a_later_key_at_its_old_value_is_not_hashed_and_hashed_otherwise():
    base = {"train": {"steps": 10}, "probe": {"every": 1}}
    same = {"train": {"steps": 10, "val_every": 0, "val_batches": 20}, "probe": {"every": 1, "model_every": None}}
    assert results.run_id(base) == results.run_id(same)
    assert results.run_id({"train": {"steps": 10, "val_every": 4}}) == results.run_id(
        {"train": {"steps": 10, "val_every": 4, "val_batches": 1}})  # one held-out batch: the old behaviour
    ids = {results.run_id(c) for c in (base, {"train": {"steps": 10, "val_every": 4, "val_batches": 20}},
                                       {"train": {"steps": 10, "val_every": 4}},
                                       {"train": {"steps": 10}, "probe": {"every": 1, "model_every": 0}})}
    assert len(ids) == 4  # any other value is hashed (0 is not None: type-checked)
