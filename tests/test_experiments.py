"""Every experiment (and every arm of one) composes, validates, builds, and says where it comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicate.scorecard import EXTRA_EXPERIMENTS
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import CONF, make_cfg
from replicate import train
from replicate.config import validate

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def sweep_points(exp: str, cover_above: int = 24) -> list[list[str]]:
    """The points of the experiment's sweep (hydra.sweeper.params), as override lists: every point,
    or, for sweeps of more than ``cover_above`` points, a covering subset in which every value of every
    key appears at least once (the i-th point takes the i-th value of each key, cyclically)."""
    cfg = yaml.safe_load((CONF / "experiment" / f"{exp}.yaml").read_text())
    params = cfg.get("hydra", {}).get("sweeper", {}).get("params", {})
    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        choices = [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() else [str(value)]
        axes.append([f"{key}={c}" for c in choices])
    points = [[]]
    for axis in axes:
        points = [p + [c] for p in points for c in axis]
    if len(points) > cover_above:
        n = max(len(a) for a in axes)
        points = [[a[i % len(a)] for a in axes] for i in range(n)]
    return points


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_experiment_file_names_its_source_and_sweeps_seeds(exp):
    text = (CONF / "experiment" / f"{exp}.yaml").read_text()
    assert text.startswith("# @package _global_")
    assert "arXiv" in text, "the header names the paper"
    comparisons = {e for exps in EXTRA_EXPERIMENTS.values() for e in exps}
    assert "Claim" in text or exp in comparisons, "the header names the claim (or it is a comparison)"
    cfg = yaml.safe_load(text)
    assert cfg["name"] == exp
    if "hydra" in cfg:  # a claim's sweep: at least 3 seeds (a demo like probe_demo is one run)
        seeds = str(cfg["hydra"]["sweeper"]["params"]["seed"]).split(",")
        assert len(seeds) >= 3


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_point_of_the_sweep_composes_validates_and_builds(exp, tmp_path):
    for point in sweep_points(exp):
        cfg = make_cfg([f"experiment={exp}", *point], tmp_path)
        validate(cfg)
        train._build(cfg)
