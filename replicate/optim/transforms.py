"""Gradient transforms over lists of tensors, with torch ``_foreach_*`` ops (see base.py)."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .base import Transform, wide, zeros


def _log(b: float) -> float:
    return math.log(b) if b > 0 else -math.inf


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_inside: bool = False) -> Transform:
    """Adam's preconditioner (Kingma & Ba 2015, arXiv 1412.6980).

    m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  m̂ = m/(1-β1^t);  v̂ = v/(1-β2^t)
    u = m̂/(√v̂ + ε)   (eps_inside: u = m̂/√(v̂ + ε)).
    The bias corrections come from the count tensor (1-β^t = -expm1(t·log β), accurate in float32),
    so a compiled step never recompiles.
    """
    log_b1, log_b2 = _log(b1), _log(b2)

    def init(params):
        return {"m": [torch.zeros_like(p) for p in params],
                "v": [torch.zeros_like(p) for p in params],
                "count": zeros(params)}

    def update(updates, state, params=None):
        m, v, count = state["m"], state["v"], state["count"]
        count.add_(1)
        torch._foreach_lerp_(m, updates, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, updates, updates, value=1 - b2)
        t = count.to(wide(m[0].dtype))
        bc1, bc2 = -torch.expm1(t * log_b1), -torch.expm1(t * log_b2)
        if eps_inside:
            denom = torch._foreach_div(v, bc2)
            torch._foreach_add_(denom, eps)
            torch._foreach_sqrt_(denom)
        else:
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, bc2.sqrt())
            torch._foreach_add_(denom, eps)
        out = torch._foreach_div(m, denom)
        torch._foreach_div_(out, bc1)
        return out, state

    return Transform(init, update)


def add_decayed_weights(weight_decay: float) -> Transform:
    """u ← u + λ·θ. Before the preconditioner: L2 (coupled, torch.optim.Adam); after it:
    decoupled weight decay (Loshchilov & Hutter 2019, arXiv 1711.05101; torch.optim.AdamW)."""

    def update(updates, state, params):
        return torch._foreach_add(updates, params, alpha=weight_decay), state

    return Transform(lambda params: {}, update)


def scale_by_lr(lr: torch.Tensor, schedule: Optional[Callable] = None) -> Transform:
    """u ← -η·s(t)·u with η a 0-dim tensor (changed in place by the owner) and s a schedule of
    the 1-based step count t (its own count)."""

    def init(params):
        return {"count": zeros(params)}

    def update(updates, state, params=None):
        count = state["count"]
        count.add_(1)
        scale = lr if schedule is None else lr * schedule(count)
        return torch._foreach_mul(updates, -scale), state

    return Transform(init, update)


def trace(momentum: float, dampening: float = 0.0, nesterov: bool = False) -> Transform:
    """SGD momentum with torch.optim.SGD semantics (first step: b = g):
    b ← μ·b + (1-τ)·g;  u = g + μ·b (nesterov) or u = b."""

    def init(params):
        return {"momentum_buffer": [torch.zeros_like(p) for p in params], "count": zeros(params)}

    def update(updates, state, params=None):
        buf, count = state["momentum_buffer"], state["count"]
        count.add_(1)
        later = (count > 1).to(wide(buf[0].dtype))  # 0 on the first step, else 1
        torch._foreach_mul_(buf, later * momentum)
        torch._foreach_add_(buf, torch._foreach_mul(updates, 1 - later * dampening))
        if nesterov:
            return torch._foreach_add(updates, buf, alpha=momentum), state
        return list(buf), state

    return Transform(init, update)
