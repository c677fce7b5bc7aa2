"""The one training loop: determinism, resume after a kill, divergence, reruns, bad values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from replicate import results, train
from replicate.config import ConfigError

MLP = ["model=mlp", "data=regression", "train.steps=60", "train.checkpoint_every=20"]
GPT = ["model=gpt", "data=markov", "data.batch_size=8", "data.context=16", "model.width=32",
       "model.depth=2", "model.heads=2", "optimizer.lr=3.0e-3", "train.steps=30", "train.checkpoint_every=10"]


def losses(root, experiment="default"):
    df = results.load(root, metrics=["loss"])
    return {rid: g.sort_values("step")["value"].to_numpy() for rid, g in df.groupby("run_id")}


@pytest.mark.parametrize("overrides", [MLP, GPT], ids=["mlp", "gpt"])
def test_same_config_and_seed_give_a_bitwise_identical_loss_series(tmp_path, cfg_factory, overrides):
    a = train.run(cfg_factory(*overrides, results_dir=tmp_path / "a"))
    b = train.run(cfg_factory(*overrides, results_dir=tmp_path / "b"))
    assert a["status"] == b["status"] == "done" and a["run_id"] == b["run_id"]
    la, lb = losses(tmp_path / "a")[a["run_id"]], losses(tmp_path / "b")[b["run_id"]]
    assert len(la) == overrides_steps(overrides) and np.array_equal(la, lb)
    c = train.run(cfg_factory(*overrides, "seed=1", results_dir=tmp_path / "c"))
    assert not np.array_equal(la, losses(tmp_path / "c")[c["run_id"]])


def overrides_steps(overrides):
    return int(next(o for o in overrides if o.startswith("train.steps=")).split("=")[1])


@pytest.mark.parametrize("overrides", [MLP, GPT], ids=["mlp", "gpt"])
def test_a_killed_run_resumes_to_the_identical_result(tmp_path, cfg_factory, monkeypatch, overrides):
    cfg = cfg_factory(*overrides)
    ref = train.run(cfg_factory(*overrides, results_dir=tmp_path / "ref"))

    real_save = results.atomic_torch_save
    saves = []

    def save_then_die(obj, path):  # the process "dies" right after its second checkpoint
        real_save(obj, path)
        saves.append(obj["step"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(results, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg)
    rdir = results.run_dir(cfg["results_dir"], cfg)
    assert (rdir / "checkpoint.pt").exists() and not (rdir / "metrics.parquet").exists()
    monkeypatch.setattr(results, "atomic_torch_save", real_save)

    resumed = train.run(cfg)
    assert resumed["status"] == "done" and resumed["resumes"] == 1
    assert not (rdir / "checkpoint.pt").exists()
    a, b = losses(tmp_path / "ref")[ref["run_id"]], losses(cfg["results_dir"])[resumed["run_id"]]
    assert np.array_equal(a, b)
    wide_a = results.load(tmp_path / "ref").pivot_table(index="step", columns="metric", values="value")
    wide_b = results.load(cfg["results_dir"]).pivot_table(index="step", columns="metric", values="value")
    assert wide_a.equals(wide_b)


def test_a_diverging_run_is_recorded_as_diverged_and_keeps_its_metrics(cfg_factory):
    cfg = cfg_factory(*MLP, "optimizer.lr=1000.0", "optimizer=sgd", "optimizer.momentum=0.0")
    m = train.run(cfg)
    assert m["status"] == "diverged" and m["steps_done"] < 60
    df = results.load(cfg["results_dir"], metrics=["loss"])
    assert not np.isfinite(df.sort_values("step")["value"].iloc[-1])
    assert results.runs(cfg["results_dir"])["status"].tolist() == ["diverged"]


def test_a_finished_run_is_not_trained_again(cfg_factory):
    cfg = cfg_factory(*MLP)
    first = train.run(cfg)
    rdir = results.run_dir(cfg["results_dir"], cfg)
    mtimes = {p.name: p.stat().st_mtime_ns for p in rdir.iterdir()}
    again = train.run(cfg)
    assert again.get("skipped") and again["run_id"] == first["run_id"]
    assert {p.name: p.stat().st_mtime_ns for p in rdir.iterdir()} == mtimes


def test_changing_a_runtime_key_keeps_the_run_id_and_a_real_key_changes_it(cfg_factory, tmp_path):
    a = cfg_factory(*MLP)
    assert results.run_id(a) == results.run_id(cfg_factory(*MLP, "threads=1", "train.checkpoint_every=7",
                                                           results_dir=tmp_path / "elsewhere"))
    assert results.run_id(a) != results.run_id(cfg_factory(*MLP, "optimizer.b2=0.99"))


def test_manifest_records_provenance(cfg_factory):
    cfg = cfg_factory(*MLP)
    train.run(cfg)
    m = json.loads((results.run_dir(cfg["results_dir"], cfg) / "manifest.json").read_text())
    for key in ("run_id", "experiment", "seed", "status", "git_commit", "git_dirty", "versions", "device",
                "wall_time_s", "started", "finished", "steps_done"):
        assert key in m, key
    assert m["versions"]["torch"] and m["wall_time_s"] > 0 and m["steps_done"] == 60


@pytest.mark.parametrize("override, key", [
    ("optimizer.b2=1.0", "optimizer.b2"), ("optimizer.b1=-0.1", "optimizer.b1"),
    ("optimizer.eps=-1.0e-8", "optimizer.eps"), ("optimizer.lr=0.0", "optimizer.lr"),
    ("optimizer.lr=-1.0", "optimizer.lr"), ("data.batch_size=0", "data.batch_size"),
    ("train.steps=0", "train.steps"), ("+optimizer.gamma=2.0", "optimizer.gamma"),
    ("model.activation=swish", "model"),
])
def test_a_bad_value_names_its_key_and_writes_nothing(cfg_factory, override, key):
    cfg = cfg_factory(*MLP, override)
    with pytest.raises(ConfigError) as err:
        train.run(cfg)
    msg = str(err.value)
    assert key in msg and "\n" not in msg
    assert not (cfg["results_dir"] / "runs").exists() if hasattr(cfg["results_dir"], "exists") else True
    from pathlib import Path
    assert not (Path(cfg["results_dir"]) / "runs").exists()
