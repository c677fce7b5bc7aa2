"""Shared fixtures: compose configs the way `python -m replicate` does, without output folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from replicate import results

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"


def make_cfg(overrides: list[str], results_dir: Path | str) -> dict:
    """The resolved config of `python -m replicate <overrides> results_dir=<results_dir>` as a dict."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"results_dir={results_dir}", "progress=false"])
    return OmegaConf.to_container(cfg, resolve=True)


def cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "replicate", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, results_dir: Path | None = None) -> dict:
        return make_cfg(list(overrides), results_dir or tmp_path / "results")
    return factory


@pytest.fixture
def dynamo_only(monkeypatch):
    """torch.compile traces with dynamo only (backend "eager": no inductor build), called as the code
    calls it (not fullgraph, which traces into one graph what a plain compile may split).  Returns a
    function giving the graph breaks counted since: empty while every compiled function is one graph."""
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend="eager"))
    counters.clear()
    return lambda: dict(counters["graph_break"])


def tidy(series: dict[str, dict[str, np.ndarray]], seeds: dict[str, int]) -> pd.DataFrame:
    """A tidy metrics frame (as results.load): run id -> {metric: values per step (NaN = not logged)}."""
    frames = []
    for rid, metrics in series.items():
        for name, values in metrics.items():
            steps = np.arange(len(values))
            ok = np.isfinite(values)
            frames.append(pd.DataFrame({"run_id": rid, "experiment": "x", "seed": seeds[rid], "status": "done",
                                        "step": steps[ok], "metric": name, "value": values[ok]}))
    return pd.concat(frames, ignore_index=True)


def write_run(root: Path, experiment: str, seed: int, cfg: dict, metrics: pd.DataFrame,
               hist: pd.DataFrame | None = None) -> str:
    """A finished run folder as train.run leaves it (config, manifest, metrics, histograms)."""
    cfg = {"name": experiment, "seed": seed, **cfg}
    rid = results.run_id(cfg)
    d = Path(root) / "runs" / experiment / rid
    d.mkdir(parents=True)
    results.atomic_write(d / "config.yaml", yaml.safe_dump(cfg))
    results.write_manifest(d, {"run_id": rid, "experiment": experiment, "seed": seed, "status": "done",
                               "wall_time_s": 1.0, "steps_done": int(metrics["step"].max()) + 1})
    results.write_table(metrics, d / "metrics.parquet")
    if hist is not None:
        results.write_table(hist, d / "histograms.parquet")
    return rid
