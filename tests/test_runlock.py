"""One run, one owner: the run folder's lock, its stale rules and takeover, and two real processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from replicate import results, runlock, train
from conftest import ROOT, make_cfg

ARGS = ["model=mlp", "data=regression", "train.steps=4000", "train.checkpoint_every=200", "progress=false",
        "threads=1", "name=locked"]


def fake_lock(folder, **fields):
    """A lock file as another process would have left it."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {**runlock._me(), **fields}
    (folder / "lock").write_text(json.dumps(info) + "\n")
    return info


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_held_lock_is_busy_then_released_with_nothing_left(tmp_path):
    a = runlock.RunLock(tmp_path / "run")
    a.acquire()
    holder = json.loads((tmp_path / "run" / "lock").read_text())
    assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
    with pytest.raises(runlock.Busy, match=f"pid {os.getpid()}"):
        runlock.RunLock(tmp_path / "run").acquire()
    (tmp_path / "run" / "manifest.json").write_text("{}")
    a.release()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["manifest.json"]
    with runlock.RunLock(tmp_path / "run") as b:  # free again
        assert b.held
    assert not (tmp_path / "run" / "lock").exists()


def test_a_claim_that_wrote_nothing_leaves_no_folder(tmp_path):
    with runlock.RunLock(tmp_path / "run"):
        pass
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["dead pid", "reused pid", "other boot", "other host, silent",
                                  "unreadable, old"])
def test_a_stale_lock_is_taken_over(tmp_path, case):
    folder = tmp_path / "run"
    if case == "dead pid":
        fake_lock(folder, pid=dead_pid())
    elif case == "reused pid":  # a live pid, but not the process that took the lock
        fake_lock(folder, pid=os.getppid(), ticks=12345)
    elif case == "other boot":
        fake_lock(folder, pid=os.getppid(), boot="another-boot")
    elif case == "other host, silent":
        fake_lock(folder, host="elsewhere", pid=1)
        old = time.time() - runlock.STALE_S - 60
        os.utime(folder / "lock", (old, old))
    else:
        (folder).mkdir(parents=True)
        (folder / "lock").write_text("")
        old = time.time() - runlock.TAKEOVER_S - 5
        os.utime(folder / "lock", (old, old))
    lock = runlock.RunLock(folder)
    lock.acquire()
    assert json.loads((folder / "lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not folder.exists()


@pytest.mark.parametrize("case", ["live pid", "other host, recent heartbeat", "unreadable, recent"])
def test_a_live_lock_is_not_taken_over(tmp_path, case):
    folder = tmp_path / "run"
    if case == "live pid":
        fake_lock(folder, pid=os.getppid(), ticks=runlock._start_ticks(os.getppid()))
    elif case == "other host, recent heartbeat":
        fake_lock(folder, host="elsewhere", pid=1)
        recent = time.time() - runlock.STALE_S / 2
        os.utime(folder / "lock", (recent, recent))
    else:
        folder.mkdir(parents=True)
        (folder / "lock").write_text("")
    before = (folder / "lock").read_text()
    with pytest.raises(runlock.Busy):
        runlock.RunLock(folder).acquire()
    assert (folder / "lock").read_text() == before


def test_the_heartbeat_refreshes_the_lock_and_notices_a_takeover(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.05)
    lock = runlock.RunLock(tmp_path / "run")
    lock.acquire()
    old = time.time() - 1000
    os.utime(lock.path, (old, old))
    time.sleep(0.3)
    assert time.time() - lock.path.stat().st_mtime < 5 and not lock.lost
    fake_lock(tmp_path / "run", pid=os.getppid())  # someone else's now
    time.sleep(0.3)
    assert lock.lost
    lock.release()
    assert json.loads(lock.path.read_text())["pid"] == os.getppid()  # not ours: left alone


def _contend(folder, barrier, queue):
    barrier.wait()
    lock = runlock.RunLock(folder)
    try:
        lock.acquire()
    except runlock.Busy:
        queue.put("busy")
        return
    queue.put("won")
    time.sleep(1.0)  # hold it while the others try
    lock.release()


def test_many_processes_racing_for_one_stale_lock_one_wins(tmp_path):
    ctx = mp.get_context("fork")
    for trial in range(4):
        folder = tmp_path / f"run{trial}"
        fake_lock(folder, pid=dead_pid())
        barrier, queue = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_contend, args=(folder, barrier, queue)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        outcomes = sorted(queue.get(timeout=5) for _ in procs)
        assert outcomes == ["busy"] * 5 + ["won"], outcomes
        assert not folder.exists()


def test_the_lock_is_released_when_a_run_fails_and_when_it_ends(cfg_factory, monkeypatch):
    cfg = cfg_factory("model=mlp", "data=regression", "train.steps=20")
    rdir = results.run_dir(cfg["results_dir"], cfg)

    def broken(*a, **k):
        assert (rdir / "lock").exists()  # held while training
        raise RuntimeError("boom")

    monkeypatch.setattr(train, "_loop", broken)
    with pytest.raises(RuntimeError):
        train.run(cfg)
    assert not (rdir / "lock").exists() and results.read_manifest(rdir)["status"] == "failed"
    monkeypatch.undo()
    assert train.run(cfg)["status"] == "done" and not (rdir / "lock").exists()


def test_a_folder_claimed_before_its_manifest_is_skipped_without_a_warning(tmp_path, recwarn):
    fake_lock(tmp_path / "runs" / "x" / "abc", pid=dead_pid())
    assert results.runs(tmp_path).empty and results.load(tmp_path).empty
    assert not [w for w in recwarn if "skipping" in str(w.message)]


def test_if_locked_skip_skips_a_run_held_elsewhere_in_one_line(cfg_factory, capsys):
    cfg = cfg_factory("model=mlp", "data=regression", "train.steps=20", "if_locked=skip")
    rdir = results.run_dir(cfg["results_dir"], cfg)
    fake_lock(rdir, host="node7", pid=4242)
    m = train.run(cfg)
    assert m["skipped"] and m["held_by"]["host"] == "node7"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "host node7 pid 4242" in err[0] and "skipped" in err[0]
    assert sorted(p.name for p in rdir.iterdir()) == ["lock"]  # nothing of ours written
    cfg.pop("if_locked")
    assert results.run_dir(cfg["results_dir"], cfg) == rdir  # not hashed


def test_the_command_line_says_where_a_held_run_trains_and_refuses_a_bad_if_locked(cfg_factory, tmp_path):
    from conftest import cli

    args = ("model=mlp", "data=regression", "train.steps=20", f"results_dir={tmp_path / 'r'}")
    cfg = cfg_factory(*args[:3], results_dir=tmp_path / "r")
    fake_lock(results.run_dir(tmp_path / "r", cfg), host="node7", pid=4242)
    out = cli(*args, "if_locked=skip")
    assert out.returncode == 0 and "being trained by pid 4242 on node7, skipped" in out.stdout, out.stdout + out.stderr
    bad = cli(*args, "if_locked=maybe")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: if_locked='maybe' is not allowed: must be wait or skip"


def test_a_bad_if_locked_is_one_line_before_anything_is_written(cfg_factory):
    from replicate.config import ConfigError

    cfg = cfg_factory("model=mlp", "data=regression", "train.steps=20", "++if_locked=maybe")
    with pytest.raises(ConfigError, match="if_locked"):
        train.run(cfg)
    assert not Path(cfg["results_dir"]).exists()


# ------------------------------------------------------------------------------ real processes
def popen(*args, **extra_env):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "replicate", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def reference(tmp_path):
    cfg = make_cfg(ARGS, tmp_path / "ref")
    train.run(cfg)
    return pd.read_parquet(results.run_dir(tmp_path / "ref", cfg) / "metrics.parquet")


def wait_for(pred, timeout=120):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_two_processes_start_the_same_run_one_trains_the_other_waits_and_skips(tmp_path):
    root = tmp_path / "results"
    a = popen(*ARGS, f"results_dir={root}")
    b = popen(*ARGS, f"results_dir={root}")
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode == b.returncode == 0, err_a + err_b
    outs = sorted([out_a, out_b], key=lambda o: "skipped" in o)
    assert ": done (4000 steps" in outs[0] and "already finished, skipped" in outs[1], outs
    waited = [e for e in (err_a, err_b) if "waiting for it" in e]
    assert len(waited) == 1 and f"host {socket.gethostname()} pid" in waited[0]
    (rdir,) = root.glob("runs/*/*")
    m = results.read_manifest(rdir)
    assert m["status"] == "done" and m["resumes"] == 0 and not (rdir / "lock").exists()
    assert str(m["pid"]) in waited[0]  # the manifest is the trainer's, named by the waiter
    pd.testing.assert_frame_equal(reference(tmp_path), pd.read_parquet(rdir / "metrics.parquet"), check_exact=True)


def test_a_holder_killed_with_sigkill_is_taken_over_by_the_waiting_process(tmp_path):
    """A SLURM requeue while the old job still runs: the new one waits; the old one is killed -9; its
    stale lock is taken over and the run resumes to the numbers of an uninterrupted run. The holder
    kills itself (REPLICATE_FAULT) just after its 15th checkpoint (step 3000 of 4000), so the kill
    always lands while it holds the lock (a timer could land after a fast run had finished)."""
    root = tmp_path / "results"
    a = popen(*ARGS, f"results_dir={root}", REPLICATE_FAULT="checkpoint.pt:15:renamed")
    wait_for(lambda: list(root.glob("runs/*/*/checkpoint.pt")))
    (rdir,) = root.glob("runs/*/*")
    assert json.loads((rdir / "lock").read_text())["pid"] == a.pid  # a holds it
    b = popen(*ARGS, f"results_dir={root}")
    a.wait(timeout=300)
    assert a.returncode == -signal.SIGKILL  # killed -9 while holding the lock; b waits or comes after
    out, err = b.communicate(timeout=300)
    assert b.returncode == 0 and ": done (4000 steps" in out, out + err
    m = results.read_manifest(rdir)
    assert m["resumes"] == 1 and m["start_step"] > 0 and m["pid"] == b.pid and not (rdir / "lock").exists()
    pd.testing.assert_frame_equal(reference(tmp_path), pd.read_parquet(rdir / "metrics.parquet"), check_exact=True)
