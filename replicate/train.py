"""The one training loop: ``run(cfg)`` trains one run from its config and records it.

Read top to bottom: check the config, find the run's folder (a finished run is not trained again),
seed, build the model, data and optimizer, resume from a checkpoint if one is there, then step:
loss, backward, optimizer step, log, stop if the loss is not finite (status ``diverged``),
checkpoint every ``train.checkpoint_every`` steps. Everything that varies comes in through ``cfg``.

The mitigations of ``cfg['mitigation']`` (replicate/mitigations.py) are built once, grouped by
the place where they act, and the loop calls each place once without naming any: the model, the
param groups, the optimizer chain and its state when they are built; the gradient between backward
and the step; loop events (e.g. rollback) at the top of a step, after the forward pass, and to skip
an update.
``train.precision`` (fp32, bf16, fp16 with ``train.loss_scale``) wraps the forward pass in autocast
and, for fp16, scales the loss and unscales the (fp16-rounded) gradients before clip, probes and
the step (replicate/precision.py).
Under torchrun (replicate/distributed.py) the same loop runs on every rank: DDP around the loss,
each rank a contiguous shard of the global batch, ``train.grad_accum`` micro-batches per step,
optional ZeRO-1 (``dist.zero``); only rank 0 writes results and runs the probes.
"""

from __future__ import annotations

import math
import os
import platform
import random
import socket
import subprocess
import sys
import time
import traceback
from types import SimpleNamespace
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from . import distributed, mitigations, results, runlock
from .config import ConfigError, check_writable, validate
from .data import build_data
from .models import TAKES, build_model
from .optim import HyperparameterError, TransformOptimizer, make_schedule, param_groups
from .precision import Precision
from .probes import Probes, histogram_frame

NOT_OPTIMIZER_HPARAMS = ("name", "compile")


def run(cfg: Any) -> dict:
    """Train the run ``cfg`` describes (a DictConfig or a plain nested dict); return its manifest.

    Raises ConfigError (one line for the user) for a bad value before anything is written.
    One process trains a run at a time: it claims the run's folder with a lock (replicate/runlock.py);
    another process for the same run waits for it (``if_locked=wait``, the default; it then skips a
    run the holder finished, and resumes one the holder left) or skips it (``if_locked=skip``).
    Exceptions during training are recorded as status ``failed`` and re-raised; a full disk as
    ``results.DiskFull`` (one line; what was written before stays intact, the run resumes later).
    """
    cfg = _plain(cfg)
    validate(cfg)
    if_locked = cfg.get("if_locked", "wait")  # checked by validate (config.RULES)
    root = check_writable(cfg.get("results_dir", "results"))
    rdir = results.run_dir(root, cfg)
    manifest = results.read_manifest(rdir) if (rdir / "manifest.json").exists() else None
    if manifest and manifest.get("status") in results.FINISHED:
        # a rerun of a finished sweep trains nothing; it removes what a kill just after the run's
        # last manifest left: the lock and the checkpoint
        runlock.tidy(rdir)
        _drop_checkpoint(cfg, rdir)
        return {**manifest, "skipped": True}
    model, data, opt, mit = _build(cfg)  # before writing anything, so bad values leave no folder
    d = distributed.info()  # rank 0 of 1 outside torchrun; only rank 0 writes

    label = f"{cfg.get('name', 'default')} seed={cfg['seed']} {rdir.name}"
    try:
        lock = runlock.claim(rdir, label, wait=if_locked == "wait", main=d.main)  # rank 0 holds it
        if lock.skipped is not None:  # finished by the process waited for, or (if_locked=skip) running elsewhere
            return lock.skipped
        with lock:
            manifest = _manifest(cfg, rdir, status="running")
            manifest["memory"] = distributed.memory_report(model, opt, d, zero=_zero(cfg))  # every rank's state bytes
            if d.main:
                results.atomic_write(rdir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
                results.write_manifest(rdir, manifest)
            t0 = time.perf_counter()
            try:
                status, steps_done = _loop(cfg, rdir, model, data, opt, mit, manifest)
            except BaseException as e:
                manifest.update(status="failed", error="".join(traceback.format_exception(e)),
                                wall_time_s=manifest["wall_time_s"] + time.perf_counter() - t0)
                if d.main:
                    try:
                        results.write_manifest(rdir, manifest)
                    except OSError:
                        if not results.disk_full(e):
                            raise
                raise
            spent = time.perf_counter() - t0
            manifest.update(status=status, steps_done=steps_done, finished=_now(),
                            wall_time_s=manifest["wall_time_s"] + spent,
                            throughput=distributed.throughput(cfg, model, steps_done - manifest.get("start_step", 0),
                                                              spent, manifest["device"],
                                                              manifest.pop("steady", None)))  # this session's
            if not d.main:
                return manifest
            results.write_manifest(rdir, manifest)
            _drop_checkpoint(cfg, rdir)
            return manifest
    except OSError as e:
        if results.disk_full(e):
            raise results.DiskFull(e, root, label) from e
        raise


def _drop_checkpoint(cfg: dict, rdir: Path) -> None:
    """A finished run's checkpoint goes, unless ``train.keep_checkpoint``."""
    if not cfg["train"].get("keep_checkpoint", False):
        (rdir / "checkpoint.pt").unlink(missing_ok=True)


def _build(cfg: dict):
    """Seed everything, then make the model, the data stream and the optimizer, and let the
    mitigations act at their places (model, param groups, optimizer chain, optimizer state).
    Returns (model, data, opt, mitigations); the loop places (gradient, loop events) act in _loop."""
    seed = cfg["seed"]
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    if cfg.get("deterministic", True):
        torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = _device(cfg.get("device", "auto"))
    d = distributed.setup(device)  # joins the process group under torchrun
    try:
        mit = mitigations.build(cfg.get("mitigation"))  # checked once, grouped by place
        if _zero(cfg) and (mit.needing_full_state() or (cfg.get("probe") or {}).get("every")):
            names = ", ".join(f"mitigation.{n}" for n in mit.needing_full_state())
            raise ConfigError("dist.zero=true shards the optimizer state: probes" + (f" and {names}" if names else "")
                              + " need all of it; use dist.zero=false (plain DDP) with them")
        parts, rows = d.world * cfg["train"].get("grad_accum", 1), (cfg.get("data") or {}).get("batch_size")
        if parts > 1 and isinstance(rows, int) and rows % parts:
            raise ConfigError(f"data.batch_size={rows} does not split into world size {d.world} x "
                              f"train.grad_accum={cfg['train'].get('grad_accum', 1)} equal parts")
        mname, dname = cfg["model"].get("name"), (cfg.get("data") or {}).get("name")
        if isinstance(mname, str) and dname not in TAKES.get(mname, (dname,)):  # the loss fails on the first batch
            raise ConfigError(f"data={dname}: model={mname} does not take its batches; use "
                              + " or ".join(f"data={d}" for d in TAKES[mname]))
        model = _checked("model", lambda m: build_model(m).to(device), {k: v for k, v in cfg["model"].items()
                                                                        if k != "compile"})
        mit.model(model)
        data = _checked("data", build_data, cfg["data"])
        if cfg["train"].get("val_every"):
            try:
                data.val_batch(0)
            except NotImplementedError:
                raise ConfigError(f"train.val_every={cfg['train']['val_every']}: data={cfg['data'].get('name')} has no "
                                  "held-out batches; use train.val_every=0") from None
        sched = dict(cfg.get("schedule") or {"name": "constant"})
        schedule = _checked("schedule", lambda s: make_schedule(s.pop("name"), **s), sched)
        ocfg = cfg["optimizer"]
        hparams = {k: v for k, v in ocfg.items() if k not in NOT_OPTIMIZER_HPARAMS}
        try:
            params = mit.groups(model, param_groups(ocfg["name"], model), hparams.get("lr", 1e-3))
            variant = mit.chain(ocfg["name"])

            def make(ps):
                return TransformOptimizer(ps, variant, schedule=schedule, compile=bool(ocfg.get("compile", False)),
                                          **hparams)
            opt = distributed.ShardedOptimizer(params, make, d) if _zero(cfg) else make(params)  # dist.zero: ZeRO-1
        except HyperparameterError as e:
            raise ConfigError(f"optimizer.{e.key}: {e}") from None
        except (MemoryError, RuntimeError) as e:  # its state (m, v) does not fit
            if not _out_of_memory(e):
                raise
            raise ConfigError(f"optimizer: its state does not fit in memory ({_memory_line(e)}); "
                              "make the model smaller") from None
        mit.optimizer(model, data, opt)
    except mitigations.MitigationError as e:
        raise ConfigError(str(e)) from None
    return model, data, opt, mit


def _checked(group: str, build, cfg):
    """``build(cfg)``, with what a builder raises at startup turned into a one-line ConfigError: a bad
    value (TypeError, ValueError), a file it cannot read (OSError), or what does not fit in memory
    (MemoryError, an allocator's RuntimeError, CUDA out of memory)."""
    try:
        return build(cfg)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(msg if msg.startswith(f"{group}.") else f"{group}: {msg}") from None
    except OSError as e:
        where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
        raise ConfigError(f"{group}: cannot read{where}: {e.strerror or e}") from None
    except (MemoryError, RuntimeError) as e:
        if "negative dimension" in str(e):  # a size the rules do not know went below 0
            raise ConfigError(f"{group}: a size is negative ({str(e).splitlines()[0]})") from None
        if not _out_of_memory(e):
            raise
        raise ConfigError(f"{group}: does not fit in memory ({_memory_line(e)}); make it smaller") from None


def _out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or "out of memory" in text or "can't allocate memory" in text \
        or "cannot allocate memory" in text or "failed to allocate" in text


def _memory_line(e: BaseException) -> str:
    """``you tried to allocate 120000000000 bytes`` -> ``an allocation of 120.0 GB failed``."""
    import re

    m = re.search(r"allocate (\d+) bytes", str(e)) or re.search(r"allocate ([\d.]+ [KMGT]i?B)", str(e))
    if m:
        size = m.group(1)
        return f"an allocation of {int(size) / 1e9:.1f} GB failed" if size.isdigit() else \
            f"an allocation of {size} failed"
    return type(e).__name__ + (f": {str(e).splitlines()[0][:120]}" if str(e).strip() else "")


def _loop(cfg: dict, rdir: Path, model, data, opt, mit: mitigations.Mitigations, manifest: dict) -> tuple[str, int]:
    tcfg = cfg["train"]
    steps, log_every, ckpt_every = tcfg["steps"], tcfg.get("log_every", 1), tcfg.get("checkpoint_every", 0)
    device = next(model.parameters()).device
    ckpt_path = rdir / "checkpoint.pt"
    d = distributed.info()
    accum, val_every = tcfg.get("grad_accum", 1), tcfg.get("val_every", 0)
    val_batches = tcfg.get("val_batches", 1)  # held-out batches val_loss averages over (absent: the one batch of old)
    probes = _probes(cfg, model, opt, data, device) if d.main else None  # rank 0 sees the full view
    if probes is not None and probes.notes:  # e.g. SGD has no v: say which probes do not apply
        print(f"probes: {probes.notes}", file=sys.stderr)
        manifest["probe_notes"] = probes.notes
        if d.main:
            results.write_manifest(rdir, manifest)
    prec = Precision(tcfg.get("precision", "fp32"), tcfg.get("loss_scale", "dynamic"), device)
    rows: list[dict] = []
    start = 0
    if ckpt_path.exists():  # resume a killed run exactly where its last checkpoint left it
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        data.load_state_dict(ck["data"])
        torch.set_rng_state(ck["rng"])
        if probes is not None:
            probes.load_state_dict(ck["probes"])
        mit.load_state_dict(ck.get("loop") or {})
        prec.load_state_dict(ck.get("precision"))
        rows, start = ck["rows"], ck["step"]
    manifest["start_step"] = start  # > 0 after a resume
    step_model = distributed.LossModule(model)  # forward(batch) = model.loss(batch)
    if d.world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device] if device.type == "cuda" else None)
    if cfg["model"].get("compile", False):
        step_model = torch.compile(step_model)

    status = "done"
    # the steady rate leaves out the first tenth of this session's steps (compilation, warm-up)
    warm, t_warm = start + max(1, (steps - start) // 10), None
    bar = tqdm(initial=start, total=steps, disable=not (cfg.get("progress", True) and d.main),
               desc=f"{cfg.get('name', 'run')} seed={cfg['seed']}", mininterval=1.0, leave=False)
    step = start
    events = mit.loop  # loop events (rollback, ...): the top of a step, after the forward pass, skip
    run = SimpleNamespace(model=model, opt=opt, data=data, probes=probes, rows=rows)
    while step < steps:
        for ev in events:
            ev.top(step, run)
        batch = _to(data.next(), device)
        opt.zero_grad(set_to_none=True)
        scale = prec.scale()
        # forward (autocast of train.precision) and backward of each micro-batch of this rank's shard;
        # loss: the global batch's, averaged over micro-batches and ranks
        loss = _forward_backward(step_model, distributed.microbatches(batch, d, accum), prec)
        value = loss.item() if events else None
        back = next((b for b in (ev.after_forward(step, value, run) for ev in events) if b is not None), None)
        if back is not None:  # e.g. rollback: the state ~N steps back restored, M batches skipped
            step = bar.n = back
            continue
        val = _val_loss(model, data, prec, device, val_batches) if d.main and val_every and (
            step % val_every == 0 or step == steps - 1) else None  # same parameters as this step's loss
        prec.unscale(opt)  # fp16: each gradient rounded to fp16, then / s; fp32, bf16: nothing
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None
        finite = prec.finite(grad_norm)  # False: fp16 skips this step (no clip, no probes)
        # a loop event may skip this step's update (e.g. skip-step); its loss is still logged
        skipped = bool(events) and any([ev.skip_update(step, value, math.nan if grad_norm is None else grad_norm.item())
                                        for ev in events])
        stepped = finite and not skipped
        if grads and stepped:
            mit.gradient(grads, grad_norm)  # e.g. clip, in place
        if probes is not None and stepped:
            probes.before_step(step)
        if not skipped:
            prec.step(opt)  # opt.step(); fp16: skipped on inf/nan, then the scale's update
        lr = opt.current_lr()  # the learning rate this step used
        probed = probes.after_step(step) if probes is not None and stepped else {}
        amp = {"loss_scale": scale, "step_skipped": float(not finite)} if prec.fp16 else {}
        event = {k: v for ev in events for k, v in ev.event().items()}
        if probed or event or not stepped or val is not None or step % log_every == 0 or step == steps - 1:
            value = loss.item()
            rows.append({"step": step, "loss": value, "lr": lr,
                         "grad_norm": float("nan") if grad_norm is None else grad_norm.item(),
                         **probed, **event, **amp, **({"val_loss": val} if val is not None else {})})
            if not math.isfinite(value):
                status = "diverged"
                break
        step += 1
        bar.update(1)
        if step == warm:
            t_warm = time.perf_counter()
        if ckpt_every and step % ckpt_every == 0 and step < steps:
            osd = opt.state_dict()  # ZeRO-1: every rank takes part; rank 0 gets the consolidated state
            if d.main:
                results.atomic_torch_save({"model": model.state_dict(), "optimizer": osd,
                                           "data": data.state_dict(), "rng": torch.get_rng_state(),
                                           "probes": probes.state_dict() if probes is not None else None,
                                           "loop": mit.state_dict(),
                                           "precision": prec.state_dict(), "rows": rows, "step": step}, ckpt_path)
    bar.close()
    if t_warm is not None and step > warm:
        manifest["steady"] = (step - warm, time.perf_counter() - t_warm)
    if d.world > 1:
        manifest["replica_spread"] = distributed.replica_spread(model)  # 0: every rank holds the same params
    if not d.main:
        return status, step + 1 if status == "diverged" else step
    results.write_table(rows, rdir / "metrics.parquet")
    if probes is not None and probes.histograms:
        results.write_table(histogram_frame(probes.histograms), rdir / "histograms.parquet")
    return status, step + 1 if status == "diverged" else step


def _forward_backward(step_model, micro: list, prec) -> torch.Tensor:
    """Σ_j ∇(L_j / k) over the k micro-batches (DDP all-reduces on the last one only); returns
    the detached loss of the global batch, mean_j L_j averaged over ranks."""
    k, total = len(micro), None
    for j, mb in enumerate(micro):
        quiet = j < k - 1 and hasattr(step_model, "no_sync")
        with step_model.no_sync() if quiet else nullcontext():
            with prec.autocast():  # train.precision: bf16/fp16 autocast of the forward pass
                loss = step_model(mb)
            prec.backward(loss / k if k > 1 else loss)  # fp16: (loss x s).backward()
        total = loss.detach() if total is None else total + loss.detach()
    return distributed.mean(total / k if k > 1 else total)


@torch.no_grad()
def _val_loss(model, data, prec, device, batches: int = 1) -> float:
    """The mean loss on the held-out batches ``data.val_batch(0..batches-1)`` (``train.val_batches``, the
    same batches at every evaluation), for ``train.val_every``."""
    with prec.autocast():
        return float(sum(model.loss(_to(data.val_batch(i), device)).item() for i in range(batches)) / batches)


def _zero(cfg: dict) -> bool:
    return bool((cfg.get("dist") or {}).get("zero", False))


def _probes(cfg: dict, model, opt, data, device) -> Probes | None:
    """The probes of ``cfg['probe']`` (None when ``probe.every`` and ``probe.model_every`` are 0),
    with a fixed probe batch for the curvature: the first held-out batch where the data has one,
    else the first batch; and the first training batch for a model's own ``probe`` (probes.py)."""
    pcfg = cfg.get("probe") or {}
    model_every = pcfg.get("model_every")
    if not pcfg.get("every") and not model_every:
        return None
    train_batch = data.batch_at(0)
    try:
        batch = data.val_batch(0)
    except NotImplementedError:
        batch = train_batch
    return Probes(model, opt, pcfg, seed=cfg["seed"], probe_batch=_to(batch, device),
                  train_batch=_to(train_batch, device))


# ------------------------------------------------------------------------------------------ launch
def _worker(rank: int, world: int, port: int, cfg: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    run(cfg)


def spawn(cfg: dict, nprocs: int, port: int | None = None) -> None:
    """Run ``cfg`` in ``nprocs`` local processes (gloo on CPU), as torchrun would: each calls ``run``."""
    import socket

    import torch.multiprocessing as mp

    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    # fork is quick (no re-import) and safe before CUDA is initialised; spawn where CUDA is used
    method = "spawn" if torch.cuda.is_available() else "fork"
    mp.start_processes(_worker, args=(nprocs, port, cfg), nprocs=nprocs, join=True, start_method=method)


# ---------------------------------------------------------------------------------------- helpers
def _plain(cfg: Any) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    cfg = dict(cfg)
    cfg.pop("hydra", None)
    return cfg


def _device(name: str) -> torch.device:
    return distributed.local_device(name)  # auto: cuda when present (cuda:LOCAL_RANK under torchrun), else cpu


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git() -> tuple[str | None, bool | None]:
    top = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(top), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(top), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "pandas", "hydra-core", "omegaconf", "replicate-adam-spikes"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _manifest(cfg: dict, rdir: Path, status: str) -> dict:
    old = results.read_manifest(rdir) or {}
    commit, dirty = _git()
    device = _device(cfg.get("device", "auto"))
    return {
        "run_id": rdir.name,
        "experiment": cfg.get("name", "default"),
        "seed": cfg["seed"],
        "status": status,
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": _versions(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": old.get("started", _now()),
        "resumes": old.get("resumes", -1) + 1,
        "wall_time_s": old.get("wall_time_s", 0.0),
        "steps_done": old.get("steps_done", 0),
    }
