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
    assert "sweep finished: 6 runs: 6 done" in out.stdout
    assert {(m["seed"]) for m in first.values()} == {0, 1, 2}
    again = cli(*FAST, *sweep)
    assert again.returncode == 0 and again.stdout.count("already finished, skipped") == 6, again.stdout
    assert "(6 already finished before, not trained again)" in again.stdout
    assert manifests(tmp_path) == first  # nothing rewritten


def test_a_diverging_run_ends_diverged_and_the_sweep_goes_on(tmp_path):
    out = cli("model=mlp", "data=regression", "train.steps=50", "progress=false", "optimizer=sgd",
              "optimizer.momentum=0.0", "-m", "optimizer.lr=1000.0,0.01", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    status = sorted(m["status"] for m in manifests(tmp_path).values())
    assert status == ["diverged", "done"]
    assert "sweep finished: 2 runs: 1 diverged, 1 done" in out.stdout


def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    out = cli(*FAST, "-m", "hydra/launcher=local", "seed=0,1", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    runs = results.runs(tmp_path)
    assert sorted(runs["seed"]) == [0, 1] and (runs["status"] == "done").all()


def test_a_run_killed_with_sigkill_resumes_to_the_same_numbers(tmp_path):
    """A real kill -9 in the middle of a run, then the same command again."""
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    args = ["model=mlp", "data=regression", "train.steps=4000", "train.checkpoint_every=200",
            "progress=false", "threads=1", "name=killed"]
    ref = cli(*args, f"results_dir={tmp_path / 'ref'}")
    assert ref.returncode == 0, ref.stderr
    root = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "replicate", *args, f"results_dir={root}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(root.glob("runs/*/*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = list(root.glob("runs/*/*"))
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
    assert not (run_dir / "metrics.parquet").exists(), "killed too late: the run had finished"
    again = cli(*args, f"results_dir={root}")
    assert again.returncode == 0 and ": done (4000 steps" in again.stdout, again.stdout + again.stderr
    assert json.loads((run_dir / "manifest.json").read_text())["resumes"] == 1
    a = pd.read_parquet(next((tmp_path / "ref").glob("runs/*/*/metrics.parquet")))
    b = pd.read_parquet(run_dir / "metrics.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
