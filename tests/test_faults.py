"""Faults: a sweep killed with SIGKILL at its writes (and at random times), then run again, ends
with the results of an uninterrupted sweep, and results.load() never sees a corrupt folder; a full
disk ends with one line and leaves what was written before intact.

The kill points are the test-only hook of replicate/results.py (REPLICATE_FAULT=<file>:<n>[:phase]):
the n-th write of that file in the process, half written to its temporary file (``mid``) or just
renamed into place (``renamed``). The sweep runs in a forked child (no interpreter start), is killed
there, and is run again in this process.
"""

from __future__ import annotations

import copy
import functools
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, make_cfg
from replicate import results, train

SWEEP = ["model=mlp", "data=regression", "train.steps=60", "train.checkpoint_every=10", "threads=1",
         "name=faults"]
SEEDS = (0, 1, 2)
# per run: lock 1, config.yaml 1, manifest.json 2 (running, then done), checkpoint.pt 5, metrics.parquet 1
POINTS = ([f"checkpoint.pt:{n}:{ph}" for n in (1, 3, 5, 6, 11, 15) for ph in ("mid", "renamed")]
          + [f"manifest.json:{n}:{ph}" for n in range(1, 7) for ph in ("mid", "renamed")]
          + [f"metrics.parquet:{n}:{ph}" for n in (1, 2, 3) for ph in ("mid", "renamed")]
          + [f"config.yaml:{n}:{ph}" for n in (1, 3) for ph in ("mid", "renamed")]
          + ["lock:1:renamed", "lock:3:renamed"])
TIMERS = 4  # kills at random times as well


@functools.cache
def _composed() -> tuple:
    return tuple(make_cfg([*SWEEP, f"seed={s}"], "results") for s in SEEDS)  # Hydra's compose: 0.3 s each


def cfgs(root):
    return [{**copy.deepcopy(c), "results_dir": str(root)} for c in _composed()]


def sweep(root):
    for cfg in cfgs(root):
        train.run(cfg)


def snapshot(root) -> dict:
    """run id -> (status, metrics frame), read the way the report reads them: a warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = results.runs(root)
        results.load(root)
    return {r.run_id: (r.status, pd.read_parquet(Path(r.path) / "metrics.parquet"))
            for r in runs.itertuples() if r.status in results.FINISHED}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    sweep(root)
    ref = snapshot(root)
    assert len(ref) == len(SEEDS) and {s for s, _ in ref.values()} == {"done"}
    return ref


def _child(spec, root):
    results.arm_fault(spec)
    try:
        sweep(root)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def killed_then_rerun(root, spec=None, delay=None) -> bool:
    """The sweep in a child, killed at ``spec`` (or after ``delay`` s); True if it was killed."""
    proc = mp.get_context("fork").Process(target=_child, args=(spec, root))
    proc.start()
    if delay is not None:
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(120)
    assert proc.exitcode in (0, -signal.SIGKILL), f"{spec or delay}: exit code {proc.exitcode}"
    return proc.exitcode == -signal.SIGKILL


def check(root, ref, what):
    partial = snapshot(root)  # after the kill: no warning, and what is finished is right
    for rid, (status, frame) in partial.items():
        assert status == ref[rid][0], what
        pd.testing.assert_frame_equal(frame, ref[rid][1], check_exact=True, obj=what)
    sweep(root)  # run again
    again = snapshot(root)
    assert again.keys() == ref.keys(), what
    for rid, (status, frame) in again.items():
        assert status == ref[rid][0], what
        pd.testing.assert_frame_equal(frame, ref[rid][1], check_exact=True, obj=what)
    left = sorted(p.name for p in Path(root).glob("runs/*/*/*") if p.name not in
                  ("config.yaml", "manifest.json", "metrics.parquet"))
    left += sorted(p.name for p in Path(root).glob("runs/*/*/.*"))
    assert not left, f"{what}: left behind {left}"


def test_a_sweep_killed_at_each_write_then_rerun_gives_the_uninterrupted_results(tmp_path, reference):
    t0, killed = time.perf_counter(), 0
    for i, spec in enumerate(POINTS):
        root = tmp_path / f"k{i}"
        assert killed_then_rerun(root, spec=spec), f"{spec}: the kill point was never reached"
        killed += 1
        check(root, reference, spec)
    rng = random.Random(17)
    for i in range(TIMERS):
        delay = rng.uniform(0.0, 1.5)
        root = tmp_path / f"t{i}"
        killed += killed_then_rerun(root, delay=delay)
        check(root, reference, f"kill after {delay:.2f}s")
    print(f"\n{len(POINTS)} kill points + {TIMERS} random kills ({killed} killed in all), every rerun "
          f"identical: {time.perf_counter() - t0:.1f}s")


def test_the_fault_hook_is_inert_when_unset():
    assert "REPLICATE_FAULT" not in os.environ and results._FAULT is None
    results.fault("checkpoint.pt", "mid")  # nothing happens


# ------------------------------------------------------------------------------- a full disk
def _limit_file_size():  # in the child: a write past 32 KB fails with EFBIG instead of killing it
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (32_000, 32_000))


def _child_full_disk(cfg, conn):
    _limit_file_size()
    try:
        train.run(cfg)
    except results.DiskFull as e:
        conn.send(str(e.code))
        os._exit(3)
    os._exit(0)


def test_a_full_disk_is_one_line_and_leaves_earlier_results_intact(tmp_path, reference):
    root = tmp_path / "results"
    first, second = cfgs(root)[:2]
    train.run(first)  # an earlier finished run
    # the second run is killed after its second checkpoint (step 20): a partial run
    proc = mp.get_context("fork").Process(target=_child_one, args=("checkpoint.pt:2:renamed", second))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    rdir = results.run_dir(root, second)
    before = (rdir / "checkpoint.pt").read_bytes()
    # again, on a disk that fills: its next checkpoint (66 KB) does not fit
    here, there = mp.get_context("fork").Pipe()
    proc = mp.get_context("fork").Process(target=_child_full_disk, args=(second, there))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 3
    assert here.poll(5)
    line = here.recv()
    assert "\n" not in line and line.startswith("error: ") and "File too large" in line, line
    assert "checkpoint.pt" in line and "no space left" in line and "resumes" in line, line
    # earlier results intact: the finished run loads as before, the partial run keeps its checkpoint
    got = snapshot(root)
    (rid,) = got
    pd.testing.assert_frame_equal(got[rid][1], reference[rid][1], check_exact=True)
    assert (rdir / "checkpoint.pt").read_bytes() == before and not (rdir / "lock").exists()
    assert results.read_manifest(rdir)["status"] == "failed" and not list(rdir.glob(".*"))
    # space again: the partial run resumes from step 20 to the uninterrupted numbers
    m = train.run(second)
    assert m["status"] == "done" and m["start_step"] == 20
    got = snapshot(root)
    pd.testing.assert_frame_equal(got[m["run_id"]][1], reference[m["run_id"]][1], check_exact=True)


def test_a_full_disk_ends_python_m_replicate_with_one_line(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-m", "replicate", *SWEEP, f"results_dir={tmp_path}", "progress=false"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                         preexec_fn=_limit_file_size)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and "File too large" in lines[0] and "checkpoint.pt" in lines[0], lines
    (rdir,) = tmp_path.glob("runs/*/*")
    assert results.read_manifest(rdir)["status"] == "failed" and not (rdir / "lock").exists()


def _child_one(spec, cfg):
    results.arm_fault(spec)
    train.run(cfg)
    os._exit(0)


def test_a_finished_runs_leftover_lock_and_checkpoint_are_removed_by_the_next_launch(tmp_path):
    """Killed between the run's last manifest and removing its checkpoint and lock."""
    cfg = cfgs(tmp_path)[0]
    proc = mp.get_context("fork").Process(target=_child_one, args=("manifest.json:2:renamed", cfg))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    rdir = results.run_dir(tmp_path, cfg)
    assert {"lock", "checkpoint.pt"} <= {p.name for p in rdir.iterdir()}
    assert train.run(cfg)["skipped"]
    assert sorted(p.name for p in rdir.iterdir()) == ["config.yaml", "manifest.json", "metrics.parquet"]


def test_a_hydra_sweep_killed_mid_checkpoint_then_rerun_gives_the_uninterrupted_results(tmp_path, reference):
    """The hook through the real entry point: ``python -m replicate -m``, killed in its second run."""
    args = [*SWEEP, "-m", f"seed={','.join(map(str, SEEDS))}", f"results_dir={tmp_path}", "progress=false"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    killed = subprocess.run([sys.executable, "-m", "replicate", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**env, "REPLICATE_FAULT": "checkpoint.pt:8:mid"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(snapshot(tmp_path)) == 1  # the first run finished, the second was killed
    again = subprocess.run([sys.executable, "-m", "replicate", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 0 and "3 runs: 3 done (1 already finished before" in again.stdout, again.stdout
    got = snapshot(tmp_path)
    seed = results.runs(tmp_path).set_index("run_id")["seed"]
    ref_seed = {results.run_id(c): c["seed"] for c in cfgs("results")}
    by_seed = {ref_seed[rid]: frame for rid, (_, frame) in reference.items()}
    assert len(got) == len(SEEDS)
    for rid, (status, frame) in got.items():
        assert status == "done"
        pd.testing.assert_frame_equal(frame, by_seed[seed[rid]], check_exact=True)


def test_a_disk_full_before_the_first_write_is_one_line_and_leaves_no_folder(tmp_path):
    def tiny():  # not even the lock (about 250 bytes) fits
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-m", "replicate", *SWEEP, f"results_dir={tmp_path}", "progress=false"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, preexec_fn=tiny)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "File too large" in lines[0]
    assert not list(tmp_path.glob("runs/*/*")) and snapshot(tmp_path) == {}
