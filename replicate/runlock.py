"""One run, one owner: a process claims a run folder by creating ``<run folder>/lock`` before it trains.

The lock file holds JSON: host, pid, started, and what tells a reused pid apart (boot id, pid
namespace, the process's start time). It is written to a unique name and hard-linked to ``lock``,
which fails when ``lock`` exists: atomic, with the whole text at once, also on NFS (open(2)'s advice;
flock is not kept by every cluster file system). The holder refreshes its mtime every
``HEARTBEAT_S`` seconds from a daemon thread and deletes it when the run ends, also on an exception.

A lock is stale, and taken over, when its holder is gone: on the same host (same boot and pid
namespace) when its pid is dead or now another process; from another host when its heartbeat is
older than ``STALE_S`` (measured on the file server's clock: against the mtime of a file just made in
the same folder). A takeover runs under a second such file, ``lock.takeover``, and re-reads the
lock before deleting it, so two contenders cannot both delete a live one; then they race to link
``lock`` again and one wins.

``claim()`` waits for a live holder (then skips the run if the holder finished it, and resumes it if
the holder died or failed) or, with ``wait=False`` (``if_locked=skip``), skips it at once; both say
in one line on stderr where the run is being trained.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import results

HEARTBEAT_S = 30.0   # the holder touches its lock this often
STALE_S = 600.0      # a lock of another host untouched this long is stale (its holder is gone)
TAKEOVER_S = 30.0    # a lock.takeover older than this was left by a process that died taking over
POLL_S = 1.0         # how often a waiting process looks again


class Busy(Exception):
    """The run folder is claimed by a live process; ``holder`` is its lock's JSON (or None)."""

    def __init__(self, path: Path, holder: dict | None):
        self.path, self.holder = path, holder
        super().__init__(f"{path} is being trained by {where(holder)}")


def where(holder: dict | None) -> str:
    if not holder:
        return "another process (its lock file is unreadable)"
    return f"host {holder.get('host')} pid {holder.get('pid')} (since {holder.get('started')})"


# ----------------------------------------------------------------------------------- identity
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return ""


def _boot_id() -> str | None:
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _pidns() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time since boot (clock ticks, /proc/<pid>/stat field 22), None if unknown."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    try:
        return int(text.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "boot": _boot_id(), "pidns": _pidns(), "ticks": _start_ticks(os.getpid()),
            "token": secrets.token_hex(8)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _age(path: Path) -> float:
    """Seconds since ``path`` was last touched, on the clock of the file system holding it."""
    probe = path.parent / f".clock.{secrets.token_hex(6)}.tmp"  # a killed prober's: removed by remove_tmp
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        now = os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    return now - path.stat().st_mtime


def stale(path: Path, text: str | None, max_age: float | None = None) -> bool:
    """Whether the lock at ``path`` (its text ``text``) was left by a holder that is gone: its pid
    checked on this host, else its age (``max_age``, default ``STALE_S``; TAKEOVER_S when unreadable)."""
    try:
        holder = json.loads(text) if text else None
    except ValueError:
        holder = None
    me = _me()
    same = isinstance(holder, dict) and holder.get("host") == me["host"] and holder.get("boot") == me["boot"] \
        and holder.get("pidns") == me["pidns"] and isinstance(holder.get("pid"), int)
    if same:
        pid = holder["pid"]
        return not _alive(pid) or (holder.get("ticks") is not None and _start_ticks(pid) != holder["ticks"])
    if isinstance(holder, dict) and holder.get("host") == me["host"] and holder.get("boot") not in (None, me["boot"]):
        return True  # this host rebooted since
    try:
        return _age(path) > (TAKEOVER_S if not text else STALE_S if max_age is None else max_age)
    except FileNotFoundError:
        return False


# ----------------------------------------------------------------------------------- the lock
def _create(path: Path, text: str) -> bool:
    """Make ``path`` holding ``text`` if it does not exist (True), atomically; False if it exists."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # NFS: the server may have linked it and lost the reply
            return os.stat(tmp).st_nlink == 2
    finally:
        tmp.unlink(missing_ok=True)


class RunLock:
    """The lock of one run folder: ``acquire()`` (raises Busy), ``release()``, or ``with``."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.path = self.folder / "lock"
        self.info: dict | None = None
        self.skipped: dict | None = None  # claim(): the manifest to return instead of training
        self.lost = False                 # the heartbeat found the lock taken over (silent > STALE_S)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self.info is not None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire()
        except BaseException as e:
            if not isinstance(e, Busy):
                self._remove_if_empty()  # e.g. a full disk: no empty folder left behind
            raise

    def _remove_if_empty(self) -> None:
        try:
            self.folder.rmdir()
        except OSError:
            pass

    def _acquire(self) -> None:
        while True:
            info = _me()
            try:
                made = _create(self.path, json.dumps(info) + "\n")
            except FileNotFoundError:  # a releasing holder removed the (empty) folder just now
                self.folder.mkdir(parents=True, exist_ok=True)
                continue
            if not made:
                text = _read(str(self.path))
                if text is None:
                    continue  # released just now: try again
                if not stale(self.path, text):
                    raise Busy(self.path, _parse(text))
                self._take_over(text)
                continue
            self.info = info
            results.fault("lock", "renamed")  # test-only kill point (REPLICATE_FAULT=lock:<n>:renamed)
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="runlock-heartbeat", daemon=True)
            self._beat.start()
            return

    def _take_over(self, seen: str) -> None:
        """Delete the stale lock whose text was ``seen``, under ``lock.takeover``: one contender at a time."""
        guard = self.folder / "lock.takeover"
        if not _create(guard, json.dumps(_me()) + "\n"):
            text = _read(str(guard))
            if text is not None and stale(guard, text, TAKEOVER_S):  # its maker died in the middle of a takeover
                guard.unlink(missing_ok=True)
            time.sleep(0.01 + 0.04 * secrets.randbelow(100) / 100)
            return
        try:
            if _read(str(self.path)) == seen and stale(self.path, seen):  # still the lock judged stale
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def _mine(self) -> bool:
        return self.info is not None and _parse(_read(str(self.path))) == self.info

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if not self._mine():
                    self.lost = True
                    print(f"warning: the lock of {self.folder} was taken over by {where(_parse(_read(str(self.path))))} "
                          f"(this process was silent over {STALE_S:.0f}s)", file=sys.stderr)
                    return
                os.utime(self.path)
            except OSError:
                pass  # a file server hiccup: try at the next beat

    def release(self) -> None:
        if self.info is None:
            return
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
        try:
            if self._mine():
                self.path.unlink(missing_ok=True)
        finally:
            self.info = None
        self._remove_if_empty()  # a claim that wrote nothing (e.g. the disk was full) leaves no folder

    def __enter__(self) -> "RunLock":
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _Follower(RunLock):
    """What a rank > 0 holds: nothing (rank 0 holds the lock for the whole run)."""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


def _parse(text: str | None) -> dict | None:
    try:
        out = json.loads(text) if text else None
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def claim(folder: Path | str, label: str, wait: bool = True, main: bool = True) -> RunLock:
    """Claim the run folder ``folder`` (``label`` names the run in messages) and return its held lock;
    or a lock with ``.skipped`` set to the manifest to return instead of training: the run was
    finished by the holder waited for, or (``wait=False``) another process is training it. Under
    torchrun only rank 0 (``main``) takes the lock; the other ranks follow its decision."""
    folder = Path(folder)
    lock = RunLock(folder) if main else _Follower(folder)
    if main:
        said = False
        while True:
            try:
                lock.acquire()
                break
            except Busy as busy:
                if not wait:
                    print(f"{label}: is being trained by {where(busy.holder)}: skipped (if_locked=skip)",
                          file=sys.stderr)
                    manifest = results.manifest_or_none(folder) or {}
                    lock.skipped = {"run_id": folder.name, "experiment": folder.parent.name, **manifest,
                                    "status": "running", "skipped": True, "held_by": busy.holder}
                    break
                if not said:
                    print(f"{label}: is being trained by {where(busy.holder)}: waiting for it "
                          "(if_locked=skip skips it)", file=sys.stderr)
                    said = True
                time.sleep(POLL_S)
        if lock.held:
            manifest = results.manifest_or_none(folder)
            if manifest and manifest.get("status") in results.FINISHED:  # finished while we waited
                lock.release()
                lock.skipped = {**manifest, "skipped": True}
            else:
                results.remove_tmp(folder)  # what a killed writer left
    lock.skipped = _agree(lock.skipped)
    return lock


def tidy(folder: Path | str) -> None:
    """Remove the stale lock a holder killed just after finishing its run left in ``folder``."""
    if not (Path(folder) / "lock").exists():
        return
    lock = RunLock(folder)
    try:
        lock.acquire()
    except Busy:
        return
    lock.release()


def _agree(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (itself outside torchrun)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return obj
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj
