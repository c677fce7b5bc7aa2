"""`python -m replicate`: one-line errors, sweeps with the basic, joblib and submitit launchers,
reruns that train nothing, and a diverging run that does not stop its sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli
from replicate import results

FAST = ["model=quadratic", "data=none", "train.steps=20", "progress=false"]


def manifests(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in Path(root).glob("runs/*/*/manifest.json")}


@pytest.mark.parametrize("args, key", [
    (["optimizer.b2=1.5"], "optimizer.b2"),
    (["optimizer.eps=-1"], "optimizer.eps"),
    (["optimizer.lr=0"], "optimizer.lr"),
    (["data.batch_size=0", "data=markov", "model=gpt"], "data.batch_size"),
    (["optimizer=adma"], "optimizer"),
    (["experiment=nope"], "experiment"),
    (["-m", "optimizer=adam,sgdd"], "optimizer"),
])
def test_bad_input_gives_one_line_naming_the_key_and_exit_2(tmp_path, args, key):
    out = cli(*FAST, f"results_dir={tmp_path}", *args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()


def test_unknown_option_lists_the_allowed_ones(tmp_path):
    out = cli(*FAST, f"results_dir={tmp_path}", "optimizer=adma")
    assert "adam" in out.stderr and "adamw" in out.stderr and "sgd" in out.stderr


def test_an_unwritable_results_dir_is_one_line_and_damages_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    out = cli(*FAST, f"results_dir={blocker}/results")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "results_dir" in out.stderr
    assert blocker.read_text() == "keep me"


def test_one_run_then_the_same_run_again_trains_nothing(tmp_path):
    out = cli(*FAST, f"results_dir={tmp_path}")
    assert out.returncode == 0 and ": done (20 steps" in out.stdout
    again = cli(*FAST, f"results_dir={tmp_path}")
    assert again.returncode == 0 and "already finished, skipped" in again.stdout


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_2x3_multirun_then_its_rerun_trains_nothing(tmp_path, launcher):
    sweep = ["-m", f"hydra/launcher={launcher}", "optimizer.b2=0.9,0.99", "seed=0,1,2", f"results_dir={tmp_path}"]
    out = cli(*FAST, *sweep)
    assert out.returncode == 0, out.stderr
    first = manifests(tmp_path)
    assert len(first) == 6 and {m["status"] for m in first.values()} == {"done"}
    assert {(m["seed"]) for m in first.values()} == {0, 1, 2}
    again = cli(*FAST, *sweep)
    assert again.returncode == 0 and again.stdout.count("already finished, skipped") == 6, again.stdout
    assert manifests(tmp_path) == first  # nothing rewritten


def test_a_diverging_run_ends_diverged_and_the_sweep_goes_on(tmp_path):
    out = cli("model=mlp", "data=regression", "train.steps=50", "progress=false", "optimizer=sgd",
              "optimizer.momentum=0.0", "-m", "optimizer.lr=1000.0,0.01", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    status = sorted(m["status"] for m in manifests(tmp_path).values())
    assert status == ["diverged", "done"]


def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    out = cli(*FAST, "-m", "hydra/launcher=local", "seed=0,1", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    runs = results.runs(tmp_path)
    assert sorted(runs["seed"]) == [0, 1] and (runs["status"] == "done").all()
