"""The results store: atomic files, tidy load(), runs(), and damaged folders skipped, not fatal."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from replicate import results, train


@pytest.fixture
def two_runs(cfg_factory, tmp_path):
    root = tmp_path / "results"
    for b2 in ("0.9", "0.999"):
        train.run(cfg_factory("model=quadratic", "data=none", "train.steps=20", f"optimizer.b2={b2}",
                              "name=demo", results_dir=root))
    return root


def test_load_returns_a_tidy_frame_and_runs_one_row_per_run(two_runs):
    df = results.load(two_runs)
    assert list(df.columns) == ["run_id", "experiment", "seed", "status", "step", "metric", "value"]
    assert set(df["metric"]) == {"loss", "lr", "grad_norm"}
    assert df.groupby(["run_id", "metric"]).size().eq(20).all()
    runs = results.runs(two_runs)
    assert len(runs) == 2 and set(runs["optimizer.b2"]) == {0.9, 0.999}
    assert (runs["experiment"] == "demo").all() and (runs["status"] == "done").all()
    assert set(results.load(two_runs, metrics=["loss"])["metric"]) == {"loss"}


@pytest.mark.parametrize("damage", ["garbage_manifest", "no_config", "truncated_metrics", "no_metrics"])
def test_a_corrupt_or_half_written_run_is_reported_and_skipped(two_runs, damage):
    victim = sorted((two_runs / "runs" / "demo").iterdir())[0]
    if damage == "garbage_manifest":
        (victim / "manifest.json").write_text("{not json")
    elif damage == "no_config":
        (victim / "config.yaml").unlink()
    elif damage == "truncated_metrics":
        data = (victim / "metrics.parquet").read_bytes()
        (victim / "metrics.parquet").write_bytes(data[: len(data) // 2])
    else:
        (victim / "metrics.parquet").unlink()
    with pytest.warns(UserWarning, match="skipping"):
        df = results.load(two_runs)
    assert df["run_id"].nunique() == 1 and victim.name not in set(df["run_id"])


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    results.atomic_write(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        results.atomic_write(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_empty_root_gives_empty_frames(tmp_path):
    assert results.load(tmp_path).empty and results.runs(tmp_path).empty
    assert isinstance(results.load(tmp_path), pd.DataFrame)


def test_flatten_and_run_id_ignore_key_order():
    a = {"optimizer": {"b1": 0.9, "b2": 0.99}, "seed": 1}
    b = {"seed": 1, "optimizer": {"b2": 0.99, "b1": 0.9}}
    assert results.flatten(a) == {"optimizer.b1": 0.9, "optimizer.b2": 0.99, "seed": 1}
    assert results.run_id(a) == results.run_id(b)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_results_files_get_the_usual_permissions_not_0600(tmp_path, umask):
    """0666 less the umask, as any other program's files (mkstemp's 0600 hid them from colleagues)."""
    import stat

    import torch

    old = os.umask(umask)
    try:
        results.atomic_write(tmp_path / "a.txt", "x")
        results.atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "c.pt")
        results.write_table([{"step": 0, "loss": 1.0}], tmp_path / "m.parquet")
        results.write_manifest(tmp_path, {"status": "done"})
    finally:
        os.umask(old)
    for name in ("a.txt", "c.pt", "m.parquet", "manifest.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_runs_files_are_readable_by_others_under_umask_022(cfg_factory):
    import stat

    old = os.umask(0o022)
    try:
        cfg = cfg_factory("model=mlp", "data=regression", "train.steps=20", "train.checkpoint_every=5",
                          "train.keep_checkpoint=true")
        train.run(cfg)
    finally:
        os.umask(old)
    rdir = results.run_dir(cfg["results_dir"], cfg)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in rdir.iterdir()}
    assert {"config.yaml", "manifest.json", "metrics.parquet", "checkpoint.pt"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes
