"""Every variant as a drop-in ``torch.optim.Optimizer``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Optional, Union

import torch

from .base import (HyperparameterError, check_hparams, copy_into, select, state_dicts, tree_map,
                   wide)
from .schedules import make_schedule
from .variants import VARIANTS, hparam_defaults

_GROUP_KEYS = {"params", "param_names", "initial_lr", "variant"}  # group keys that are not hyperparameters
LOW_PRECISION = (torch.bfloat16, torch.float16)  # params that get an fp32 master copy


def compile_options(device: torch.device) -> Optional[dict]:
    """Inductor options for a compiled step on ``device``.

    On the CPU every reused pointwise value of more than one op is computed once, into a buffer
    (``realize_opcount_threshold=1``).  Otherwise inductor inlines the step's 0-dim functions of
    the count (bias corrections -expm1(t·log β), the lr schedule's cos) into the fused loop over
    the params, and the C++ loop recomputes them, libm calls included, for every vector of 8 floats:
    its CPU heuristic realizes reused values of exp, log or tanh, not of expm1 or cos.  Measured at
    16M params, fp32, 2 threads (torch 2.13): compiled adam 48 → 17 ms, the Adam family 2.1-2.8×
    faster, no variant slower.  On a GPU, inlining is the better trade (recomputing a scalar per
    thread is free in a memory-bound kernel, a separate kernel costs a launch): no options there.
    """
    return {"realize_opcount_threshold": 1} if torch.device(device).type == "cpu" else None


class TransformOptimizer(torch.optim.Optimizer):
    """Runs a variant's Transform per param group; ``params += update(grads)``.

    The lr lives in a per-group 0-dim tensor that ``step()`` fills from ``group['lr']``, so torch
    LR schedulers work and a compiled step never recompiles. ``schedule`` (None, a callable of
    the count tensor, a schedule name, or a mapping ``{name: ..., **kw}``) multiplies it.
    Params whose ``.grad`` is None are skipped (the group's shared step count still advances).

    Parameter kinds: a group may name its own ``variant`` (a registered name or a function); its
    hyperparameters are then that variant's, each from the group, else from this optimizer's
    keyword arguments where the variant has it, else the variant's default (e.g. Muon-style:
    one group of hidden matrices, ``{"params": vectors, "variant": "adamw"}`` for the rest;
    ``variants.param_groups(name, model)`` gives a row's split).  The other groups use ``variant``.

    Mixed precision: a bf16 or fp16 param gets an fp32 master copy, and its state (m, v, ...) is
    fp32: the step reads the low-precision gradient as fp32, updates the master and writes it back
    rounded to the param's dtype (16 bytes per parameter in all: 2 param, 2 grad, 4 master, 4 m,
    4 v; Micikevicius et al. 2018, arXiv 1710.03740). ``master_weights=False`` keeps state in the
    param dtype instead (8-bit-free but lossy: small updates vanish in bf16).
    """

    def __init__(self, params, variant: Union[str, Callable] = "adam", *, lr=1e-3,
                 schedule=None, compile: bool = False, master_weights: bool = True, **hparams):
        variant = _resolve(variant)
        self._variant = variant
        if isinstance(schedule, str):
            schedule = make_schedule(schedule)
        elif isinstance(schedule, Mapping):
            schedule = make_schedule(**schedule)
        self.schedule: Optional[Callable] = schedule
        self._compile = compile
        self._master_weights = master_weights
        self._lr_t, self._tx, self._ostate, self._step_fn, self._where = [], [], [], [], {}
        self._master: list[list[torch.Tensor]] = []  # per group: fp32 master per param (the param itself if fp32)
        defaults = {"lr": lr, **hparam_defaults(variant)}
        self._given = self._normalize(hparams, set(), variant)
        defaults.update(self._given)
        super().__init__(params, defaults)

    def _variant_of(self, group: Mapping) -> Callable:
        """The group's own ``variant`` if it names one, else the optimizer's."""
        return self._variant if group.get("variant") is None else _resolve(group["variant"])

    def _normalize(self, group: dict, extra: set, variant: Callable) -> dict:
        group, names = dict(group), list(hparam_defaults(variant))
        if "betas" in group:
            if "b1" in group or "b2" in group:
                raise HyperparameterError("betas", "give betas=(b1, b2) or b1/b2, not both")
            betas = group.pop("betas")
            if "b1" not in names:
                raise HyperparameterError("betas", f"betas is not a hyperparameter of "
                                          f"{variant.__name__}; allowed: {', '.join(['lr', *names])}")
            group["b1"], group["b2"] = betas
        for key in group:
            if key != "lr" and key not in names and key not in extra:
                raise HyperparameterError(key, f"unknown hyperparameter {key!r} for "
                                          f"{variant.__name__}; allowed: {', '.join(['lr', *names])}")
        return group

    def add_param_group(self, param_group: dict) -> None:
        own = param_group.get("variant") is not None
        variant = self._variant_of(param_group)
        group = self._normalize(param_group, _GROUP_KEYS, variant)
        names = list(hparam_defaults(variant))
        if own:  # its own variant: the group's value, else ours where it has the key, else its default
            for k, d in hparam_defaults(variant).items():
                group.setdefault(k, self._given.get(k, d))
        super().add_param_group(group)
        group = self.param_groups[-1]
        if own:  # torch filled in the optimizer's defaults: drop those the group's variant lacks
            for k in set(self.defaults) - {"lr", *names, *param_group}:
                group.pop(k, None)
        check_hparams({k: group[k] for k in ["lr", *names]})
        self._build(len(self.param_groups) - 1)

    def _build(self, gi: int) -> None:
        """(Re)create group gi's lr tensor, transform, state and step function."""
        group = self.param_groups[gi]
        params = group["params"]
        variant = self._variant_of(group)
        lr = torch.tensor(float(group["lr"]), dtype=wide(params[0].dtype), device=params[0].device)
        tx = variant(lr, self.schedule, **{k: group[k] for k in hparam_defaults(variant)})
        low = [self._master_weights and p.dtype in LOW_PRECISION for p in params]
        master = [p.detach().float().clone() if lo else p for p, lo in zip(params, low)]

        def apply(params, grads, state, master):
            if any(p is not w for p, w in zip(params, master)):  # mixed precision: step the fp32 masters
                grads = [g.float() for g in grads]
                updates, _ = tx.update(grads, state, master)
                torch._foreach_add_(master, updates)
                low = [(p, w) for p, w in zip(params, master) if p is not w]
                torch._foreach_copy_([p for p, _ in low], [w for _, w in low])
            else:
                updates, _ = tx.update(grads, state, params)
                torch._foreach_add_(params, updates)

        step_fn = (torch.compile(apply, options=compile_options(params[0].device)) if self._compile
                   else apply)
        built = (lr, tx, tx.init(master), step_fn, master)
        for lst, value in zip((self._lr_t, self._tx, self._ostate, self._step_fn, self._master), built):
            lst[gi:gi + 1] = [value]
        self._where.update({p: (gi, i) for i, p in enumerate(params)})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            idx = [i for i, p in enumerate(params) if p.grad is not None]
            if not idx:
                continue
            self._lr_t[gi].fill_(group["lr"])
            state, master = self._ostate[gi], self._master[gi]
            if len(idx) < len(params):
                params, state, master = [params[i] for i in idx], select(state, idx), [master[i] for i in idx]
            self._step_fn[gi](params, [p.grad for p in params], state, master)
        return loss

    def _count(self, gi: int) -> float:
        counts = [d["count"] for d in state_dicts(self._ostate[gi]) if "count" in d]
        return float(counts[-1]) if counts else 0.0

    def current_lr(self, group: int = 0) -> float:
        """lr × schedule(t) of the latest step (of the first step before any), for logging."""
        lr = float(self.param_groups[group]["lr"])
        if self.schedule is None:
            return lr
        t = torch.tensor(max(self._count(group), 1.0), dtype=torch.float32)
        return lr * float(self.schedule(t))

    def param_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """This param's state merged over the chain ('m', 'v', 'momentum_buffer', 0-dim 'count');
        keys a param does not have (None entries, e.g. Adafactor's v for a matrix) are left out."""
        gi, i = self._where[p]
        out = {}
        for d in state_dicts(self._ostate[gi]):
            for k, v in d.items():
                v = v[i] if isinstance(v, list) else v
                if v is not None:
                    out.setdefault(k, v)
        if self._master[gi][i] is not p:
            out["master"] = self._master[gi][i]
        return out

    def state_dict(self) -> dict:
        sd = super().state_dict()  # param_groups with params as indices, as torch
        sd["state"] = {gi: tree_map(torch.clone, s) for gi, s in enumerate(self._ostate)}
        masters = {gi: {i: w.clone() for i, (p, w) in enumerate(zip(g["params"], self._master[gi])) if w is not p}
                   for gi, g in enumerate(self.param_groups)}
        if any(masters.values()):
            sd["master"] = masters
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and copy the saved state INTO the existing tensors."""
        saved = state_dict["param_groups"]
        if [len(g["params"]) for g in saved] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("saved param groups do not match this optimizer's")
        for gi, (group, sg) in enumerate(zip(self.param_groups, saved)):
            if _name(group.get("variant")) != _name(sg.get("variant")):
                raise ValueError(f"saved param group {gi} has variant {_name(sg.get('variant'))}, "
                                 f"this optimizer's {_name(group.get('variant'))}")
            changed = any(group[k] != sg.get(k, group[k]) for k in hparam_defaults(self._variant_of(group)))
            group.update({k: v for k, v in sg.items() if k != "params"})
            if changed:
                self._build(gi)
            copy_into(self._ostate[gi], state_dict["state"][gi])
            saved_master = state_dict.get("master", {}).get(gi, {})
            for i, (p, w) in enumerate(zip(group["params"], self._master[gi])):
                if w is not p:  # a checkpoint without masters (saved in fp32) starts them from the params
                    w.copy_(saved_master[i] if i in saved_master else p.detach().float())


def _resolve(variant: Union[str, Callable]) -> Callable:
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise HyperparameterError(
                "name", f"name={variant!r} is not an optimizer; allowed: {', '.join(sorted(VARIANTS))}")
        return VARIANTS[variant]
    return variant


def _name(variant) -> Optional[str]:
    return variant if variant is None or isinstance(variant, str) else variant.__name__


def make(name: str, params, *, lr=1e-3, schedule=None, compile: bool = False,
         master_weights: bool = True, **hparams) -> TransformOptimizer:
    """``make("adamw", model.parameters(), lr=3e-4, weight_decay=0.1, schedule="warmup")``."""
    return TransformOptimizer(params, name, lr=lr, schedule=schedule, compile=compile,
                              master_weights=master_weights, **hparams)
