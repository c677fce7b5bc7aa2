"""The results store: one folder per run, named by a hash of its resolved config.

Layout (``root`` is ``results_dir``, default ``results/``)::

    root/runs/<experiment>/<run_id>/
        config.yaml        the resolved config (what the hash is taken over)
        manifest.json      run_id, experiment, seed, status, git commit and dirty flag, versions,
                           device, wall time, steps done, error (for a failed run)
        metrics.parquet    one row per logged step: ``step`` and one column per metric
        histograms.parquet with probes on: step, layer, quantity (r or u), lo, hi, counts (fixed bins)
        checkpoint.pt      only while a run is unfinished (or with ``train.keep_checkpoint``)

Every file is written to a temporary name in the same folder and renamed into place, so a killed
process leaves either the old file or the new one, never half of one. ``load()`` and ``runs()`` read
only this layout; a folder they cannot read is reported with a warning and skipped.

Seeds: ``PRIMARY_SEEDS`` (0, 1, 2) make the committed scorecard, leaderboard and figures;
``HELDOUT_SEEDS`` (10, 11, 12) its held-out column (``make replicate SEEDS=10,11,12``). Both live
side by side under ``runs/`` (the seed is part of the hashed config); ``runs()``, ``load()`` and
``load_histograms()`` take ``seeds=`` to read one set.

Statuses: ``running`` (started, not finished: resumed by the next launch), ``done``, ``diverged``
(the loss became non-finite; its metrics up to then are kept) and ``failed`` (an exception; retried
by the next launch).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

FINISHED = ("done", "diverged")
# The seeds of the committed scorecard, leaderboard and figures, and the project's held-out set: a
# verdict that differs between the two is marked unstable (replicate/scorecard.py).
PRIMARY_SEEDS = (0, 1, 2)
HELDOUT_SEEDS = (10, 11, 12)
# Keys that do not change what a run computes: changing them must not start a new run.
# how a run is split over processes (world size, ZeRO-1, micro-batches) and compiled leaves its
# numbers equal up to float rounding: not hashed, so a run resumes under another split
NOT_HASHED = ("results_dir", "progress", "threads", "if_locked", "train.checkpoint_every", "train.keep_checkpoint",
              "train.grad_accum", "dist.zero", "model.compile")
# Keys added to the config tree after runs were recorded without them, with the value that computes
# what those runs computed: at that value a key is left out of the hash, so adding it (issue 17: every
# documented key in the tree with its default) starts no new run and loses no result; at any other
# value it is hashed. (train.val_batches: one held-out batch was all there was before the key.)
HASHED_UNLESS = {"train.val_every": 0, "train.val_batches": 1, "probe.model_every": None, "probe.start": 0}
# Keys that do nothing while another key has a value (key -> (other key, value)): not hashed then.
IDLE_WHEN = {"train.val_batches": ("train.val_every", 0)}


# ---------------------------------------------------------------------------------------- writing
def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the usual permissions, 0666 less the umask (not mkstemp's 0600), so colleagues on
    a shared cluster can read the results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_tmp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            blob = data.encode() if isinstance(data, str) else data
            if _FAULT is not None:
                _fault_write(path.name, f, blob, tmp)
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # a failed write() names no file: name the one being written
        raise
    if _FAULT is not None:
        fault(path.name, "renamed")


def _create_tmp(path: Path) -> tuple[int, str]:
    """A new ``.<name>.<random>.tmp`` beside ``path``, opened for writing with mode 0666 & ~umask."""
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def remove_tmp(folder: Path | str) -> list[str]:
    """Delete the temporary files a killed writer left in ``folder`` (call it only while owning the
    folder, e.g. holding its run lock); returns their names."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        gone.append(p.name)
    return gone


# --- test-only fault hook: REPLICATE_FAULT=<file name>:<n>[:<phase>] SIGKILLs this process at the
# n-th atomic write of that file name (e.g. checkpoint.pt:2), phase ``mid`` (default: half the
# bytes written to the temporary file) or ``renamed`` (just after the rename); read once at import
# (or by ``arm_fault``); inert, one None check per write, when unset.
_FAULT: tuple[str, int, str] | None = None
_FAULT_COUNTS: dict[str, int] = {}


def arm_fault(spec: str | None = None) -> None:
    """(Re)read the fault hook from ``spec`` (default: the REPLICATE_FAULT environment variable)."""
    global _FAULT
    spec = os.environ.get("REPLICATE_FAULT") if spec is None else spec
    _FAULT_COUNTS.clear()
    if not spec:
        _FAULT = None
        return
    name, n, *phase = spec.split(":")
    _FAULT = (name, int(n), phase[0] if phase else "mid")


def fault(name: str, phase: str) -> None:
    """The fault hook's kill point ``name`` at ``phase``: SIGKILL when it is the armed one."""
    if _FAULT is None or _FAULT[0] != name or _FAULT[2] != phase:
        return
    _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    if _FAULT_COUNTS[name] == _FAULT[1]:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _fault_write(name: str, f, blob: bytes, tmp: str) -> None:
    if _FAULT is not None and _FAULT[0] == name and _FAULT[2] == "mid" and \
            _FAULT_COUNTS.get(name, 0) + 1 == _FAULT[1]:
        f.write(blob[: len(blob) // 2])
        f.flush()
        os.fsync(f.fileno())
    fault(name, "mid")


arm_fault()


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def write_table(table: list[dict] | pd.DataFrame, path: Path | str) -> None:
    """A DataFrame (or a list of row dicts) as parquet, atomically."""
    buf = io.BytesIO()
    (table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)).to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())


def write_manifest(run_dir: Path | str, manifest: Mapping) -> None:
    atomic_write(Path(run_dir) / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")


FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no space left, file too large, quota exceeded


def disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in FULL


class DiskFull(SystemExit):
    """A write into ``results_dir`` failed for want of space: one line for the user (exit code 1).
    Atomic writes leave what was written before intact; the run resumes from its last checkpoint."""

    def __init__(self, e: OSError, root: Path | str, label: str):
        self.error = e
        super().__init__(f"error: {label}: writing {e.filename or 'a results file'} failed: "
                         f"{e.strerror or e} (no space left in results_dir={root}?): the results written "
                         "before are intact; free space and run again: the run resumes from its last checkpoint")


def read_manifest(run_dir: Path | str) -> dict | None:
    p = Path(run_dir) / "manifest.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())


# ---------------------------------------------------------------------------------------- naming
def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{'optimizer': {'b2': 0.99}} -> {'optimizer.b2': 0.99}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def run_id(cfg: Mapping) -> str:
    """A 12-hex-digit hash of the resolved config, without the keys in ``NOT_HASHED``, those of
    ``HASHED_UNLESS`` at their value there and those of ``IDLE_WHEN`` while they do nothing."""
    full = flatten(cfg)

    def at(k: str, value: Any) -> bool:
        return k in full and type(full[k]) is type(value) and full[k] == value

    flat = {k: v for k, v in full.items() if k not in NOT_HASHED and not (k in HASHED_UNLESS and at(k, HASHED_UNLESS[k]))
            and not (k in IDLE_WHEN and at(*IDLE_WHEN[k]))}
    blob = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_dir(root: Path | str, cfg: Mapping) -> Path:
    return Path(root) / "runs" / str(cfg.get("name", "default")) / run_id(cfg)


# ---------------------------------------------------------------------------------------- reading
def _run_dirs(root: Path, experiment: str | None = None) -> Iterable[Path]:
    """Run folders ``runs/<experiment>/<run id>`` (of one experiment, or all)."""
    base = Path(root) / "runs"
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob(f"{experiment or '*'}/*") if p.is_dir())


_CONFIGS: dict[tuple[str, int], dict] = {}  # (config.yaml path, mtime_ns) -> parsed config: written once per run


def _config(path: Path) -> dict:
    import yaml

    file = path / "config.yaml"
    key = (str(file), file.stat().st_mtime_ns)
    if key not in _CONFIGS:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
        cfg = yaml.load(file.read_text(), Loader=loader)
        if not isinstance(cfg, dict):
            raise ValueError("config.yaml is not a mapping")
        _CONFIGS[key] = flatten(cfg)
    return _CONFIGS[key]


def _read_run(path: Path) -> tuple[dict, dict] | None:
    """(manifest, flattened config) of a run folder, or None with a warning when it is unreadable."""
    try:
        manifest = read_manifest(path)
        if manifest is None:
            if (path / "lock").exists():  # claimed, its manifest not written yet (or its claimer was killed)
                return None
            raise ValueError("no manifest.json")
        return manifest, _config(path)
    except Exception as e:  # corrupt or half-written: report and skip, never fatal
        warnings.warn(f"skipping unreadable run folder {path}: {e}", stacklevel=3)
        return None


def parse_seeds(text: str | Iterable[int] | None) -> tuple[int, ...] | None:
    """``"10,11,12"`` (or ints) -> ``(10, 11, 12)``, sorted and without repeats; None or empty -> None."""
    if text is None:
        return None
    items = [x.strip() for x in text.split(",")] if isinstance(text, str) else list(text)
    try:
        seeds = sorted({int(x) for x in items if x != ""})
    except (TypeError, ValueError):
        raise ValueError(f"seeds must be integers separated by commas, e.g. 10,11,12 (got {text!r})") from None
    return tuple(seeds) or None


def _wanted(seeds: Iterable[int] | None) -> set[int] | None:
    return None if seeds is None else {int(s) for s in seeds}


def _has_seed(manifest: Mapping, wanted: set[int] | None) -> bool:
    if wanted is None:
        return True
    seed = manifest.get("seed")
    return seed is not None and int(seed) in wanted


def require_runs(root: Path | str, seeds: Iterable[int] | None = PRIMARY_SEEDS) -> None:
    """Exit with one line when ``root/runs`` holds no run of ``seeds`` (default ``PRIMARY_SEEDS``;
    None: any seed): the scorecard, leaderboard and report are built from raw runs, which git does
    not keep (a fresh clone has the committed outputs only), and rebuilding them from nothing, or
    from held-out runs alone, would overwrite those with "not run"."""
    root = Path(root)
    wanted = _wanted(seeds)
    dirs = list(_run_dirs(root))
    if any(_has_seed(m, wanted) for m in map(manifest_or_none, dirs) if m is not None):
        return
    kept = (f"nothing to build from, so nothing was written (the scorecard, leaderboard and report already in "
            f"{root} are kept). `make replicate` runs the experiments (deterministic: the committed numbers come "
            "back) and then the report.")
    if not dirs:
        raise SystemExit(f"error: no runs under {root / 'runs'}: {kept}")
    raise SystemExit(f"error: no runs under {root / 'runs'} of seeds {','.join(map(str, sorted(wanted)))} (the "
                     f"committed scorecard's; the runs there are of other seeds): {kept}")


def manifest_or_none(path: Path) -> dict | None:
    """The run's manifest, or None when it is missing or unreadable."""
    try:
        return read_manifest(path)
    except Exception:
        return None


def runs(root: Path | str = "results", experiment: str | None = None,
         seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """One row per run: run_id, experiment, seed, status, wall_time_s, path, then the flattened
    config (dotted keys such as ``optimizer.b2``). ``seeds``: only the runs of those seeds (e.g.
    ``PRIMARY_SEEDS``); None: every seed."""
    rows = []
    wanted = _wanted(seeds)
    for path in _run_dirs(Path(root), experiment):
        read = _read_run(path)
        if read is None:
            continue
        manifest, cfg = read
        if experiment is not None and manifest.get("experiment") != experiment:
            continue
        if not _has_seed(manifest, wanted):
            continue
        row = {
            "run_id": manifest.get("run_id", path.name),
            "experiment": manifest.get("experiment", path.parent.name),
            "seed": manifest.get("seed"),
            "status": manifest.get("status"),
            "wall_time_s": manifest.get("wall_time_s"),
            "steps_done": manifest.get("steps_done"),
            "path": str(path),
        }
        row.update(cfg)
        rows.append(row)
    cols = ["run_id", "experiment", "seed", "status", "wall_time_s", "steps_done", "path"]
    return pd.DataFrame(rows, columns=None if rows else cols)


def load(
    root: Path | str = "results", experiment: str | None = None, metrics: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
) -> pd.DataFrame:
    """All finished runs' metrics as one tidy frame: run_id, experiment, seed, status, step, metric,
    value. Join with ``runs(root)`` on run_id for the config. ``seeds``: as in ``runs``."""
    frames = []
    wanted = set(metrics) if metrics is not None else None
    for _, r in runs(root, experiment, seeds=seeds).iterrows():
        if r["status"] not in FINISHED:
            continue
        try:
            wide = pd.read_parquet(Path(r["path"]) / "metrics.parquet")
        except Exception as e:
            warnings.warn(f"skipping run {r['path']}: unreadable metrics ({e})", stacklevel=2)
            continue
        tidy = wide.melt(id_vars="step", var_name="metric", value_name="value").dropna(subset=["value"])
        if wanted is not None:
            tidy = tidy[tidy["metric"].isin(wanted)]
        tidy.insert(0, "run_id", r["run_id"])
        tidy.insert(1, "experiment", r["experiment"])
        tidy.insert(2, "seed", r["seed"])
        tidy.insert(3, "status", r["status"])
        frames.append(tidy)
    cols = ["run_id", "experiment", "seed", "status", "step", "metric", "value"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def load_histograms(root: Path | str = "results", experiment: str | None = None,
                    seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """The update histograms of finished runs: run_id, experiment, seed, step, layer, quantity
    (``r`` = m̂/√v̂ or ``u`` = m̂/(√v̂+ε)), lo, hi (the range of the equal-width bins) and counts
    (an array per row; values outside [lo, hi] are counted in the edge bins). ``seeds``: as in
    ``runs``."""
    frames = []
    for _, r in runs(root, experiment, seeds=seeds).iterrows():
        path = Path(r["path"]) / "histograms.parquet"
        if r["status"] not in FINISHED or not path.exists():
            continue
        try:
            h = pd.read_parquet(path)
        except Exception as e:
            warnings.warn(f"skipping run {r['path']}: unreadable histograms ({e})", stacklevel=2)
            continue
        h.insert(0, "run_id", r["run_id"])
        h.insert(1, "experiment", r["experiment"])
        h.insert(2, "seed", r["seed"])
        frames.append(h)
    cols = ["run_id", "experiment", "seed", "step", "layer", "quantity", "lo", "hi", "counts"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
