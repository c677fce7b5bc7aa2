"""Multi-process training: torchrun setup, batch sharding, ZeRO-1, optimizer memory accounting.

Under ``torchrun --nproc_per_node=N python -m replicate ...`` (RANK, WORLD_SIZE, LOCAL_RANK in the
environment) ``setup`` joins the process group (nccl on CUDA, gloo on CPU) and ``replicate.train``
wraps the model in DistributedDataParallel. Every rank builds the same data stream and takes a
contiguous shard of each global batch: rank r of N gets rows [r·B/N, (r+1)·B/N), so with DDP's
gradient mean (1/N)·Σ_r ∇L_r = ∇L(global batch) the run equals a single-process run of the same
global batch up to float rounding. Only rank 0 writes results; probes run on rank 0 and see the
full view (replicated parameters, all-reduced gradients, the whole optimizer state).

ZeRO stage 1 (Rajbhandari et al. 2020, arXiv 1910.02054), ``dist.zero=true``: ``ShardedOptimizer``
gives each parameter one owner rank (greedy by size, as torch's ZeroRedundancyOptimizer does); a rank
keeps the optimizer state of its own parameters only, steps them, and broadcasts them to the others.
torch's ZeroRedundancyOptimizer itself assumes torch.optim's per-parameter state, while our
TransformOptimizer keeps one state tree per group, hence this equivalent. Checkpoints hold the
consolidated state (gathered on rank 0) in the format of a single-process TransformOptimizer, so
a run resumes under any world size, with or without ZeRO.

Memory (mixed precision, Rajbhandari et al. §3.1): 16 bytes per parameter for Adam, of which 12
are optimizer state (fp32 master copy, m, v) and 4 are bf16 weights and gradients; ZeRO-1 divides
the 12 by N. ``optimizer_state_bytes`` measures what an optimizer holds on this rank.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from .optim.base import select, tree_map


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def info() -> Dist:
    """This process's place: (0, 1, 0) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Dist()


def setup(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), or by submitit with
    several tasks per job (hydra.launcher.tasks_per_node=N: submitit's TorchDistributedEnvironment
    exports RANK, WORLD_SIZE, MASTER_ADDR); a no-op otherwise."""
    _submitit_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return info()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return info()


def _submitit_env() -> None:
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR") and \
            int(os.environ.get("SLURM_NTASKS", os.environ.get("SUBMITIT_LOCAL_NTASKS", "1"))) > 1:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def local_device(name: str) -> torch.device:
    """``auto``/``cuda`` under torchrun or submitit: this process's GPU, cuda:LOCAL_RANK."""
    _submitit_env()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(name)


# ------------------------------------------------------------------------------------------ batches
def microbatches(batch: Any, d: Dist, accum: int) -> list:
    """This rank's contiguous rows of the global batch, cut into ``accum`` equal micro-batches.

    A batch is a tensor whose first dimension is the batch, a tuple of such tensors, or None
    (models without data); None is the same for every rank and micro-batch."""
    parts = d.world * accum
    if parts == 1 or batch is None:
        return [batch] * accum
    tensors = list(batch) if isinstance(batch, (tuple, list)) else [batch]
    B = tensors[0].shape[0]
    if B % parts:
        raise ValueError(f"the batch of {B} rows does not split into world size {d.world} x "
                         f"train.grad_accum {accum} = {parts} equal parts")
    n = B // parts
    out = []
    for j in range(accum):
        lo = (d.rank * accum + j) * n
        cut = [t[lo:lo + n] for t in tensors]
        out.append(type(batch)(cut) if isinstance(batch, (tuple, list)) else cut[0])
    return out


def mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over ranks; the tensor itself in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def replica_spread(model: torch.nn.Module) -> float:
    """max over ranks minus min over ranks of every parameter, largest entry: 0 when the replicas
    agree exactly (a check DDP and ZeRO-1 must pass)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).abs().max())


class LossModule(torch.nn.Module):
    """``forward(batch) = model.loss(batch)``: lets DDP and torch.compile wrap the loss call."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


# ------------------------------------------------------------------------------------------- ZeRO-1
def _groups(params) -> list[dict]:
    params = list(params)
    if params and isinstance(params[0], dict):
        return [dict(g, params=list(g["params"])) for g in params]
    return [{"params": params}]


def owners(groups: list[dict], world: int) -> list[list[int]]:
    """Owner rank of every parameter, per group: largest first to the least-loaded rank."""
    flat = [(p.numel(), gi, i) for gi, g in enumerate(groups) for i, p in enumerate(g["params"])]
    load = [0] * world
    out = [[0] * len(g["params"]) for g in groups]
    for n, gi, i in sorted(flat, key=lambda t: -t[0]):  # stable: ties keep their order
        r = min(range(world), key=lambda k: load[k])
        out[gi][i] = r
        load[r] += n
    return out


def _merge(pieces: list[tuple[list[int], Any]], n: int):
    """Inverse of ``select``: per-parameter lists put back at their indices in a group of n."""
    first = pieces[0][1]
    if isinstance(first, tuple):
        return tuple(_merge([(idx, t[j]) for idx, t in pieces], n) for j in range(len(first)))
    out = {}
    for k, v in first.items():
        if isinstance(v, list):
            full: list = [None] * n
            for idx, t in pieces:
                for i, x in zip(idx, t[k]):
                    full[i] = x
            out[k] = full
        else:
            out[k] = v  # shared per group (the step count): equal on every rank
    return out


class ShardedOptimizer:
    """ZeRO-1 around an optimizer factory ``make(param_groups)`` (a TransformOptimizer).

    The interface the training loop uses: step, zero_grad, current_lr, state_dict (collective:
    every rank calls it; rank 0 gets the consolidated single-process state dict, the others None),
    load_state_dict (that format, from any world size), param_groups (all parameters)."""

    def __init__(self, params, make: Callable[[list[dict]], Any], d: Dist | None = None):
        self.d = d or info()
        self.groups = _groups(params)
        self.param_groups = self.groups
        self.owner = owners(self.groups, self.d.world)
        self.mine = [[i for i, r in enumerate(o) if r == self.d.rank] for o in self.owner]
        self.local_gi = [gi for gi, idx in enumerate(self.mine) if idx]  # global index of each local group
        local = [dict(self.groups[gi], params=[self.groups[gi]["params"][i] for i in self.mine[gi]])
                 for gi in self.local_gi]
        self.local = make(local) if local else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.groups:
            for p in g["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        if self.local is not None:
            self.local.step()
        if self.d.world == 1:
            return
        for g, own in zip(self.groups, self.owner):
            for p, r in zip(g["params"], own):
                dist.broadcast(p.data, src=r)

    def current_lr(self, group: int = 0) -> float:
        """lr of ``group`` times the schedule factor (the same on every rank and group)."""
        lr = float(self.groups[group].get("lr", self._defaults_lr()))
        if self.local is None:
            return lr
        return lr * self.local.current_lr(0) / float(self.local.param_groups[0]["lr"])

    def _defaults_lr(self) -> float:
        return float(self.local.defaults["lr"]) if self.local is not None else float("nan")

    def state_dict(self) -> dict | None:
        sd = None
        if self.local is not None:
            sd = self.local.state_dict()
            sd = {"state": {self.local_gi[lg]: tree_map(lambda t: t.detach().cpu(), s)
                            for lg, s in sd["state"].items()},
                  "param_groups": {self.local_gi[lg]: {k: v for k, v in g.items() if k != "params"}
                                   for lg, g in enumerate(sd["param_groups"])}}
        got = [None] * self.d.world if self.d.main else None
        if self.d.world == 1:
            got = [(self.mine, sd)]
        else:
            dist.gather_object((self.mine, sd), got, dst=0)
        if not self.d.main:
            return None
        state, groups, start = {}, [], 0
        for gi, g in enumerate(self.groups):
            pieces = [(mine[gi], s["state"][gi]) for mine, s in got if s is not None and mine[gi]]
            state[gi] = _merge(pieces, len(g["params"]))
            hp = next(s["param_groups"][gi] for mine, s in got if s is not None and mine[gi])
            groups.append({**hp, "params": list(range(start, start + len(g["params"])))})
            start += len(g["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, full: dict) -> None:
        if self.local is None:
            return
        self.local.load_state_dict({
            "state": {lg: select(full["state"][gi], self.mine[gi]) for lg, gi in enumerate(self.local_gi)},
            "param_groups": [{**full["param_groups"][gi], "params": list(range(len(self.mine[gi])))}
                             for gi in self.local_gi]})


# ------------------------------------------------------------------------------------------- memory
def optimizer_state_bytes(opt) -> int:
    """Bytes of optimizer state tensors this rank holds (TransformOptimizer, ShardedOptimizer, or a
    torch.optim optimizer)."""
    if isinstance(opt, ShardedOptimizer):
        return 0 if opt.local is None else optimizer_state_bytes(opt.local)
    seen: dict[int, int] = {}

    def add(t):
        if isinstance(t, torch.Tensor):
            seen[id(t)] = t.numel() * t.element_size()
        return t

    if hasattr(opt, "_ostate"):
        tree_map(add, opt._ostate)
    else:
        tree_map(add, list(opt.state.values()))
    return sum(seen.values())


def mixed_precision_bytes(n_params: int, world: int = 1, zero: bool = False) -> dict[str, float]:
    """Adam in mixed precision per rank (Rajbhandari et al. 2020 §3.1): bf16 weights 2, bf16
    gradients 2, fp32 master weights 4, m 4, v 4 bytes per parameter, 16 in all; ZeRO-1 shards
    the last three (12 bytes) over ``world`` ranks."""
    k = world if zero else 1
    parts = {"weights_bf16": 2.0, "grads_bf16": 2.0, "master_fp32": 4.0 / k, "m_fp32": 4.0 / k,
             "v_fp32": 4.0 / k}
    return {**{name: b * n_params for name, b in parts.items()}, "bytes_per_param": sum(parts.values()),
            "total": sum(parts.values()) * n_params}


def memory_report(model: torch.nn.Module, opt, d: Dist | None = None, zero: bool = False) -> dict:
    """For the manifest: parameters, optimizer state bytes of every rank (measured), and the
    16-bytes-per-parameter arithmetic for this world size."""
    d = d or info()
    n = sum(p.numel() for p in model.parameters())
    mine = optimizer_state_bytes(opt)
    per_rank = [mine]
    if d.world > 1:
        got = [None] * d.world
        dist.all_gather_object(got, mine)
        per_rank = got
    return {"params": n, "world_size": d.world, "zero": bool(zero),
            "optimizer_state_bytes_per_rank": per_rank,
            "optimizer_state_bytes_per_param": sum(per_rank) / max(n, 1),
            "mixed_precision_bytes": mixed_precision_bytes(n, d.world, zero)}


# --------------------------------------------------------------------------------------- throughput
# dense bf16/fp16 tensor-core peak per GPU, FLOP/s (vendor data sheets, without sparsity)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def throughput(cfg: dict, model: torch.nn.Module, steps: int, seconds: float, device_name: str,
               steady: tuple[int, float] | None = None) -> dict:
    """Tokens/s of a run and its model FLOPs utilisation (PaLM's MFU, Chowdhery et al. 2022 App. B):
    FLOPs per token = 6N + 12·L·d·T (N parameters, L layers, d width, T context; the attention
    term as in nanoGPT), MFU = FLOPs per token x tokens/s / (world size x peak). Wall time includes
    compilation, probes and validation, so this is a lower bound. MFU is None off a known GPU or in fp32.
    ``steady`` = (steps, seconds) after the warm-up (``train._loop``: compilation left out) adds
    ``tokens_per_s_steady`` and ``mfu_steady``."""
    data, mcfg = cfg.get("data") or {}, cfg.get("model") or {}
    B, T = data.get("batch_size"), data.get("context")
    if not (isinstance(B, int) and isinstance(T, int)) or seconds <= 0:
        return {}
    tokens_per_s = B * T * steps / seconds
    n = sum(p.numel() for p in model.parameters())
    per_token = 6 * n + 12 * int(mcfg.get("depth", 0)) * int(mcfg.get("width", 0)) * T
    peak = next((v for k, v in PEAK_FLOPS.items() if k in device_name), None)
    low = (cfg.get("train") or {}).get("precision", "fp32") in ("bf16", "fp16")
    def mfu(rate: float):
        return per_token * rate / (info().world * peak) if peak and low else None

    out = {"tokens_per_s": tokens_per_s, "flops_per_token": per_token, "mfu": mfu(tokens_per_s)}
    if steady is not None and steady[0] > 0 and steady[1] > 0:
        out["tokens_per_s_steady"] = B * T * steady[0] / steady[1]
        out["mfu_steady"] = mfu(out["tokens_per_s_steady"])
    return out
