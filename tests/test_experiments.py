"""Every experiment (and every arm of one) composes, validates, builds, and says where it comes from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import CONF, make_cfg
from replicate import train
from replicate.config import validate

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def sweep_points(exp: str) -> list[list[str]]:
    """Every point of the experiment's sweep (hydra.sweeper.params), as override lists."""
    cfg = yaml.safe_load((CONF / "experiment" / f"{exp}.yaml").read_text())
    params = cfg.get("hydra", {}).get("sweeper", {}).get("params", {})
    parser = OverridesParser.create()
    points = [[]]
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        choices = [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() else [str(value)]
        points = [p + [f"{key}={c}"] for p in points for c in choices]
    return points


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_experiment_file_names_its_source_and_sweeps_seeds(exp):
    text = (CONF / "experiment" / f"{exp}.yaml").read_text()
    assert text.startswith("# @package _global_")
    assert "arXiv" in text and "Claim" in text, "the header names the paper and the claim"
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
